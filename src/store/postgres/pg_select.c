/*
 * pg_select.c - which backend a data dir's store lives in.
 *
 * A data dir holds either the SQLite databases (privguide.db, keystore.db)
 * or a file `database` (0600, no key material) naming the PostgreSQL store:
 *
 *     # privguide: this store lives in PostgreSQL
 *     url postgresql:///privguide?host=/run/postgresql
 *     schema privguide_0123...
 *
 * `privguide init --database URL` (or PRIVGUIDE_DATABASE_URL) writes it;
 * every command then opens that backend. Copy the data dir (policy, store
 * id, this file) to every machine that runs a server on the same database.
 */
#include "store/datafile.h"
#include "store/postgres/pg_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SQLITE_SCHEMA_VERSION 1

static void join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static int conf_exists(const char *dir)
{
    char path[4096];
    join(path, sizeof path, dir, PVG_DATABASE_FILE);
    return access(path, F_OK) == 0;
}

int pvg_backend_exists(const char *dir)
{
    return pvg_sqlite_backend_exists(dir) || conf_exists(dir);
}

/* Reads dir/database: *url and *schema malloc'd. */
static pvg_status conf_read(const char *dir, char **url, char **schema, pvg_error *err)
{
    char path[4096];
    join(path, sizeof path, dir, PVG_DATABASE_FILE);
    *url = *schema = NULL;
    FILE *f = NULL;
    pvg_status ost = pvg_datafile_fopen(path, "r", &f, err); /* never through a link */
    if (ost != PVG_OK) return ost;
    char line[4096];
    int lineno = 0;
    pvg_status st = PVG_OK;
    while (st == PVG_OK && fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (!n || line[0] == '#') continue;
        char **dst = NULL;
        const char *v = NULL;
        if (strncmp(line, "url ", 4) == 0) {
            dst = url;
            v = line + 4;
        } else if (strncmp(line, "schema ", 7) == 0) {
            dst = schema;
            v = line + 7;
        } else {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, lineno, 1, -1,
                                  "expected `url URL` or `schema NAME`");
            break;
        }
        free(*dst);
        if (!(*dst = strdup(v))) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    fclose(f);
    if (st == PVG_OK && (!*url || !*schema || !**url || !**schema))
        st = pvg_error_set_at(err, PVG_ERR_INVALID, path, lineno, 0, -1,
                              "expected both a `url` and a `schema` line");
    if (st != PVG_OK) {
        free(*url);
        free(*schema);
        *url = *schema = NULL;
    }
    return st;
}

pvg_status pvg_backend_create(const char *dir, const char *url, const char *store_id,
                              pvg_error *err)
{
    if (!url || !*url) return pvg_sqlite_backend_create(dir, err);
    if (pvg_backend_exists(dir))
        return pvg_error_set_at(err, PVG_ERR_EXISTS, dir, 0, 0, -1, "a store exists here already");
    if (strchr(url, '\n'))
        return pvg_error_set(err, PVG_ERR_INVALID, "the database URL holds a line break");
    char schema[64];
    snprintf(schema, sizeof schema, "privguide_%.32s", store_id);
    char path[4096];
    join(path, sizeof path, dir, PVG_DATABASE_FILE);
    /* 0600: a URL may carry a password */
    int fd;
    pvg_status cst = pvg_datafile_open(path, O_WRONLY | O_CREAT | O_EXCL, &fd, err);
    if (cst != PVG_OK) return cst;
    FILE *f = fdopen(fd, "w");
    int ok = f && fprintf(f, "# privguide: this store lives in PostgreSQL\nurl %s\nschema %s\n",
                          url, schema) > 0;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok) {
        unlink(path);
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "write failed");
    }
    pvg_status st = pvg_pg_backend_create(url, schema, err);
    if (st != PVG_OK) unlink(path);
    return st;
}

pvg_status pvg_backend_open(const char *dir, pvg_backend **out, pvg_error *err)
{
    *out = NULL;
    if (!conf_exists(dir)) return pvg_sqlite_backend_open(dir, out, err);
    char *url, *schema;
    pvg_status st = conf_read(dir, &url, &schema, err);
    if (st != PVG_OK) return st;
    st = pvg_pg_backend_open(url, schema, out, err);
    free(url);
    free(schema);
    return st;
}

pvg_status pvg_backend_migrate(const char *dir, int *from, int *to, pvg_error *err)
{
    *from = *to = 0;
    if (conf_exists(dir)) {
        char *url, *schema;
        pvg_status st = conf_read(dir, &url, &schema, err);
        if (st != PVG_OK) return st;
        st = pvg_pg_backend_migrate(url, schema, from, to, err);
        free(url);
        free(schema);
        return st;
    }
    /* SQLite upgrades on open (new tables, the users and chunk id
     * migrations); what remains is to refuse a newer schema. */
    pvg_backend *be = NULL;
    pvg_status st = pvg_sqlite_backend_open(dir, &be, err);
    if (st != PVG_OK) return st;
    char *v = NULL;
    st = be->ops->meta_get(be, "schema_version", &v, err);
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        st = PVG_OK;
    }
    *from = v ? atoi(v) : 0;
    free(v);
    *to = SQLITE_SCHEMA_VERSION;
    if (st == PVG_OK && *from > SQLITE_SCHEMA_VERSION)
        st = pvg_error_set_at(err, PVG_ERR_STATE, dir, 0, 0, -1,
                              "the store's schema is version %d, newer than this privguide knows "
                              "(%d): upgrade privguide",
                              *from, SQLITE_SCHEMA_VERSION);
    if (st == PVG_OK && *from < SQLITE_SCHEMA_VERSION) {
        st = be->ops->meta_set(be, "schema_version", "1", err);
    }
    be->ops->close(be);
    return st;
}

pvg_status pvg_backend_describe(const char *dir, const char **name, char **url, pvg_error *err)
{
    *url = NULL;
    if (!conf_exists(dir)) {
        *name = "sqlite";
        return pvg_sqlite_backend_exists(dir) ? PVG_OK
                                              : pvg_error_set_at(err, PVG_ERR_NOT_FOUND, dir, 0, 0,
                                                                 -1, "no privguide store here");
    }
    char *schema;
    pvg_status st = conf_read(dir, url, &schema, err);
    free(schema);
    *name = "postgresql";
    return st;
}
