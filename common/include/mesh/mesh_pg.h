/*  =========================================================================
    mesh_pg - PostgreSQL helpers shared by the services
    Versioned schema migrations (safe when several processes start at
    once), connecting with a bounded connect timeout, and classifying a
    failure as "the server is gone" (retry later) or an SQL error. Lives in
    its own library, mesh_pg, so only the processes that use PostgreSQL link
    libpq.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_PG_H_INCLUDED
#define MESH_PG_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  libpq's connect timeout (seconds) unless the conninfo sets its own: a
//  server that does not answer must not hold a caller past any deadline.
#define MESH_PG_CONNECT_TIMEOUT_S "5"

//  One migration: version (1, 2, 3, ...: its position + 1), a short name
//  stored in schema_migrations, and its SQL statements (NULL-terminated, run
//  in order, each one statement so a failure names it).
typedef struct {
    int version;
    const char *name;
    const char *const *statements;
} mesh_pg_migration_t;

//  Bring the schema of `conn` (its current schema: search_path) up to date:
//  apply, in version order, each of the `count` migrations not yet recorded
//  in schema_migrations (created first), each in one transaction with its
//  record, under pg_advisory_xact_lock(lock_key) so concurrent migrators
//  take turns. A migration that fails is rolled back whole and the later
//  ones are not tried. *applied (when not NULL) gets how many this call
//  applied, even on failure. Returns 0; MESH_EUNAVAIL when the connection is
//  bad or lost; MESH_EIO when SQL fails (or `conn` is inside a transaction),
//  with a one-line description in `error` (when not NULL and error_size > 0;
//  always NUL-terminated). Thread: one call per connection at a time.
int
    mesh_pg_migrate (PGconn *conn, int64_t lock_key, const mesh_pg_migration_t *migrations,
                     int count, int *applied, char *error, size_t error_size);

//  Connect with `conninfo` (a keyword string or a postgresql:// URL) plus
//  connect_timeout MESH_PG_CONNECT_TIMEOUT_S unless it sets one. Returns
//  what PQconnectdbParams returns (check PQstatus; PQfinish it).
PGconn *
    mesh_pg_connect (const char *conninfo);

//  mesh_pg_connect for start-up: on failure logs libpq's reason (it names
//  host and port, never the password) and returns NULL.
PGconn *
    mesh_pg_connect_logged (const char *conninfo);

//  True when SQLSTATE `state` means the server or the connection is gone:
//  class 08 (connection exception), or the server shutting down (57P01
//  admin, 57P02 crash) or not yet accepting connections (57P03).
bool
    mesh_pg_state_unavailable (const char *state);

#endif
