/*  =========================================================================
    audit_subscriber - the ingest thread of mesh-audit
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_subscriber.h"

#include "audit_codec.h"
#include "audit_ingest.h"
#include "audit_source_mesh.h"
#include "audit_store_pg.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_client.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"
#include "mesh/mesh_trace.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#define S_DRAIN_MAX 1000            //  Live messages handled per offer
#define S_RETRY_MS 500              //  After a failed catch-up or store connect
#define S_FETCH_TIMEOUT_MS 5000     //  events.list deadline
#define S_SUB_HWM 100000            //  Events queued while the store is slow

typedef enum { S_FRAMES, S_MSGPACK, S_FIELDS, S_REASONS } s_reason_t;
static const char *const s_reason_names[S_REASONS] = {"frames", "msgpack", "fields"};

typedef struct {
    mesh_counter_t *stored, *duplicates, *gaps, *fetched;
    mesh_counter_t *malformed[S_REASONS];
    mesh_counter_t *malformed_fetched;
    mesh_gauge_t *lag, *cursor;
    mesh_histogram_t *delay;
} s_metrics_t;

struct audit_subscriber_s {
    char *conninfo, *schema, *broker, *events_sub;
    void *zmq_context;
    const mesh_curve_t *curve; //  CURVE keys, borrowed, or NULL
    mesh_tracer_t *tracer;      //  Ingest spans, borrowed; NULL: none
    int catchup_ms;
    int stop_fd;
    atomic_bool stopping;
    atomic_bool caught_up;
    bool have_metrics;
    s_metrics_t metrics;
    audit_ingest_stats_t exported;  //  Stats already added to the counters
};

audit_subscriber_t *
audit_subscriber_new (const audit_subscriber_cfg_t *cfg, int *err)
{
    assert (cfg);
    if (!cfg->conninfo || !cfg->schema || !cfg->zmq_context || !cfg->broker || !cfg->events_sub
        || cfg->catchup_ms < 10) {
        *err = MESH_EINVAL;
        return NULL;
    }
    int stop_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0) {
        *err = MESH_EIO;
        return NULL;
    }
    audit_subscriber_t *self = mesh_alloc (sizeof *self);
    self->conninfo = mesh_strndup (cfg->conninfo, strlen (cfg->conninfo));
    self->schema = mesh_strndup (cfg->schema, strlen (cfg->schema));
    self->broker = mesh_strndup (cfg->broker, strlen (cfg->broker));
    self->events_sub = mesh_strndup (cfg->events_sub, strlen (cfg->events_sub));
    self->zmq_context = cfg->zmq_context;
    self->curve = cfg->curve;
    self->tracer = cfg->tracer;
    self->catchup_ms = cfg->catchup_ms;
    self->stop_fd = stop_fd;
    atomic_init (&self->stopping, false);
    atomic_init (&self->caught_up, false);
    mesh_metrics_t *m = cfg->metrics;
    if (m) {
        self->have_metrics = true;
        s_metrics_t *x = &self->metrics;
        x->stored = mesh_metrics_counter (m, "mesh_audit_events_stored_total",
                                          "Events stored in the audit log", NULL);
        x->duplicates = mesh_metrics_counter (
            m, "mesh_audit_duplicates_total",
            "Events ignored because the audit log had them already (live stream or catch-up)",
            NULL);
        x->gaps = mesh_metrics_counter (m, "mesh_audit_gaps_total",
                                        "Gaps in seq seen on the live stream", NULL);
        x->fetched = mesh_metrics_counter (m, "mesh_audit_catchup_events_total",
                                           "Events received through events.list (catch-up)",
                                           NULL);
        for (int reason = 0; reason < S_REASONS; reason++)
            x->malformed[reason] = mesh_metrics_counter (
                m, "mesh_audit_malformed_total",
                "Malformed event messages skipped, by reason", "reason",
                s_reason_names[reason], NULL);
        x->malformed_fetched = mesh_metrics_counter (
            m, "mesh_audit_malformed_total", "Malformed event messages skipped, by reason",
            "reason", "catchup", NULL);
        x->lag = mesh_metrics_gauge (m, "mesh_audit_lag",
                                     "Latest seq seen minus the audit log's cursor", NULL);
        x->cursor = mesh_metrics_gauge (
            m, "mesh_audit_cursor", "Highest seq up to which every event is stored", NULL);
        x->delay = mesh_metrics_histogram (
            m, "mesh_audit_store_delay_seconds",
            "Time from an event's change to its storage in the audit log", NULL, 0, NULL);
    }
    *err = 0;
    return self;
}

void
audit_subscriber_destroy (audit_subscriber_t **self_p)
{
    if (self_p && *self_p) {
        audit_subscriber_t *self = *self_p;
        close (self->stop_fd);
        free (self->conninfo);
        free (self->schema);
        free (self->broker);
        free (self->events_sub);
        free (self);
        *self_p = NULL;
    }
}

void
audit_subscriber_stop (audit_subscriber_t *self)
{
    atomic_store (&self->stopping, true);
    uint64_t one = 1;
    ssize_t written = write (self->stop_fd, &one, sizeof one);
    (void) written;
}

bool
audit_subscriber_caught_up (audit_subscriber_t *self)
{
    return atomic_load (&self->caught_up);
}

//  Wait for the stop signal at most `ms`. Returns true on stop.
static bool
s_pause (audit_subscriber_t *self, int ms)
{
    zmq_pollitem_t item = { NULL, self->stop_fd, ZMQ_POLLIN, 0 };
    zmq_poll (&item, 1, ms);
    return atomic_load (&self->stopping);
}

//  Add what the ingest counted since the last call to the metrics.
static void
s_export (audit_subscriber_t *self, const audit_ingest_t *ingest)
{
    if (!self->have_metrics)
        return;
    const audit_ingest_stats_t *now = audit_ingest_stats (ingest);
    audit_ingest_stats_t *was = &self->exported;
    mesh_counter_add (self->metrics.stored, now->stored - was->stored);
    mesh_counter_add (self->metrics.duplicates, now->duplicates - was->duplicates);
    mesh_counter_add (self->metrics.gaps, now->gaps - was->gaps);
    mesh_counter_add (self->metrics.fetched, now->fetched - was->fetched);
    mesh_counter_add (self->metrics.malformed_fetched, now->malformed - was->malformed);
    *was = *now;
    uint64_t cursor = audit_ingest_cursor (ingest);
    uint64_t latest = audit_ingest_latest_seen (ingest);
    mesh_gauge_set (self->metrics.cursor, (double) cursor);
    mesh_gauge_set (self->metrics.lag, latest > cursor ? (double) (latest - cursor) : 0);
}

//  Count and log a malformed message.
static void
s_malformed (audit_subscriber_t *self, s_reason_t reason, const char *why)
{
    if (self->have_metrics)
        mesh_counter_inc (self->metrics.malformed[reason]);
    mesh_log_kv (MESH_LOG_WARN, "audit: malformed event message skipped", "reason",
                 s_reason_names[reason], "detail", why, NULL);
}

//  Receive one whole message from `sub` and decode it into *event.
//  Returns 1 when an event was decoded, 0 when the message was malformed
//  (counted), -1 when nothing was waiting.
static int
s_receive (audit_subscriber_t *self, void *sub, audit_event_t *event)
{
    zmq_msg_t topic, body;
    zmq_msg_init (&topic);
    zmq_msg_init (&body);
    if (zmq_msg_recv (&topic, sub, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&topic);
        zmq_msg_close (&body);
        return -1;
    }
    //  The rest of a multipart message is already here (atomic delivery)
    int count = 1;
    bool more = zmq_msg_more (&topic);
    if (more && zmq_msg_recv (&body, sub, 0) >= 0) {
        count++;
        more = zmq_msg_more (&body);
    }
    while (more) {
        zmq_msg_t extra;
        zmq_msg_init (&extra);
        more = zmq_msg_recv (&extra, sub, 0) >= 0 && zmq_msg_more (&extra);
        count++;
        zmq_msg_close (&extra);
    }
    int result = 0;
    if (count != 2)
        s_malformed (self, S_FRAMES, "an event is two frames: topic and body");
    else {
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        size_t offset = 0;
        if (mesh_msgpack_check (zmq_msg_data (&body), zmq_msg_size (&body))
            || msgpack_unpack_next (&unpacked, zmq_msg_data (&body), zmq_msg_size (&body),
                                    &offset) != MSGPACK_UNPACK_SUCCESS)
            s_malformed (self, S_MSGPACK, "the body is not one MessagePack object");
        else {
            const char *why = audit_codec_event (&unpacked.data, event);
            if (why)
                s_malformed (self, S_FIELDS, why);
            else
                result = 1;
        }
        msgpack_unpacked_destroy (&unpacked);
    }
    zmq_msg_close (&topic);
    zmq_msg_close (&body);
    return result;
}

//  A consumer span for taking in `event`: in the trace of the request that
//  made the change (so one request is one trace down to the audit log),
//  and linked to that request's span, as OpenTelemetry's messaging
//  conventions ask of a consumer. NULL when not traced or sampled out.
static mesh_span_record_t *
s_ingest_span (audit_subscriber_t *self, const audit_event_t *event)
{
    if (!self->tracer)
        return NULL;
    char name[64];
    snprintf (name, sizeof name, "process %s", event->type);
    mesh_trace_ctx_t creator, ctx;
    bool known = mesh_traceparent_parse (event->trace, &creator) == 0;
    mesh_span_record_t *span = mesh_tracer_start (self->tracer, name, MESH_SPAN_CONSUMER,
                                                  known? &creator: NULL, &ctx);
    if (!span)
        return NULL;
    if (known)
        span->links[span->link_count++] = creator;
    mesh_span_record_set_string (span, "messaging.system", "zeromq");
    mesh_span_record_set_string (span, "messaging.operation.type", "process");
    mesh_span_record_set_string (span, "messaging.destination.name", event->type);
    mesh_span_record_set_string (span, "messaging.message.id", event->id);
    mesh_span_record_set_int (span, "zmesh.event.seq", (int64_t) event->seq);
    return span;
}

//  The log line of one live event taken in (debug): the ids of its trace,
//  and span_id the ingest span's, else the creator's (the parent id the
//  event carries).
static void
s_log_event (const audit_event_t *event, const mesh_span_record_t *span)
{
    if (!mesh_log_enabled (MESH_LOG_DEBUG))
        return;
    char trace_id[MESH_TRACE_ID_HEX_SIZE], span_id[MESH_SPAN_ID_HEX_SIZE], seq[24];
    mesh_traceparent_ids (event->trace, strlen (event->trace), trace_id, span_id);
    if (span)
        mesh_trace_hex (span->ctx.span_id, sizeof span->ctx.span_id, span_id);
    snprintf (seq, sizeof seq, "%" PRIu64, event->seq);
    mesh_log_kv (MESH_LOG_DEBUG, "event", "event_id", event->id, "type", event->type, "seq", seq,
                 "trace_id", *trace_id ? trace_id : NULL, "span_id", *span_id ? span_id : NULL,
                 NULL);
}

//  Offer the gathered live events; observe the delay of those it stored.
static void
s_offer (audit_subscriber_t *self, audit_ingest_t *ingest, audit_event_t *events, size_t count)
{
    uint64_t before = audit_ingest_cursor (ingest);
    uint64_t seqs[S_DRAIN_MAX];
    int64_t times[S_DRAIN_MAX];
    mesh_span_record_t *spans[S_DRAIN_MAX];
    for (size_t index = 0; index < count; index++) {
        seqs[index] = events[index].seq;
        times[index] = events[index].time_us;
        spans[index] = s_ingest_span (self, &events[index]);
        s_log_event (&events[index], spans[index]);
    }
    audit_ingest_offer (ingest, events, count);
    uint64_t after = audit_ingest_cursor (ingest);
    for (size_t index = 0; index < count; index++)
        mesh_tracer_end (self->tracer, &spans[index]);
    if (self->have_metrics) {
        int64_t now_us = mesh_wall_ms () * 1000;
        for (size_t index = 0; index < count; index++)
            if (seqs[index] > before && seqs[index] <= after) {
                double delay = (double) (now_us - times[index]) / 1e6;
                mesh_histogram_observe (self->metrics.delay, delay > 0 ? delay : 0);
            }
    }
    s_export (self, ingest);
}

int
audit_subscriber_run (audit_subscriber_t *self)
{
    void *sub = zmq_socket (self->zmq_context, ZMQ_SUB);
    if (!sub)
        return MESH_EIO;
    int hwm = S_SUB_HWM, linger = 0;
    zmq_setsockopt (sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sub, ZMQ_LINGER, &linger, sizeof linger);
    //  Subscribe before anything else: what is published from now on is
    //  either on this socket or found by the catch-up that follows
    if (mesh_curve_connect (self->curve, sub, self->events_sub)
        || zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "user.", 5)) {
        zmq_close (sub);
        return MESH_EIO;
    }
    int err = 0;
    mesh_client_t *client =
        mesh_client_new_curve (self->zmq_context, self->broker, self->curve, &err);
    if (!client) {
        zmq_close (sub);
        return MESH_EIO;
    }
    audit_source_t *source = audit_source_mesh_new (client, S_FETCH_TIMEOUT_MS);
    audit_store_t *store = NULL;
    while (!store && !atomic_load (&self->stopping)) {
        store = audit_store_pg_new (self->conninfo, self->schema, &err);
        if (!store && s_pause (self, S_RETRY_MS))
            break;
    }
    audit_ingest_t *ingest = store ? audit_ingest_new (store, source) : NULL;
    audit_event_t *events = mesh_alloc (S_DRAIN_MAX * sizeof *events);
    int64_t next_catchup_ms = 0;
    bool said_behind = false;
    while (ingest && !atomic_load (&self->stopping)) {
        int64_t now_ms = mesh_mono_ms ();
        if (audit_ingest_behind (ingest) || now_ms >= next_catchup_ms) {
            int rc = audit_ingest_catch_up (ingest);
            s_export (self, ingest);
            next_catchup_ms = now_ms + self->catchup_ms;
            if (rc) {
                if (!said_behind)
                    mesh_log_kv (MESH_LOG_WARN, "audit: catch-up failed; retrying", "error",
                                 mesh_strerror (rc), NULL);
                said_behind = true;
                s_pause (self, S_RETRY_MS);
                continue;
            }
            if (!atomic_load (&self->caught_up) || said_behind) {
                char cursor[24];
                snprintf (cursor, sizeof cursor, "%llu",
                          (unsigned long long) audit_ingest_cursor (ingest));
                mesh_log_kv (MESH_LOG_INFO, "audit: caught up", "cursor", cursor, NULL);
            }
            said_behind = false;
            atomic_store (&self->caught_up, true);
        }
        zmq_pollitem_t items[] = {
            { sub, 0, ZMQ_POLLIN, 0 },
            { NULL, self->stop_fd, ZMQ_POLLIN, 0 },
        };
        int64_t wait_ms = next_catchup_ms - mesh_mono_ms ();
        if (zmq_poll (items, 2, (long) (wait_ms > 0 ? wait_ms : 0)) < 0 && errno != EINTR)
            break;
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        size_t count = 0;
        while (count < S_DRAIN_MAX) {
            int got = s_receive (self, sub, &events[count]);
            if (got < 0)
                break;
            count += (size_t) got;
        }
        if (count)
            s_offer (self, ingest, events, count);
    }
    free (events);
    audit_ingest_destroy (&ingest);
    audit_store_destroy (&store);
    free (source);
    mesh_client_destroy (&client);
    zmq_close (sub);
    return 0;
}
