/*
 * privguide/common.h - result codes, the optional error struct, library
 * initialisation and the attribute macros every other public header uses.
 *
 * Ownership vocabulary used in every contract comment of the library:
 *   new       the caller owns the returned object and frees it with the
 *             matching *_free function: every constructor of pvg_X
 *             (pvg_X_new, _open, _load, _start, ...) pairs with
 *             pvg_X_free, which accepts NULL; strings and buffers the
 *             library returns are freed with pvg_free (store.h); a struct
 *             the caller owns and the library fills is emptied with
 *             pvg_X_clear. (pvg_store_close remains as the former name of
 *             pvg_store_free.)
 *   borrowed  the pointer stays owned by its parent object and is valid
 *             only while the parent lives and is not modified;
 *   steals    the callee takes ownership of an argument, on success and on
 *             failure alike.
 * Unless a contract says otherwise, an object may be used from one thread
 * at a time; distinct objects may be used from distinct threads.
 *
 * Errors are for what comes from outside (arguments, files, the network);
 * the library's internal invariants are assert()ed, checked in Debug
 * builds only (see CMakeLists.txt); where a release build must still fail
 * safe it returns PVG_ERR_INTERNAL (also used for system failures such as
 * a thread that cannot start).
 */
#ifndef PRIVGUIDE_COMMON_H
#define PRIVGUIDE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

#if defined(__GNUC__)
#define PVG_WARN_UNUSED __attribute__((warn_unused_result))
#define PVG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PVG_WARN_UNUSED
#define PVG_PRINTF(f, a)
#endif

/* The small, stable set of result codes. 0 is success; every failure is
 * negative so that functions returning a count can share the type. */
typedef enum pvg_status {
    PVG_OK = 0,
    PVG_ERR_INVALID = -1,      /* bad argument or malformed input */
    PVG_ERR_NOMEM = -2,        /* allocation failed */
    PVG_ERR_IO = -3,           /* file or socket error */
    PVG_ERR_NOT_FOUND = -4,    /* the named thing does not exist */
    PVG_ERR_EXISTS = -5,       /* the thing to create exists already */
    PVG_ERR_CORRUPT = -6,      /* stored data failed a check (format, checksum) */
    PVG_ERR_CRYPTO = -7,       /* authentication or decryption failed */
    PVG_ERR_POLICY = -8,       /* refused by the data policy or consent */
    PVG_ERR_BUDGET = -9,       /* refused: the privacy budget would be overspent */
    PVG_ERR_PERMISSION = -10,  /* not allowed (auth, roles, file modes) */
    PVG_ERR_UNSUPPORTED = -11, /* valid but not supported (version, size) */
    PVG_ERR_BUSY = -12,        /* a resource is locked; try again */
    PVG_ERR_ABORTED = -13,     /* a protocol or operation was aborted */
    PVG_ERR_STATE = -14,       /* call not valid in the object's current state */
    PVG_ERR_INTERNAL = -15,    /* a bug: an invariant did not hold */
    PVG_ERR_ERASED = -16       /* refused: the shopper was erased (suppression list) */
} pvg_status;

/* Optional error detail, filled by functions that take a `pvg_error *err`
 * (NULL is always allowed). `source` names the input (a file name, a field,
 * "request body"); `line`, `column` and `offset` are 1-based line/column and
 * 0-based byte offset into that input, or 0 / -1 when they do not apply. */
#define PVG_ERROR_TEXT_LEN 320
#define PVG_ERROR_SOURCE_LEN 160
typedef struct pvg_error {
    pvg_status code;
    long line;
    long column;
    long long offset;
    char source[PVG_ERROR_SOURCE_LEN];
    char text[PVG_ERROR_TEXT_LEN];
} pvg_error;

/* Returns a static, human-readable name for a result code ("invalid input",
 * ...). Never NULL. Thread-safe. */
const char *pvg_strerror(pvg_status code);

/* Clears an error struct (code PVG_OK, empty text, positions -1). NULL ok. */
void pvg_error_clear(pvg_error *err);

/* Fills `err` (when not NULL) and returns `code`, so callers can write
 * `return pvg_error_set(err, PVG_ERR_INVALID, "...", ...)`. */
pvg_status pvg_error_set(pvg_error *err, pvg_status code, const char *fmt, ...) PVG_PRINTF(3, 4);

/* Like pvg_error_set, and records where: source name, 1-based line and
 * column (0 when unknown) and 0-based byte offset (-1 when unknown). */
pvg_status pvg_error_set_at(pvg_error *err, pvg_status code, const char *source, long line,
                            long column, long long offset, const char *fmt, ...) PVG_PRINTF(7, 8);

/* Formats an error as "source:line:column: text" (the parts that are known)
 * into buf. Returns buf. */
const char *pvg_error_format(const pvg_error *err, char *buf, size_t len);

/* Initialises the library (libsodium; the Paillier module installs its own
 * wiping GMP memory hooks on first use, see paillier.h). Idempotent and
 * thread-safe; every constructor in the library calls it, so calling it
 * explicitly is optional. Returns PVG_OK or PVG_ERR_INTERNAL if the
 * system CSPRNG is unavailable. */
pvg_status pvg_init(void) PVG_WARN_UNUSED;

/* The library version, "MAJOR.MINOR.PATCH". Static string. */
const char *pvg_version(void);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
