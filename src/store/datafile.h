/*
 * datafile.h - the one way privguide creates and opens the files it names
 * in a data dir (databases, store.id, policy.json, audit log, restored and
 * copied files): whatever the umask, a file it creates is 0600 and a
 * directory 0700, and a symbolic link in a data file's place is refused
 * (never followed), with an error naming the path. Not installed.
 */
#ifndef PVG_STORE_DATAFILE_H
#define PVG_STORE_DATAFILE_H

#include <privguide/common.h>

#include <stdio.h>

/* Mode of every file privguide creates in a data dir, and of its directories. */
#define PVG_DATA_FILE_MODE 0600
#define PVG_DATA_DIR_MODE 0700

/* Opens path with open(2) flags (O_RDONLY, O_WRONLY or O_RDWR, with O_CREAT, O_EXCL, O_TRUNC,
 * O_APPEND as wanted; O_NOFOLLOW and O_CLOEXEC are added). A file it creates is made
 * PVG_DATA_FILE_MODE (fchmod after creation, so that neither the umask nor a default mode
 * widens it). Refuses a symbolic link (PVG_ERR_PERMISSION "is a symbolic link") and anything
 * but a regular file (PVG_ERR_INVALID). Errors name the path: PVG_ERR_NOT_FOUND (missing, no
 * O_CREAT), PVG_ERR_EXISTS (O_EXCL and present), PVG_ERR_IO. *fd_out gets the descriptor. */
pvg_status pvg_datafile_open(const char *path, int flags, int *fd_out,
                             pvg_error *err) PVG_WARN_UNUSED;

/* As pvg_datafile_open, as a stdio stream: mode "r" (read), "w" (create or truncate), "wx"
 * (create, PVG_ERR_EXISTS when present). */
pvg_status pvg_datafile_fopen(const char *path, const char *mode, FILE **out,
                              pvg_error *err) PVG_WARN_UNUSED;

/* For a file opened by another library (SQLite): refuses a symbolic link or a non-regular
 * file at path (errors as pvg_datafile_open). A missing file is PVG_ERR_NOT_FOUND unless
 * `create`, when it is created empty with PVG_DATA_FILE_MODE (so that the library that then
 * opens it, and the side files SQLite derives from its mode, are never wider). An existing
 * file is only lstat-ed, never opened: closing a descriptor of a database would drop the
 * POSIX locks this process's SQLite connections hold on it. The caller opens it without
 * following links (SQLITE_OPEN_NOFOLLOW), which closes the window after the check. */
pvg_status pvg_datafile_prepare(const char *path, int create, pvg_error *err) PVG_WARN_UNUSED;

/* Makes directory dir (PVG_DATA_DIR_MODE whatever the umask). An existing directory is
 * accepted (and, with `tighten`, chmod-ed to PVG_DATA_DIR_MODE); a symbolic link or another
 * kind of file is refused (PVG_ERR_PERMISSION / PVG_ERR_INVALID naming it). *made (may be
 * NULL) is 1 when this call created it. */
pvg_status pvg_datadir_make(const char *dir, int tighten, int *made,
                            pvg_error *err) PVG_WARN_UNUSED;

#endif
