/*  =========================================================================
    user_schema - versioned schema migrations of the user service's database
    The migrations are a static table of {version, name, statements}. Each is
    applied in its own transaction that first takes a transaction-scoped
    advisory lock, so concurrent migrators serialise and whoever comes second
    reads schema_migrations after the first has committed; a failed migration
    leaves nothing behind (PostgreSQL's DDL is transactional). Migrations are
    append-only: a released one is never edited, a change is a new version.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_schema.h"

#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

//  Advisory lock key of the migrator: "zmeshusr" as a big-endian int64. A
//  single constant key for every schema of the database: migrations of two
//  schemas then also wait for each other, which costs nothing (they run once
//  at start-up) and keeps the key independent of search_path. The relay uses
//  its own key; keys of the one-int64 form never collide with the two-int32
//  form (PostgreSQL keeps the two key spaces apart).
#define USER_SCHEMA_LOCK_KEY "8821818791436841842"

typedef struct {
    int version;                    //  1, 2, 3, ...: position in s_migrations + 1
    const char *name;               //  Short description, stored in schema_migrations
    const char *const *statements;  //  SQL statements, NULL-terminated, run in order
} s_migration_t;

//  Migration 1: the initial schema. One string per statement: a statement
//  that fails is named in the error, and each literal stays under the 4095
//  characters ISO C guarantees.
static const char *const s_migration_1 [] = {
    //  users: the service's state, one row per user. The domain trims and
    //  lower-cases email before it gets here; the unique index on
    //  lower(email) is the backstop that makes "email unique
    //  case-insensitively" hold even for rows written by other means, and
    //  turns a concurrent duplicate into SQLSTATE 23505 (MESH_ECONFLICT,
    //  already_exists). The primary key on id serves user.get and the keyset
    //  pagination of user.list (WHERE id > $after ORDER BY id LIMIT $n).
    "CREATE TABLE users ("
    "    id uuid PRIMARY KEY,"
    "    name text NOT NULL,"
    "    email text NOT NULL,"
    "    created_at timestamptz NOT NULL,"
    "    updated_at timestamptz NOT NULL"
    ")",
    "CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email))",

    //  outbox: one row per event, written in the same transaction as the
    //  change it describes, so a rolled-back change leaves no event.
    //  - id orders rows by insertion only. It comes from a sequence, whose
    //    values have gaps and commit out of order, so it is NEVER the
    //    event's seq (DESIGN.md: a relay tracking "last id seen" would skip
    //    a row that commits late).
    //  - seq is given by the relay when it takes the row: last_seq + 1 from
    //    outbox_relay, in the same transaction, stored before it publishes;
    //    NULL until then. UNIQUE: no seq twice; its index also serves
    //    events.list (WHERE seq > $after_seq ORDER BY seq LIMIT $n).
    //  - data is the event payload as MessagePack, bytea: the mesh's bodies
    //    are MessagePack, so the relay and events.list send the stored bytes
    //    as they are, with no decode or re-encode, and the published event
    //    is byte for byte the one written with the change. jsonb would
    //    re-order keys, normalise numbers and cost a parse on every insert
    //    to make the payload queryable in SQL, which nothing here needs (the
    //    audit service keeps its own store).
    //  - trace is the W3C traceparent of the request that caused the event.
    "CREATE TABLE outbox ("
    "    id bigserial PRIMARY KEY,"
    "    event_id uuid NOT NULL UNIQUE,"
    "    type text NOT NULL,"
    "    subject uuid NOT NULL,"
    "    data bytea NOT NULL,"
    "    trace text,"
    "    created_at timestamptz NOT NULL DEFAULT now(),"
    "    seq bigint UNIQUE CHECK (seq > 0)"
    ")",
    //  The relay's query for rows still to number, oldest first:
    //  WHERE seq IS NULL ORDER BY id LIMIT $n FOR UPDATE. Partial, so it
    //  holds only the backlog and stays small however long the outbox is.
    "CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE seq IS NULL",

    //  outbox_relay: exactly one row, the last seq given. The relay numbers
    //  a batch with UPDATE outbox_relay SET last_seq = last_seq + $n
    //  RETURNING last_seq in the transaction that sets the rows' seq, so
    //  seqs are 1, 2, 3, ... with no gap (a rolled-back batch gives its
    //  numbers back) and the row lock serialises two relays that both
    //  believe they lead. The boolean primary key with CHECK allows one row.
    "CREATE TABLE outbox_relay ("
    "    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
    "    last_seq bigint NOT NULL CHECK (last_seq >= 0)"
    ")",
    "INSERT INTO outbox_relay (singleton, last_seq) VALUES (true, 0)",

    //  idempotency_keys: the first reply to a request made with an
    //  Idempotency-Key. Written in the transaction of the change, so a retry
    //  either finds the reply of a committed change or finds nothing and
    //  runs again; request_hash tells a retry (same hash: return reply) from
    //  a different request reusing the key (failed_precondition). The index
    //  on created_at lets old keys be purged without a full scan.
    "CREATE TABLE idempotency_keys ("
    "    key text PRIMARY KEY,"
    "    request_hash bytea NOT NULL,"
    "    reply bytea NOT NULL,"
    "    created_at timestamptz NOT NULL DEFAULT now()"
    ")",
    "CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at)",
    NULL
};

//  Migration 2: what the relay and idempotency keys need.
static const char *const s_migration_2 [] = {
    //  The relay wakes on NOTIFY mesh_outbox: one per inserting transaction
    //  (FOR EACH STATEMENT, and PostgreSQL folds identical notifications of
    //  a transaction into one), sent at commit, so the relay never wakes for
    //  a row it cannot see yet. The payload is the table's schema: several
    //  schemas of one database (tests, tenants) share the channel name, and
    //  a relay ignores the others' payloads. Constant channel: LISTEN needs
    //  no identifier built from data.
    "CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN PERFORM pg_notify('mesh_outbox', TG_TABLE_SCHEMA); RETURN NULL; END $$",
    "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox"
    " FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()",
    //  published_seq: the last seq the relay is known to have published. A
    //  new leader republishes from there (subscribers are idempotent on
    //  event id), so a leader that died between numbering and publishing
    //  loses nothing on the live stream either.
    "ALTER TABLE outbox_relay ADD COLUMN published_seq bigint NOT NULL DEFAULT 0"
    " CHECK (published_seq >= 0)",
    //  The key is claimed (row inserted, reply NULL) before the change runs
    //  in the same transaction: a concurrent request with the same key waits
    //  on the primary key until the first commits or rolls back, so one
    //  change happens whatever the timing. request holds the request itself
    //  (method and body, a few hundred bytes), not a hash: comparing bytes
    //  is exact and needs no hash function.
    "ALTER TABLE idempotency_keys RENAME COLUMN request_hash TO request",
    "ALTER TABLE idempotency_keys ALTER COLUMN reply DROP NOT NULL",
    NULL
};

//  Every migration, in version order. Append only.
static const s_migration_t s_migrations [] = {
    { 1, "initial: users, outbox, outbox_relay, idempotency_keys", s_migration_1 },
    { 2, "relay notify and published_seq; idempotency claim", s_migration_2 },
};

#define S_MIGRATION_COUNT ((int) (sizeof s_migrations / sizeof s_migrations [0]))

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
    "SELECT pg_advisory_xact_lock(" USER_SCHEMA_LOCK_KEY ")",
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
s_apply (PGconn *conn, const s_migration_t *migration, int *done, char *error,
         size_t error_size)
{
    *done = 0;
    int rc = 0;
    PGresult *result = NULL;
    for (const char *const *sql = s_prologue; *sql; sql++) {
        rc = s_exec (conn, migration->version, *sql, 0, NULL,
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
user_schema_migrate (PGconn *conn, int *applied, char *error, size_t error_size)
{
    assert (conn);
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
        mesh_log_warn ("user_schema: connection is bad: %s", PQerrorMessage (conn));
        return s_fail (MESH_EUNAVAIL, error, error_size, "connection is bad: %s",
                       PQerrorMessage (conn));
    }
    //  BEGIN inside an open transaction would only warn, and our COMMIT
    //  would then commit the caller's work: refuse instead.
    if (PQtransactionStatus (conn) != PQTRANS_IDLE)
        return s_fail (MESH_EIO, error, error_size, "connection is inside a transaction");

    for (int index = 0; index < S_MIGRATION_COUNT; index++) {
        const s_migration_t *migration = &s_migrations [index];
        assert (migration->version == index + 1);     //  Versions have no gaps
        int done = 0;
        int rc = s_apply (conn, migration, &done, error, error_size);
        if (rc) {
            mesh_log_warn ("user_schema: %s", error);
            return rc;
        }
        if (done) {
            mesh_log_info ("user_schema: applied migration %d (%s)", migration->version,
                           migration->name);
            if (applied)
                (*applied)++;
        }
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  Newest compiled-in version.
int
user_schema_latest (void)
{
    return S_MIGRATION_COUNT;
}
