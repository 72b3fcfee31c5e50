/*  =========================================================================
    user_repo_pg - the PostgreSQL (libpq) adapter of the user repository port
    Implements domain/user_repo.h on one libpq connection that it owns: each
    mesh-user worker thread creates its own adapter (libpq connections are not
    shared between threads). Every statement is prepared once per connection
    and run with parameters; every change and its outbox row are written by
    ONE statement (a data-modifying WITH), so they commit or fail together.
    When the server goes away a call returns MESH_EUNAVAIL and the next call
    resets the connection, so the adapter recovers once the server is back.
    Idempotency units are a transaction: BEGIN, claim the key, the change,
    store the reply, COMMIT.
    The schema (infra/user_schema) must already be migrated.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_REPO_PG_H_INCLUDED
#define USER_REPO_PG_H_INCLUDED

#include "user_repo.h"

#include "mesh/mesh_tracer.h"
#include "mesh/mesh_metrics.h"

//  Series shared by every adapter of a process: query durations by
//  statement (mesh_user_db_query_duration_seconds), connections by state
//  (mesh_user_db_connections{state=up|down}), failed connection attempts.
typedef struct user_pg_metrics_s user_pg_metrics_t;

//  Create every series in `metrics` (borrowed; must outlive the table).
user_pg_metrics_t *user_pg_metrics_new (mesh_metrics_t *metrics);

//  Destroy the table (not the series); nulls the pointer; tolerates NULL.
void user_pg_metrics_destroy (user_pg_metrics_t **self_p);

//  Give every statement a client span (db.system postgresql) under the
//  request's trace; `tracer` is borrowed (NULL: none). Before workers start.
void user_pg_metrics_set_tracer (user_pg_metrics_t *self, mesh_tracer_t *tracer);

//  Connect to PostgreSQL with `conninfo` (a libpq keyword/value string or a
//  postgresql:// URL; copied, kept for reconnects) and prepare the
//  statements. Returns the adapter as a port pointer, destroyed with
//  user_repo_destroy; or NULL with *err (when `err` is not NULL) set to
//  MESH_EUNAVAIL when the server cannot be reached, or MESH_EIO when the
//  statements cannot be prepared (e.g. the schema is not migrated). Tables
//  are found through the connection's search_path. Thread: the adapter is
//  used by one thread at a time.
//  `metrics` (borrowed, may be NULL) counts this adapter's statements and
//  connection state; its updates are thread-safe.
user_repo_t *user_repo_pg_new (const char *conninfo, user_pg_metrics_t *metrics, int *err);

#endif
