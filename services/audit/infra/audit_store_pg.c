/*  =========================================================================
    audit_store_pg - the audit store port on PostgreSQL (libpq)
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_store_pg.h"

#include "audit_schema.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_pg.h"

#include <assert.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_TIME_TEXT(column) "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

typedef enum { S_CURSOR, S_APPEND, S_LIST, S_STATEMENTS } s_statement_t;

// clang-format off
static const struct {
    const char *name;
    const char *sql;
} s_statements[S_STATEMENTS] = {
    [S_CURSOR] = { "audit_cursor", "SELECT seq FROM audit_cursor" },
    //  $1 the events (jsonb array), $2 the cursor expected, $3 the new one
    [S_APPEND] = { "audit_append",
        "WITH moved AS (UPDATE audit_cursor SET seq = $3::int8 WHERE seq = $2::int8 RETURNING 1),"
        " stored AS (INSERT INTO audit_events"
        "     (event_id, seq, type, subject, time, data, trace, actor)"
        "   SELECT (e->>'id')::uuid, (e->>'seq')::int8, e->>'type', (e->>'subject')::uuid,"
        "     (e->>'time')::timestamptz, e->'data', NULLIF(e->>'trace', ''),"
        "     NULLIF(e->>'actor', '')"
        "   FROM jsonb_array_elements($1::jsonb) e WHERE EXISTS (SELECT 1 FROM moved)"
        "   ON CONFLICT DO NOTHING RETURNING 1)"
        " SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM stored)" },
    //  $1 after, $2 user or NULL, $3 type or NULL, $4 limit, $5 actor or NULL
    [S_LIST] = { "audit_list",
        "SELECT seq, event_id::text, type, subject::text, " S_TIME_TEXT ("time") ","
        " data::text, coalesce(trace, ''), (extract(epoch FROM time) * 1000000)::int8,"
        " (extract(epoch FROM received_at) * 1000000)::int8, coalesce(actor, '')"
        " FROM audit_events WHERE seq > $1::int8"
        " AND ($2::uuid IS NULL OR subject = $2::uuid) AND ($3::text IS NULL OR type = $3::text)"
        " AND ($5::text IS NULL OR actor = $5::text)"
        " ORDER BY seq LIMIT $4::int8" },
};
// clang-format on

typedef struct {
    audit_store_t base;         //  First member: casts work
    char *conninfo;             //  Owned
    char *schema;               //  Owned
    PGconn *conn;
    bool broken;                //  Reset before the next use
} s_store_t;

//  A failed result as a status code (logged; never the data).
static int
s_failure (s_store_t *self, const PGresult *result, const char *op)
{
    const char *state = result ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
    bool gone = PQstatus (self->conn) != CONNECTION_OK || mesh_pg_state_unavailable (state);
    if (gone)
        self->broken = true;
    char message[256];
    snprintf (message, sizeof message, "%s", PQerrorMessage (self->conn));
    message[strcspn (message, "\n")] = '\0';
    mesh_log_kv (MESH_LOG_WARN, gone ? "audit store: database unavailable"
                                     : "audit store: statement failed",
                 "op", op, "sqlstate", state, "error", message, NULL);
    return gone ? MESH_EUNAVAIL : MESH_EIO;
}

//  Connect (or reset), use the schema, prepare. Returns 0 or a code.
static int
s_ready (s_store_t *self)
{
    if (self->conn && !self->broken && PQstatus (self->conn) == CONNECTION_OK)
        return 0;
    PQfinish (self->conn);
    self->conn = mesh_pg_connect (self->conninfo);
    self->broken = true;
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK)
        return MESH_EUNAVAIL;
    PQsetClientEncoding (self->conn, "UTF8");
    //  The audit log can commit without waiting for its WAL flush: a crash
    //  loses at most the last appends, and since their cursor move is lost
    //  with them, the next catch-up fetches those events again. Nothing is
    //  lost and the flush (milliseconds) leaves the event-to-stored path.
    PQclear (PQexec (self->conn, "SET synchronous_commit = off"));
    int rc = audit_schema_use (self->conn, self->schema);
    if (rc)
        return rc;
    for (int index = 0; index < S_STATEMENTS; index++) {
        PGresult *result =
            PQprepare (self->conn, s_statements[index].name, s_statements[index].sql, 0, NULL);
        rc = PQresultStatus (result) == PGRES_COMMAND_OK
                 ? 0 : s_failure (self, result, s_statements[index].name);
        PQclear (result);
        if (rc)
            return rc;
    }
    self->broken = false;
    return 0;
}

static int
s_cursor (audit_store_t *base, uint64_t *seq)
{
    s_store_t *self = (s_store_t *) base;
    int rc = s_ready (self);
    if (rc)
        return rc;
    PGresult *result = PQexecPrepared (self->conn, s_statements[S_CURSOR].name, 0, NULL, NULL,
                                       NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK || PQntuples (result) != 1)
        rc = s_failure (self, result, "cursor");
    else
        *seq = strtoull (PQgetvalue (result, 0, 0), NULL, 10);
    PQclear (result);
    return rc;
}

//  `text` as a JSON string (fresh; free it), or NULL when jansson will not
//  have it (not UTF-8: audit_event_check lets no such actor through).
static char *
s_json_string (const char *text)
{
    json_t *string = json_string (text);
    char *dumped = string ? json_dumps (string, JSON_ENCODE_ANY) : NULL;
    json_decref (string);
    return dumped;
}

//  The events as a JSON array text (fresh; free it). Built by hand rather
//  than through jansson: data is already JSON text (the decoder made it)
//  and is embedded as it is, with no parse and dump per event; ids, type
//  and time passed audit_event_check and hold no character JSON escapes;
//  only trace and actor, any text, go through jansson's escaping.
static char *
s_events_json (const audit_event_t *events, size_t count)
{
    size_t size = 2;
    for (size_t index = 0; index < count; index++)
        size += strlen (events[index].data) + 6 * sizeof events[index].trace +
                6 * sizeof events[index].actor + 256;
    char *text = mesh_alloc (size);
    size_t used = 0;
    text[used++] = '[';
    for (size_t index = 0; index < count; index++) {
        const audit_event_t *event = &events[index];
        char *trace_json = s_json_string (event->trace);
        char *actor_json = s_json_string (event->actor);
        int written = snprintf (text + used, size - used,
                                "%s{\"id\":\"%s\",\"seq\":%" PRIu64 ",\"type\":\"%s\","
                                "\"subject\":\"%s\",\"time\":\"%s\",\"trace\":%s,\"actor\":%s,"
                                "\"data\":%s}",
                                index ? "," : "", event->id, event->seq, event->type,
                                event->subject, event->time, trace_json ? trace_json : "\"\"",
                                actor_json ? actor_json : "\"\"", event->data);
        free (trace_json);
        free (actor_json);
        if (written < 0 || (size_t) written >= size - used) {
            free (text);
            return NULL;
        }
        used += (size_t) written;
    }
    text[used++] = ']';
    text[used] = '\0';
    return text;
}

static int
s_append (audit_store_t *base, uint64_t from_cursor, const audit_event_t *events, size_t count,
          size_t *stored)
{
    s_store_t *self = (s_store_t *) base;
    *stored = 0;
    if (count == 0)
        return 0;
    int rc = s_ready (self);
    if (rc)
        return rc;
    char *json = s_events_json (events, count);
    if (!json)
        return MESH_EIO;
    char from[24], to[24];
    snprintf (from, sizeof from, "%" PRIu64, from_cursor);
    snprintf (to, sizeof to, "%" PRIu64, events[count - 1].seq);
    const char *values[3] = {json, from, to};
    PGresult *result = PQexecPrepared (self->conn, s_statements[S_APPEND].name, 3, values, NULL,
                                       NULL, 0);
    free (json);
    if (PQresultStatus (result) != PGRES_TUPLES_OK || PQntuples (result) != 1)
        rc = s_failure (self, result, "append");
    else if (strcmp (PQgetvalue (result, 0, 0), "1") != 0)
        rc = MESH_ECONFLICT;
    else
        *stored = (size_t) strtoull (PQgetvalue (result, 0, 1), NULL, 10);
    PQclear (result);
    return rc;
}

static int
s_list (audit_store_t *base, const audit_query_t *query, audit_event_t **events_p,
        size_t *count_p)
{
    s_store_t *self = (s_store_t *) base;
    *events_p = NULL;
    *count_p = 0;
    int rc = s_ready (self);
    if (rc)
        return rc;
    char after[24], limit[24];
    snprintf (after, sizeof after, "%" PRIu64, query->after);
    snprintf (limit, sizeof limit, "%zu", query->limit);
    const char *values[5] = {after, query->user_id, query->type, limit, query->actor};
    PGresult *result =
        PQexecPrepared (self->conn, s_statements[S_LIST].name, 5, values, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        rc = s_failure (self, result, "list");
        PQclear (result);
        return rc;
    }
    size_t count = (size_t) PQntuples (result);
    audit_event_t *events = count ? mesh_alloc (count * sizeof *events) : NULL;
    for (size_t row = 0; row < count; row++) {
        audit_event_t *event = &events[row];
        int r = (int) row;
        event->seq = strtoull (PQgetvalue (result, r, 0), NULL, 10);
        snprintf (event->id, sizeof event->id, "%s", PQgetvalue (result, r, 1));
        snprintf (event->type, sizeof event->type, "%s", PQgetvalue (result, r, 2));
        snprintf (event->subject, sizeof event->subject, "%s", PQgetvalue (result, r, 3));
        snprintf (event->time, sizeof event->time, "%s", PQgetvalue (result, r, 4));
        event->data = mesh_strndup (PQgetvalue (result, r, 5),
                                    (size_t) PQgetlength (result, r, 5));
        snprintf (event->trace, sizeof event->trace, "%s", PQgetvalue (result, r, 6));
        event->time_us = strtoll (PQgetvalue (result, r, 7), NULL, 10);
        event->received_us = strtoll (PQgetvalue (result, r, 8), NULL, 10);
        snprintf (event->actor, sizeof event->actor, "%s", PQgetvalue (result, r, 9));
    }
    PQclear (result);
    *events_p = events;
    *count_p = count;
    return 0;
}

static void
s_destroy (audit_store_t **base_p)
{
    if (base_p && *base_p) {
        s_store_t *self = (s_store_t *) *base_p;
        PQfinish (self->conn);
        free (self->conninfo);
        free (self->schema);
        free (self);
        *base_p = NULL;
    }
}

static const audit_store_ops_t s_ops = {
    .cursor = s_cursor, .append = s_append, .list = s_list, .destroy = s_destroy,
};

audit_store_t *
audit_store_pg_new (const char *conninfo, const char *schema, int *err)
{
    assert (conninfo && schema);
    s_store_t *self = mesh_alloc (sizeof *self);
    self->base.ops = &s_ops;
    self->conninfo = mesh_strndup (conninfo, strlen (conninfo));
    self->schema = mesh_strndup (schema, strlen (schema));
    int rc = s_ready (self);
    if (err)
        *err = rc;
    if (rc) {
        audit_store_t *base = &self->base;
        s_destroy (&base);
        return NULL;
    }
    return &self->base;
}
