/*  =========================================================================
    broker - Majordomo (MDP/0.1 + MMI) broker and the event proxy
    The hot path moves zmq_msg_t frames from one socket to the other without
    copying bodies and without allocating: peers are found in hashes keyed
    by their raw routing ids, in-flight requests live in per-worker slot
    arrays, and queued requests come from a free list. The broker peeks at
    each request body for the envelope's id and deadline (so it can answer
    for the mesh) and passes bodies that are not envelopes through untouched.
    This file holds the loop and the protocol; broker_service.c and
    broker_worker.c hold services and workers (broker_internal.h).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "broker_internal.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_poll.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BATCH 256                 //  Messages taken per socket per wake-up
#define S_QUEUE_SCAN_MS 20          //  Queue deadline check interval while non-empty

//  --------------------------------------------------------------------------
//  Defaults for every field but the endpoints and metrics.
broker_cfg_t
broker_cfg_defaults (void)
{
    broker_cfg_t cfg = {
        .bind = "tcp://127.0.0.1:5555",
        .heartbeat_ms = 1000,
        .liveness = 3,
        .default_wait_ms = 5000,
        .queue_max = 10000,
        .max_services = 1000,
        .max_frame = MESH_ENVELOPE_MAX_SIZE + 64 * 1024,
    };
    return cfg;
}

//  Bind `socket` to each endpoint of the comma-separated `endpoints`, with
//  the options every broker socket gets. `first` (may be NULL) receives the
//  first one as bound (a tcp port 0 resolved), `size` bytes.
static int
s_bind (void *socket, const char *endpoints, const char *what, char *first, size_t size)
{
    int linger = 0, hwm = 100000;
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
    const char *start = endpoints;
    while (true) {
        const char *comma = strchr (start, ',');
        size_t len = comma? (size_t) (comma - start): strlen (start);
        char endpoint[256];
        if (len == 0 || len >= sizeof endpoint) {
            mesh_log_kv (MESH_LOG_ERROR, "cannot bind: empty or too long endpoint", "socket",
                         what, "endpoints", endpoints, NULL);
            return MESH_EINVAL;
        }
        memcpy (endpoint, start, len);
        endpoint[len] = '\0';
        if (zmq_bind (socket, endpoint) != 0) {
            mesh_log_kv (MESH_LOG_ERROR, "cannot bind", "socket", what, "endpoint", endpoint,
                         "error", zmq_strerror (errno), NULL);
            return MESH_EIO;
        }
        if (first) {
            zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, first, &size);
            first = NULL;
        }
        if (!comma)
            return 0;
        start = comma + 1;
    }
}

//  With CURVE: make `socket` a CURVE server and count its failed handshakes.
static int
s_secure (broker_t *self, void *socket, const char *what)
{
    if (!self->auth)
        return 0;
    if (mesh_curve_apply_server (self->cfg.curve, socket)
        || broker_auth_monitor (self->auth, socket, what)) {
        mesh_log_kv (MESH_LOG_ERROR, "cannot make socket a CURVE server", "socket", what, NULL);
        return MESH_EIO;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Create the broker and bind its sockets.
broker_t *
broker_new (const broker_cfg_t *cfg, int *err)
{
    assert (cfg);
    assert (cfg->metrics);
    int unused;
    if (!err)
        err = &unused;
    *err = MESH_EINVAL;
    if (!cfg->bind || cfg->heartbeat_ms <= 0 || cfg->liveness <= 0 || cfg->default_wait_ms <= 0
        || cfg->queue_max == 0 || cfg->max_services == 0 || cfg->max_frame == 0
        || (!cfg->xsub_bind) != (!cfg->xpub_bind))
        return NULL;

    broker_t *self = mesh_alloc (sizeof (broker_t));
    self->cfg = *cfg;
    self->services = zhashx_new ();
    zhashx_set_key_duplicator (self->services, NULL);   //  Keys live in the values
    zhashx_set_key_destructor (self->services, NULL);
    zhashx_set_destructor (self->services, broker__service_destroy);
    self->workers = zhashx_new ();
    zhashx_set_key_duplicator (self->workers, NULL);
    zhashx_set_key_destructor (self->workers, NULL);
    zhashx_set_key_hasher (self->workers, broker__peer_id_hash);
    zhashx_set_key_comparator (self->workers, broker__peer_id_compare);
    zhashx_set_destructor (self->workers, broker__worker_destroy);
    msgpack_sbuffer_init (&self->buffer);
    broker_metrics_init (&self->metrics, cfg->metrics);
    broker_service_metrics_init (&self->unregistered_metrics, cfg->metrics, "_unregistered");

    *err = MESH_EIO;
    self->context = zmq_ctx_new ();
    if (!self->context)
        goto fail;
    if (cfg->curve) {
        //  CURVE without a ZAP handler admits anyone who knows the server key
        if (!cfg->curve_allow || !*cfg->curve_allow) {
            mesh_log_kv (MESH_LOG_ERROR, "--curve-cert needs --curve-allow (allowed keys)", NULL);
            *err = MESH_EINVAL;
            goto fail;
        }
        //  The handler must be bound before the first handshake can start
        self->auth = broker_auth_new (self->context, cfg->curve_allow, cfg->metrics, err);
        if (!self->auth)
            goto fail;
        *err = MESH_EIO;
    }
    self->router = zmq_socket (self->context, ZMQ_ROUTER);
    if (!self->router || s_secure (self, self->router, "router"))
        goto fail;
    //  Mandatory: a send to a gone peer fails (EHOSTUNREACH) instead of
    //  vanishing, so we notice. Handover: a peer reconnecting with the same
    //  routing id takes over the old pipe.
    int on = 1;
    int64_t max_frame = (int64_t) cfg->max_frame;
    zmq_setsockopt (self->router, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    zmq_setsockopt (self->router, ZMQ_ROUTER_HANDOVER, &on, sizeof on);
    zmq_setsockopt (self->router, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
    if (s_bind (self->router, cfg->bind, "router", self->endpoint, sizeof self->endpoint))
        goto fail;
    if (cfg->xsub_bind) {
        self->xsub = zmq_socket (self->context, ZMQ_XSUB);
        self->xpub = zmq_socket (self->context, ZMQ_XPUB);
        if (!self->xsub || !self->xpub || s_secure (self, self->xsub, "events-xsub")
            || s_secure (self, self->xpub, "events-xpub"))
            goto fail;
        //  Manual: the broker decides which subscriptions take effect
        //  (ZMQ_SUBSCRIBE on the XPUB) instead of the XPUB applying all
        int manual = 1;
        if (self->auth)
            zmq_setsockopt (self->xpub, ZMQ_XPUB_MANUAL, &manual, sizeof manual);
        zmq_setsockopt (self->xsub, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
        zmq_setsockopt (self->xpub, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
        if (s_bind (self->xsub, cfg->xsub_bind, "events-xsub", NULL, 0)
            || s_bind (self->xpub, cfg->xpub_bind, "events-xpub", NULL, 0))
            goto fail;
    }
    *err = 0;
    return self;
fail:
    broker_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
broker_destroy (broker_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        broker_t *self = *self_p;
        zhashx_destroy (&self->workers);    //  Workers point into services: go first
        zhashx_destroy (&self->services);
        while (self->request_pool) {
            broker_request_t *request = self->request_pool;
            self->request_pool = request->next;
            free (request);
        }
        if (self->router)
            zmq_close (self->router);
        if (self->xsub)
            zmq_close (self->xsub);
        if (self->xpub)
            zmq_close (self->xpub);
        broker_auth_destroy (&self->auth);  //  Monitors and ZAP: before the context ends
        if (self->context)
            zmq_ctx_term (self->context);
        msgpack_sbuffer_destroy (&self->buffer);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Endpoint actually bound for the ROUTER.
const char *
broker_endpoint (const broker_t *self)
{
    assert (self);
    return self->endpoint;
}

//  Count and log one malformed message.
static void
s_malformed (broker_t *self, broker_malformed_t reason, const char *detail)
{
    mesh_counter_inc (self->metrics.malformed[reason]);
    mesh_log_kv (MESH_LOG_DEBUG, "dropped malformed message", "detail", detail, NULL);
}

//  Answer an MMI query: mmi.service, mmi.services, anything else 501.
static void
s_on_mmi (broker_t *self, const broker_peer_id_t *client, zmq_msg_t *service_frame,
          mdp_frames_t *frames)
{
    mesh_counter_inc (self->metrics.mmi);
    char name[MDP_MAX_SERVICE_NAME + 1];
    size_t len = zmq_msg_size (service_frame);
    memcpy (name, zmq_msg_data (service_frame), len);
    name[len] = '\0';
    msgpack_sbuffer_clear (&self->buffer);
    const char *answer = NULL;
    if (strcmp (name, "mmi.service") == 0) {
        zmq_msg_t *body = frames->count > 4? &frames->frame[4]: NULL;
        size_t body_size = body? zmq_msg_size (body): 0;
        broker_service_t *service = body && mdp_service_name_valid (zmq_msg_data (body), body_size)
                                 ? broker__service_require (self, zmq_msg_data (body), body_size,
                                                            false)
                                 : NULL;
        answer = service && service->workers? "200": "404";
    }
    else
    if (strcmp (name, "mmi.services") == 0) {
        msgpack_packer packer;
        msgpack_packer_init (&packer, &self->buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&packer, 1);
        mesh_pack_cstr (&packer, "services");
        msgpack_pack_array (&packer, zhashx_size (self->services));
        for (broker_service_t *service = zhashx_first (self->services); service;
             service = zhashx_next (self->services)) {
            msgpack_pack_map (&packer, 5);
            mesh_pack_cstr (&packer, "name");
            mesh_pack_cstr (&packer, service->name);
            mesh_pack_cstr (&packer, "workers");
            msgpack_pack_uint64 (&packer, service->workers);
            mesh_pack_cstr (&packer, "idle_credit");
            msgpack_pack_uint64 (&packer, service->credit_total - service->in_flight);
            mesh_pack_cstr (&packer, "queued");
            msgpack_pack_uint64 (&packer, service->queued);
            mesh_pack_cstr (&packer, "in_flight");
            msgpack_pack_uint64 (&packer, service->in_flight);
        }
    }
    else
        answer = "501";
    const void *body = answer? (const void *) answer: self->buffer.data;
    size_t body_size = answer? strlen (answer): self->buffer.size;
    broker__send_client (self, client, name, body, body_size);
}

//  Answer a request for a service the broker does not track (refused, or
//  over the service limit) with an error envelope.
static void
s_answer_untracked (broker_t *self, zmq_msg_t *service_frame, const broker_ticket_t *ticket,
                    mesh_code_t code, const char *message)
{
    broker_service_t untracked = { .metrics = &self->unregistered_metrics };
    size_t name_len = zmq_msg_size (service_frame);
    memcpy (untracked.name, zmq_msg_data (service_frame), name_len);
    untracked.name[name_len] = '\0';
    broker__answer_error (self, &untracked, ticket, code, message);
}

//  A client request: client, "", MDPC01, service, body...
static void
s_on_client (broker_t *self, mdp_frames_t *frames)
{
    if (frames->count < 5 || frames->overflow) {
        s_malformed (self, BROKER_MALFORMED_FRAMES, "client request without service or body");
        return;
    }
    broker_ticket_t ticket;
    broker__peer_id_from (&ticket.client, &frames->frame[0]);
    zmq_msg_t *service_frame = &frames->frame[3];
    size_t name_len = zmq_msg_size (service_frame);
    if (!mdp_service_name_valid (zmq_msg_data (service_frame), name_len)) {
        s_malformed (self, BROKER_MALFORMED_SERVICE, "client request with unusable service name");
        return;
    }
    if (name_len >= 4 && memcmp (zmq_msg_data (service_frame), "mmi.", 4) == 0) {
        s_on_mmi (self, &ticket.client, service_frame, frames);
        return;
    }
    ticket.received_us = self->now_us;
    zmq_msg_t *body = &frames->frame[4];
    int body_count = frames->count - 4;
    mesh_slice_t id = { NULL, 0 }, actor = { NULL, 0 };
    uint64_t deadline_ms = 0;
    ticket.enveloped = body_count == 1
                    && mesh_envelope_peek (zmq_msg_data (body), zmq_msg_size (body), &id,
                                           &deadline_ms, self->auth? &actor: NULL)
                           == 0;
    ticket.id_len = 0;
    if (ticket.enveloped) {
        ticket.id_len = (uint8_t) id.len;
        memcpy (ticket.id, id.ptr, id.len);
    }
    else
        mesh_counter_inc (self->metrics.opaque_bodies);
    //  The frame after the routing id came off the wire: it carries the
    //  sender's ZAP properties (name and grants)
    if (self->auth
        && (!broker_auth_allows (self->auth, &frames->frame[1], BROKER_REFUSAL_CALL,
                                 zmq_msg_data (service_frame), name_len)
            || !broker_auth_allows_actor (self->auth, &frames->frame[1], actor.ptr, actor.len))) {
        s_answer_untracked (self, service_frame, &ticket, MESH_CODE_PERMISSION_DENIED,
                            "this key may not send that request");
        return;
    }

    broker_service_t *service =
        broker__service_require (self, zmq_msg_data (service_frame), name_len, true);
    if (!service) {
        s_answer_untracked (self, service_frame, &ticket, MESH_CODE_UNAVAILABLE,
                            "the broker knows too many services to track another");
        mesh_counter_inc (self->unregistered_metrics.no_worker);
        return;
    }
    if (broker__dispatch (self, service, &ticket, body, body_count) == 0) {
        frames->count = 4;      //  Body frames were sent (moved)
        return;
    }
    if (service->queued >= self->cfg.queue_max) {
        broker__answer_error (self, service, &ticket, MESH_CODE_RESOURCE_EXHAUSTED,
                              "the service's queue is full");
        mesh_counter_inc (service->metrics->queue_full);
        return;
    }
    broker_request_t *request = broker__request_new (self);
    request->ticket = ticket;
    request->deadline_ms = ticket.enveloped && deadline_ms
                         ? deadline_ms
                         : mesh_wall_ms () + (uint64_t) self->cfg.default_wait_ms;
    for (int index = 0; index < body_count; index++) {
        zmq_msg_init (&request->body[index]);
        zmq_msg_move (&request->body[index], &body[index]);
    }
    request->body_count = body_count;
    if (service->queue_tail)
        service->queue_tail->next = request;
    else
        service->queue_head = request;
    service->queue_tail = request;
    service->queued++;
    self->queued_total++;
    mesh_gauge_set (service->metrics->queue_depth, (double) service->queued);
}

//  DISCONNECT a leaving worker once it holds nothing.
static void
s_leave_when_idle (broker_t *self, broker_worker_t *worker)
{
    if (worker->leaving && worker->in_flight == 0) {
        broker__send_command (self, &worker->identity, MDP_DISCONNECT);
        broker__worker_delete (self, worker, "left");
    }
}

//  A worker that is leaving: out of the ready list for good.
static void
s_worker_leaving (broker_t *self, broker_worker_t *worker)
{
    if (!worker->leaving) {
        char hex[2 * BROKER_PEER_ID_MAX + 1], held[16];
        broker__peer_id_hex (&worker->identity, hex, sizeof hex);
        snprintf (held, sizeof held, "%d", worker->in_flight);
        mesh_log_kv (MESH_LOG_INFO, "worker leaving", "service", worker->service->name,
                     "worker", hex, "requests_held", held, NULL);
    }
    worker->leaving = true;
    if (worker->listed)
        broker__ready_remove (worker->service, worker);
    s_leave_when_idle (self, worker);
}

//  READY: identity, "", MDPW01, 0x01, service [, credit]
static void
s_on_ready (broker_t *self, broker_peer_id_t *identity, broker_worker_t *known,
            mdp_frames_t *frames)
{
    //  Our extension: READY with credit "0" from a registered worker says it
    //  is leaving (a rolling restart). It gets no new request; the ones it
    //  holds it still answers, and once it holds none the broker says
    //  DISCONNECT, so nothing it was sent is lost or answered twice.
    if (known && frames->count == 6 && zmq_msg_size (&frames->frame[5]) == 1
        && *(const char *) zmq_msg_data (&frames->frame[5]) == '0') {
        s_worker_leaving (self, known);
        return;
    }
    if (known)                  //  Re-registration (same routing id): start over
        broker__worker_delete (self, known, "registered again");
    if (frames->count < 5 || frames->count > 6) {
        s_malformed (self, BROKER_MALFORMED_FRAMES, "READY without service");
        broker__send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    zmq_msg_t *service_frame = &frames->frame[4];
    size_t name_len = zmq_msg_size (service_frame);
    if (!mdp_service_name_valid (zmq_msg_data (service_frame), name_len)
        || (name_len >= 4 && memcmp (zmq_msg_data (service_frame), "mmi.", 4) == 0)) {
        s_malformed (self, BROKER_MALFORMED_SERVICE, "READY for an unusable service name");
        broker__send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    if (self->auth && !broker_auth_allows (self->auth, &frames->frame[1], BROKER_REFUSAL_SERVE,
                                           zmq_msg_data (service_frame), name_len)) {
        broker__send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    int credit = frames->count == 6? mdp_frame_credit (&frames->frame[5]): 1;
    if (credit == 0) {
        s_malformed (self, BROKER_MALFORMED_CREDIT, "READY credit is not 1..1000");
        broker__send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    broker_service_t *service = broker__service_require (self, zmq_msg_data (service_frame),
                                                         name_len, true);
    if (!service) {
        mesh_log_kv (MESH_LOG_WARN, "worker refused: too many services", NULL);
        broker__send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    if (service->metrics == &self->unregistered_metrics) {
        broker_service_metrics_init (&service->own_metrics, self->cfg.metrics, service->name);
        service->metrics = &service->own_metrics;
    }
    broker_worker_t *worker = mesh_alloc (sizeof (broker_worker_t));
    worker->identity = *identity;
    worker->service = service;
    worker->credit = credit;
    worker->slots = mesh_alloc ((size_t) credit * sizeof (broker_ticket_t));
    worker->slot_used = mesh_alloc ((size_t) credit * sizeof (bool));
    worker->expiry_ms = mesh_mono_ms () + (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
    zhashx_insert (self->workers, &worker->identity, worker);
    service->workers++;
    service->credit_total += (size_t) credit;
    mesh_gauge_set (service->metrics->workers, (double) service->workers);
    broker__ready_append (service, worker);
    char hex[2 * BROKER_PEER_ID_MAX + 1], credit_text[8];
    broker__peer_id_hex (identity, hex, sizeof hex);
    snprintf (credit_text, sizeof credit_text, "%d", credit);
    mesh_log_kv (MESH_LOG_INFO, "worker registered", "service", service->name, "worker", hex,
                 "credit", credit_text, NULL);
    broker__drain_queue (self, service);
}

//  REPLY: identity, "", MDPW01, 0x03, client, "", body...
static void
s_on_reply (broker_t *self, broker_worker_t *worker, mdp_frames_t *frames)
{
    broker_peer_id_t client;
    if (frames->count < 7 || frames->overflow || !broker__peer_id_from (&client, &frames->frame[4])
        || !mdp_frame_empty (&frames->frame[5])) {
        s_malformed (self, BROKER_MALFORMED_FRAMES, "REPLY without client address or body");
        return;
    }
    zmq_msg_t *body = &frames->frame[6];
    int body_count = frames->count - 6;
    int slot = broker__find_slot (self, worker, &client, body, body_count);
    if (slot < 0) {
        s_malformed (self, BROKER_MALFORMED_REPLY, "REPLY for a request the worker does not hold");
        return;
    }
    broker_service_t *service = worker->service;
    worker->slot_used[slot] = false;
    worker->in_flight--;
    service->in_flight--;

    //  Forward: client, "", MDPC01, service, body (moved)
    if (zmq_msg_send (&frames->frame[4], self->router, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0)
        mesh_counter_inc (service->metrics->client_gone);
    else {
        zmq_send (self->router, "", 0, ZMQ_SNDMORE);
        zmq_send (self->router, MDP_CLIENT, strlen (MDP_CLIENT), ZMQ_SNDMORE);
        zmq_send (self->router, service->name, strlen (service->name), ZMQ_SNDMORE);
        for (int index = 0; index < body_count; index++)
            zmq_msg_send (&body[index], self->router, index + 1 < body_count? ZMQ_SNDMORE: 0);
        mesh_counter_inc (service->metrics->replied);
    }
    if (worker->leaving) {
        s_leave_when_idle (self, worker);
        return;
    }
    //  The returned credit goes to the queue first, else back in line
    if (!worker->listed) {
        broker__ready_append (service, worker);
        broker__drain_queue (self, service);
    }
}

//  A worker message: identity, "", MDPW01, command, ...
static void
s_on_worker (broker_t *self, mdp_frames_t *frames)
{
    int command = frames->count >= 4? mdp_frame_command (&frames->frame[3]): 0;
    if (!command) {
        s_malformed (self, BROKER_MALFORMED_COMMAND, "worker message without a valid command");
        return;
    }
    broker_peer_id_t identity;
    broker__peer_id_from (&identity, &frames->frame[0]);
    broker_worker_t *worker = zhashx_lookup (self->workers, &identity);
    if (command == MDP_READY) {
        s_on_ready (self, &identity, worker, frames);
        return;
    }
    if (!worker) {
        if (command != MDP_DISCONNECT) {
            //  Typically a worker of a broker that restarted: DISCONNECT
            //  makes it register again.
            s_malformed (self, BROKER_MALFORMED_UNKNOWN_WORKER, "command from unknown worker");
            broker__send_command (self, &identity, MDP_DISCONNECT);
        }
        return;
    }
    worker->expiry_ms = mesh_mono_ms () + (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
    if (command == MDP_REPLY)
        s_on_reply (self, worker, frames);
    else
    if (command == MDP_DISCONNECT)
        broker__worker_delete (self, worker, "said DISCONNECT");
    else
    if (command == MDP_REQUEST)
        s_malformed (self, BROKER_MALFORMED_COMMAND, "worker sent REQUEST");
    //  HEARTBEAT: the expiry refresh above is all it takes
}

//  One message on the ROUTER.
static void
s_on_router (broker_t *self, mdp_frames_t *frames)
{
    broker_peer_id_t unused;
    if (frames->count < 3 || !broker__peer_id_from (&unused, &frames->frame[0])) {
        s_malformed (self, BROKER_MALFORMED_FRAMES, "message too short");
        return;
    }
    if (!mdp_frame_empty (&frames->frame[1])) {
        s_malformed (self, BROKER_MALFORMED_HEADER, "no empty delimiter frame");
        return;
    }
    if (mdp_frame_eq (&frames->frame[2], MDP_CLIENT))
        s_on_client (self, frames);
    else
    if (mdp_frame_eq (&frames->frame[2], MDP_WORKER))
        s_on_worker (self, frames);
    else
        s_malformed (self, BROKER_MALFORMED_HEADER, "unknown protocol header");
}

//  Drop the workers silent past their expiry and, when `beat`, heartbeat
//  the others. The scan visits every worker, busy or idle: a dead busy
//  worker holds requests.
static void
s_heartbeat (broker_t *self, bool beat)
{
    int64_t now_ms = mesh_mono_ms ();
    zlistx_t *dead = zlistx_new ();
    for (broker_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers)) {
        if (worker->expiry_ms <= now_ms
            || (beat
                && broker__send_command (self, &worker->identity, MDP_HEARTBEAT)
                       == MESH_EUNAVAIL))
            zlistx_add_end (dead, worker);
    }
    for (broker_worker_t *worker = zlistx_first (dead); worker; worker = zlistx_next (dead)) {
        broker_service_t *service = worker->service;
        mesh_counter_inc (self->metrics.workers_expired);
        broker__worker_delete (self, worker, "missed heartbeats");
        broker__service_reap (self, service);
    }
    zlistx_destroy (&dead);
}

//  With CURVE: whether the first part of a message on the event proxy may
//  pass. Events (from XSUB) need a `publish` prefix over their topic.
//  Subscriptions (from XPUB, byte 1 or 0 then the topic) need a `subscribe`
//  prefix; an allowed one is applied to the XPUB by hand (XPUB_MANUAL) for
//  the pipe it came from, which is the last one read, so before the next
//  read. Unsubscriptions libzmq makes itself when a subscriber leaves
//  carry no properties: they pass (they only undo applied ones).
static bool
s_event_allowed (broker_t *self, void *from, zmq_msg_t *part)
{
    const uint8_t *data = zmq_msg_data (part);
    size_t size = zmq_msg_size (part);
    if (from == self->xsub)
        return broker_auth_allows (self->auth, part, BROKER_REFUSAL_PUBLISH, data, size);
    if (size == 0 || data[0] > 1)
        return true;            //  Not a subscription: XSUB ignores it
    if (!zmq_msg_gets (part, BROKER_AUTH_USER_ID))
        return true;
    if (!broker_auth_allows (self->auth, part, BROKER_REFUSAL_SUBSCRIBE, data + 1, size - 1))
        return false;
    zmq_setsockopt (self->xpub, data[0]? ZMQ_SUBSCRIBE: ZMQ_UNSUBSCRIBE, data + 1, size - 1);
    return true;
}

//  Forward whole multipart messages from `from` to `to`, refused ones
//  dropped (CURVE only). Returns how many were forwarded.
static uint64_t
s_forward (broker_t *self, void *from, void *to)
{
    uint64_t messages = 0;
    for (int batch = 0; batch < S_BATCH; batch++) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, from, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            break;
        }
        bool pass = !self->auth || s_event_allowed (self, from, &part);
        while (true) {
            bool more = zmq_msg_more (&part);
            //  XPUB drops at its high-water mark by design (PUB/SUB is the
            //  fast path; subscribers catch up through events.list)
            if (!pass || zmq_msg_send (&part, to, (more? ZMQ_SNDMORE: 0) | ZMQ_DONTWAIT) < 0)
                zmq_msg_close (&part);
            if (!more)
                break;
            zmq_msg_init (&part);
            if (zmq_msg_recv (&part, from, 0) < 0) {
                zmq_msg_close (&part);
                break;
            }
        }
        messages += pass;
    }
    return messages;
}

//  Shutdown: answer queued requests, fail held ones, DISCONNECT workers.
static void
s_shutdown (broker_t *self)
{
    for (broker_service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services))
        while (service->queue_head) {
            broker_request_t *request = service->queue_head;
            service->queue_head = request->next;
            broker__answer_error (self, service, &request->ticket, MESH_CODE_UNAVAILABLE,
                                  "the broker is shutting down");
            broker__request_free (self, request);
        }
    for (broker_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers)) {
        for (int slot = 0; slot < worker->credit; slot++)
            if (worker->slot_used[slot])
                broker__answer_error (self, worker->service, &worker->slots[slot],
                                      MESH_CODE_UNAVAILABLE, "the broker is shutting down");
        broker__send_command (self, &worker->identity, MDP_DISCONNECT);
    }
    //  Give those last messages a moment to leave before the socket closes
    int linger = 1000;
    zmq_setsockopt (self->router, ZMQ_LINGER, &linger, sizeof linger);
}

//  --------------------------------------------------------------------------
//  Serve until stop_fd becomes readable.
int
broker_run (broker_t *self, int stop_fd)
{
    assert (self);
    mesh_log_kv (MESH_LOG_INFO, "broker serving", "endpoint", self->endpoint, "bind",
                 self->cfg.bind, "events_xsub",
                 self->cfg.xsub_bind, "events_xpub", self->cfg.xpub_bind, NULL);
    int64_t heartbeat_at_ms = mesh_mono_ms () + self->cfg.heartbeat_ms;
    //  Expiry is checked ten times per heartbeat, not once: a silent worker
    //  (stopped, frozen, cut off) is dropped within heartbeat x liveness +
    //  a tenth of a heartbeat, and what it holds is answered that soon
    int64_t expiry_scan_ms = self->cfg.heartbeat_ms / 10 > 10 ? self->cfg.heartbeat_ms / 10 : 10;
    int64_t expiry_scan_at_ms = mesh_mono_ms () + expiry_scan_ms;
    int64_t queue_scan_at_ms = 0;
    zmq_pollitem_t items[4 + 1 + BROKER_AUTH_MAX_MONITORS] = {
        { self->router, 0, ZMQ_POLLIN, 0 },
        { NULL, stop_fd, ZMQ_POLLIN, 0 },
        { self->xsub, self->xsub? 0: -1, ZMQ_POLLIN, 0 },   //  poll () skips fd -1
        { self->xpub, self->xpub? 0: -1, ZMQ_POLLIN, 0 },
    };
    //  The ZAP handler and monitors follow the event proxy's items
    int auth_first = 4;
    size_t auth_count = self->auth? broker_auth_poll_items (self->auth, &items[auth_first],
                                                            1 + BROKER_AUTH_MAX_MONITORS)
                                  : 0;
    int item_count = self->xsub || auth_count? 4 + (int) auth_count: 2;
    //  mesh_poll: a socket the last turn neither read (it had nothing) nor
    //  sent on is settled; none is before the first turn
    uint32_t settled = 0;
    while (true) {
        int64_t now_ms = mesh_mono_ms ();
        int64_t wait_ms = heartbeat_at_ms - now_ms;
        if (zhashx_size (self->workers) && expiry_scan_at_ms - now_ms < wait_ms)
            wait_ms = expiry_scan_at_ms - now_ms;
        if (self->queued_total && queue_scan_at_ms - now_ms < wait_ms)
            wait_ms = queue_scan_at_ms - now_ms;
        if (mesh_poll (items, item_count, (long) (wait_ms > 0? wait_ms: 0), settled) < 0) {
            if (errno == EINTR)
                continue;
            mesh_log_kv (MESH_LOG_ERROR, "poll failed", "error", zmq_strerror (errno), NULL);
            return MESH_EIO;
        }
        if (items[1].revents & ZMQ_POLLIN)
            break;
        self->now_us = mesh_mono_us ();     //  One clock read per wake-up
        if (items[0].revents & ZMQ_POLLIN)
            for (int batch = 0; batch < S_BATCH; batch++) {
                mdp_frames_t frames;
                if (mdp_frames_recv (&frames, self->router, ZMQ_DONTWAIT))
                    break;
                s_on_router (self, &frames);
                mdp_frames_close (&frames);
            }
        if (auth_count)
            broker_auth_on_poll (self->auth, &items[auth_first], auth_count);
        if (self->xsub && (items[2].revents & ZMQ_POLLIN))
            mesh_counter_add (self->metrics.events_forwarded,
                              s_forward (self, self->xsub, self->xpub));
        if (self->xsub && (items[3].revents & ZMQ_POLLIN))
            mesh_counter_add (self->metrics.subscriptions,
                              s_forward (self, self->xpub, self->xsub));

        now_ms = mesh_mono_ms ();
        bool timers_ran = false;    //  They send on the ROUTER
        if (now_ms >= heartbeat_at_ms) {
            s_heartbeat (self, true);
            heartbeat_at_ms = now_ms + self->cfg.heartbeat_ms;
            expiry_scan_at_ms = now_ms + expiry_scan_ms;
            timers_ran = true;
        }
        else if (now_ms >= expiry_scan_at_ms) {
            s_heartbeat (self, false);
            expiry_scan_at_ms = now_ms + expiry_scan_ms;
            timers_ran = true;
        }
        if (self->queued_total && now_ms >= queue_scan_at_ms) {
            broker__expire_queues (self);
            queue_scan_at_ms = now_ms + S_QUEUE_SCAN_MS;
            timers_ran = true;
        }
        //  The event proxy reads one of its sockets and sends on the other
        bool proxy_used = (items[2].revents | items[3].revents) & ZMQ_POLLIN;
        settled = mesh_poll_untouched (items, item_count,
                                       (timers_ran? UINT32_C (1): 0)
                                           | (proxy_used? UINT32_C (3) << 2: 0));
    }
    mesh_log_kv (MESH_LOG_INFO, "broker stopping: DISCONNECT to every worker", NULL);
    s_shutdown (self);
    return 0;
}
