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
#include "mesh/mesh_log.h"
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

struct mesh_worker_s {
    mesh_worker_cfg_t cfg;      //  Copy; strings below are owned copies
    char *broker;               //  Endpoint, owned
    char *service;              //  Service name, owned
    void *context;              //  ZeroMQ context
    bool own_context;           //  We made it
    void *dealer;               //  Current socket to the broker, or NULL
    int stop_pipe[2];           //  mesh_worker_stop writes, run polls
    mesh_envelope_decoder_t *decoder;   //  Decodes requests
    msgpack_sbuffer reply;      //  Encodes replies, reused
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
    if (!cfg->broker || !cfg->service || !cfg->handler
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
    self->decoder = mesh_envelope_decoder_new (0);
    msgpack_sbuffer_init (&self->reply);
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
        if (self->dealer)
            zmq_close (self->dealer);
        if (self->own_context && self->context)
            zmq_ctx_term (self->context);
        for (int end = 0; end < 2; end++)
            if (self->stop_pipe[end] >= 0)
                close (self->stop_pipe[end]);
        mesh_envelope_decoder_destroy (&self->decoder);
        msgpack_sbuffer_destroy (&self->reply);
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

//  Open a fresh socket to the broker and send READY (with credit > 1 as
//  the fifth frame). Returns 0 or MESH_EIO.
static int
s_connect (mesh_worker_t *self)
{
    if (self->dealer)
        zmq_close (self->dealer);
    self->dealer = zmq_socket (self->context, ZMQ_DEALER);
    if (!self->dealer)
        return MESH_EIO;
    int linger = 0, hwm = 100000;
    zmq_setsockopt (self->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_connect (self->dealer, self->broker) != 0)
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

//  Build the reply envelope for one request body in self->reply.
static void
s_handle (mesh_worker_t *self, zmq_msg_t *body, int body_frames)
{
    msgpack_sbuffer_clear (&self->reply);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &self->reply, msgpack_sbuffer_write);
    mesh_envelope_t envelope;
    int rc = body_frames == 1? mesh_envelope_decode (self->decoder, zmq_msg_data (body),
                                                     zmq_msg_size (body),
                                                     MESH_ENVELOPE_REQUEST, &envelope)
                             : MESH_EINVAL;
    if (rc) {
        const char *why = body_frames == 1? mesh_envelope_decoder_error (self->decoder)
                                          : "a mesh request has exactly one body frame";
        mesh_log_kv (MESH_LOG_DEBUG, "request rejected", "reason", why, NULL);
        mesh_envelope_pack_error (&packer, NULL, 0, MESH_CODE_INVALID_ARGUMENT, why);
        return;
    }
    if (envelope.deadline_ms && envelope.deadline_ms <= mesh_wall_ms ()) {
        //  The caller has given up: do no work, but answer so the broker
        //  gets its credit back.
        mesh_envelope_pack_error (&packer, envelope.id.ptr, envelope.id.len,
                                  MESH_CODE_DEADLINE_EXCEEDED, "deadline passed before work began");
        return;
    }
    mesh_request_t request = {
        .id = envelope.id,
        .method = envelope.method,
        .trace = envelope.trace,
        .idem = envelope.idem,
        .deadline_ms = envelope.deadline_ms,
        .body = envelope.body,
    };
    mesh_response_t response = { .body = &packer };
    mesh_envelope_pack_reply_head (&packer, envelope.id.ptr, envelope.id.len);
    size_t head_size = self->reply.size;
    atomic_store (&self->in_handler, true);
    pthread_mutex_unlock (&self->socket_lock);     //  Heartbeats may go out meanwhile
    mesh_code_t code = self->cfg.handler (self->cfg.handler_arg, &request, &response);
    pthread_mutex_lock (&self->socket_lock);
    atomic_store (&self->in_handler, false);
    if (code == MESH_CODE_OK && self->reply.size == head_size)
        msgpack_pack_nil (&packer);     //  Handler packed nothing: body is nil
    if (code != MESH_CODE_OK) {
        msgpack_sbuffer_clear (&self->reply);
        response.message[sizeof response.message - 1] = '\0';
        mesh_envelope_pack_error (&packer, envelope.id.ptr, envelope.id.len, code,
                                  response.message);
    }
}

//  Answer one REQUEST: frames "", MDPW01, 0x02, client, "", body...
//  Returns 0 or MESH_EIO.
static int
s_on_request (mesh_worker_t *self, mdp_frames_t *frames)
{
    if (frames->count < 6 || !mdp_frame_empty (&frames->frame[4]))
        return 0;               //  Malformed: nothing to answer to
    s_handle (self, &frames->frame[5], frames->count - 5);
    unsigned char command = MDP_REPLY;
    //  Client address moves from the request to the reply without a copy
    if (zmq_send (self->dealer, "", 0, ZMQ_SNDMORE) < 0
        || zmq_send (self->dealer, MDP_WORKER, strlen (MDP_WORKER), ZMQ_SNDMORE) < 0
        || zmq_send (self->dealer, &command, 1, ZMQ_SNDMORE) < 0
        || zmq_msg_send (&frames->frame[3], self->dealer, ZMQ_SNDMORE) < 0
        || zmq_send (self->dealer, "", 0, ZMQ_SNDMORE) < 0
        || zmq_send (self->dealer, self->reply.data, self->reply.size, 0) < 0)
        return MESH_EIO;
    atomic_fetch_add_explicit (&self->handled, 1, memory_order_relaxed);
    return 0;
}

//  Process every message waiting on the socket. Returns 0, 1 when the
//  broker said DISCONNECT (reconnect now), or MESH_EIO.
static int
s_drain (mesh_worker_t *self)
{
    //  Bounded so a busy stream still lets the loop send heartbeats and
    //  notice a stop request.
    for (int batch = 0; batch < 1024; batch++) {
        mdp_frames_t frames;
        int rc = mdp_frames_recv (&frames, self->dealer, ZMQ_DONTWAIT);
        if (rc == MESH_ETIMEDOUT)
            return 0;
        if (rc == MESH_EINTR)
            continue;
        if (rc)
            return MESH_EIO;
        //  Any message from the broker proves it is alive
        self->broker_expiry_ms = mesh_mono_ms ()
                               + (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
        int command = frames.count >= 3 && mdp_frame_empty (&frames.frame[0])
                           && mdp_frame_eq (&frames.frame[1], MDP_WORKER)
                    ? mdp_frame_command (&frames.frame[2])
                    : 0;
        if (command == MDP_HEARTBEAT || command == MDP_REQUEST)
            self->backoff_ms = self->cfg.reconnect_min_ms;  //  Registered: reset backoff
        if (command == MDP_REQUEST && !frames.overflow)
            rc = s_on_request (self, &frames);
        else
        if (command == MDP_DISCONNECT)
            rc = 1;
        else
        if (command != MDP_HEARTBEAT)
            mesh_log_kv (MESH_LOG_DEBUG, "worker dropped a malformed message from the broker",
                         "command", mdp_command_name (command), NULL);
        mdp_frames_close (&frames);
        if (rc)
            return rc;
    }
    return 0;
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
    while (true) {
        zmq_pollitem_t items[] = {
            { self->dealer, 0, ZMQ_POLLIN, 0 },
            { NULL, self->stop_pipe[0], ZMQ_POLLIN, 0 },
        };
        int64_t now_ms = mesh_mono_ms ();
        int64_t wait_ms = self->heartbeat_at_ms - now_ms;
        if (zmq_poll (items, 2, (long) (wait_ms > 0? wait_ms: 0)) < 0 && errno != EINTR)
            return MESH_EIO;
        if ((items[1].revents & ZMQ_POLLIN) && s_stop_requested (self)) {
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
            if (rc == 1) {
                mesh_log_kv (MESH_LOG_INFO, "broker said DISCONNECT: registering again",
                             "service", self->service, NULL);
                reconnect = true;
            }
        }
        now_ms = mesh_mono_ms ();
        if (!reconnect && now_ms >= self->broker_expiry_ms) {
            mesh_log_kv (MESH_LOG_WARN, "broker silent: reconnecting", "service", self->service,
                         "broker", self->broker, NULL);
            reconnect = true;
        }
        if (reconnect) {
            //  Backoff doubles while the broker keeps failing us, so a broker
            //  that refuses us is not hammered with READYs.
            if (s_backoff (self, self->backoff_ms)) {
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
        }
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
