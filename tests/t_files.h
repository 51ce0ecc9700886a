/*
 * t_files.h - scratch files for tests: a fresh temporary directory, its
 * removal, and a file written from a string (each asserts on failure).
 */
#ifndef PVG_T_FILES_H
#define PVG_T_FILES_H

/* A new empty directory /tmp/pvg-test-<tag>-XXXXXX; the path is new
 * (free it). */
char *t_tmpdir(const char *tag);

/* Removes dir and everything under it. */
void t_rm_rf(const char *dir);

/* Writes text to path (created or truncated). */
void t_write_file(const char *path, const char *text);

#endif
