/*  =========================================================================
    user_relay - numbers outbox events and publishes them to the broker
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_relay.h"

#include "user_codec.h"
#include "user_outbox.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_pg.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <msgpack.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

//  Advisory lock of the leader: the two-int4 form (its own key space, apart
//  from the migrator's int8 key), class "zmrl" and the schema's hash, so
//  each schema of a database has its own leader.
#define S_LOCK_CLASS "2054058604"
#define S_PURGE_EVERY_MS 60000      //  Idempotency keys purge interval
#define S_PUB_HWM 100000            //  Events queued while the broker is away
#define S_PUB_LINGER_MS 1000        //  Time to flush published events at stop

typedef enum {
    R_LOCK,
    R_STATE,
    R_NUMBER,
    R_TAIL,
    R_MARK,
    R_BACKLOG,
    R_PURGE,
    R_STATEMENTS //  Count
} s_statement_t;

// clang-format off
static const struct {
    const char *name;
    const char *sql;
} s_statements[R_STATEMENTS] = {
    [R_LOCK] = { "relay_lock",
        "SELECT pg_try_advisory_lock(" S_LOCK_CLASS ", hashtext(current_schema()))" },
    [R_STATE] = { "relay_state",
        "SELECT last_seq, published_seq FROM outbox_relay" },
    //  One statement, one transaction: lock the relay row, take the oldest
    //  unnumbered rows, number them after last_seq, move last_seq on (and
    //  record what was published since the last call: $2), return them in
    //  seq order. FOR UPDATE on both makes a second relay that believes it
    //  leads wait and then see the rows numbered, never number them twice.
    [R_NUMBER] = { "relay_number",
        "WITH relay AS (SELECT last_seq FROM outbox_relay FOR UPDATE),"
        " pending AS (SELECT id FROM outbox WHERE seq IS NULL ORDER BY id"
        "   LIMIT $1::int8 FOR UPDATE),"
        " batch AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM pending),"
        " numbered AS (UPDATE outbox o SET seq = relay.last_seq + batch.rn"
        "   FROM batch, relay WHERE o.id = batch.id RETURNING o.*),"
        " bump AS (UPDATE outbox_relay SET last_seq = last_seq + (SELECT count(*) FROM batch),"
        "   published_seq = greatest(published_seq, $2::int8)"
        "   WHERE EXISTS (SELECT 1 FROM batch) OR published_seq < $2::int8)"
        " SELECT " USER_OUTBOX_EVENT_COLUMNS ("n") " FROM numbered n ORDER BY n.seq" },
    [R_TAIL] = { "relay_tail",
        "SELECT " USER_OUTBOX_EVENT_COLUMNS ("outbox") " FROM outbox"
        " WHERE seq > $1::int8 ORDER BY seq LIMIT $2::int8" },
    [R_MARK] = { "relay_mark",
        "UPDATE outbox_relay SET published_seq = $1::int8 WHERE published_seq < $1::int8" },
    [R_BACKLOG] = { "relay_backlog",
        "SELECT count(*) FROM outbox WHERE seq IS NULL" },
    [R_PURGE] = { "relay_purge",
        "DELETE FROM idempotency_keys WHERE created_at < now() - interval '1 day'"
        " AND reply IS NOT NULL" },
};
// clang-format on

typedef struct {
    mesh_gauge_t *leader;           //  1 while this process leads
    mesh_gauge_t *backlog;          //  Rows without seq, as last seen
    mesh_gauge_t *last_seq;         //  Highest seq numbered
    mesh_counter_t *published;      //  Events sent on the PUB socket
    mesh_histogram_t *delay;        //  From the change to its publication
} s_metrics_t;

struct user_relay_s {
    mesh_tracer_t *tracer;      //  Publish spans, borrowed; NULL: none
    char *conninfo;             //  Owned
    char *events_pub;           //  Owned
    void *zmq_context;          //  Borrowed
    const mesh_curve_t *curve;  //  CURVE keys, borrowed, or NULL
    int batch;
    int sweep_ms;
    int stop_fd;                //  eventfd: readable once stop is asked
    atomic_bool stopping;
    bool have_metrics;
    s_metrics_t metrics;
    //  Used by the running thread only
    PGconn *conn;
    char schema[128];           //  current_schema(): NOTIFY payloads to heed
    bool leading;
    uint64_t published;         //  Highest seq published by this leader
    uint64_t recorded;          //  published_seq as stored
    int64_t next_purge_ms;      //  Monotonic ms of the next purge
    int64_t next_backlog_ms;    //  Monotonic ms of the next backlog count
    void *pub;                  //  PUB socket
    msgpack_sbuffer body;       //  Event being packed
};

//  --------------------------------------------------------------------------
//  Settings, stop signal, metrics.
user_relay_t *
user_relay_new (const user_relay_cfg_t *cfg, int *err)
{
    assert (cfg);
    int batch = cfg->batch? cfg->batch: USER_RELAY_DEFAULT_BATCH;
    int sweep_ms = cfg->sweep_ms? cfg->sweep_ms: USER_RELAY_DEFAULT_SWEEP_MS;
    if (!cfg->conninfo || !cfg->zmq_context || !cfg->events_pub || batch < 1 || batch > 100000
        || sweep_ms < 10 || sweep_ms > 3600000) {
        if (err)
            *err = MESH_EINVAL;
        return NULL;
    }
    int stop_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0) {
        if (err)
            *err = MESH_EIO;
        return NULL;
    }
    user_relay_t *self = (user_relay_t *) mesh_alloc (sizeof (user_relay_t));
    self->conninfo = mesh_strndup (cfg->conninfo, strlen (cfg->conninfo));
    self->events_pub = mesh_strndup (cfg->events_pub, strlen (cfg->events_pub));
    self->zmq_context = cfg->zmq_context;
    self->curve = cfg->curve;
    self->tracer = cfg->tracer;
    self->batch = batch;
    self->sweep_ms = sweep_ms;
    self->stop_fd = stop_fd;
    atomic_init (&self->stopping, false);
    msgpack_sbuffer_init (&self->body);
    if (cfg->metrics) {
        mesh_metrics_t *metrics = cfg->metrics;
        self->have_metrics = true;
        self->metrics.leader = mesh_metrics_gauge (
            metrics, "mesh_user_relay_leader",
            "1 while this process's outbox relay holds the leader lock, else 0", NULL);
        self->metrics.backlog = mesh_metrics_gauge (
            metrics, "mesh_user_outbox_backlog",
            "Outbox events waiting for a seq, as last counted by the leading relay", NULL);
        self->metrics.last_seq = mesh_metrics_gauge (
            metrics, "mesh_user_relay_last_seq",
            "Highest event seq numbered by this process's relay", NULL);
        self->metrics.published = mesh_metrics_counter (
            metrics, "mesh_user_events_published_total",
            "Events published to the broker by this process's relay", NULL);
        self->metrics.delay = mesh_metrics_histogram (
            metrics, "mesh_user_event_publish_delay_seconds",
            "Time from a change to the publication of its event", NULL, 0, NULL);
    }
    if (err)
        *err = 0;
    return self;
}

void
user_relay_destroy (user_relay_t **self_p)
{
    if (self_p && *self_p) {
        user_relay_t *self = *self_p;
        PQfinish (self->conn);
        if (self->pub)
            zmq_close (self->pub);
        close (self->stop_fd);
        msgpack_sbuffer_destroy (&self->body);
        free (self->conninfo);
        free (self->events_pub);
        free (self);
        *self_p = NULL;
    }
}

void
user_relay_stop (user_relay_t *self)
{
    assert (self);
    atomic_store (&self->stopping, true);
    uint64_t one = 1;
    //  Cannot fail but on counter overflow, which needs 2^64 stops
    ssize_t written = write (self->stop_fd, &one, sizeof one);
    (void) written;
}

//  --------------------------------------------------------------------------
//  Set the leader gauge and the flag.
static void
s_set_leading (user_relay_t *self, bool leading)
{
    self->leading = leading;
    if (self->have_metrics)
        mesh_gauge_set (self->metrics.leader, leading? 1: 0);
}

//  --------------------------------------------------------------------------
//  Drop the connection (and with it the leader lock), after a failure.
static void
s_disconnect (user_relay_t *self, const char *why, const PGresult *result)
{
    const char *state = result? PQresultErrorField (result, PG_DIAG_SQLSTATE): NULL;
    char message[256];
    snprintf (message, sizeof message, "%s", self->conn? PQerrorMessage (self->conn): "");
    message[strcspn (message, "\n")] = '\0';
    mesh_log_kv (MESH_LOG_WARN, "relay lost the database", "op", why, "sqlstate", state,
                 "error", message, "was_leader", self->leading? "true": "false", NULL);
    PQfinish (self->conn);
    self->conn = NULL;
    s_set_leading (self, false);
}

//  --------------------------------------------------------------------------
//  Wait until the stop signal, readable `fd` (when >= 0) or `timeout_ms`.
//  Returns true when stop was asked.
static bool
s_wait (user_relay_t *self, int fd, int timeout_ms)
{
    struct pollfd items[2] = {
        { .fd = self->stop_fd, .events = POLLIN },
        { .fd = fd, .events = POLLIN },
    };
    int rc = poll (items, fd >= 0? 2: 1, timeout_ms);
    (void) rc;                  //  EINTR or timeout: the caller loops
    return atomic_load (&self->stopping);
}

//  --------------------------------------------------------------------------
//  Connect, prepare, read the schema name. Returns true when ready.
static bool
s_connect (user_relay_t *self)
{
    self->conn = mesh_pg_connect (self->conninfo);
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK) {
        PQfinish (self->conn);
        self->conn = NULL;
        return false;
    }
    PQsetClientEncoding (self->conn, "UTF8");
    for (int index = 0; index < R_STATEMENTS; index++) {
        PGresult *result =
            PQprepare (self->conn, s_statements[index].name, s_statements[index].sql, 0, NULL);
        bool ok = PQresultStatus (result) == PGRES_COMMAND_OK;
        if (!ok)
            s_disconnect (self, s_statements[index].name, result);
        PQclear (result);
        if (!ok)
            return false;
    }
    PGresult *result = PQexec (self->conn, "SELECT current_schema()");
    bool ok = PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1
              && !PQgetisnull (result, 0, 0);
    if (ok)
        snprintf (self->schema, sizeof self->schema, "%s", PQgetvalue (result, 0, 0));
    else
        s_disconnect (self, "current_schema", result);
    PQclear (result);
    return ok;
}

//  --------------------------------------------------------------------------
//  Run a prepared statement with int8 parameters given as numbers.
static PGresult *
s_exec (user_relay_t *self, s_statement_t statement, int nparams, const uint64_t *params,
        int binary_result)
{
    char text[2][24];
    const char *values[2];
    assert (nparams <= 2);
    for (int index = 0; index < nparams; index++) {
        snprintf (text[index], sizeof text[index], "%" PRIu64, params[index]);
        values[index] = text[index];
    }
    return PQexecPrepared (self->conn, s_statements[statement].name, nparams, values, NULL, NULL,
                           binary_result);
}

//  A producer span for publishing `event`, under the trace stored with its
//  outbox row (the request that made the change), or NULL.
static mesh_span_record_t *
s_publish_span (user_relay_t *self, const user_stored_event_t *event)
{
    char name[64];
    snprintf (name, sizeof name, "publish %s", event->type);
    mesh_trace_ctx_t ctx;
    mesh_span_record_t *span = mesh_tracer_start_remote (self->tracer, name, MESH_SPAN_PRODUCER,
                                                         event->trace, &ctx);
    mesh_span_record_set_string (span, "messaging.system", "zeromq");
    mesh_span_record_set_string (span, "messaging.operation.type", "send");
    mesh_span_record_set_string (span, "messaging.destination.name", event->type);
    mesh_span_record_set_string (span, "messaging.message.id", event->id);
    if (span)
        mesh_span_record_set_int (span, "zmesh.event.seq", (int64_t) event->seq);
    return span;
}

//  --------------------------------------------------------------------------
//  Publish the events of a binary result of USER_OUTBOX_EVENT_COLUMNS rows,
//  in row (seq) order. Returns false when a row is unreadable.
static bool
s_publish (user_relay_t *self, const PGresult *result)
{
    int count = PQntuples (result);
    int64_t now_us = mesh_wall_ms () * 1000;
    for (int row = 0; row < count; row++) {
        user_stored_event_t event;
        if (user_outbox_event_from_row (result, row, &event)) {
            mesh_log_kv (MESH_LOG_ERROR, "relay: outbox row not written by this service", NULL);
            return false;
        }
        self->body.size = 0;
        msgpack_packer packer;
        msgpack_packer_init (&packer, &self->body, msgpack_sbuffer_write);
        user_codec_pack_event (&packer, &event);
        //  PUB never blocks: at the high-water mark it drops, and
        //  subscribers find the gap and catch up through events.list
        mesh_span_record_t *span = s_publish_span (self, &event);
        zmq_send (self->pub, event.type, strlen (event.type), ZMQ_SNDMORE);
        zmq_send (self->pub, self->body.data, self->body.size, 0);
        mesh_tracer_end (self->tracer, &span);
        free (event.data);
        if (event.seq > self->published)
            self->published = event.seq;
        if (self->have_metrics) {
            mesh_counter_inc (self->metrics.published);
            mesh_gauge_set (self->metrics.last_seq, (double) event.seq);
            double delay = (double) (now_us - event.time_us) / 1e6;
            mesh_histogram_observe (self->metrics.delay, delay > 0? delay: 0);
        }
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Try to become the leader; on success LISTEN and republish from the
//  recorded published_seq. Returns false when the connection failed.
static bool
s_try_lead (user_relay_t *self)
{
    PGresult *result = PQexecPrepared (self->conn, s_statements[R_LOCK].name, 0, NULL, NULL,
                                       NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        s_disconnect (self, "lock", result);
        PQclear (result);
        return false;
    }
    bool got = strcmp (PQgetvalue (result, 0, 0), "t") == 0;
    PQclear (result);
    if (!got)
        return true;
    result = PQexec (self->conn, "LISTEN mesh_outbox");
    if (PQresultStatus (result) != PGRES_COMMAND_OK) {
        s_disconnect (self, "listen", result);
        PQclear (result);
        return false;
    }
    PQclear (result);
    result = PQexecPrepared (self->conn, s_statements[R_STATE].name, 0, NULL, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK || PQntuples (result) != 1) {
        s_disconnect (self, "state", result);
        PQclear (result);
        return false;
    }
    uint64_t last_seq = strtoull (PQgetvalue (result, 0, 0), NULL, 10);
    self->recorded = strtoull (PQgetvalue (result, 0, 1), NULL, 10);
    PQclear (result);
    self->published = self->recorded;
    s_set_leading (self, true);
    char last[24], from[24];
    snprintf (last, sizeof last, "%" PRIu64, last_seq);
    snprintf (from, sizeof from, "%" PRIu64, self->recorded);
    mesh_log_kv (MESH_LOG_INFO, "relay leads", "schema", self->schema, "last_seq", last,
                 "republish_after", from, NULL);
    //  The previous leader may have numbered events it never published
    while (self->published < last_seq && !atomic_load (&self->stopping)) {
        uint64_t params[2] = {self->published, (uint64_t) self->batch};
        result = s_exec (self, R_TAIL, 2, params, 1);
        bool ok = PQresultStatus (result) == PGRES_TUPLES_OK;
        if (!ok)
            s_disconnect (self, "republish", result);
        else if (PQntuples (result) == 0 || !s_publish (self, result))
            ok = false;
        PQclear (result);
        if (!ok)
            return self->conn != NULL;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Number and publish one batch. Returns the rows published, or -1 when
//  the connection failed.
static int
s_number_batch (user_relay_t *self)
{
    uint64_t params[2] = {(uint64_t) self->batch, self->published};
    PGresult *result = s_exec (self, R_NUMBER, 2, params, 1);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        s_disconnect (self, "number", result);
        PQclear (result);
        return -1;
    }
    self->recorded = self->published;
    int count = PQntuples (result);
    bool ok = s_publish (self, result);
    PQclear (result);
    if (!ok) {
        s_disconnect (self, "publish", NULL);
        return -1;
    }
    if (count < self->batch && self->have_metrics)
        mesh_gauge_set (self->metrics.backlog, 0);
    return count;
}

//  --------------------------------------------------------------------------
//  Chores of the leader, at most once per interval each: count the backlog,
//  purge day-old idempotency keys. Returns false when the connection failed.
static bool
s_chores (user_relay_t *self)
{
    int64_t now_ms = mesh_mono_us () / 1000;
    if (self->have_metrics && now_ms >= self->next_backlog_ms) {
        self->next_backlog_ms = now_ms + self->sweep_ms;
        PGresult *result = s_exec (self, R_BACKLOG, 0, NULL, 0);
        bool ok = PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1;
        if (ok)
            mesh_gauge_set (self->metrics.backlog, strtod (PQgetvalue (result, 0, 0), NULL));
        else
            s_disconnect (self, "backlog", result);
        PQclear (result);
        if (!ok)
            return false;
    }
    if (now_ms >= self->next_purge_ms) {
        self->next_purge_ms = now_ms + S_PURGE_EVERY_MS;
        PGresult *result = s_exec (self, R_PURGE, 0, NULL, 0);
        bool ok = PQresultStatus (result) == PGRES_COMMAND_OK;
        if (!ok)
            s_disconnect (self, "purge", result);
        PQclear (result);
        if (!ok)
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  As leader, sleep until a NOTIFY for our schema, the sweep interval or
//  stop. Returns false when the connection failed.
static bool
s_sleep (user_relay_t *self)
{
    int64_t until_us = mesh_mono_us () + (int64_t) self->sweep_ms * 1000;
    while (!atomic_load (&self->stopping)) {
        int64_t left_ms = (until_us - mesh_mono_us ()) / 1000;
        if (left_ms <= 0)
            return true;
        if (s_wait (self, PQsocket (self->conn), (int) left_ms))
            return true;
        if (!PQconsumeInput (self->conn)) {
            s_disconnect (self, "listen", NULL);
            return false;
        }
        bool ours = false;
        PGnotify *notify;
        while ((notify = PQnotifies (self->conn))) {
            if (strcmp (notify->extra, self->schema) == 0)
                ours = true;
            PQfreemem (notify);
        }
        if (ours)
            return true;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Make and connect the PUB socket. Returns 0 or MESH_EIO.
static int
s_open_pub (user_relay_t *self)
{
    self->pub = zmq_socket (self->zmq_context, ZMQ_PUB);
    if (!self->pub)
        return MESH_EIO;
    int hwm = S_PUB_HWM, linger = S_PUB_LINGER_MS;
    zmq_setsockopt (self->pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->pub, ZMQ_LINGER, &linger, sizeof linger);
    if (mesh_curve_connect (self->curve, self->pub, self->events_pub)) {
        mesh_log_kv (MESH_LOG_ERROR, "relay: cannot connect the events socket", "endpoint",
                     self->events_pub, "error", zmq_strerror (zmq_errno ()), NULL);
        zmq_close (self->pub);
        self->pub = NULL;
        return MESH_EIO;
    }
    return 0;
}

int
user_relay_run (user_relay_t *self)
{
    assert (self);
    if (s_open_pub (self))
        return MESH_EIO;
    bool said_standby = false;
    while (!atomic_load (&self->stopping)) {
        if (!self->conn && !s_connect (self)) {
            s_wait (self, -1, self->sweep_ms);
            continue;
        }
        if (!self->leading) {
            if (!s_try_lead (self))
                continue;
            if (!self->leading) {
                if (!said_standby)
                    mesh_log_kv (MESH_LOG_INFO, "relay stands by", "schema", self->schema, NULL);
                said_standby = true;
                s_wait (self, -1, self->sweep_ms);
                continue;
            }
        }
        int count = s_number_batch (self);
        if (count < 0 || !s_chores (self))
            continue;
        if (count < self->batch && !s_sleep (self))
            continue;
    }
    //  Leave published_seq true for the next leader
    if (self->conn && self->leading && self->published > self->recorded) {
        uint64_t params[1] = {self->published};
        PQclear (s_exec (self, R_MARK, 1, params, 0));
    }
    PQfinish (self->conn);
    self->conn = NULL;
    s_set_leading (self, false);
    zmq_close (self->pub);
    self->pub = NULL;
    return 0;
}
