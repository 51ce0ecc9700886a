/*
 * privguide/doctor.h - checks of a deployment, each finding saying what to
 * fix (`privguide doctor`, docs/deploy.md).
 */
#ifndef PRIVGUIDE_DOCTOR_H
#define PRIVGUIDE_DOCTOR_H

#include <privguide/common.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

typedef enum pvg_doctor_level {
    PVG_DOCTOR_OK = 0,     /* checked, fine */
    PVG_DOCTOR_PROBLEM = 1 /* needs fixing: `fix` says how */
} pvg_doctor_level;

/* One finding. check: "data_dir", "data_files", "key_file", "budget",
 * "model", "port" or "disk". */
typedef struct pvg_doctor_finding {
    char check[16];
    pvg_doctor_level level;
    char what[640]; /* what was found, naming the path or value */
    char fix[640];  /* what to do ("" when level is OK) */
} pvg_doctor_finding;

typedef struct pvg_doctor_options {
    const char *data_dir;     /* required */
    const char *key_file;     /* NULL: as pvg_store_open_with finds it */
    const char *model_path;   /* NULL: <data_dir>/model.pvgm */
    const char *bind;         /* NULL: "127.0.0.1" */
    int port;                 /* the port serve uses; 0: 8080; < 0: not checked */
    long long min_free_bytes; /* free space wanted on the data dir's file system;
                                 0: 1 GiB; and at least 5% of it free */
    long long owner_uid;      /* the uid that must own the data dir and files (the
                                 service's user); 0 or less: this process's uid.
                                 (root's own data dir: run doctor as root) */
} pvg_doctor_options;

/* Runs every check. *out: new array of *n findings (pvg_doctor_finding_free), OK
 * ones included, in the order above; *problems: how many are PROBLEM. A
 * check that cannot run is a PROBLEM finding, not an error: the status is
 * PVG_OK unless out of memory or o is invalid. Reads only: it changes
 * nothing, and needs no key beyond reading the key file's mode. */
pvg_status pvg_doctor_run(const pvg_doctor_options *o, pvg_doctor_finding **out, size_t *n,
                          int *problems, pvg_error *err) PVG_WARN_UNUSED;
void pvg_doctor_finding_free(pvg_doctor_finding *f);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
