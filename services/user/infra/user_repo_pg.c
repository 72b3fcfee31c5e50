/*  =========================================================================
    user_repo_pg - the PostgreSQL (libpq) adapter of the user repository port
    Statements are prepared once per connection (again after a reconnect) and
    run with PQexecPrepared: no SQL is ever built from data. A change and its
    outbox row are one statement, WITH u AS (INSERT/UPDATE/DELETE ...
    RETURNING id) INSERT INTO outbox ... FROM u: atomic without BEGIN and
    COMMIT (one round trip instead of three), and when the user is missing
    u is empty, so no event is written and the row count says "not found".
    Times cross the wire as int8 unix microseconds and are turned into
    timestamptz (and back) in SQL with integer arithmetic only, so they are
    exact to the microsecond over the whole range user.h allows.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_repo_pg.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_log.h"

#include <assert.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  int8 unix microseconds in parameter $n as a timestamptz. Whole seconds
//  and the remaining microseconds are scaled separately: interval * number
//  goes through float8, exact only below 2^53, which whole seconds (and
//  microseconds under a million) always are, but microseconds since the
//  epoch are not for years far from now.
#define S_TIME(n)                                                                                  \
    "(timestamptz 'epoch' + ($" n "::int8 / 1000000) * interval '1 second'"                        \
    " + ($" n "::int8 % 1000000) * interval '1 microsecond')"

//  A timestamptz column as int8 unix microseconds (extract returns numeric
//  since PostgreSQL 14: exact).
#define S_MICROS(column) "(extract(epoch FROM " column ") * 1000000)::int8"

#define S_USER_COLUMNS                                                                             \
    "id::text, name, email, " S_MICROS ("created_at") ", " S_MICROS ("updated_at")

//  Prepared statements, by name; s_ready prepares the whole table.
typedef enum {
    S_INSERT,
    S_FIND,
    S_UPDATE,
    S_REMOVE,
    S_LIST_FIRST,
    S_LIST_AFTER,
    S_STATEMENTS //  Count
} s_statement_t;

// clang-format off
static const struct {
    const char *name;           //  Name given to PQprepare
    const char *sql;            //  Parameterised SQL
} s_statements[S_STATEMENTS] = {
    [S_INSERT] = { "user_insert",
        "WITH u AS (INSERT INTO users (id, name, email, created_at, updated_at)"
        " VALUES ($1::uuid, $2::text, $3::text, " S_TIME ("4") ", " S_TIME ("5") ")"
        " RETURNING id)"
        " INSERT INTO outbox (event_id, type, subject, data, created_at)"
        " SELECT $6::uuid, $7::text, $8::uuid, $9::bytea, " S_TIME ("10") " FROM u" },
    [S_FIND] = { "user_find",
        "SELECT " S_USER_COLUMNS " FROM users WHERE id = $1::uuid" },
    [S_UPDATE] = { "user_update",
        "WITH u AS (UPDATE users SET name = $2::text, email = $3::text,"
        " updated_at = " S_TIME ("4") " WHERE id = $1::uuid RETURNING id)"
        " INSERT INTO outbox (event_id, type, subject, data, created_at)"
        " SELECT $5::uuid, $6::text, $7::uuid, $8::bytea, " S_TIME ("9") " FROM u" },
    [S_REMOVE] = { "user_remove",
        "WITH u AS (DELETE FROM users WHERE id = $1::uuid RETURNING id)"
        " INSERT INTO outbox (event_id, type, subject, data, created_at)"
        " SELECT $2::uuid, $3::text, $4::uuid, $5::bytea, " S_TIME ("6") " FROM u" },
    [S_LIST_FIRST] = { "user_list_first",
        "SELECT " S_USER_COLUMNS " FROM users ORDER BY id LIMIT $1::int8" },
    [S_LIST_AFTER] = { "user_list_after",
        "SELECT " S_USER_COLUMNS " FROM users WHERE id > $1::uuid ORDER BY id LIMIT $2::int8" },
};
// clang-format on

#define S_INT64_SIZE 24 //  "-9223372036854775808" + NUL, rounded up

typedef struct {
    user_repo_t base; //  The port; first member, so casts work
    char *conninfo;   //  Owned copy, for PQconnectdb
    PGconn *conn;     //  Owned; NULL until the first connect
    bool broken;      //  The connection failed: reset before next use
    bool prepared;    //  Statements prepared on this connection
} s_repo_t;

//  --------------------------------------------------------------------------
//  The adapter behind a port pointer (base is the first member).
static s_repo_t *
s_self (user_repo_t *repo)
{
    assert (repo);
    return (s_repo_t *)repo;
}

//  --------------------------------------------------------------------------
//  True when SQLSTATE `state` means the server or the connection is gone:
//  class 08 (connection exception), or the server shutting down (57P01
//  admin, 57P02 crash) or not yet accepting connections (57P03).
static bool
s_state_unavailable (const char *state)
{
    return state && (strncmp (state, "08", 2) == 0 || strcmp (state, "57P01") == 0 ||
                     strcmp (state, "57P02") == 0 || strcmp (state, "57P03") == 0);
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
    const char *state = result ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp (state, "23505") == 0)
        return MESH_ECONFLICT; //  An expected outcome, not worth a line
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK || s_state_unavailable (state)) {
        self->broken = true;
        //  libpq's own connection messages carry no data
        mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: database unavailable", "op", op, "sqlstate",
                     state, "error", self->conn ? PQerrorMessage (self->conn) : NULL, NULL);
        return MESH_EUNAVAIL;
    }
    const char *constraint = result ? PQresultErrorField (result, PG_DIAG_CONSTRAINT_NAME) : NULL;
    mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: statement failed", "op", op, "sqlstate",
                 state ? state : "none", "constraint", constraint, NULL);
    return MESH_EIO;
}

//  --------------------------------------------------------------------------
//  Make the connection usable: connect the first time, reset it after a
//  failure, and prepare the statements on a fresh connection. Returns 0,
//  MESH_EUNAVAIL or MESH_EIO. Called at the start of every operation, so an
//  adapter whose server went away recovers on the first call after it is
//  back, without the caller doing anything.
static int
s_ready (s_repo_t *self)
{
    if (self->conn && !self->broken && self->prepared && PQstatus (self->conn) == CONNECTION_OK)
        return 0;
    if (!self->conn)
        self->conn = PQconnectdb (self->conninfo);
    else if (self->broken || PQstatus (self->conn) != CONNECTION_OK)
        PQreset (self->conn); //  Same parameters; prepared statements are gone
    self->prepared = false;
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK) {
        self->broken = true;
        mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: cannot connect", "error",
                     self->conn ? PQerrorMessage (self->conn) : "out of memory", NULL);
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
            return rc == MESH_ECONFLICT ? MESH_EIO : rc;
        }
        PQclear (result);
    }
    self->prepared = true;
    return 0;
}

//  --------------------------------------------------------------------------
//  Append a MessagePack string.
static void
s_pack_str (msgpack_packer *packer, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (packer, len);
    msgpack_pack_str_body (packer, text, len);
}

//  --------------------------------------------------------------------------
//  Pack the event payload: the user as a map {id, name, email, created_at,
//  updated_at}, times as RFC 3339 strings (user_format_time), into `buffer`
//  (initialised by the caller). Returns 0 or MESH_EINVAL (a time out of
//  range: cannot happen for a user built by user_new).
static int
s_pack_user (const user_t *user, msgpack_sbuffer *buffer)
{
    char created[USER_TIME_SIZE];
    char updated[USER_TIME_SIZE];
    if (user_format_time (user_created_at_us (user), created, sizeof created) ||
        user_format_time (user_updated_at_us (user), updated, sizeof updated))
        return MESH_EINVAL;
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 5);
    s_pack_str (&packer, "id");
    s_pack_str (&packer, user_id (user));
    s_pack_str (&packer, "name");
    s_pack_str (&packer, user_name (user));
    s_pack_str (&packer, "email");
    s_pack_str (&packer, user_email (user));
    s_pack_str (&packer, "created_at");
    s_pack_str (&packer, created);
    s_pack_str (&packer, "updated_at");
    s_pack_str (&packer, updated);
    return 0;
}

//  --------------------------------------------------------------------------
//  Run a change statement whose last five parameters are the event's
//  (event id, type, subject, data, time) after `nfixed` leading ones.
//  Returns 0, MESH_ENOTFOUND when it changed no row, or a failure code.
static int
s_change (s_repo_t *self, s_statement_t statement, const char **fixed, int nfixed,
          const user_event_t *event)
{
    assert (event->type && event->id && event->subject && event->user);
    int rc = s_ready (self);
    if (rc)
        return rc;
    msgpack_sbuffer data;
    msgpack_sbuffer_init (&data);
    if (s_pack_user (event->user, &data)) {
        msgpack_sbuffer_destroy (&data);
        mesh_log_kv (MESH_LOG_WARN, "user_repo_pg: event time out of range", "op",
                     s_statements[statement].name, NULL);
        return MESH_EIO;
    }
    char event_time[S_INT64_SIZE];
    snprintf (event_time, sizeof event_time, "%" PRId64, event->time_us);

    const char *values[10];
    int lengths[10] = {0};
    int formats[10] = {0};
    assert (nfixed + 5 <= 10);
    for (int index = 0; index < nfixed; index++)
        values[index] = fixed[index];
    values[nfixed] = event->id;
    values[nfixed + 1] = event->type;
    values[nfixed + 2] = event->subject;
    //  A bytea parameter in binary: the packed bytes as they are
    values[nfixed + 3] = data.data ? data.data : "";
    lengths[nfixed + 3] = (int)data.size;
    formats[nfixed + 3] = 1;
    values[nfixed + 4] = event_time;

    PGresult *result = PQexecPrepared (self->conn, s_statements[statement].name, nfixed + 5, values,
                                       lengths, formats, 0);
    msgpack_sbuffer_destroy (&data);
    if (PQresultStatus (result) != PGRES_COMMAND_OK)
        rc = s_failure (self, result, s_statements[statement].name);
    else if (strcmp (PQcmdTuples (result), "0") == 0)
        rc = MESH_ENOTFOUND; //  No such user: u was empty, no event either
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
//  Insert a user and its user.created event in one statement.
static int
s_insert (user_repo_t *repo, const user_t *user, const user_event_t *event)
{
    s_repo_t *self = s_self (repo);
    assert (user);
    assert (event);
    char created[S_INT64_SIZE];
    char updated[S_INT64_SIZE];
    snprintf (created, sizeof created, "%" PRId64, user_created_at_us (user));
    snprintf (updated, sizeof updated, "%" PRId64, user_updated_at_us (user));
    const char *fixed[5] = {user_id (user), user_name (user), user_email (user), created, updated};
    int rc = s_change (self, S_INSERT, fixed, 5, event);
    //  INSERT ... VALUES always yields its row: 0 rows cannot happen
    return rc == MESH_ENOTFOUND ? MESH_EIO : rc;
}

//  --------------------------------------------------------------------------
//  Fetch a user by id.
static int
s_find (user_repo_t *repo, const char *id, user_t **user_p)
{
    s_repo_t *self = s_self (repo);
    assert (id);
    assert (user_p);
    int rc = s_ready (self);
    if (rc)
        return rc;
    const char *values[1] = {id};
    PGresult *result =
        PQexecPrepared (self->conn, s_statements[S_FIND].name, 1, values, NULL, NULL, 0);
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
    snprintf (limit_text, sizeof limit_text, "%" PRIu64,
              (uint64_t)(limit > INT64_MAX ? INT64_MAX : limit));
    s_statement_t statement = after_id ? S_LIST_AFTER : S_LIST_FIRST;
    const char *values[2] = {after_id, limit_text};
    PGresult *result = after_id ? PQexecPrepared (self->conn, s_statements[statement].name, 2,
                                                  values, NULL, NULL, 0)
                                : PQexecPrepared (self->conn, s_statements[statement].name, 1,
                                                  values + 1, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        rc = s_failure (self, result, s_statements[statement].name);
        PQclear (result);
        return rc;
    }
    size_t count = (size_t)PQntuples (result);
    user_t **users = NULL;
    if (count) {
        users = (user_t **)mesh_alloc (count * sizeof (user_t *));
        for (size_t index = 0; index < count && rc == 0; index++)
            rc = s_user_from_row (result, (int)index, &users[index]);
        if (rc) {
            for (size_t index = 0; index < count; index++)
                user_destroy (&users[index]); //  NULL-safe; mesh_alloc zeroes
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
//  Close the connection and free the adapter.
static void
s_destroy (user_repo_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_repo_t *self = (s_repo_t *)*self_p;
        PQfinish (self->conn); //  Accepts NULL
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

static const user_repo_ops_t s_ops = {
    .insert = s_insert,
    .find = s_find,
    .update = s_update,
    .remove = s_remove,
    .list = s_list,
    .destroy = s_destroy,
};

//  --------------------------------------------------------------------------
//  Connect, prepare, and hand back the port.
user_repo_t *
user_repo_pg_new (const char *conninfo, int *err)
{
    assert (conninfo);
    s_repo_t *self = (s_repo_t *)mesh_alloc (sizeof (s_repo_t));
    self->base.ops = &s_ops;
    self->conninfo = mesh_strndup (conninfo, strlen (conninfo));
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
