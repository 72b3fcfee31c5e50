/*  =========================================================================
    mesh_pg - PostgreSQL helpers shared by the services: versioned schema
    migrations, connecting with a bounded connect timeout, and telling "the
    server is gone" from other SQL failures.
    Migrations are a static table of {version, name, statements}. Each is
    applied in its own transaction that first takes a transaction-scoped
    advisory lock, so concurrent migrators serialise and whoever comes second
    reads schema_migrations after the first has committed; a failed migration
    leaves nothing behind (PostgreSQL's DDL is transactional). Migrations are
    append-only: a released one is never edited, a change is a new version.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_pg.h"

#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

//  Run first in every migration transaction, in this order. The lock comes
//  before anything reads the catalog or schema_migrations: in READ COMMITTED
//  each later statement takes a new snapshot, so a migrator that waited
//  here sees what the one before it committed. schema_migrations itself is
//  created under the lock too (two concurrent CREATE TABLE IF NOT EXISTS
//  can both miss the table and one then fails on a duplicate type row).
//  client_min_messages hides the NOTICE "already exists, skipping" that
//  libpq's default notice processor would print on stderr at every start.
static const char *const s_prologue [] = {
    "BEGIN",
    "SET LOCAL client_min_messages = warning",
    "SELECT pg_advisory_xact_lock($1::int8)",
    //  schema_migrations: which migrations this schema has, one row each;
    //  the primary key makes recording a version twice impossible.
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "    version int PRIMARY KEY,"
    "    name text NOT NULL,"
    "    applied_at timestamptz NOT NULL DEFAULT now()"
    ")",
    NULL
};


//  --------------------------------------------------------------------------
//  Write a printf-style message to error (when there is room); returns rc.
static int
s_fail (int rc, char *error, size_t error_size, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static int
s_fail (int rc, char *error, size_t error_size, const char *format, ...)
{
    if (error && error_size > 0) {
        va_list args;
        va_start (args, format);
        vsnprintf (error, error_size, format, args);
        va_end (args);
        //  libpq messages end with a newline (or several lines): keep one line
        char *newline = strchr (error, '\n');
        if (newline)
            *newline = '\0';
    }
    return rc;
}


//  --------------------------------------------------------------------------
//  Status for a failed statement: MESH_EUNAVAIL when the connection is gone
//  (the caller may retry later), MESH_EIO for an SQL error.
static int
s_failure_rc (PGconn *conn)
{
    return PQstatus (conn) == CONNECTION_BAD? MESH_EUNAVAIL: MESH_EIO;
}


//  --------------------------------------------------------------------------
//  Run one statement of migration `version` (0: the prologue) that must end
//  with `expected`. Returns 0, or the failure code with error filled in.
static int
s_exec (PGconn *conn, int version, const char *sql, int nparams, const char *const *params,
        ExecStatusType expected, PGresult **result_p, char *error, size_t error_size)
{
    PGresult *result = nparams == 0? PQexec (conn, sql)
                                   : PQexecParams (conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (result) == expected) {
        if (result_p)
            *result_p = result;
        else
            PQclear (result);
        return 0;
    }
    int rc = s_failure_rc (conn);
    const char *state = result? PQresultErrorField (result, PG_DIAG_SQLSTATE): NULL;
    const char *message = result? PQresultErrorField (result, PG_DIAG_MESSAGE_PRIMARY): NULL;
    //  Name the statement by its start: enough to find it in this file.
    s_fail (rc, error, error_size, "migration %d: %.60s...: %s%s%s%s", version, sql,
            message? message: PQerrorMessage (conn), state? " (SQLSTATE ": "",
            state? state: "", state? ")": "");
    PQclear (result);           //  Accepts NULL
    return rc;
}


//  --------------------------------------------------------------------------
//  Apply one migration unless schema_migrations has it. Sets *done to 1
//  when this call applied it. Leaves the connection outside any transaction.
static int
s_apply (PGconn *conn, const char *lock_key, const mesh_pg_migration_t *migration, int *done,
         char *error, size_t error_size)
{
    *done = 0;
    int rc = 0;
    PGresult *result = NULL;
    for (const char *const *sql = s_prologue; *sql; sql++) {
        bool locks = strstr (*sql, "$1") != NULL;
        rc = s_exec (conn, migration->version, *sql, locks? 1: 0, locks? &lock_key: NULL,
                     strncmp (*sql, "SELECT", 6) == 0? PGRES_TUPLES_OK: PGRES_COMMAND_OK, NULL,
                     error, error_size);
        if (rc)
            goto fail;
    }
    char version [16];
    snprintf (version, sizeof version, "%d", migration->version);
    const char *params [2] = { version, migration->name };
    rc = s_exec (conn, migration->version, "SELECT 1 FROM schema_migrations WHERE version = $1",
                 1, params, PGRES_TUPLES_OK, &result, error, error_size);
    if (rc)
        goto fail;
    int present = PQntuples (result) > 0;
    PQclear (result);
    if (!present) {
        for (const char *const *sql = migration->statements; *sql; sql++) {
            rc = s_exec (conn, migration->version, *sql, 0, NULL, PGRES_COMMAND_OK, NULL, error,
                         error_size);
            if (rc)
                goto fail;
        }
        rc = s_exec (conn, migration->version,
                     "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, params,
                     PGRES_COMMAND_OK, NULL, error, error_size);
        if (rc)
            goto fail;
    }
    //  COMMIT also when there was nothing to do: it releases the lock.
    rc = s_exec (conn, migration->version, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, error,
                 error_size);
    if (rc)
        goto fail;
    *done = !present;
    return 0;

fail:
    //  Leave the connection usable: roll back whatever was begun (the
    //  advisory lock goes with it). On a lost connection there is nothing
    //  to roll back; the server aborts the transaction itself.
    if (PQstatus (conn) == CONNECTION_OK && PQtransactionStatus (conn) != PQTRANS_IDLE)
        PQclear (PQexec (conn, "ROLLBACK"));
    return rc;
}


//  --------------------------------------------------------------------------
//  Bring the schema up to date; see the header for the contract.
int
mesh_pg_migrate (PGconn *conn, int64_t lock_key, const mesh_pg_migration_t *migrations,
                 int count, int *applied, char *error, size_t error_size)
{
    assert (conn);
    char key[24];
    snprintf (key, sizeof key, "%" PRId64, lock_key);
    //  Without a caller's buffer, still keep the message for the log line
    char own [256];
    if (!error || error_size == 0) {
        error = own;
        error_size = sizeof own;
    }
    error [0] = '\0';
    if (applied)
        *applied = 0;
    if (PQstatus (conn) != CONNECTION_OK) {
        mesh_log_warn ("mesh_pg: connection is bad: %s", PQerrorMessage (conn));
        return s_fail (MESH_EUNAVAIL, error, error_size, "connection is bad: %s",
                       PQerrorMessage (conn));
    }
    //  BEGIN inside an open transaction would only warn, and our COMMIT
    //  would then commit the caller's work: refuse instead.
    if (PQtransactionStatus (conn) != PQTRANS_IDLE)
        return s_fail (MESH_EIO, error, error_size, "connection is inside a transaction");

    for (int index = 0; index < count; index++) {
        const mesh_pg_migration_t *migration = &migrations [index];
        assert (migration->version == index + 1);     //  Versions have no gaps
        int done = 0;
        int rc = s_apply (conn, key, migration, &done, error, error_size);
        if (rc) {
            mesh_log_warn ("mesh_pg: %s", error);
            return rc;
        }
        if (done) {
            mesh_log_info ("mesh_pg: applied migration %d (%s)", migration->version,
                           migration->name);
            if (applied)
                (*applied)++;
        }
    }
    return 0;
}



//  --------------------------------------------------------------------------
PGconn *
mesh_pg_connect (const char *conninfo)
{
    assert (conninfo);
    const char *const keywords[] = {"connect_timeout", "dbname", NULL};
    const char *const values[] = {MESH_PG_CONNECT_TIMEOUT_S, conninfo, NULL};
    return PQconnectdbParams (keywords, values, 1);     //  1: expand dbname
}

//  --------------------------------------------------------------------------
bool
mesh_pg_state_unavailable (const char *state)
{
    return state && (strncmp (state, "08", 2) == 0 || strcmp (state, "57P01") == 0
                     || strcmp (state, "57P02") == 0 || strcmp (state, "57P03") == 0);
}

//  --------------------------------------------------------------------------
PGconn *
mesh_pg_connect_logged (const char *conninfo)
{
    PGconn *conn = mesh_pg_connect (conninfo);
    if (PQstatus (conn) == CONNECTION_OK)
        return conn;
    char message[512];
    snprintf (message, sizeof message, "%s", conn? PQerrorMessage (conn): "out of memory");
    message[strcspn (message, "\n")] = '\0';
    mesh_log_kv (MESH_LOG_ERROR, "cannot connect to the database", "error", message, NULL);
    PQfinish (conn);
    return NULL;
}
