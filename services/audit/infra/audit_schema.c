/*  =========================================================================
    audit_schema - the audit log's schema: its own schema and migrations
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_schema.h"

#include "mesh/mesh_err.h"
#include "mesh/mesh_pg.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

//  Advisory lock of the audit migrator ("zmeshaud" as an int64)
#define S_LOCK_KEY INT64_C (8821818791435167076)

//  Migration 1: the audit log and its cursor.
static const char *const s_migration_1[] = {
    //  One row per event, once: the event id is the key (the user service's
    //  relay may publish an event twice after a takeover; catch-up and the
    //  live stream overlap). seq is unique too: the relay gives each seq to
    //  one event. data is the user as jsonb, so the log can be queried in
    //  SQL. received_at is when the audit log stored it.
    "CREATE TABLE audit_events ("
    "    event_id uuid PRIMARY KEY,"
    "    seq bigint NOT NULL UNIQUE CHECK (seq > 0),"
    "    type text NOT NULL,"
    "    subject uuid NOT NULL,"
    "    time timestamptz NOT NULL,"
    "    data jsonb NOT NULL,"
    "    trace text,"
    "    received_at timestamptz NOT NULL DEFAULT now()"
    ")",
    //  audit.list by user and by type, in seq order
    "CREATE INDEX audit_events_subject_seq_idx ON audit_events (subject, seq)",
    "CREATE INDEX audit_events_type_seq_idx ON audit_events (type, seq)",
    //  The highest seq up to which every event is stored; moved in the
    //  statement that stores the events. One row.
    "CREATE TABLE audit_cursor ("
    "    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
    "    seq bigint NOT NULL CHECK (seq >= 0)"
    ")",
    "INSERT INTO audit_cursor (singleton, seq) VALUES (true, 0)",
    NULL
};

//  Migration 2: who asked for each change.
static const char *const s_migration_2[] = {
    //  The event's `actor` extension attribute: who asked the user service
    //  for the change (a bus key's name, an HTTP caller's token subject or
    //  API key name). NULL when the event names none, and for the events
    //  stored before this migration. Nullable without a default: adding it
    //  rewrites no row. The index serves audit.list by actor in seq order;
    //  partial, so events without an actor cost it nothing.
    "ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS actor text",
    "CREATE INDEX IF NOT EXISTS audit_events_actor_seq_idx ON audit_events (actor, seq)"
    " WHERE actor IS NOT NULL",
    NULL};

static const mesh_pg_migration_t s_migrations[] = {
    {1, "audit log and cursor", s_migration_1},
    {2, "audit actor", s_migration_2},
};
#define S_MIGRATION_COUNT ((int) (sizeof s_migrations / sizeof s_migrations[0]))

bool
audit_schema_name_valid (const char *schema)
{
    size_t len = strlen (schema);
    if (len == 0 || len > 63 || (schema[0] >= '0' && schema[0] <= '9'))
        return false;
    for (size_t at = 0; at < len; at++) {
        char c = schema[at];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

//  Run `sql` (no result rows wanted). Returns 0 or a MESH_E* code.
static int
s_command (PGconn *conn, const char *sql, int nparams, const char *const *params)
{
    PGresult *result = PQexecParams (conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus (result);
    const char *state = PQresultErrorField (result, PG_DIAG_SQLSTATE);
    int rc = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK ? 0
           : PQstatus (conn) != CONNECTION_OK || mesh_pg_state_unavailable (state) ? MESH_EUNAVAIL
                                                                                    : MESH_EIO;
    PQclear (result);
    return rc;
}

int
audit_schema_use (PGconn *conn, const char *schema)
{
    //  The name is a checked identifier; as a parameter it needs no quoting
    const char *params[1] = {schema};
    return s_command (conn, "SELECT set_config('search_path', $1, false)", 1, params);
}

int
audit_schema_prepare (PGconn *conn, const char *schema, int *applied, char *error,
                      size_t error_size)
{
    if (applied)
        *applied = 0;
    if (!audit_schema_name_valid (schema)) {
        snprintf (error, error_size, "schema name '%s' is not a plain identifier", schema);
        return MESH_EINVAL;
    }
    char sql[128];
    //  CREATE SCHEMA takes no parameters; the name is a checked identifier
    snprintf (sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", schema);
    PQclear (PQexec (conn, "SET client_min_messages = warning"));
    int rc = s_command (conn, sql, 0, NULL);
    if (rc == MESH_EIO)
        //  Two processes creating it at once: one fails on the catalog's
        //  unique index; the schema is there either way
        rc = s_command (conn, "SELECT 1", 0, NULL);
    if (!rc)
        rc = audit_schema_use (conn, schema);
    if (rc) {
        snprintf (error, error_size, "cannot create or use schema %s: %s", schema,
                  PQerrorMessage (conn));
        error[strcspn (error, "\n")] = '\0';
        return rc;
    }
    return mesh_pg_migrate (conn, S_LOCK_KEY, s_migrations, S_MIGRATION_COUNT, applied, error,
                            error_size);
}

int
audit_schema_latest (void)
{
    return S_MIGRATION_COUNT;
}
