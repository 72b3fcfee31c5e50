/*  =========================================================================
    user_schema - versioned schema migrations of the user service's database
    mesh-user calls user_schema_migrate once at start-up, before its workers
    open their connections. The migrations are compiled in (no SQL files to
    ship); each is applied in its own transaction together with its row in
    schema_migrations, under an advisory lock, so any number of processes
    may start at once: one applies, the others wait and find nothing to do.
    Tables are created in the connection's current schema (search_path).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_SCHEMA_H_INCLUDED
#define USER_SCHEMA_H_INCLUDED

#include <libpq-fe.h>
#include <stddef.h>

//  Bring the schema up to date on `conn`, an open connection that is not in
//  a transaction. Applies, in version order, every compiled-in migration not
//  yet recorded in schema_migrations (creating that table first), each in
//  one transaction with its record; a migration that fails is rolled back
//  whole and the later ones are not tried. On return *applied (when not
//  NULL) holds how many were applied by this call, even on failure.
//  Returns 0; MESH_EUNAVAIL when the connection is bad or is lost; MESH_EIO
//  when SQL fails (or `conn` is inside a transaction), with a one-line
//  description in `error` (when not NULL and error_size > 0; always NUL
//  terminated). Blocks while another process migrates the same database.
//  Thread: any, one call per connection at a time (libpq's rule).
int
    user_schema_migrate (PGconn *conn, int *applied, char *error, size_t error_size);

//  Version of the newest compiled-in migration (versions are 1, 2, ... with
//  no gaps, so it is also their count).
int
    user_schema_latest (void);

#endif
