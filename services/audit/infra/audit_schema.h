/*  =========================================================================
    audit_schema - the audit log's schema: its own schema and migrations
    mesh-audit keeps its tables in a schema of its own (MESH_AUDIT_SCHEMA,
    default "audit"), apart from the user service's. audit_schema_prepare
    creates that schema when missing, points the connection's search_path at
    it and applies the migrations (mesh_pg_migrate: concurrent starts are
    safe). Every later connection of the service calls audit_schema_use.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_SCHEMA_H_INCLUDED
#define AUDIT_SCHEMA_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

//  True when `schema` is a plain lower-case SQL identifier (a-z, 0-9, _,
//  not starting with a digit, at most 63 bytes): the only names accepted.
bool
    audit_schema_name_valid (const char *schema);

//  Point `conn`'s search_path at `schema` (valid name). Returns 0 or
//  MESH_EUNAVAIL / MESH_EIO.
int
    audit_schema_use (PGconn *conn, const char *schema);

//  Create `schema` if missing, use it, migrate. *applied as
//  mesh_pg_migrate. Returns 0 or a MESH_E* code with `error` filled.
int
    audit_schema_prepare (PGconn *conn, const char *schema, int *applied, char *error,
                          size_t error_size);

//  Newest compiled-in migration version.
int
    audit_schema_latest (void);

#endif
