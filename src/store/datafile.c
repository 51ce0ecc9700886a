/*
 * datafile.c - creating and opening data-dir files: 0600 files, 0700
 * directories, no symbolic links followed (datafile.h).
 */
#include "store/datafile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pvg_status open_error(const char *path, int e, pvg_error *err)
{
    if (e == ELOOP)
        return pvg_error_set_at(err, PVG_ERR_PERMISSION, path, 0, 0, -1,
                                "is a symbolic link: privguide opens its data files only as "
                                "regular files of the data dir, never through a link");
    if (e == ENOENT)
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, path, 0, 0, -1, "missing: %s", strerror(e));
    if (e == EEXIST) return pvg_error_set_at(err, PVG_ERR_EXISTS, path, 0, 0, -1, "exists already");
    return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s", strerror(e));
}

pvg_status pvg_datafile_open(const char *path, int flags, int *fd_out, pvg_error *err)
{
    *fd_out = -1;
    int existed = 1; /* only a file this call creates gets its mode set */
    if (flags & O_EXCL) {
        existed = 0;
    } else if (flags & O_CREAT) {
        struct stat lb;
        if (lstat(path, &lb) == 0) {
            if (S_ISLNK(lb.st_mode)) return open_error(path, ELOOP, err);
        } else if (errno == ENOENT) {
            existed = 0;
        } else {
            return open_error(path, errno, err);
        }
    }
    int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC, PVG_DATA_FILE_MODE);
    if (fd < 0) return open_error(path, errno, err);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "not a regular file: privguide expected its data file here");
    }
    if (!existed && (sb.st_mode & 07777) != PVG_DATA_FILE_MODE &&
        fchmod(fd, PVG_DATA_FILE_MODE) != 0) {
        int e = errno;
        close(fd);
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot make it 0600: %s",
                                strerror(e));
    }
    *fd_out = fd;
    return PVG_OK;
}

pvg_status pvg_datafile_fopen(const char *path, const char *mode, FILE **out, pvg_error *err)
{
    *out = NULL;
    int flags;
    if (strcmp(mode, "r") == 0)
        flags = O_RDONLY;
    else if (strcmp(mode, "w") == 0)
        flags = O_WRONLY | O_CREAT | O_TRUNC;
    else if (strcmp(mode, "wx") == 0)
        flags = O_WRONLY | O_CREAT | O_EXCL;
    else
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "internal: stream mode '%s', want r, w or wx", mode);
    int fd;
    pvg_status st = pvg_datafile_open(path, flags, &fd, err);
    if (st != PVG_OK) return st;
    FILE *f = fdopen(fd, flags == O_RDONLY ? "r" : "w");
    if (!f) {
        int e = errno;
        close(fd);
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s", strerror(e));
    }
    *out = f;
    return PVG_OK;
}

pvg_status pvg_datafile_prepare(const char *path, int create, pvg_error *err)
{
    /* lstat, never open and close an existing file: closing any descriptor of a database
     * drops the POSIX locks every SQLite connection of this process holds on it */
    for (int tries = 0; tries < 3; tries++) {
        struct stat sb;
        if (lstat(path, &sb) == 0) {
            if (S_ISLNK(sb.st_mode)) return open_error(path, ELOOP, err);
            if (!S_ISREG(sb.st_mode))
                return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                        "not a regular file: privguide expected its data file "
                                        "here");
            return PVG_OK;
        }
        if (errno != ENOENT) return open_error(path, errno, err);
        if (!create) return open_error(path, ENOENT, err);
        /* a new file no connection has open yet */
        int fd;
        pvg_status st = pvg_datafile_open(path, O_RDWR | O_CREAT | O_EXCL, &fd, err);
        if (st == PVG_OK) {
            close(fd);
            return PVG_OK;
        }
        if (st != PVG_ERR_EXISTS) return st; /* else made meanwhile: look again */
    }
    return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "keeps appearing and vanishing");
}

pvg_status pvg_datadir_make(const char *dir, int tighten, int *made, pvg_error *err)
{
    if (made) *made = 0;
    if (mkdir(dir, PVG_DATA_DIR_MODE) == 0) {
        if (made) *made = 1;
        /* the umask may only narrow it; chmod states it exactly */
        if (chmod(dir, PVG_DATA_DIR_MODE) != 0)
            return pvg_error_set_at(err, PVG_ERR_IO, dir, 0, 0, -1, "cannot make it 0700: %s",
                                    strerror(errno));
        return PVG_OK;
    }
    int e = errno;
    struct stat sb;
    if (e != EEXIST || lstat(dir, &sb) != 0)
        return pvg_error_set_at(err, PVG_ERR_IO, dir, 0, 0, -1, "cannot create directory: %s",
                                strerror(e));
    if (S_ISLNK(sb.st_mode))
        return pvg_error_set_at(err, PVG_ERR_PERMISSION, dir, 0, 0, -1,
                                "is a symbolic link: expected a directory of its own");
    if (!S_ISDIR(sb.st_mode))
        return pvg_error_set_at(err, PVG_ERR_INVALID, dir, 0, 0, -1,
                                "exists and is not a directory");
    if (tighten && (sb.st_mode & 07777) != PVG_DATA_DIR_MODE && chmod(dir, PVG_DATA_DIR_MODE) != 0)
        return pvg_error_set_at(err, PVG_ERR_IO, dir, 0, 0, -1, "cannot make it 0700: %s",
                                strerror(errno));
    return PVG_OK;
}
