/*  =========================================================================
    user_repo_pg - the PostgreSQL (libpq) adapter of the user repository port
    Implements domain/user_repo.h on one libpq connection that it owns: each
    mesh-user worker thread creates its own adapter (libpq connections are not
    shared between threads). Every statement is prepared once per connection
    and run with parameters; every change and its outbox row are written by
    ONE statement (a data-modifying WITH), so they commit or fail together.
    When the server goes away a call returns MESH_EUNAVAIL and the next call
    resets the connection, so the adapter recovers once the server is back.
    The schema (infra/user_schema) must already be migrated.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_REPO_PG_H_INCLUDED
#define USER_REPO_PG_H_INCLUDED

#include "user_repo.h"

//  Connect to PostgreSQL with `conninfo` (a libpq keyword/value string or a
//  postgresql:// URL; copied, kept for reconnects) and prepare the
//  statements. Returns the adapter as a port pointer, destroyed with
//  user_repo_destroy; or NULL with *err (when `err` is not NULL) set to
//  MESH_EUNAVAIL when the server cannot be reached, or MESH_EIO when the
//  statements cannot be prepared (e.g. the schema is not migrated). Tables
//  are found through the connection's search_path. Thread: the adapter is
//  used by one thread at a time.
user_repo_t *user_repo_pg_new (const char *conninfo, int *err);

#endif
