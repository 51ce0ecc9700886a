/* t_rawdb.c - direct access to a store's database files (t_rawdb.h). */
#include "t_rawdb.h"

#include <stdio.h>
#include <stdlib.h>

sqlite3 *t_rawdb_open(const char *dir, const char *file)
{
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
