/*
 * pg_backend.h - the PostgreSQL backend of the store (src/store/backend.h;
 * docs/store.md, "The PostgreSQL backend"). Internal.
 */
#ifndef PVG_STORE_PG_BACKEND_H
#define PVG_STORE_PG_BACKEND_H

#include "store/backend.h"

/* Creates schema `schema` with the store's tables in the database at url
 * (a libpq connection URI or keyword string). PVG_ERR_EXISTS when the
 * schema is there already; PVG_ERR_IO when the server cannot be reached. */
pvg_status pvg_pg_backend_create(const char *url, const char *schema,
                                 pvg_error *err) PVG_WARN_UNUSED;
/* Opens the store in schema `schema`. PVG_ERR_NOT_FOUND when the schema is
 * missing, PVG_ERR_STATE when its version is not the one this code writes
 * (older: run migrate; newer: upgrade privguide). *out is new (ops->close). */
pvg_status pvg_pg_backend_open(const char *url, const char *schema, pvg_backend **out,
                               pvg_error *err) PVG_WARN_UNUSED;
/* Creates or upgrades the schema (under the store's write lock); *from: the
 * version found (0: none), *to: this code's. PVG_ERR_STATE when the stored
 * version is newer. */
pvg_status pvg_pg_backend_migrate(const char *url, const char *schema, int *from, int *to,
                                  pvg_error *err) PVG_WARN_UNUSED;

#endif
