/* t_rawdb.c - direct access to a store's database files (t_rawdb.h). */
#include "t_rawdb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A store kept in PostgreSQL (its data dir names the database) has no
 * database files to tamper with: the test that would is skipped there (its
 * SQLite run covers it). */
void t_rawdb_require_sqlite(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/database", dir);
    if (access(path, F_OK) == 0) {
        print_message(
            "[  SKIP    ] tampers with the SQLite files of the data dir; this store is in "
            "PostgreSQL\n");
        skip();
    }
}

void t_rawdb_require_sqlite_env(void)
{
    const char *url = getenv("PRIVGUIDE_DATABASE_URL");
    if (url && *url) {
        print_message(
            "[  SKIP    ] tampers with the SQLite files of a data dir; this run keeps its "
            "stores in PostgreSQL\n");
        skip();
    }
}

sqlite3 *t_rawdb_open(const char *dir, const char *file)
{
    t_rawdb_require_sqlite(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "t_rawdb_open: %s: %s\n", path, db ? sqlite3_errmsg(db) : "cannot open");
        abort();
    }
    sqlite3_busy_timeout(db, 30000);
    return db;
}

int t_rawdb_exec(const char *dir, const char *file, const char *sql)
{
    sqlite3 *db = t_rawdb_open(dir, file);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    sqlite3_close(db);
    return rc;
}
