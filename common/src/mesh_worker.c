/*  =========================================================================
    mesh_worker - MDP worker: READY, heartbeats, reconnect, credit
    One loop on the caller's thread polls the broker socket and a stop pipe.
    Liveness: every message from the broker resets it; when heartbeat x
    liveness passes in silence the socket is dropped and a fresh one made
    after a backoff (a fresh socket gets a fresh routing id, so the broker
    never confuses us with our dead predecessor).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_worker.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_monitor.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_poll.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    mdp_frames_t frames;        //  The REQUEST as received
    mesh_envelope_decoder_t *decoder;
    msgpack_sbuffer reply;      //  Reply envelope, reused
    msgpack_packer packer;      //  Writes into reply
    size_t head_size;           //  Reply size after the head (nothing packed yet)
    mesh_envelope_t envelope;   //  Decoded request; views into frames
} s_slot_t;

struct mesh_worker_s {
    mesh_worker_cfg_t cfg;      //  Copy; strings below are owned copies
    char *broker;               //  Endpoint, owned
    char *service;              //  Service name, owned
    void *context;              //  ZeroMQ context
    bool own_context;           //  We made it
    void *dealer;               //  Current socket to the broker, or NULL
    mesh_monitor_t *monitor;    //  Closes of the dealer's connection, or NULL
    int stop_pipe[2];           //  mesh_worker_stop writes, run polls
    //  One slot per request of a batch (1 without a batch handler): its
    //  frames, a decoder whose views point into them, the reply being
    //  packed. Requests are decoded only once the batch is complete, so
    //  the frames never move under a view.
    s_slot_t *slots;
    int slot_count;
    mesh_request_t *requests;   //  [slot_count] handed to the handler
    mesh_response_t *responses; //  [slot_count]
    mesh_code_t *codes;         //  [slot_count]
    int *handled_slot;          //  [slot_count] slot of requests[i]
    mesh_span_record_t **spans; //  [slot_count] server span of requests[i], owned; NULL: none
    char (*traceparents)[MESH_TRACEPARENT_SIZE];    //  [slot_count] their contexts
    int64_t broker_expiry_ms;   //  Broker is dead when silent past this
    int64_t heartbeat_at_ms;    //  Next heartbeat to send
    int backoff_ms;             //  Next reconnect delay
    atomic_uint_fast64_t handled;   //  Requests answered
    //  Heartbeats while a handler runs. The run loop holds socket_lock at
    //  all times except during the handler call; the heartbeat thread only
    //  touches the socket (under socket_lock) while in_handler is set. So
    //  a slow handler does not look like a dead worker to the broker, and
    //  the hot path pays one uncontended mutex pair per request.
    pthread_mutex_t socket_lock;    //  Guards dealer and heartbeat_at_ms
    atomic_bool in_handler;         //  The run loop is inside the handler
    pthread_mutex_t state_lock;     //  Guards stopping
    pthread_cond_t state_changed;   //  Wakes the heartbeat thread
    bool stopping;                  //  Heartbeat thread must exit
};

//  --------------------------------------------------------------------------
//  Create a worker.
mesh_worker_t *
mesh_worker_new (const mesh_worker_cfg_t *cfg, int *err)
{
    assert (cfg);
    int unused;
    if (!err)
        err = &unused;
    *err = MESH_EINVAL;
    if (!cfg->broker || !cfg->service || (!cfg->handler && !cfg->batch_handler)
        || !mdp_service_name_valid (cfg->service, strlen (cfg->service))
        || cfg->credit < 0 || cfg->credit > MDP_MAX_CREDIT || cfg->heartbeat_ms < 0
        || cfg->liveness < 0)
        return NULL;

    mesh_worker_t *self = mesh_alloc (sizeof (mesh_worker_t));
    self->cfg = *cfg;
    self->broker = mesh_strndup (cfg->broker, strlen (cfg->broker));
    self->service = mesh_strndup (cfg->service, strlen (cfg->service));
    if (self->cfg.credit == 0)
        self->cfg.credit = 1;
    if (self->cfg.heartbeat_ms == 0)
        self->cfg.heartbeat_ms = 1000;
    if (self->cfg.liveness == 0)
        self->cfg.liveness = 3;
    if (self->cfg.reconnect_min_ms <= 0)
        self->cfg.reconnect_min_ms = 100;
    if (self->cfg.reconnect_max_ms < self->cfg.reconnect_min_ms)
        self->cfg.reconnect_max_ms = 2000 > self->cfg.reconnect_min_ms? 2000: self->cfg.reconnect_min_ms;
    self->backoff_ms = self->cfg.reconnect_min_ms;
    self->stop_pipe[0] = self->stop_pipe[1] = -1;
    pthread_mutex_init (&self->socket_lock, NULL);
    pthread_mutex_init (&self->state_lock, NULL);
    pthread_condattr_t cond_attr;
    pthread_condattr_init (&cond_attr);
    pthread_condattr_setclock (&cond_attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->state_changed, &cond_attr);
    pthread_condattr_destroy (&cond_attr);
    self->slot_count = !cfg->batch_handler? 1
                     : self->cfg.credit < MESH_WORKER_MAX_BATCH? self->cfg.credit
                                                               : MESH_WORKER_MAX_BATCH;
    self->slots = mesh_alloc ((size_t) self->slot_count * sizeof (s_slot_t));
    for (int index = 0; index < self->slot_count; index++) {
        s_slot_t *slot = &self->slots[index];
        slot->decoder = mesh_envelope_decoder_new (0);
        msgpack_sbuffer_init (&slot->reply);
        msgpack_packer_init (&slot->packer, &slot->reply, msgpack_sbuffer_write);
    }
    self->requests = mesh_alloc ((size_t) self->slot_count * sizeof (mesh_request_t));
    self->spans = mesh_alloc ((size_t) self->slot_count * sizeof *self->spans);
    self->traceparents = mesh_alloc ((size_t) self->slot_count * sizeof *self->traceparents);
    self->responses = mesh_alloc ((size_t) self->slot_count * sizeof (mesh_response_t));
    self->codes = mesh_alloc ((size_t) self->slot_count * sizeof (mesh_code_t));
    self->handled_slot = mesh_alloc ((size_t) self->slot_count * sizeof (int));
    self->own_context = cfg->zmq_context == NULL;
    self->context = cfg->zmq_context? cfg->zmq_context: zmq_ctx_new ();
    *err = MESH_EIO;
    if (!self->context || pipe2 (self->stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        goto fail;
    *err = 0;
    return self;
fail:
    mesh_worker_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
mesh_worker_destroy (mesh_worker_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mesh_worker_t *self = *self_p;
        mesh_monitor_destroy (&self->monitor);
        if (self->dealer)
            zmq_close (self->dealer);
        if (self->own_context && self->context)
            zmq_ctx_term (self->context);
        for (int end = 0; end < 2; end++)
            if (self->stop_pipe[end] >= 0)
                close (self->stop_pipe[end]);
        for (int index = 0; self->slots && index < self->slot_count; index++) {
            mesh_envelope_decoder_destroy (&self->slots[index].decoder);
            msgpack_sbuffer_destroy (&self->slots[index].reply);
        }
        free (self->slots);
        free (self->requests);
        free (self->responses);
        free (self->codes);
        free (self->handled_slot);
        free (self->spans);
        free (self->traceparents);
        pthread_mutex_destroy (&self->socket_lock);
        pthread_mutex_destroy (&self->state_lock);
        pthread_cond_destroy (&self->state_changed);
        free (self->broker);
        free (self->service);
        free (self);
        *self_p = NULL;
    }
}

//  Send a worker command with no payload (HEARTBEAT, DISCONNECT).
static int
s_send_command (mesh_worker_t *self, mdp_command_t command)
{
    unsigned char byte = (unsigned char) command;
    const void *parts[] = { "", MDP_WORKER, &byte };
    size_t sizes[] = { 0, strlen (MDP_WORKER), 1 };
    return mdp_send_parts (self->dealer, ZMQ_DONTWAIT, 3, parts, sizes);
}

//  Tell the broker this worker is leaving (our extension: READY with credit
//  "0"): it sends nothing new and says DISCONNECT once every request it
//  sent here is answered. Returns 0 or MESH_EIO.
static int
s_send_leaving (mesh_worker_t *self)
{
    unsigned char ready = MDP_READY;
    const void *parts[] = { "", MDP_WORKER, &ready, self->service, "0" };
    size_t sizes[] = { 0, strlen (MDP_WORKER), 1, strlen (self->service), 1 };
    return mdp_send_parts (self->dealer, ZMQ_DONTWAIT, 5, parts, sizes)? MESH_EIO: 0;
}

//  Open a fresh socket to the broker and send READY (with credit > 1 as
//  the fifth frame). Returns 0 or MESH_EIO.
static int
s_connect (mesh_worker_t *self)
{
    mesh_monitor_destroy (&self->monitor);
    if (self->dealer)
        zmq_close (self->dealer);
    self->dealer = zmq_socket (self->context, ZMQ_DEALER);
    if (!self->dealer)
        return MESH_EIO;
    int linger = 0, hwm = 100000;
    zmq_setsockopt (self->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    //  A broker that dies closes the connection: register again at once
    //  (the READY waits in the queue for the next broker) instead of when
    //  heartbeat x liveness has passed in silence
    self->monitor = mesh_monitor_new (self->context, self->dealer, NULL);
    if (!self->monitor)
        return MESH_EIO;
    //  Every reconnect is a fresh socket: the keys go on each one
    if (mesh_curve_connect (self->cfg.curve, self->dealer, self->broker))
        return MESH_EIO;
    unsigned char ready = MDP_READY;
    char credit[8];
    snprintf (credit, sizeof credit, "%d", self->cfg.credit);
    const void *parts[] = { "", MDP_WORKER, &ready, self->service, credit };
    size_t sizes[] = { 0, strlen (MDP_WORKER), 1, strlen (self->service), strlen (credit) };
    int rc = mdp_send_parts (self->dealer, ZMQ_DONTWAIT, self->cfg.credit > 1? 5: 4, parts, sizes);
    int64_t now_ms = mesh_mono_ms ();
    self->broker_expiry_ms = now_ms + (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
    self->heartbeat_at_ms = now_ms + self->cfg.heartbeat_ms;
    mesh_log_kv (MESH_LOG_DEBUG, "worker connected", "service", self->service, "broker",
                 self->broker, NULL);
    return rc? MESH_EIO: 0;
}

//  Decode the request in `slot`. Returns true when it goes to the handler
//  (the reply head is packed); false when the reply is already complete
//  (malformed request, or a deadline that has passed).
static bool
s_prepare (s_slot_t *slot)
{
    msgpack_sbuffer_clear (&slot->reply);
    zmq_msg_t *body = &slot->frames.frame[5];
    int body_frames = slot->frames.count - 5;
    int rc = body_frames == 1? mesh_envelope_decode (slot->decoder, zmq_msg_data (body),
                                                     zmq_msg_size (body),
                                                     MESH_ENVELOPE_REQUEST, &slot->envelope)
                             : MESH_EINVAL;
    if (rc) {
        const char *why = body_frames == 1? mesh_envelope_decoder_error (slot->decoder)
                                          : "a mesh request has exactly one body frame";
        mesh_log_kv (MESH_LOG_DEBUG, "request rejected", "reason", why, NULL);
        mesh_envelope_pack_error (&slot->packer, NULL, 0, MESH_CODE_INVALID_ARGUMENT, why);
        return false;
    }
    const mesh_envelope_t *envelope = &slot->envelope;
    if (envelope->deadline_ms && envelope->deadline_ms <= mesh_wall_ms ()) {
        //  The caller has given up: do no work, but answer so the broker
        //  gets its credit back.
        mesh_envelope_pack_error (&slot->packer, envelope->id.ptr, envelope->id.len,
                                  MESH_CODE_DEADLINE_EXCEEDED, "deadline passed before work began");
        return false;
    }
    mesh_envelope_pack_reply_head (&slot->packer, envelope->id.ptr, envelope->id.len);
    slot->head_size = slot->reply.size;
    return true;
}

//  Finish the reply of a handled request from its code and response.
static void
s_finish (s_slot_t *slot, mesh_code_t code, mesh_response_t *response)
{
    if (code == MESH_CODE_OK && slot->reply.size == slot->head_size)
        msgpack_pack_nil (&slot->packer);   //  Handler packed nothing: body is nil
    if (code != MESH_CODE_OK) {
        msgpack_sbuffer_clear (&slot->reply);
        response->message[sizeof response->message - 1] = '\0';
        mesh_envelope_pack_error (&slot->packer, slot->envelope.id.ptr, slot->envelope.id.len,
                                  code, response->message);
    }
}

//  With a tracer: the server span of requests[index], under the caller's
//  traceparent, named "service/method"; the request then carries the span's
//  context so that the handler's spans and events hang under it.
static void
s_span_start (mesh_worker_t *self, size_t index)
{
    self->spans[index] = NULL;
    if (!self->cfg.tracer)
        return;
    mesh_request_t *request = &self->requests[index];
    char incoming[MESH_TRACEPARENT_SIZE] = "";
    if (request->trace.len && request->trace.len < sizeof incoming) {
        memcpy (incoming, request->trace.ptr, request->trace.len);
        incoming[request->trace.len] = '\0';
    }
    char name[96];
    snprintf (name, sizeof name, "%s/%.*s", self->service, (int) request->method.len,
              request->method.ptr);
    mesh_trace_ctx_t ctx;
    mesh_span_record_t *span = mesh_tracer_start_remote (self->cfg.tracer, name,
                                                         MESH_SPAN_SERVER, incoming, &ctx);
    mesh_span_record_set_string (span, "rpc.system", "zmesh");
    mesh_span_record_set_string (span, "rpc.service", self->service);
    if (span) {
        char method[64];
        snprintf (method, sizeof method, "%.*s", (int) request->method.len, request->method.ptr);
        mesh_span_record_set_string (span, "rpc.method", method);
    }
    mesh_traceparent_format (&ctx, self->traceparents[index]);
    request->trace = (mesh_slice_t) {self->traceparents[index], MESH_TRACEPARENT_SIZE - 1};
    self->spans[index] = span;
}

//  End the server span of requests[index] with its outcome.
static void
s_span_end (mesh_worker_t *self, size_t index)
{
    mesh_span_record_t *span = self->spans[index];
    if (!span)
        return;
    mesh_code_t code = self->codes[index];
    mesh_span_record_set_string (span, "rpc.zmesh.code", mesh_code_name (code));
    //  The caller's mistakes are not the server's errors
    if (code == MESH_CODE_INTERNAL || code == MESH_CODE_UNAVAILABLE
        || code == MESH_CODE_DEADLINE_EXCEEDED || code == MESH_CODE_UNIMPLEMENTED) {
        span->status = MESH_SPAN_STATUS_ERROR;
        snprintf (span->status_message, sizeof span->status_message, "%.*s",
                  (int) sizeof span->status_message - 1, self->responses[index].message);
    }
    mesh_tracer_end (self->cfg.tracer, &self->spans[index]);
}

//  Handle and answer the `count` requests held in the slots, then release
//  their frames. Returns 0 or MESH_EIO (a reply could not be sent).
static int
s_flush (mesh_worker_t *self, int count)
{
    size_t handled = 0;
    for (int index = 0; index < count; index++) {
        s_slot_t *slot = &self->slots[index];
        if (!s_prepare (slot))
            continue;
        self->requests[handled] = (mesh_request_t) {
            .id = slot->envelope.id,
            .method = slot->envelope.method,
            .trace = slot->envelope.trace,
            .idem = slot->envelope.idem,
            .actor = slot->envelope.actor,
            .deadline_ms = slot->envelope.deadline_ms,
            .body = slot->envelope.body,
        };
        self->responses[handled].body = &slot->packer;
        self->responses[handled].message[0] = '\0';
        self->codes[handled] = MESH_CODE_INTERNAL;
        s_span_start (self, handled);
        self->handled_slot[handled++] = index;
    }
    if (handled) {
        atomic_store (&self->in_handler, true);
        pthread_mutex_unlock (&self->socket_lock);     //  Heartbeats may go out meanwhile
        if (self->cfg.batch_handler)
            self->cfg.batch_handler (self->cfg.handler_arg, self->requests, self->responses,
                                     self->codes, handled);
        else
            for (size_t index = 0; index < handled; index++)
                self->codes[index] = self->cfg.handler (self->cfg.handler_arg,
                                                        &self->requests[index],
                                                        &self->responses[index]);
        pthread_mutex_lock (&self->socket_lock);
        atomic_store (&self->in_handler, false);
        for (size_t index = 0; index < handled; index++) {
            s_span_end (self, index);
            s_finish (&self->slots[self->handled_slot[index]], self->codes[index],
                      &self->responses[index]);
        }
    }
    int rc = 0;
    unsigned char command = MDP_REPLY;
    for (int index = 0; index < count; index++) {
        s_slot_t *slot = &self->slots[index];
        //  Client address moves from the request to the reply without a copy
        if (rc == 0
            && (zmq_send (self->dealer, "", 0, ZMQ_SNDMORE) < 0
                || zmq_send (self->dealer, MDP_WORKER, strlen (MDP_WORKER), ZMQ_SNDMORE) < 0
                || zmq_send (self->dealer, &command, 1, ZMQ_SNDMORE) < 0
                || zmq_msg_send (&slot->frames.frame[3], self->dealer, ZMQ_SNDMORE) < 0
                || zmq_send (self->dealer, "", 0, ZMQ_SNDMORE) < 0
                || zmq_send (self->dealer, slot->reply.data, slot->reply.size, 0) < 0))
            rc = MESH_EIO;
        if (rc == 0)
            atomic_fetch_add_explicit (&self->handled, 1, memory_order_relaxed);
        mdp_frames_close (&slot->frames);
    }
    return rc;
}

//  Process every message waiting on the socket; requests are gathered into
//  the slots and handled a batch at a time. Returns 0, 1 when the broker
//  said DISCONNECT (reconnect now), or MESH_EIO.
static int
s_drain (mesh_worker_t *self)
{
    //  Bounded so a busy stream still lets the loop send heartbeats and
    //  notice a stop request.
    int held = 0, rc = 0;
    for (int batch = 0; batch < 1024 && rc == 0; batch++) {
        mdp_frames_t *frames = &self->slots[held].frames;
        int received = mdp_frames_recv (frames, self->dealer, ZMQ_DONTWAIT);
        if (received == MESH_ETIMEDOUT && held) {
            //  The socket is empty: handle the batch, then read on, so the
            //  heartbeats that came in meanwhile count before liveness is
            //  judged (a long batch is not a silent broker)
            rc = s_flush (self, held);
            held = 0;
            continue;
        }
        if (received == MESH_ETIMEDOUT)
            break;
        if (received == MESH_EINTR)
            continue;
        if (received) {
            rc = MESH_EIO;
            break;
        }
        //  Any message from the broker proves it is alive
        self->broker_expiry_ms = mesh_mono_ms ()
                               + (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
        int command = frames->count >= 3 && mdp_frame_empty (&frames->frame[0])
                           && mdp_frame_eq (&frames->frame[1], MDP_WORKER)
                    ? mdp_frame_command (&frames->frame[2])
                    : 0;
        if (command == MDP_HEARTBEAT || command == MDP_REQUEST)
            self->backoff_ms = self->cfg.reconnect_min_ms;  //  Registered: reset backoff
        if (command == MDP_REQUEST && !frames->overflow && frames->count >= 6
            && mdp_frame_empty (&frames->frame[4])) {
            if (++held == self->slot_count) {
                rc = s_flush (self, held);
                held = 0;
            }
            continue;           //  The slot keeps the frames until flushed
        }
        if (command == MDP_DISCONNECT)
            rc = 1;
        else
        if (command != MDP_HEARTBEAT && command != MDP_REQUEST)
            mesh_log_kv (MESH_LOG_DEBUG, "worker dropped a malformed message from the broker",
                         "command", mdp_command_name (command), NULL);
        mdp_frames_close (frames);
    }
    if (held) {
        int flushed = s_flush (self, held);
        if (rc == 0)
            rc = flushed;
    }
    return rc;
}

//  True when a stop was requested (drains the pipe).
static bool
s_stop_requested (mesh_worker_t *self)
{
    char bytes[16];
    return read (self->stop_pipe[0], bytes, sizeof bytes) > 0;
}

//  Wait `delay_ms` unless a stop comes first. Returns true on stop.
static bool
s_backoff (mesh_worker_t *self, int delay_ms)
{
    zmq_pollitem_t item = { NULL, self->stop_pipe[0], ZMQ_POLLIN, 0 };
    int64_t until_ms = mesh_mono_ms () + delay_ms;
    while (true) {
        int64_t left_ms = until_ms - mesh_mono_ms ();
        if (left_ms <= 0)
            return false;
        if (zmq_poll (&item, 1, (long) left_ms) > 0 && s_stop_requested (self))
            return true;
    }
}

//  Heartbeat thread: while the run loop is inside a handler, send the
//  HEARTBEATs it cannot send itself.
static void *
s_heartbeat_thread (void *arg)
{
    mesh_worker_t *self = arg;
    pthread_mutex_lock (&self->state_lock);
    while (!self->stopping) {
        struct timespec until;
        clock_gettime (CLOCK_MONOTONIC, &until);
        int64_t nanoseconds = until.tv_nsec + (int64_t) self->cfg.heartbeat_ms * 1000000 / 4;
        until.tv_sec += (time_t) (nanoseconds / 1000000000);
        until.tv_nsec = (long) (nanoseconds % 1000000000);
        pthread_cond_timedwait (&self->state_changed, &self->state_lock, &until);
        if (self->stopping)
            break;
        pthread_mutex_unlock (&self->state_lock);
        if (atomic_load (&self->in_handler) && pthread_mutex_trylock (&self->socket_lock) == 0) {
            int64_t now_ms = mesh_mono_ms ();
            if (atomic_load (&self->in_handler) && self->dealer
                && now_ms >= self->heartbeat_at_ms) {
                s_send_command (self, MDP_HEARTBEAT);
                self->heartbeat_at_ms = now_ms + self->cfg.heartbeat_ms;
            }
            pthread_mutex_unlock (&self->socket_lock);
        }
        pthread_mutex_lock (&self->state_lock);
    }
    pthread_mutex_unlock (&self->state_lock);
    return NULL;
}

//  Serve until stopped; runs with socket_lock held (see struct).
static int
s_serve (mesh_worker_t *self)
{
    if (s_connect (self))
        return MESH_EIO;
    //  On stop the worker first says it is leaving and answers what is
    //  still on its way; it is gone when the broker says DISCONNECT, or at
    //  this bound (a broker that is dead or does not know the extension),
    //  or at a second stop request. 0: not leaving.
    int64_t leave_by_ms = 0;
    //  mesh_poll: the DEALER is settled after a turn that neither read it
    //  (it had nothing) nor sent on it
    uint32_t settled = 0;
    while (true) {
        zmq_pollitem_t items[] = {
            { self->dealer, 0, ZMQ_POLLIN, 0 },
            { NULL, self->stop_pipe[0], ZMQ_POLLIN, 0 },
            { mesh_monitor_socket (self->monitor), 0, ZMQ_POLLIN, 0 },
        };
        int64_t now_ms = mesh_mono_ms ();
        int64_t wait_ms = self->heartbeat_at_ms - now_ms;
        if (leave_by_ms && leave_by_ms - now_ms < wait_ms)
            wait_ms = leave_by_ms - now_ms;
        if (mesh_poll (items, 3, (long) (wait_ms > 0? wait_ms: 0), settled) < 0 && errno != EINTR)
            return MESH_EIO;
        settled = 0;
        bool leave_now = false;
        bool sent = items[1].revents & ZMQ_POLLIN;     //  Maybe LEAVING, below
        if ((items[1].revents & ZMQ_POLLIN) && s_stop_requested (self)) {
            if (leave_by_ms || s_send_leaving (self))
                leave_now = true;
            else
                leave_by_ms = mesh_mono_ms ()
                            + (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
        }
        if (leave_by_ms && mesh_mono_ms () >= leave_by_ms)
            leave_now = true;
        if (leave_now) {
            s_send_command (self, MDP_DISCONNECT);
            zmq_close (self->dealer);
            self->dealer = NULL;
            return 0;
        }
        bool reconnect = false;
        if (items[0].revents & ZMQ_POLLIN) {
            int rc = s_drain (self);
            if (rc < 0)
                return rc;
            //  DISCONNECT while leaving: the broker holds nothing more for
            //  us, so we are gone (below); else register again
            reconnect = rc == 1;
            if (reconnect)
                mesh_log_kv (MESH_LOG_INFO,
                             leave_by_ms? "worker left": "broker said DISCONNECT: registering again",
                             "service", self->service, NULL);
        }
        bool closed = false;        //  The connection closed: the broker died
        if (!reconnect && (items[2].revents & ZMQ_POLLIN) && mesh_monitor_closes (self->monitor)) {
            mesh_log_kv (MESH_LOG_WARN, "connection to the broker closed: registering again",
                         "service", self->service, "broker", self->broker, NULL);
            reconnect = closed = true;
        }
        now_ms = mesh_mono_ms ();
        if (leave_by_ms && (reconnect || now_ms >= self->broker_expiry_ms)) {
            zmq_close (self->dealer);     //  Nobody left to hand work back to
            self->dealer = NULL;
            return 0;
        }
        if (!reconnect && now_ms >= self->broker_expiry_ms) {
            mesh_log_kv (MESH_LOG_WARN, "broker silent: reconnecting", "service", self->service,
                         "broker", self->broker, NULL);
            reconnect = true;
        }
        if (reconnect) {
            //  Backoff doubles while the broker keeps failing us, so a broker
            //  that refuses us is not hammered with READYs. The first close
            //  after we were registered goes at once: the fresh socket's
            //  READY waits in its queue until the next broker listens, and
            //  a broker that is back sooner than the backoff gets it sooner
            bool first_close = closed && self->backoff_ms == self->cfg.reconnect_min_ms;
            if (s_backoff (self, first_close? 0: self->backoff_ms)) {
                zmq_close (self->dealer);
                self->dealer = NULL;
                return 0;
            }
            self->backoff_ms = self->backoff_ms * 2 < self->cfg.reconnect_max_ms
                             ? self->backoff_ms * 2
                             : self->cfg.reconnect_max_ms;
            if (s_connect (self))
                return MESH_EIO;
            continue;
        }
        if (now_ms >= self->heartbeat_at_ms) {
            s_send_command (self, MDP_HEARTBEAT);
            self->heartbeat_at_ms = now_ms + self->cfg.heartbeat_ms;
            sent = true;
        }
        settled = mesh_poll_untouched (items, 3, sent? UINT32_C (1): 0);
    }
}

//  --------------------------------------------------------------------------
//  Serve until mesh_worker_stop.
int
mesh_worker_run (mesh_worker_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->socket_lock);
    self->stopping = false;
    pthread_t heartbeat;
    bool started = pthread_create (&heartbeat, NULL, s_heartbeat_thread, self) == 0;
    int rc = s_serve (self);
    pthread_mutex_lock (&self->state_lock);
    self->stopping = true;
    pthread_cond_signal (&self->state_changed);
    pthread_mutex_unlock (&self->state_lock);
    pthread_mutex_unlock (&self->socket_lock);
    if (started)
        pthread_join (heartbeat, NULL);
    return rc;
}

//  --------------------------------------------------------------------------
//  Ask mesh_worker_run to return (async-signal-safe).
void
mesh_worker_stop (mesh_worker_t *self)
{
    assert (self);
    ssize_t written = write (self->stop_pipe[1], "", 1);
    (void) written;             //  A full pipe already holds a stop request
}

//  --------------------------------------------------------------------------
//  Requests handled since creation.
uint64_t
mesh_worker_handled (const mesh_worker_t *self)
{
    assert (self);
    return atomic_load_explicit (&((mesh_worker_t *) self)->handled, memory_order_relaxed);
}

//  --------------------------------------------------------------------------
//  Worker pool.

typedef struct {
    mesh_worker_t *worker;
    pthread_t thread;
} s_pool_slot_t;

struct mesh_worker_pool_s {
    s_pool_slot_t *slots;
    size_t count;
    size_t capacity;
};

mesh_worker_pool_t *
mesh_worker_pool_new (void)
{
    return mesh_alloc (sizeof (mesh_worker_pool_t));
}

static void *
s_pool_run (void *arg)
{
    mesh_worker_t *worker = arg;
    int rc = mesh_worker_run (worker);
    if (rc)
        mesh_log_kv (MESH_LOG_ERROR, "worker stopped", "service", worker->service, "error",
                     mesh_strerror (rc), NULL);
    return NULL;
}

int
mesh_worker_pool_start (mesh_worker_pool_t *self, const mesh_worker_cfg_t *cfg)
{
    assert (self);
    int err = 0;
    mesh_worker_t *worker = mesh_worker_new (cfg, &err);
    if (!worker)
        return err;
    if (self->count == self->capacity) {
        self->capacity = self->capacity? self->capacity * 2: 8;
        self->slots = mesh_realloc (self->slots, self->capacity * sizeof (s_pool_slot_t));
    }
    s_pool_slot_t *slot = &self->slots[self->count];
    slot->worker = worker;
    if (pthread_create (&slot->thread, NULL, s_pool_run, worker)) {
        mesh_worker_destroy (&slot->worker);
        return MESH_EIO;
    }
    self->count++;
    return 0;
}

size_t
mesh_worker_pool_size (const mesh_worker_pool_t *self)
{
    assert (self);
    return self->count;
}

void
mesh_worker_pool_stop (mesh_worker_pool_t *self)
{
    assert (self);
    //  Ask all first, so they disconnect in parallel, then join
    for (size_t index = 0; index < self->count; index++)
        mesh_worker_stop (self->slots[index].worker);
    for (size_t index = 0; index < self->count; index++) {
        pthread_join (self->slots[index].thread, NULL);
        mesh_worker_destroy (&self->slots[index].worker);
    }
    self->count = 0;
}

void
mesh_worker_pool_destroy (mesh_worker_pool_t **self_p)
{
    if (self_p && *self_p) {
        mesh_worker_pool_stop (*self_p);
        free ((*self_p)->slots);
        free (*self_p);
        *self_p = NULL;
    }
}
