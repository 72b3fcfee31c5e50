/*  =========================================================================
    user_repo_pg - the PostgreSQL (libpq) adapter of the user repository port
    Statements are prepared once per connection (again after a reconnect) and
    run with PQexecPrepared: no SQL is ever built from data. A change and its
    outbox row are one statement, WITH u AS (INSERT/UPDATE/DELETE ...
    RETURNING id) INSERT INTO outbox ... FROM u: atomic without BEGIN and
    COMMIT (one round trip instead of three), and when the user is missing
    u is empty, so no event is written and the row count says "not found".
    A create whose email is taken is the same: ON CONFLICT DO NOTHING
    leaves u empty, with no error that would abort a transaction, so the
    creates of a worker's batch go to the server in one pipeline and one
    transaction (one commit), each with its own answer.
    Times cross the wire as int8 unix microseconds and are turned into
    timestamptz (and back) in SQL with integer arithmetic only, so they are
    exact to the microsecond over the whole range user.h allows.
    Deadlines: before each operation the session's statement_timeout is
    brought within the request's remaining time, but only when it is off
    by more than a factor of two (set to 3/4 of the remaining time), so a
    steady stream of requests with similar deadlines costs no extra round
    trip. A statement cancelled by it returns MESH_ETIMEDOUT.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_repo_pg.h"
#include "user_codec.h"
#include "user_outbox.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_pg.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TIME USER_SQL_TIME
#define S_MICROS USER_SQL_MICROS

#define S_USER_COLUMNS                                                                             \
    "id::text, name, email, " S_MICROS ("created_at") ", " S_MICROS ("updated_at")

//  Prepared statements, by name; s_ready prepares the whole table. The name
//  is also the `statement` label of the query duration histogram.
typedef enum {
    S_INSERT,
    S_FIND,
    S_UPDATE,
    S_REMOVE,
    S_LIST_FIRST,
    S_LIST_AFTER,
    S_EVENTS,
    S_IDEM_CLAIM,
    S_IDEM_FIND,
    S_IDEM_COMPLETE,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_TIMEOUT,
    S_STATEMENTS //  Count
} s_statement_t;

//  The event's columns of an outbox insert, after a change's own parameters
//  $1..$n: event id, type, subject, data, time, trace ("" = none), actor
//  ("" = none). The actor is a parameter like every other value: it is
//  text from outside and never part of the SQL.
#define S_OUTBOX_INSERT(a, b, c, d, e, f, g)                                                       \
    " INSERT INTO outbox (event_id, type, subject, data, created_at, trace, actor)"                \
    " SELECT $" a "::uuid, $" b "::text, $" c "::uuid, $" d                                        \
    "::bytea, " S_TIME (e) ", NULLIF($" f "::text, ''), NULLIF($" g "::text, '') FROM u"

// clang-format off
static const struct {
    const char *name;           //  Name given to PQprepare
    const char *sql;            //  Parameterised SQL
} s_statements[S_STATEMENTS] = {
    [S_INSERT] = { "user_insert",
        "WITH u AS (INSERT INTO users (id, name, email, created_at, updated_at)"
        " VALUES ($1::uuid, $2::text, $3::text, " S_TIME ("4") ", " S_TIME ("5") ")"
        " ON CONFLICT DO NOTHING RETURNING id)" S_OUTBOX_INSERT ("6", "7", "8", "9", "10", "11", "12") },
    [S_FIND] = { "user_find",
        "SELECT " S_USER_COLUMNS " FROM users WHERE id = $1::uuid" },
    [S_UPDATE] = { "user_update",
        "WITH u AS (UPDATE users SET name = $2::text, email = $3::text,"
        " updated_at = " S_TIME ("4") " WHERE id = $1::uuid RETURNING id)"
        S_OUTBOX_INSERT ("5", "6", "7", "8", "9", "10", "11") },
    [S_REMOVE] = { "user_remove",
        "WITH u AS (DELETE FROM users WHERE id = $1::uuid RETURNING id)"
        S_OUTBOX_INSERT ("2", "3", "4", "5", "6", "7", "8") },
    [S_LIST_FIRST] = { "user_list_first",
        "SELECT " S_USER_COLUMNS " FROM users ORDER BY id LIMIT $1::int8" },
    [S_LIST_AFTER] = { "user_list_after",
        "SELECT " S_USER_COLUMNS " FROM users WHERE id > $1::uuid ORDER BY id LIMIT $2::int8" },
    //  Only numbered rows (seq > n excludes NULL); the relay numbers whole
    //  batches in one transaction, so no reader sees a gap inside one.
    [S_EVENTS] = { "events_after",
        "SELECT " USER_OUTBOX_EVENT_COLUMNS ("outbox") " FROM outbox"
        " WHERE seq > $1::int8 ORDER BY seq LIMIT $2::int8" },
    //  Claims the key, or (0 rows) finds it taken. A concurrent claim of the
    //  same key blocks on the primary key until this transaction ends.
    [S_IDEM_CLAIM] = { "idem_claim",
        "INSERT INTO idempotency_keys (key, request) VALUES ($1::text, $2::bytea)"
        " ON CONFLICT (key) DO NOTHING" },
    [S_IDEM_FIND] = { "idem_find",
        "SELECT request, reply FROM idempotency_keys WHERE key = $1::text" },
    [S_IDEM_COMPLETE] = { "idem_complete",
        "UPDATE idempotency_keys SET reply = $2::bytea WHERE key = $1::text" },
    [S_BEGIN] = { "begin", "BEGIN" },
    [S_COMMIT] = { "commit", "COMMIT" },
    [S_ROLLBACK] = { "rollback", "ROLLBACK" },
    //  Session-wide (is_local false): kept across statements until changed
    [S_TIMEOUT] = { "statement_timeout",
        "SELECT set_config('statement_timeout', $1::text, false)" },
};
// clang-format on

#define S_INT64_SIZE 24 //  "-9223372036854775808" + NUL, rounded up
//  Statement timeout for requests without a deadline: a bound, so that no
//  statement holds a worker thread for ever.
#define S_TIMEOUT_NO_DEADLINE_MS 30000

struct user_pg_metrics_s {
    mesh_histogram_t *duration[S_STATEMENTS];   //  By statement name
    mesh_gauge_t *up;                           //  Connections usable
    mesh_gauge_t *down;                         //  Connections lost, not yet back
    mesh_counter_t *failures;                   //  Connection attempts that failed
    mesh_tracer_t *tracer;                      //  Statement spans, borrowed; NULL: none
};

typedef struct {
    user_repo_t base;           //  The port; first member, so casts work
    char *conninfo;             //  Owned copy, for PQconnectdbParams
    user_pg_metrics_t *metrics; //  Borrowed; may be NULL
    PGconn *conn;               //  Owned; NULL until the first connect
    bool broken;                //  The connection failed: reset before next use
    bool prepared;              //  Statements prepared on this connection
    bool counted_up;            //  Counted in metrics->up (else in ->down, once seen)
    bool counted;               //  Counted in either gauge
    bool in_unit;               //  An idempotency unit (transaction) is open
    char idem_key[USER_IDEM_KEY_MAX + 1];   //  Key of the open unit
    uint64_t deadline_ms;       //  Of the request being served; 0 = none
    char trace[USER_TRACE_SIZE];//  Of the request being served; "" = none
    long timeout_ms;            //  statement_timeout set on the session; -1 = unknown
} s_repo_t;

//  --------------------------------------------------------------------------
//  The adapter behind a port pointer (base is the first member).
static s_repo_t *
s_self (user_repo_t *repo)
{
    assert (repo);
    return (s_repo_t *) repo;
}

//  --------------------------------------------------------------------------
//  Metrics of the adapters: one table for every connection of the process.
user_pg_metrics_t *
user_pg_metrics_new (mesh_metrics_t *metrics)
{
    assert (metrics);
    user_pg_metrics_t *self = (user_pg_metrics_t *) mesh_alloc (sizeof (user_pg_metrics_t));
    for (int index = 0; index < S_STATEMENTS; index++)
        self->duration[index] = mesh_metrics_histogram (
            metrics, "mesh_user_db_query_duration_seconds",
            "Time from sending a statement to PostgreSQL to having its result, by statement",
            NULL, 0, "statement", s_statements[index].name, NULL);
    self->up = mesh_metrics_gauge (metrics, "mesh_user_db_connections",
                                   "Database connections of the worker threads, by state",
                                   "state", "up", NULL);
    self->down = mesh_metrics_gauge (metrics, "mesh_user_db_connections",
                                     "Database connections of the worker threads, by state",
                                     "state", "down", NULL);
    self->failures = mesh_metrics_counter (
        metrics, "mesh_user_db_connect_failures_total",
        "Attempts to open or reset a database connection that failed", NULL);
    return self;
}

void
user_pg_metrics_destroy (user_pg_metrics_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Move this connection to the `up` or `down` gauge.
static void
s_count_state (s_repo_t *self, bool up)
{
    if (!self->metrics || (self->counted && self->counted_up == up))
        return;
    if (self->counted)
        mesh_gauge_add (self->counted_up? self->metrics->up: self->metrics->down, -1);
    mesh_gauge_add (up? self->metrics->up: self->metrics->down, 1);
    self->counted = true;
    self->counted_up = up;
}

//  --------------------------------------------------------------------------
//  Translate a failed result (NULL allowed: libpq out of memory or lost
//  connection) into a status code, and log it. Logs only the operation, the
//  SQLSTATE and the constraint, never the data: PostgreSQL's messages quote
//  values ("Key (lower(email))=(...) already exists"). A lost connection
//  marks the adapter broken, so the next call resets it.
static int
s_failure (s_repo_t *self, const PGresult *result, const char *op)
{
    const char *state = result? PQresultErrorField (result, PG_DIAG_SQLSTATE): NULL;
    //  A failed statement inside a transaction rolls back any set_config
    //  made in it: the session's timeout is no longer known
    self->timeout_ms = -1;
    if (state && strcmp (state, "23505") == 0)
        return MESH_ECONFLICT;  //  An expected outcome, not worth a line
    //  The request's ids, when one request is being served (not a batch)
    char trace_id[MESH_TRACE_ID_HEX_SIZE], span_id[MESH_SPAN_ID_HEX_SIZE];
    mesh_traceparent_ids (self->trace, strlen (self->trace), trace_id, span_id);
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK || mesh_pg_state_unavailable (state)) {
        self->broken = true;
        s_count_state (self, false);
        //  libpq's own connection messages carry no data
        mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: database unavailable", "op", op, "sqlstate",
                     state, "error", self->conn? PQerrorMessage (self->conn): NULL, "trace_id",
                     *trace_id? trace_id: NULL, "span_id", *span_id? span_id: NULL, NULL);
        return MESH_EUNAVAIL;
    }
    if (state && strcmp (state, "57014") == 0)
        return MESH_ETIMEDOUT;  //  statement_timeout: the request's deadline
    const char *constraint = result? PQresultErrorField (result, PG_DIAG_CONSTRAINT_NAME): NULL;
    mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: statement failed", "op", op, "sqlstate",
                 state? state: "none", "constraint", constraint, "trace_id",
                 *trace_id? trace_id: NULL, "span_id", *span_id? span_id: NULL, NULL);
    return MESH_EIO;
}

//  --------------------------------------------------------------------------
void
user_pg_metrics_set_tracer (user_pg_metrics_t *self, mesh_tracer_t *tracer)
{
    assert (self);
    self->tracer = tracer;
}

//  A client span for one statement under `trace` (a traceparent), or NULL;
//  none for a statement outside any request's trace ("" or NULL), which
//  would otherwise start a trace of its own.
static mesh_span_record_t *
s_statement_span (s_repo_t *self, s_statement_t statement, const char *trace)
{
    if (!self->metrics || !self->metrics->tracer || !trace || !*trace)
        return NULL;
    const char *sql = s_statements[statement].sql;
    mesh_trace_ctx_t ctx;
    mesh_span_record_t *span = mesh_tracer_start_remote (
        self->metrics->tracer, s_statements[statement].name, MESH_SPAN_CLIENT, trace, &ctx);
    mesh_span_record_set_string (span, "db.system", "postgresql");
    mesh_span_record_set_string (span, "db.system.name", "postgresql");
    //  The statement's verb; a change inside WITH ... AS (VERB counts as it
    const char *inner = strncmp (sql, "WITH ", 5) == 0? strstr (sql, "AS ("): NULL;
    if (inner)
        sql = inner + 4;
    char operation[16];
    snprintf (operation, sizeof operation, "%.*s", (int) strcspn (sql, " "), sql);
    mesh_span_record_set_string (span, "db.operation", operation);
    mesh_span_record_set_string (span, "db.operation.name", operation);
    mesh_span_record_set_string (span, "db.query.summary", s_statements[statement].name);
    return span;
}

//  End a statement's span with the result's outcome.
static void
s_statement_span_end (s_repo_t *self, mesh_span_record_t **span_p, const PGresult *result)
{
    if (!*span_p)
        return;
    ExecStatusType status = PQresultStatus (result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        (*span_p)->status = MESH_SPAN_STATUS_ERROR;
        const char *state = PQresultErrorField (result, PG_DIAG_SQLSTATE);
        mesh_span_record_set_string (*span_p, "db.response.status_code", state? state: "");
    }
    mesh_tracer_end (self->metrics->tracer, span_p);
}

//  --------------------------------------------------------------------------
//  Run prepared statement `statement` and time it, its span under `trace`.
//  Returns the result (NULL only when libpq is out of memory); the caller
//  clears it.
static PGresult *
s_exec_under (s_repo_t *self, const char *trace, s_statement_t statement, int nparams,
              const char *const *values, const int *lengths, const int *formats,
              int binary_result)
{
    mesh_span_record_t *span = s_statement_span (self, statement, trace);
    int64_t started_us = mesh_mono_us ();
    PGresult *result = PQexecPrepared (self->conn, s_statements[statement].name, nparams, values,
                                       lengths, formats, binary_result);
    s_statement_span_end (self, &span, result);
    if (self->metrics)
        mesh_histogram_observe (self->metrics->duration[statement],
                                (double) (mesh_mono_us () - started_us) / 1e6);
    return result;
}

//  s_exec_under the trace of the request being served.
static PGresult *
s_exec (s_repo_t *self, s_statement_t statement, int nparams, const char *const *values,
        const int *lengths, const int *formats, int binary_result)
{
    return s_exec_under (self, self->trace, statement, nparams, values, lengths, formats,
                         binary_result);
}

//  --------------------------------------------------------------------------
//  Run a statement that returns no rows. Returns 0 or a failure code.
static int
s_command (s_repo_t *self, s_statement_t statement, int nparams, const char *const *values,
           const int *lengths, const int *formats)
{
    PGresult *result = s_exec (self, statement, nparams, values, lengths, formats, 0);
    int rc = PQresultStatus (result) == PGRES_COMMAND_OK
                     || PQresultStatus (result) == PGRES_TUPLES_OK
                 ? 0
                 : s_failure (self, result, s_statements[statement].name);
    PQclear (result);
    return rc;
}

//  --------------------------------------------------------------------------
//  Keep the session's statement_timeout within the request's remaining
//  time, and at least half of it. Returns 0, MESH_ETIMEDOUT when the
//  deadline has passed already, or a failure code.
static int
s_fit_timeout (s_repo_t *self)
{
    long remaining = S_TIMEOUT_NO_DEADLINE_MS * 4 / 3;
    if (self->deadline_ms) {
        int64_t left = (int64_t) self->deadline_ms - mesh_wall_ms ();
        if (left <= 0)
            return MESH_ETIMEDOUT;
        remaining = left > S_TIMEOUT_NO_DEADLINE_MS * 4 / 3? S_TIMEOUT_NO_DEADLINE_MS * 4 / 3
                                                           : (long) left;
    }
    if (self->timeout_ms > 0 && self->timeout_ms <= remaining && self->timeout_ms * 2 >= remaining)
        return 0;
    long timeout = remaining * 3 / 4 > 0? remaining * 3 / 4: 1;
    char text[S_INT64_SIZE];
    snprintf (text, sizeof text, "%ld", timeout);
    const char *values[1] = {text};
    int rc = s_command (self, S_TIMEOUT, 1, values, NULL, NULL);
    if (rc == 0)
        self->timeout_ms = timeout;
    return rc;
}

//  --------------------------------------------------------------------------
//  Make the connection usable: connect the first time, reset it after a
//  failure, prepare the statements on a fresh connection, and fit the
//  statement timeout to the request. Returns 0, MESH_EUNAVAIL, MESH_EIO or
//  MESH_ETIMEDOUT. Called at the start of every operation, so an adapter
//  whose server went away recovers on the first call after it is back,
//  without the caller doing anything.
static int
s_ready (s_repo_t *self)
{
    if (self->conn && !self->broken && self->prepared && PQstatus (self->conn) == CONNECTION_OK)
        return s_fit_timeout (self);
    if (self->in_unit)
        return MESH_EUNAVAIL;   //  The unit's transaction died with the connection
    if (!self->conn)
        self->conn = mesh_pg_connect (self->conninfo);
    else if (self->broken || PQstatus (self->conn) != CONNECTION_OK)
        PQreset (self->conn);   //  Same parameters; prepared statements are gone
    self->prepared = false;
    self->timeout_ms = -1;
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK) {
        self->broken = true;
        s_count_state (self, false);
        if (self->metrics)
            mesh_counter_inc (self->metrics->failures);
        char message[256];
        snprintf (message, sizeof message, "%s",
                  self->conn? PQerrorMessage (self->conn): "out of memory");
        message[strcspn (message, "\n")] = '\0';
        mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: cannot connect", "error", message, NULL);
        return MESH_EUNAVAIL;
    }
    self->broken = false;
    //  Names are UTF-8 whatever the server's default client encoding
    if (PQsetClientEncoding (self->conn, "UTF8") != 0)
        return s_failure (self, NULL, "set client encoding");
    for (int index = 0; index < S_STATEMENTS; index++) {
        PGresult *result =
            PQprepare (self->conn, s_statements[index].name, s_statements[index].sql, 0, NULL);
        if (PQresultStatus (result) != PGRES_COMMAND_OK) {
            int rc = s_failure (self, result, s_statements[index].name);
            PQclear (result);
            //  A half-prepared connection cannot be re-prepared (duplicate
            //  names): start afresh next time
            self->broken = true;
            return rc == MESH_ECONFLICT? MESH_EIO: rc;
        }
        PQclear (result);
    }
    self->prepared = true;
    s_count_state (self, true);
    return s_fit_timeout (self);
}

//  --------------------------------------------------------------------------
//  Pack the event payload: the user as a map {id, name, email, created_at,
//  updated_at}, the same map as the service's replies (user_codec).
static void
s_pack_user (const user_t *user, msgpack_sbuffer *buffer)
{
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    user_codec_pack_user (&packer, user);
}

//  --------------------------------------------------------------------------
//  The parameters of a change statement: `nfixed` leading ones, then the
//  event's seven (event id, type, subject, data, time, trace, actor).
typedef struct {
    const char *values[12];
    int lengths[12];
    int formats[12];
    int count;
    msgpack_sbuffer data;           //  The event payload; owned
    char event_time[S_INT64_SIZE];
} s_change_params_t;

//  The traceparent stored with `event`: its own when it has one that fits
//  (longer is not a traceparent, so not stored), else the request's.
static const char *
s_event_trace (const s_repo_t *self, const user_event_t *event)
{
    return !event->trace? self->trace: strlen (event->trace) < USER_TRACE_SIZE? event->trace: "";
}

//  Fill `params` (destroy with s_change_params_destroy). The fixed values
//  and the event are borrowed and must outlive the params.
static void
s_change_params_init (s_repo_t *self, s_change_params_t *params, const char **fixed, int nfixed,
                      const user_event_t *event)
{
    assert (event->type && event->id && event->subject && event->user);
    assert (nfixed + 7 <= 12);
    memset (params, 0, sizeof *params);
    msgpack_sbuffer_init (&params->data);
    s_pack_user (event->user, &params->data);
    snprintf (params->event_time, sizeof params->event_time, "%" PRId64, event->time_us);
    for (int index = 0; index < nfixed; index++)
        params->values[index] = fixed[index];
    params->values[nfixed] = event->id;
    params->values[nfixed + 1] = event->type;
    params->values[nfixed + 2] = event->subject;
    //  A bytea parameter in binary: the packed bytes as they are
    params->values[nfixed + 3] = params->data.data? params->data.data: "";
    params->lengths[nfixed + 3] = (int) params->data.size;
    params->formats[nfixed + 3] = 1;
    params->values[nfixed + 4] = params->event_time;
    params->values[nfixed + 5] = s_event_trace (self, event);
    params->values[nfixed + 6] = event->actor ? event->actor : "";
    params->count = nfixed + 7;
}

static void
s_change_params_destroy (s_change_params_t *params)
{
    msgpack_sbuffer_destroy (&params->data);
}

//  --------------------------------------------------------------------------
//  Run a change statement whose last seven parameters are the event's
//  after `nfixed` leading ones. Returns 0, MESH_ENOTFOUND when it changed
//  no row, or a failure code.
static int
s_change (s_repo_t *self, s_statement_t statement, const char **fixed, int nfixed,
          const user_event_t *event)
{
    int rc = s_ready (self);
    if (rc)
        return rc;
    s_change_params_t params;
    s_change_params_init (self, &params, fixed, nfixed, event);
    PGresult *result = s_exec (self, statement, params.count, params.values, params.lengths,
                               params.formats, 0);
    s_change_params_destroy (&params);
    if (PQresultStatus (result) != PGRES_COMMAND_OK)
        rc = s_failure (self, result, s_statements[statement].name);
    else if (strcmp (PQcmdTuples (result), "0") == 0)
        rc = MESH_ENOTFOUND;    //  No such user: u was empty, no event either
    PQclear (result);
    return rc;
}

//  --------------------------------------------------------------------------
//  Build a user from row `row` of a result of S_USER_COLUMNS. Returns 0, or
//  MESH_EIO when the row breaks the domain's rules (written by other means).
static int
s_user_from_row (const PGresult *result, int row, user_t **user_p)
{
    int64_t created = strtoll (PQgetvalue (result, row, 3), NULL, 10);
    int64_t updated = strtoll (PQgetvalue (result, row, 4), NULL, 10);
    *user_p = user_new (PQgetvalue (result, row, 0), PQgetvalue (result, row, 1),
                        PQgetvalue (result, row, 2), created, updated);
    if (!*user_p) {
        mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: stored user breaks the domain rules", "id",
                     PQgetvalue (result, row, 0), NULL);
        return MESH_EIO;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  The five leading parameters of S_INSERT for `user`; `created` and
//  `updated` hold the times' text.
static void
s_insert_fixed (const user_t *user, const char *fixed[5], char created[S_INT64_SIZE],
                char updated[S_INT64_SIZE])
{
    snprintf (created, S_INT64_SIZE, "%" PRId64, user_created_at_us (user));
    snprintf (updated, S_INT64_SIZE, "%" PRId64, user_updated_at_us (user));
    fixed[0] = user_id (user);
    fixed[1] = user_name (user);
    fixed[2] = user_email (user);
    fixed[3] = created;
    fixed[4] = updated;
}

//  --------------------------------------------------------------------------
//  Insert a user and its user.created event in one statement.
static int
s_insert (user_repo_t *repo, const user_t *user, const user_event_t *event)
{
    s_repo_t *self = s_self (repo);
    assert (user);
    assert (event);
    char created[S_INT64_SIZE];
    char updated[S_INT64_SIZE];
    const char *fixed[5];
    s_insert_fixed (user, fixed, created, updated);
    int rc = s_change (self, S_INSERT, fixed, 5, event);
    //  No row: ON CONFLICT DO NOTHING found the email (or the id) taken
    return rc == MESH_ENOTFOUND? MESH_ECONFLICT: rc;
}

//  --------------------------------------------------------------------------
//  Read what is left of a pipeline of `pending` queries up to the result of
//  its Sync, and leave pipeline mode. After a failure that is the rest of
//  the queries' results (aborted), each followed by NULL, then the Sync's:
//  bounded by their number. Returns 0, or the failure code of an error met
//  on the way (a commit at the Sync that failed) or of a lost connection.
static int
s_pipeline_finish (s_repo_t *self, size_t pending, const char *op)
{
    int rc = 0;
    bool synced = false;
    for (size_t spins = 0; spins < 2 * pending + 4 && PQstatus (self->conn) == CONNECTION_OK;
         spins++) {
        PGresult *result = PQgetResult (self->conn);
        ExecStatusType status = PQresultStatus (result);
        if (result && status == PGRES_FATAL_ERROR && rc == 0)
            rc = s_failure (self, result, op);
        PQclear (result);
        if (status == PGRES_PIPELINE_SYNC) {
            synced = true;
            break;
        }
    }
    if (PQstatus (self->conn) != CONNECTION_OK)
        return rc? rc: s_failure (self, NULL, op);
    if (!synced || !PQexitPipelineMode (self->conn)) {
        self->broken = true;    //  Confused: start afresh next time
        if (rc == 0)
            rc = MESH_EIO;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Most creates one pipeline carries; a longer call is cut into pipelines
//  of this many.
#define S_INSERT_MANY_MAX 64

//  A create of a pipeline, in the order it is sent.
typedef struct {
    const char *email;
    size_t index;               //  In the caller's arrays
} s_insert_slot_t;

static int
s_insert_slot_cmp (const void *left, const void *right)
{
    return strcmp (((const s_insert_slot_t *) left)->email,
                   ((const s_insert_slot_t *) right)->email);
}

//  --------------------------------------------------------------------------
//  Send up to S_INSERT_MANY_MAX creates as one pipeline with one Sync: one
//  implicit transaction, committed at the Sync, whose answer is read
//  before any create is reported stored (the commit is what makes it so).
//  Sent in email order, so two batches that share emails take the unique
//  index's locks in the same order and cannot deadlock each other. Returns
//  0 with rcs set, or the failure of the whole transaction.
static int
s_insert_pipeline (s_repo_t *self, const user_t *const *users, const user_event_t *events,
                   size_t count, int *rcs)
{
    assert (count <= S_INSERT_MANY_MAX);
    assert (!self->in_unit);
    int rc = s_ready (self);
    if (rc)
        return rc;
    s_insert_slot_t order[S_INSERT_MANY_MAX] = {{NULL, 0}};
    for (size_t index = 0; index < count; index++)
        order[index] = (s_insert_slot_t) { user_email (users[index]), index };
    qsort (order, count, sizeof order[0], s_insert_slot_cmp);

    int64_t started_us = mesh_mono_us ();
    if (!PQenterPipelineMode (self->conn))
        return s_failure (self, NULL, "pipeline");
    //  A statement span per create, under its own request's trace
    mesh_span_record_t *spans[S_INSERT_MANY_MAX] = {NULL};
    size_t sent = 0;
    for (; sent < count && rc == 0; sent++) {
        size_t index = order[sent].index;
        spans[sent] = s_statement_span (self, S_INSERT, s_event_trace (self, &events[index]));
        char created[S_INT64_SIZE];
        char updated[S_INT64_SIZE];
        const char *fixed[5];
        s_insert_fixed (users[index], fixed, created, updated);
        s_change_params_t params;
        s_change_params_init (self, &params, fixed, 5, &events[index]);
        if (!PQsendQueryPrepared (self->conn, s_statements[S_INSERT].name, params.count,
                                  params.values, params.lengths, params.formats, 0))
            rc = s_failure (self, NULL, s_statements[S_INSERT].name);
        s_change_params_destroy (&params);
    }
    if (rc == 0 && !PQpipelineSync (self->conn))
        rc = s_failure (self, NULL, "pipeline sync");
    size_t read = 0;
    for (; read < count && rc == 0; read++) {
        PGresult *result = PQgetResult (self->conn);
        s_statement_span_end (self, &spans[read], result);
        if (PQresultStatus (result) != PGRES_COMMAND_OK)
            rc = s_failure (self, result, s_statements[S_INSERT].name);
        else    //  No row: ON CONFLICT DO NOTHING found the email taken
            rcs[order[read].index] = strcmp (PQcmdTuples (result), "0") == 0? MESH_ECONFLICT: 0;
        PQclear (result);
        if (rc == 0)
            PQclear (PQgetResult (self->conn));     //  NULL: end of this query's results
    }
    int finished = s_pipeline_finish (self, sent - read + 1, "commit");
    if (rc == 0)
        rc = finished;
    for (; read < sent; read++)     //  After a failure: aborted with the pipeline
        s_statement_span_end (self, &spans[read], NULL);
    if (self->metrics) {
        double seconds = (double) (mesh_mono_us () - started_us) / 1e6;
        for (size_t index = 0; index < count; index++)
            mesh_histogram_observe (self->metrics->duration[S_INSERT], seconds);
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Insert several users, each with its event, in one transaction per
//  pipeline. When a pipeline's transaction fails for a reason of its own
//  (a deadlock with a writer that is not a batch, say), its creates are
//  tried again one by one, so one bad create cannot fail the others; when
//  the store is down or the deadline passed, every create gets that.
static void
s_insert_many (user_repo_t *repo, const user_t *const *users, const user_event_t *events,
               size_t count, int *rcs)
{
    s_repo_t *self = s_self (repo);
    for (size_t start = 0; start < count; start += S_INSERT_MANY_MAX) {
        size_t chunk = count - start < S_INSERT_MANY_MAX? count - start: S_INSERT_MANY_MAX;
        if (chunk == 1) {
            rcs[start] = s_insert (repo, users[start], &events[start]);
            continue;
        }
        int rc = s_insert_pipeline (self, users + start, events + start, chunk, rcs + start);
        if (rc == 0)
            continue;
        bool retry = rc != MESH_EUNAVAIL && rc != MESH_ETIMEDOUT;
        for (size_t index = start; index < start + chunk; index++)
            rcs[index] = retry? s_insert (repo, users[index], &events[index]): rc;
    }
}

//  --------------------------------------------------------------------------
//  Fetch a user by id, the statement's span under `trace`.
static int
s_find_under (s_repo_t *self, const char *id, const char *trace, user_t **user_p)
{
    assert (id);
    assert (user_p);
    int rc = s_ready (self);
    if (rc)
        return rc;
    const char *values[1] = {id};
    PGresult *result = s_exec_under (self, trace, S_FIND, 1, values, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK)
        rc = s_failure (self, result, s_statements[S_FIND].name);
    else if (PQntuples (result) == 0)
        rc = MESH_ENOTFOUND;
    else
        rc = s_user_from_row (result, 0, user_p);
    PQclear (result);
    return rc;
}

//  --------------------------------------------------------------------------
//  Fetch a user by id.
static int
s_find (user_repo_t *repo, const char *id, user_t **user_p)
{
    s_repo_t *self = s_self (repo);
    return s_find_under (self, id, self->trace, user_p);
}

//  Most gets one s_find_many call takes (user_app asks for at most 64)
#define S_FIND_MANY_MAX 64

//  --------------------------------------------------------------------------
//  Fetch several users in one round trip: libpq's pipeline mode sends every
//  S_FIND, then one Sync, and reads the results in order. Reads only, so
//  one implicit transaction for all of them is harmless. Each get gets its
//  own user_find span under its own request's trace.
static int
s_find_many (user_repo_t *repo, const char *const *ids, const char *const *traces, size_t count,
             user_t **users, int *rcs)
{
    s_repo_t *self = s_self (repo);
    for (size_t index = 0; index < count; index++)
        users[index] = NULL;
    assert (count <= S_FIND_MANY_MAX);
    if (count == 1) {
        rcs[0] = s_find_under (self, ids[0], traces? traces[0]: NULL, &users[0]);
        return rcs[0] == 0 || rcs[0] == MESH_ENOTFOUND? 0: rcs[0];
    }
    int rc = s_ready (self);
    if (rc)
        return rc;
    int64_t started_us = mesh_mono_us ();
    if (!PQenterPipelineMode (self->conn))
        return s_failure (self, NULL, "pipeline");
    mesh_span_record_t *spans[S_FIND_MANY_MAX] = {NULL};
    size_t sent = 0;
    for (; sent < count && rc == 0; sent++) {
        spans[sent] = s_statement_span (self, S_FIND, traces? traces[sent]: NULL);
        if (!PQsendQueryPrepared (self->conn, s_statements[S_FIND].name, 1, &ids[sent], NULL,
                                  NULL, 0))
            rc = s_failure (self, NULL, s_statements[S_FIND].name);
    }
    if (rc == 0 && !PQpipelineSync (self->conn))
        rc = s_failure (self, NULL, "pipeline sync");
    //  Read every result up to the Sync's, even after a failure, so the
    //  connection leaves pipeline mode clean
    size_t read = 0;
    for (; read < count && rc == 0; read++) {
        size_t index = read;
        PGresult *result = PQgetResult (self->conn);
        s_statement_span_end (self, &spans[index], result);
        if (PQresultStatus (result) != PGRES_TUPLES_OK)
            rc = s_failure (self, result, s_statements[S_FIND].name);
        else if (PQntuples (result) == 0)
            rcs[index] = MESH_ENOTFOUND;
        else
            rcs[index] = s_user_from_row (result, 0, &users[index]);
        PQclear (result);
        if (rc == 0 && rcs[index] != 0 && rcs[index] != MESH_ENOTFOUND)
            rc = rcs[index];
        PQclear (PQgetResult (self->conn));     //  NULL: end of this query's results
    }
    int finished = s_pipeline_finish (self, count, s_statements[S_FIND].name);
    if (rc == 0)
        rc = finished;
    for (; read < sent; read++)     //  After a failure: aborted with the pipeline
        s_statement_span_end (self, &spans[read], NULL);
    if (self->metrics) {
        double seconds = (double) (mesh_mono_us () - started_us) / 1e6;
        for (size_t index = 0; index < count; index++)
            mesh_histogram_observe (self->metrics->duration[S_FIND], seconds);
    }
    if (rc)
        for (size_t index = 0; index < count; index++)
            user_destroy (&users[index]);
    return rc;
}

//  --------------------------------------------------------------------------
//  Replace name, email and updated_at, with the user.updated event.
static int
s_update (user_repo_t *repo, const user_t *user, const user_event_t *event)
{
    s_repo_t *self = s_self (repo);
    assert (user);
    assert (event);
    char updated[S_INT64_SIZE];
    snprintf (updated, sizeof updated, "%" PRId64, user_updated_at_us (user));
    const char *fixed[4] = {user_id (user), user_name (user), user_email (user), updated};
    return s_change (self, S_UPDATE, fixed, 4, event);
}

//  --------------------------------------------------------------------------
//  Delete a user, with the user.deleted event.
static int
s_remove (user_repo_t *repo, const char *id, const user_event_t *event)
{
    s_repo_t *self = s_self (repo);
    assert (id);
    assert (event);
    const char *fixed[1] = {id};
    return s_change (self, S_REMOVE, fixed, 1, event);
}

//  --------------------------------------------------------------------------
//  The decimal text of an unsigned count, for a text-format int8 parameter.
static void
s_count_text (uint64_t value, char out[S_INT64_SIZE])
{
    snprintf (out, S_INT64_SIZE, "%" PRIu64, value > INT64_MAX? (uint64_t) INT64_MAX: value);
}

//  --------------------------------------------------------------------------
//  One keyset page of users, ascending id.
static int
s_list (user_repo_t *repo, const char *after_id, size_t limit, user_t ***users_p, size_t *count_p)
{
    s_repo_t *self = s_self (repo);
    assert (users_p);
    assert (count_p);
    *users_p = NULL;
    *count_p = 0;
    int rc = s_ready (self);
    if (rc)
        return rc;
    char limit_text[S_INT64_SIZE];
    s_count_text (limit, limit_text);
    s_statement_t statement = after_id? S_LIST_AFTER: S_LIST_FIRST;
    const char *values[2] = {after_id, limit_text};
    PGresult *result = after_id? s_exec (self, statement, 2, values, NULL, NULL, 0)
                               : s_exec (self, statement, 1, values + 1, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        rc = s_failure (self, result, s_statements[statement].name);
        PQclear (result);
        return rc;
    }
    size_t count = (size_t) PQntuples (result);
    user_t **users = NULL;
    if (count) {
        users = (user_t **) mesh_alloc (count * sizeof (user_t *));
        for (size_t index = 0; index < count && rc == 0; index++)
            rc = s_user_from_row (result, (int) index, &users[index]);
        if (rc) {
            for (size_t index = 0; index < count; index++)
                user_destroy (&users[index]);   //  NULL-safe; mesh_alloc zeroes
            free (users);
            users = NULL;
            count = 0;
        }
    }
    PQclear (result);
    *users_p = users;
    *count_p = count;
    return rc;
}

//  --------------------------------------------------------------------------
//  Numbered events after a seq, in seq order.
static int
s_events (user_repo_t *repo, uint64_t after_seq, size_t limit, user_stored_event_t **events_p,
          size_t *count_p)
{
    s_repo_t *self = s_self (repo);
    *events_p = NULL;
    *count_p = 0;
    int rc = s_ready (self);
    if (rc)
        return rc;
    char after_text[S_INT64_SIZE], limit_text[S_INT64_SIZE];
    s_count_text (after_seq, after_text);
    s_count_text (limit, limit_text);
    const char *values[2] = {after_text, limit_text};
    PGresult *result = s_exec (self, S_EVENTS, 2, values, NULL, NULL, 1);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        rc = s_failure (self, result, s_statements[S_EVENTS].name);
        PQclear (result);
        return rc;
    }
    size_t count = (size_t) PQntuples (result);
    user_stored_event_t *events =
        count? (user_stored_event_t *) mesh_alloc (count * sizeof (user_stored_event_t)): NULL;
    for (size_t index = 0; index < count && rc == 0; index++)
        rc = user_outbox_event_from_row (result, (int) index, &events[index]);
    PQclear (result);
    if (rc) {
        mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: outbox row not written by this service",
                     NULL);
        user_stored_events_free (events, count);
        return rc;
    }
    *events_p = events;
    *count_p = count;
    return 0;
}

//  --------------------------------------------------------------------------
//  End the open unit's transaction with ROLLBACK, if there is one to end.
static void
s_rollback (s_repo_t *self)
{
    self->in_unit = false;
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK
        && PQtransactionStatus (self->conn) != PQTRANS_IDLE)
        s_command (self, S_ROLLBACK, 0, NULL, NULL, NULL);
    //  set_config inside the transaction is undone with it
    self->timeout_ms = -1;
}

//  --------------------------------------------------------------------------
//  Claim an idempotency key (BEGIN; INSERT ... ON CONFLICT DO NOTHING), or
//  answer from the completed one.
static int
s_idem_claim (user_repo_t *repo, const char *key, const void *request, size_t request_len,
              void **reply_p, size_t *reply_len_p)
{
    s_repo_t *self = s_self (repo);
    assert (key && reply_p && reply_len_p);
    assert (!self->in_unit);
    *reply_p = NULL;
    *reply_len_p = 0;
    size_t key_len = strlen (key);
    if (key_len > USER_IDEM_KEY_MAX || request_len > INT32_MAX)
        return MESH_EINVAL;
    int rc = s_ready (self);
    if (!rc)
        rc = s_command (self, S_BEGIN, 0, NULL, NULL, NULL);
    if (rc)
        return rc;
    const char *values[2] = {key, request_len? (const char *) request: ""};
    int lengths[2] = {0, (int) request_len};
    int formats[2] = {0, 1};
    PGresult *result = s_exec (self, S_IDEM_CLAIM, 2, values, lengths, formats, 0);
    if (PQresultStatus (result) != PGRES_COMMAND_OK) {
        rc = s_failure (self, result, s_statements[S_IDEM_CLAIM].name);
        PQclear (result);
        s_rollback (self);
        return rc;
    }
    bool claimed = strcmp (PQcmdTuples (result), "1") == 0;
    PQclear (result);
    if (claimed) {
        memcpy (self->idem_key, key, key_len + 1);
        self->in_unit = true;
        return 0;
    }
    //  Taken: by a unit that committed (ours waited for it), so its reply
    //  is there
    result = s_exec (self, S_IDEM_FIND, 1, values, NULL, NULL, 1);
    if (PQresultStatus (result) != PGRES_TUPLES_OK)
        rc = s_failure (self, result, s_statements[S_IDEM_FIND].name);
    else if (PQntuples (result) != 1 || PQgetisnull (result, 0, 1))
        rc = MESH_EIO;          //  Deleted or half-written meanwhile: cannot happen
    else if ((size_t) PQgetlength (result, 0, 0) != request_len
             || memcmp (PQgetvalue (result, 0, 0), request, request_len) != 0)
        rc = MESH_ECONFLICT;
    else {
        *reply_len_p = (size_t) PQgetlength (result, 0, 1);
        *reply_p = mesh_alloc (*reply_len_p? *reply_len_p: 1);
        memcpy (*reply_p, PQgetvalue (result, 0, 1), *reply_len_p);
    }
    PQclear (result);
    s_rollback (self);
    return rc;
}

//  --------------------------------------------------------------------------
//  Store the reply under the claimed key and commit the unit.
static int
s_idem_complete (user_repo_t *repo, const void *reply, size_t reply_len)
{
    s_repo_t *self = s_self (repo);
    assert (self->in_unit);
    if (reply_len > INT32_MAX) {
        s_rollback (self);
        return MESH_EINVAL;
    }
    const char *values[2] = {self->idem_key, reply_len? (const char *) reply: ""};
    int lengths[2] = {0, (int) reply_len};
    int formats[2] = {0, 1};
    int rc = s_command (self, S_IDEM_COMPLETE, 2, values, lengths, formats);
    if (!rc)
        rc = s_command (self, S_COMMIT, 0, NULL, NULL, NULL);
    if (rc)
        s_rollback (self);
    self->in_unit = false;
    return rc;
}

//  --------------------------------------------------------------------------
//  Undo the open unit.
static void
s_idem_release (user_repo_t *repo)
{
    s_rollback (s_self (repo));
}

//  --------------------------------------------------------------------------
//  Remember the request's deadline and trace for the next operations.
static void
s_set_request (user_repo_t *repo, uint64_t deadline_ms, const char *trace)
{
    s_repo_t *self = s_self (repo);
    self->deadline_ms = deadline_ms;
    //  Longer than a traceparent: not one, so not stored
    if (trace && strlen (trace) < sizeof self->trace)
        snprintf (self->trace, sizeof self->trace, "%s", trace);
    else
        self->trace[0] = '\0';
}

//  --------------------------------------------------------------------------
//  Close the connection and free the adapter.
static void
s_destroy (user_repo_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_repo_t *self = (s_repo_t *) *self_p;
        if (self->metrics && self->counted)
            mesh_gauge_add (self->counted_up? self->metrics->up: self->metrics->down, -1);
        PQfinish (self->conn);  //  Accepts NULL
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

static const user_repo_ops_t s_ops = {
    .insert = s_insert,
    .insert_many = s_insert_many,
    .find = s_find,
    .find_many = s_find_many,
    .update = s_update,
    .remove = s_remove,
    .list = s_list,
    .events = s_events,
    .idem_claim = s_idem_claim,
    .idem_complete = s_idem_complete,
    .idem_release = s_idem_release,
    .set_request = s_set_request,
    .destroy = s_destroy,
};

//  --------------------------------------------------------------------------
//  Connect, prepare, and hand back the port.
user_repo_t *
user_repo_pg_new (const char *conninfo, user_pg_metrics_t *metrics, int *err)
{
    assert (conninfo);
    s_repo_t *self = (s_repo_t *) mesh_alloc (sizeof (s_repo_t));
    self->base.ops = &s_ops;
    self->conninfo = mesh_strndup (conninfo, strlen (conninfo));
    self->metrics = metrics;
    self->timeout_ms = -1;
    int rc = s_ready (self);
    if (rc) {
        if (err)
            *err = rc;
        user_repo_t *base = &self->base;
        s_destroy (&base);
        return NULL;
    }
    if (err)
        *err = 0;
    return &self->base;
}
