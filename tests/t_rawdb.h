/*
 * t_rawdb.h - tests that play an attacker with access to the data dir open
 * the store's database files directly (a separate SQLite connection), as
 * anyone holding a copy of the files could. The library itself never
 * exposes its database handle.
 */
#ifndef PVG_T_RAWDB_H
#define PVG_T_RAWDB_H

#include <sqlite3.h>

/* Opens dir/file ("privguide.db" or "keystore.db") read-write with a busy
 * timeout; aborts the test run when it cannot. Close with sqlite3_close. */
sqlite3 *t_rawdb_open(const char *dir, const char *file);

/* Runs sql on dir/file in its own connection; returns the SQLite result code
 * (the message goes to stderr on failure). */
int t_rawdb_exec(const char *dir, const char *file, const char *sql);

/* Skips the running test (cmocka skip) when the stores the test creates go
 * to PostgreSQL ($PRIVGUIDE_DATABASE_URL set, as in the ctest pg runs).
 * Called first in a test, before anything is allocated (skip longjmps). */
void t_rawdb_require_sqlite_env(void);

/* Skips the running test (cmocka skip) when dir's store is in PostgreSQL. */
void t_rawdb_require_sqlite(const char *dir);

#endif
