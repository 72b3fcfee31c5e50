/*  =========================================================================
    broker - Majordomo (MDP/0.1 + MMI) broker and the event proxy
    The hot path moves zmq_msg_t frames from one socket to the other without
    copying bodies and without allocating: peers are found in hashes keyed
    by their raw routing ids, in-flight requests live in per-worker slot
    arrays, and queued requests come from a free list. The broker peeks at
    each request body for the envelope's id and deadline (so it can answer
    for the mesh) and passes bodies that are not envelopes through untouched.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "broker.h"
#include "broker_metrics.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PEER_ID_MAX 255           //  ZeroMQ routing ids are 1..255 bytes
#define S_BATCH 256                 //  Messages taken per socket per wake-up
#define S_QUEUE_SCAN_MS 20          //  Queue deadline check interval while non-empty
#define S_REQUEST_POOL_MAX 4096     //  Queued-request records kept for reuse

//  A peer's routing id, copied out of its frame.
typedef struct {
    uint8_t len;
    uint8_t bytes[S_PEER_ID_MAX];
} s_peer_id_t;

//  What the broker keeps of a request to answer for it later.
typedef struct {
    s_peer_id_t client;         //  Where the reply goes
    uint8_t id_len;             //  Envelope id length
    bool enveloped;             //  Body was an envelope (id valid)
    char id[MESH_ENVELOPE_MAX_ID];  //  Envelope id, not NUL-terminated
    int64_t received_us;        //  Arrival, monotonic
} s_ticket_t;

//  A request waiting in a service queue; records are pooled.
typedef struct s_request_s {
    struct s_request_s *next;   //  Queue order, or free list
    s_ticket_t ticket;          //  Who and which request
    uint64_t deadline_ms;       //  Unix ms after which it is answered for
    int body_count;             //  Frames in body
    zmq_msg_t body[MDP_MAX_FRAMES]; //  Body frames, owned
} s_request_t;

typedef struct s_service_s s_service_t;

//  A registered worker.
typedef struct s_worker_s {
    s_peer_id_t identity;       //  Routing id; also the hash key
    s_service_t *service;       //  Service it serves
    int credit;                 //  Requests it may hold
    int in_flight;              //  Requests it holds
    s_ticket_t *slots;          //  [credit] tickets of held requests
    bool *slot_used;            //  [credit] which slots hold a request
    int64_t expiry_ms;          //  Dead when silent past this (monotonic)
    struct s_worker_s *prev;    //  Ready list (spare credit), LRU order
    struct s_worker_s *next;
    bool listed;                //  In the ready list
} s_worker_t;

//  A service: its ready workers and its queue.
struct s_service_s {
    char name[MDP_MAX_SERVICE_NAME + 1];    //  NUL-terminated; the hash key
    size_t name_len;            //  Bytes in name
    s_worker_t *ready_head;     //  Least recently used worker with spare credit
    s_worker_t *ready_tail;
    s_request_t *queue_head;    //  Oldest waiting request
    s_request_t *queue_tail;
    size_t queued;              //  Requests in the queue
    size_t workers;             //  Workers registered
    size_t credit_total;        //  Sum of their credit
    size_t in_flight;           //  Requests they hold
    broker_service_metrics_t *metrics;  //  Own series once a worker registered
    broker_service_metrics_t own_metrics;
};

struct broker_s {
    broker_cfg_t cfg;           //  Copied settings
    void *context;              //  ZeroMQ context, owned
    void *router;               //  Clients and workers
    void *xsub;                 //  Publishers connect here, or NULL
    void *xpub;                 //  Subscribers connect here, or NULL
    char endpoint[256];         //  ROUTER endpoint actually bound
    zhashx_t *services;         //  name -> s_service_t, owns values
    zhashx_t *workers;          //  s_peer_id_t -> s_worker_t, owns values
    s_request_t *request_pool;  //  Free queued-request records
    size_t request_pool_size;   //  Records in the pool
    size_t queued_total;        //  Requests queued over all services
    int64_t now_us;             //  Monotonic time of the current wake-up
    s_service_t *last_service;  //  Service of the previous request (one-entry cache)
    msgpack_sbuffer buffer;     //  Builds error envelopes and MMI replies
    broker_metrics_t metrics;   //  Process-wide series
    broker_service_metrics_t unregistered_metrics;  //  Services that never had a worker
};

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

//  Hash and compare routing ids (worker hash keys).
static size_t
s_peer_id_hash (const void *key)
{
    const s_peer_id_t *id = key;
    size_t hash = 2166136261u;  //  FNV-1a
    for (int index = 0; index < id->len; index++)
        hash = (hash ^ id->bytes[index]) * 16777619u;
    return hash;
}

static int
s_peer_id_compare (const void *a, const void *b)
{
    const s_peer_id_t *left = a, *right = b;
    if (left->len != right->len)
        return left->len < right->len? -1: 1;
    return memcmp (left->bytes, right->bytes, left->len);
}

//  Copy a routing-id frame into *id. Returns false when it cannot be one.
static bool
s_peer_id_from (s_peer_id_t *id, zmq_msg_t *frame)
{
    size_t size = zmq_msg_size (frame);
    if (size == 0 || size > S_PEER_ID_MAX)
        return false;
    id->len = (uint8_t) size;
    memcpy (id->bytes, zmq_msg_data (frame), size);
    return true;
}

//  Hex of a routing id for logs.
static void
s_peer_id_hex (const s_peer_id_t *id, char *hex, size_t size)
{
    size_t out = 0;
    for (int index = 0; index < id->len && out + 3 <= size; index++)
        out += (size_t) snprintf (hex + out, size - out, "%02x", id->bytes[index]);
    hex[out] = '\0';
}

static void
s_worker_destroy (void **item_p)
{
    s_worker_t *worker = *item_p;
    if (worker) {
        free (worker->slots);
        free (worker->slot_used);
        free (worker);
        *item_p = NULL;
    }
}

static void
s_service_destroy (void **item_p)
{
    s_service_t *service = *item_p;
    if (service) {
        while (service->queue_head) {
            s_request_t *request = service->queue_head;
            service->queue_head = request->next;
            for (int index = 0; index < request->body_count; index++)
                zmq_msg_close (&request->body[index]);
            free (request);
        }
        free (service);
        *item_p = NULL;
    }
}

//  Bind `socket` to `endpoint` with the options every broker socket gets.
static int
s_bind (void *socket, const char *endpoint, const char *what)
{
    int linger = 0, hwm = 100000;
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind (socket, endpoint) != 0) {
        mesh_log_kv (MESH_LOG_ERROR, "cannot bind", "socket", what, "endpoint", endpoint,
                     "error", zmq_strerror (errno), NULL);
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
    zhashx_set_destructor (self->services, s_service_destroy);
    self->workers = zhashx_new ();
    zhashx_set_key_duplicator (self->workers, NULL);
    zhashx_set_key_destructor (self->workers, NULL);
    zhashx_set_key_hasher (self->workers, s_peer_id_hash);
    zhashx_set_key_comparator (self->workers, s_peer_id_compare);
    zhashx_set_destructor (self->workers, s_worker_destroy);
    msgpack_sbuffer_init (&self->buffer);
    broker_metrics_init (&self->metrics, cfg->metrics);
    broker_service_metrics_init (&self->unregistered_metrics, cfg->metrics, "_unregistered");

    *err = MESH_EIO;
    self->context = zmq_ctx_new ();
    if (!self->context)
        goto fail;
    self->router = zmq_socket (self->context, ZMQ_ROUTER);
    if (!self->router)
        goto fail;
    //  Mandatory: a send to a gone peer fails (EHOSTUNREACH) instead of
    //  vanishing, so we notice. Handover: a peer reconnecting with the same
    //  routing id takes over the old pipe.
    int on = 1;
    int64_t max_frame = (int64_t) cfg->max_frame;
    zmq_setsockopt (self->router, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    zmq_setsockopt (self->router, ZMQ_ROUTER_HANDOVER, &on, sizeof on);
    zmq_setsockopt (self->router, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
    if (s_bind (self->router, cfg->bind, "router"))
        goto fail;
    size_t endpoint_size = sizeof self->endpoint;
    zmq_getsockopt (self->router, ZMQ_LAST_ENDPOINT, self->endpoint, &endpoint_size);
    if (cfg->xsub_bind) {
        self->xsub = zmq_socket (self->context, ZMQ_XSUB);
        self->xpub = zmq_socket (self->context, ZMQ_XPUB);
        if (!self->xsub || !self->xpub)
            goto fail;
        zmq_setsockopt (self->xsub, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
        zmq_setsockopt (self->xpub, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
        if (s_bind (self->xsub, cfg->xsub_bind, "events-xsub")
            || s_bind (self->xpub, cfg->xpub_bind, "events-xpub"))
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
            s_request_t *request = self->request_pool;
            self->request_pool = request->next;
            free (request);
        }
        if (self->router)
            zmq_close (self->router);
        if (self->xsub)
            zmq_close (self->xsub);
        if (self->xpub)
            zmq_close (self->xpub);
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

//  Send a client reply: client, "", MDPC01, service, body bytes. Returns 0
//  or MESH_EUNAVAIL when the client is gone.
static int
s_send_client (broker_t *self, const s_peer_id_t *client, const char *service,
               const void *body, size_t body_size)
{
    const void *parts[] = { client->bytes, "", MDP_CLIENT, service, body };
    size_t sizes[] = { client->len, 0, strlen (MDP_CLIENT), strlen (service), body_size };
    return mdp_send_parts (self->router, ZMQ_DONTWAIT, 5, parts, sizes);
}

//  Answer a request on the mesh's behalf with an error envelope. Plain RFC 7
//  requests (no envelope) get one too, with an empty id: better than silence.
static void
s_answer_error (broker_t *self, s_service_t *service, const s_ticket_t *ticket,
                mesh_code_t code, const char *message)
{
    msgpack_sbuffer_clear (&self->buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &self->buffer, msgpack_sbuffer_write);
    mesh_envelope_pack_error (&packer, ticket->enveloped? ticket->id: NULL,
                              ticket->enveloped? ticket->id_len: 0, code, message);
    if (s_send_client (self, &ticket->client, service->name, self->buffer.data,
                       self->buffer.size))
        mesh_counter_inc (service->metrics->client_gone);
}

//  Take a queued-request record from the pool.
static s_request_t *
s_request_new (broker_t *self)
{
    s_request_t *request = self->request_pool;
    if (request) {
        self->request_pool = request->next;
        self->request_pool_size--;
    }
    else
        request = mesh_alloc (sizeof (s_request_t));
    request->next = NULL;
    request->body_count = 0;
    return request;
}

//  Return a record to the pool; closes any body frames it still holds.
static void
s_request_free (broker_t *self, s_request_t *request)
{
    for (int index = 0; index < request->body_count; index++)
        zmq_msg_close (&request->body[index]);
    request->body_count = 0;
    if (self->request_pool_size < S_REQUEST_POOL_MAX) {
        request->next = self->request_pool;
        self->request_pool = request;
        self->request_pool_size++;
    }
    else
        free (request);
}

//  Ready list: append at the tail (most recently used).
static void
s_ready_append (s_service_t *service, s_worker_t *worker)
{
    assert (!worker->listed);
    worker->prev = service->ready_tail;
    worker->next = NULL;
    if (service->ready_tail)
        service->ready_tail->next = worker;
    else
        service->ready_head = worker;
    service->ready_tail = worker;
    worker->listed = true;
}

static void
s_ready_remove (s_service_t *service, s_worker_t *worker)
{
    if (!worker->listed)
        return;
    if (worker->prev)
        worker->prev->next = worker->next;
    else
        service->ready_head = worker->next;
    if (worker->next)
        worker->next->prev = worker->prev;
    else
        service->ready_tail = worker->prev;
    worker->prev = worker->next = NULL;
    worker->listed = false;
}

//  Forget a worker: every request it held is answered unavailable.
static void
s_worker_delete (broker_t *self, s_worker_t *worker, const char *why)
{
    s_service_t *service = worker->service;
    char hex[2 * S_PEER_ID_MAX + 1];
    s_peer_id_hex (&worker->identity, hex, sizeof hex);
    char held[16];
    snprintf (held, sizeof held, "%d", worker->in_flight);
    mesh_log_kv (MESH_LOG_INFO, "worker removed", "service", service->name, "worker", hex,
                 "reason", why, "requests_held", held, NULL);
    for (int slot = 0; slot < worker->credit; slot++)
        if (worker->slot_used[slot]) {
            s_answer_error (self, service, &worker->slots[slot], MESH_CODE_UNAVAILABLE,
                            "the worker handling this request died");
            mesh_counter_inc (service->metrics->worker_lost);
        }
    s_ready_remove (service, worker);
    service->workers--;
    service->credit_total -= (size_t) worker->credit;
    service->in_flight -= (size_t) worker->in_flight;
    mesh_gauge_set (service->metrics->workers, (double) service->workers);
    zhashx_delete (self->workers, &worker->identity);   //  Frees worker
}

//  Send REQUEST to `worker`: identity, "", MDPW01, 0x02, client, "", body.
//  Body frames move (zero copy) and are consumed on success; on failure
//  they are left with the caller. Returns 0, MESH_EUNAVAIL (worker gone)
//  or MESH_EBUSY (its queue is full).
static int
s_send_request (broker_t *self, s_worker_t *worker, const s_ticket_t *ticket, zmq_msg_t *body,
                int body_count)
{
    unsigned char command = MDP_REQUEST;
    const void *parts[] = { worker->identity.bytes, "", MDP_WORKER, &command,
                            ticket->client.bytes, "" };
    size_t sizes[] = { worker->identity.len, 0, strlen (MDP_WORKER), 1, ticket->client.len, 0 };
    for (int index = 0; index < 6; index++)
        //  Only the first frame can be refused; then the message is committed
        if (zmq_send (self->router, parts[index], sizes[index], ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0)
            return errno == EHOSTUNREACH? MESH_EUNAVAIL: MESH_EBUSY;
    for (int index = 0; index < body_count; index++)
        zmq_msg_send (&body[index], self->router, index + 1 < body_count? ZMQ_SNDMORE: 0);
    return 0;
}

//  Hand a request to the least recently used worker with spare credit.
//  Returns 0 when dispatched (body consumed), MESH_ENOTFOUND when no worker
//  can take it (body untouched).
static int
s_dispatch (broker_t *self, s_service_t *service, const s_ticket_t *ticket, zmq_msg_t *body,
            int body_count)
{
    while (service->ready_head) {
        s_worker_t *worker = service->ready_head;
        int rc = s_send_request (self, worker, ticket, body, body_count);
        if (rc) {
            //  Gone or wedged: it can hold nothing more. Its held requests
            //  are answered; try the next worker.
            s_worker_delete (self, worker, rc == MESH_EUNAVAIL? "unreachable": "send queue full");
            continue;
        }
        int slot = 0;
        while (worker->slot_used[slot])
            slot++;
        worker->slot_used[slot] = true;
        worker->slots[slot] = *ticket;
        worker->in_flight++;
        service->in_flight++;
        //  Round robin among workers with spare credit: to the back of the line
        s_ready_remove (service, worker);
        if (worker->in_flight < worker->credit)
            s_ready_append (service, worker);
        mesh_histogram_observe (service->metrics->time_in_broker,
                                (double) (self->now_us - ticket->received_us) / 1e6);
        return 0;
    }
    return MESH_ENOTFOUND;
}

//  Move queued requests to ready workers while both exist.
static void
s_drain_queue (broker_t *self, s_service_t *service)
{
    while (service->queue_head && service->ready_head) {
        s_request_t *request = service->queue_head;
        if (s_dispatch (self, service, &request->ticket, request->body, request->body_count))
            break;
        request->body_count = 0;    //  Frames went to the worker
        service->queue_head = request->next;
        if (!service->queue_head)
            service->queue_tail = NULL;
        service->queued--;
        self->queued_total--;
        s_request_free (self, request);
    }
    mesh_gauge_set (service->metrics->queue_depth, (double) service->queued);
}

//  Look up a service by name; create it when `create` and under the limit.
static s_service_t *
s_service_require (broker_t *self, const void *name, size_t len, bool create)
{
    //  Traffic comes in runs for one service: skip the hash for those
    s_service_t *service = self->last_service;
    if (service && service->name_len == len && memcmp (service->name, name, len) == 0)
        return service;
    char key[MDP_MAX_SERVICE_NAME + 1];
    memcpy (key, name, len);
    key[len] = '\0';
    service = zhashx_lookup (self->services, key);
    if (service)
        self->last_service = service;
    if (service || !create || zhashx_size (self->services) >= self->cfg.max_services)
        return service;
    service = mesh_alloc (sizeof (s_service_t));
    memcpy (service->name, key, len + 1);
    service->name_len = len;
    service->metrics = &self->unregistered_metrics;
    zhashx_insert (self->services, service->name, service);
    mesh_gauge_set (self->metrics.services, (double) zhashx_size (self->services));
    return service;
}

//  Forget a service nobody serves or waits for, unless it ever had a
//  worker (its metric series exist; it is likely to come back).
static void
s_service_reap (broker_t *self, s_service_t *service)
{
    if (service->workers == 0 && service->queued == 0
        && service->metrics == &self->unregistered_metrics) {
        if (self->last_service == service)
            self->last_service = NULL;
        zhashx_delete (self->services, service->name);
        mesh_gauge_set (self->metrics.services, (double) zhashx_size (self->services));
    }
}

//  Answer an MMI query: mmi.service, mmi.services, anything else 501.
static void
s_on_mmi (broker_t *self, const s_peer_id_t *client, zmq_msg_t *service_frame,
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
        s_service_t *service = body && mdp_service_name_valid (zmq_msg_data (body), body_size)
                                 ? s_service_require (self, zmq_msg_data (body), body_size, false)
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
        for (s_service_t *service = zhashx_first (self->services); service;
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
    s_send_client (self, client, name, body, body_size);
}

//  A client request: client, "", MDPC01, service, body...
static void
s_on_client (broker_t *self, mdp_frames_t *frames)
{
    if (frames->count < 5 || frames->overflow) {
        s_malformed (self, BROKER_MALFORMED_FRAMES, "client request without service or body");
        return;
    }
    s_ticket_t ticket;
    s_peer_id_from (&ticket.client, &frames->frame[0]);
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
    mesh_slice_t id = { NULL, 0 };
    uint64_t deadline_ms = 0;
    ticket.enveloped = body_count == 1
                    && mesh_envelope_peek (zmq_msg_data (body), zmq_msg_size (body), &id,
                                           &deadline_ms)
                           == 0;
    ticket.id_len = 0;
    if (ticket.enveloped) {
        ticket.id_len = (uint8_t) id.len;
        memcpy (ticket.id, id.ptr, id.len);
    }
    else
        mesh_counter_inc (self->metrics.opaque_bodies);

    s_service_t *service =
        s_service_require (self, zmq_msg_data (service_frame), name_len, true);
    if (!service) {
        s_service_t overflow = { .metrics = &self->unregistered_metrics };
        memcpy (overflow.name, zmq_msg_data (service_frame), name_len);
        overflow.name[name_len] = '\0';
        s_answer_error (self, &overflow, &ticket, MESH_CODE_UNAVAILABLE,
                        "the broker knows too many services to track another");
        mesh_counter_inc (overflow.metrics->no_worker);
        return;
    }
    if (s_dispatch (self, service, &ticket, body, body_count) == 0) {
        frames->count = 4;      //  Body frames were sent (moved)
        return;
    }
    if (service->queued >= self->cfg.queue_max) {
        s_answer_error (self, service, &ticket, MESH_CODE_RESOURCE_EXHAUSTED,
                        "the service's queue is full");
        mesh_counter_inc (service->metrics->queue_full);
        return;
    }
    s_request_t *request = s_request_new (self);
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

//  Send a bare worker command (HEARTBEAT, DISCONNECT) to `identity`.
static int
s_send_command (broker_t *self, const s_peer_id_t *identity, mdp_command_t command)
{
    unsigned char byte = (unsigned char) command;
    const void *parts[] = { identity->bytes, "", MDP_WORKER, &byte };
    size_t sizes[] = { identity->len, 0, strlen (MDP_WORKER), 1 };
    return mdp_send_parts (self->router, ZMQ_DONTWAIT, 4, parts, sizes);
}

//  READY: identity, "", MDPW01, 0x01, service [, credit]
static void
s_on_ready (broker_t *self, s_peer_id_t *identity, s_worker_t *known, mdp_frames_t *frames)
{
    if (known)                  //  Re-registration (same routing id): start over
        s_worker_delete (self, known, "registered again");
    if (frames->count < 5 || frames->count > 6) {
        s_malformed (self, BROKER_MALFORMED_FRAMES, "READY without service");
        s_send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    zmq_msg_t *service_frame = &frames->frame[4];
    size_t name_len = zmq_msg_size (service_frame);
    if (!mdp_service_name_valid (zmq_msg_data (service_frame), name_len)
        || (name_len >= 4 && memcmp (zmq_msg_data (service_frame), "mmi.", 4) == 0)) {
        s_malformed (self, BROKER_MALFORMED_SERVICE, "READY for an unusable service name");
        s_send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    int credit = frames->count == 6? mdp_frame_credit (&frames->frame[5]): 1;
    if (credit == 0) {
        s_malformed (self, BROKER_MALFORMED_CREDIT, "READY credit is not 1..1000");
        s_send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    s_service_t *service = s_service_require (self, zmq_msg_data (service_frame), name_len, true);
    if (!service) {
        mesh_log_kv (MESH_LOG_WARN, "worker refused: too many services", NULL);
        s_send_command (self, identity, MDP_DISCONNECT);
        return;
    }
    if (service->metrics == &self->unregistered_metrics) {
        broker_service_metrics_init (&service->own_metrics, self->cfg.metrics, service->name);
        service->metrics = &service->own_metrics;
    }
    s_worker_t *worker = mesh_alloc (sizeof (s_worker_t));
    worker->identity = *identity;
    worker->service = service;
    worker->credit = credit;
    worker->slots = mesh_alloc ((size_t) credit * sizeof (s_ticket_t));
    worker->slot_used = mesh_alloc ((size_t) credit * sizeof (bool));
    worker->expiry_ms = mesh_mono_ms () + (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
    zhashx_insert (self->workers, &worker->identity, worker);
    service->workers++;
    service->credit_total += (size_t) credit;
    mesh_gauge_set (service->metrics->workers, (double) service->workers);
    s_ready_append (service, worker);
    char hex[2 * S_PEER_ID_MAX + 1], credit_text[8];
    s_peer_id_hex (identity, hex, sizeof hex);
    snprintf (credit_text, sizeof credit_text, "%d", credit);
    mesh_log_kv (MESH_LOG_INFO, "worker registered", "service", service->name, "worker", hex,
                 "credit", credit_text, NULL);
    s_drain_queue (self, service);
}

//  Find the slot of `worker` holding the request this REPLY answers: the
//  client must match; when the client has several requests at this worker
//  the envelope id decides. Returns the slot or -1.
static int
s_find_slot (broker_t *self, s_worker_t *worker, const s_peer_id_t *client, zmq_msg_t *body,
             int body_count)
{
    int first = -1, matches = 0;
    for (int slot = 0; slot < worker->credit; slot++)
        if (worker->slot_used[slot] && worker->slots[slot].client.len == client->len
            && memcmp (worker->slots[slot].client.bytes, client->bytes, client->len) == 0) {
            if (first < 0)
                first = slot;
            matches++;
        }
    if (matches <= 1)
        return first;
    mesh_slice_t id;
    uint64_t deadline_ms;
    if (body_count != 1
        || mesh_envelope_peek (zmq_msg_data (body), zmq_msg_size (body), &id, &deadline_ms)
               != 0)
        return first;
    for (int slot = first; slot < worker->credit; slot++) {
        s_ticket_t *ticket = &worker->slots[slot];
        if (worker->slot_used[slot] && ticket->client.len == client->len
            && memcmp (ticket->client.bytes, client->bytes, client->len) == 0
            && ticket->enveloped && ticket->id_len == id.len
            && memcmp (ticket->id, id.ptr, id.len) == 0)
            return slot;
    }
    return first;
}

//  REPLY: identity, "", MDPW01, 0x03, client, "", body...
static void
s_on_reply (broker_t *self, s_worker_t *worker, mdp_frames_t *frames)
{
    s_peer_id_t client;
    if (frames->count < 7 || frames->overflow || !s_peer_id_from (&client, &frames->frame[4])
        || !mdp_frame_empty (&frames->frame[5])) {
        s_malformed (self, BROKER_MALFORMED_FRAMES, "REPLY without client address or body");
        return;
    }
    zmq_msg_t *body = &frames->frame[6];
    int body_count = frames->count - 6;
    int slot = s_find_slot (self, worker, &client, body, body_count);
    if (slot < 0) {
        s_malformed (self, BROKER_MALFORMED_REPLY, "REPLY for a request the worker does not hold");
        return;
    }
    s_service_t *service = worker->service;
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
    //  The returned credit goes to the queue first, else back in line
    if (!worker->listed) {
        s_ready_append (service, worker);
        s_drain_queue (self, service);
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
    s_peer_id_t identity;
    s_peer_id_from (&identity, &frames->frame[0]);
    s_worker_t *worker = zhashx_lookup (self->workers, &identity);
    if (command == MDP_READY) {
        s_on_ready (self, &identity, worker, frames);
        return;
    }
    if (!worker) {
        if (command != MDP_DISCONNECT) {
            //  Typically a worker of a broker that restarted: DISCONNECT
            //  makes it register again.
            s_malformed (self, BROKER_MALFORMED_UNKNOWN_WORKER, "command from unknown worker");
            s_send_command (self, &identity, MDP_DISCONNECT);
        }
        return;
    }
    worker->expiry_ms = mesh_mono_ms () + (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
    if (command == MDP_REPLY)
        s_on_reply (self, worker, frames);
    else
    if (command == MDP_DISCONNECT)
        s_worker_delete (self, worker, "said DISCONNECT");
    else
    if (command == MDP_REQUEST)
        s_malformed (self, BROKER_MALFORMED_COMMAND, "worker sent REQUEST");
    //  HEARTBEAT: the expiry refresh above is all it takes
}

//  One message on the ROUTER.
static void
s_on_router (broker_t *self, mdp_frames_t *frames)
{
    s_peer_id_t unused;
    if (frames->count < 3 || !s_peer_id_from (&unused, &frames->frame[0])) {
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

//  Heartbeat every worker; drop those silent past their expiry. The scan
//  visits every worker, busy or idle: a dead busy worker holds requests.
static void
s_heartbeat (broker_t *self)
{
    int64_t now_ms = mesh_mono_ms ();
    zlistx_t *dead = zlistx_new ();
    for (s_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers)) {
        if (worker->expiry_ms <= now_ms
            || s_send_command (self, &worker->identity, MDP_HEARTBEAT) == MESH_EUNAVAIL)
            zlistx_add_end (dead, worker);
    }
    for (s_worker_t *worker = zlistx_first (dead); worker; worker = zlistx_next (dead)) {
        s_service_t *service = worker->service;
        mesh_counter_inc (self->metrics.workers_expired);
        s_worker_delete (self, worker, "missed heartbeats");
        s_service_reap (self, service);
    }
    zlistx_destroy (&dead);
}

//  Answer every queued request whose deadline has passed.
static void
s_expire_queues (broker_t *self)
{
    uint64_t now_ms = mesh_wall_ms ();
    zlistx_t *idle = NULL;
    for (s_service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services)) {
        s_request_t **link = &service->queue_head;
        s_request_t *previous = NULL;
        while (*link) {
            s_request_t *request = *link;
            if (request->deadline_ms > now_ms) {
                previous = request;
                link = &request->next;
                continue;
            }
            *link = request->next;
            if (service->queue_tail == request)
                service->queue_tail = previous;
            service->queued--;
            self->queued_total--;
            if (service->workers) {
                s_answer_error (self, service, &request->ticket, MESH_CODE_DEADLINE_EXCEEDED,
                                "the request expired waiting for a worker");
                mesh_counter_inc (service->metrics->expired);
            }
            else {
                s_answer_error (self, service, &request->ticket, MESH_CODE_UNAVAILABLE,
                                "no worker for this service before the deadline");
                mesh_counter_inc (service->metrics->no_worker);
            }
            s_request_free (self, request);
        }
        mesh_gauge_set (service->metrics->queue_depth, (double) service->queued);
        if (service->queued == 0 && service->workers == 0) {
            if (!idle)
                idle = zlistx_new ();
            zlistx_add_end (idle, service);
        }
    }
    if (idle) {
        for (s_service_t *service = zlistx_first (idle); service; service = zlistx_next (idle))
            s_service_reap (self, service);
        zlistx_destroy (&idle);
    }
}

//  Forward whole multipart messages from `from` to `to`. Returns how many.
static uint64_t
s_forward (void *from, void *to)
{
    uint64_t messages = 0;
    for (int batch = 0; batch < S_BATCH; batch++) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, from, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            break;
        }
        while (true) {
            bool more = zmq_msg_more (&part);
            //  XPUB drops at its high-water mark by design (PUB/SUB is the
            //  fast path; subscribers catch up through events.list)
            if (zmq_msg_send (&part, to, (more? ZMQ_SNDMORE: 0) | ZMQ_DONTWAIT) < 0)
                zmq_msg_close (&part);
            if (!more)
                break;
            zmq_msg_init (&part);
            if (zmq_msg_recv (&part, from, 0) < 0) {
                zmq_msg_close (&part);
                break;
            }
        }
        messages++;
    }
    return messages;
}

//  Shutdown: answer queued requests, fail held ones, DISCONNECT workers.
static void
s_shutdown (broker_t *self)
{
    for (s_service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services))
        while (service->queue_head) {
            s_request_t *request = service->queue_head;
            service->queue_head = request->next;
            s_answer_error (self, service, &request->ticket, MESH_CODE_UNAVAILABLE,
                            "the broker is shutting down");
            s_request_free (self, request);
        }
    for (s_worker_t *worker = zhashx_first (self->workers); worker;
         worker = zhashx_next (self->workers)) {
        for (int slot = 0; slot < worker->credit; slot++)
            if (worker->slot_used[slot])
                s_answer_error (self, worker->service, &worker->slots[slot],
                                MESH_CODE_UNAVAILABLE, "the broker is shutting down");
        s_send_command (self, &worker->identity, MDP_DISCONNECT);
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
    mesh_log_kv (MESH_LOG_INFO, "broker serving", "endpoint", self->endpoint, "events_xsub",
                 self->cfg.xsub_bind, "events_xpub", self->cfg.xpub_bind, NULL);
    int64_t heartbeat_at_ms = mesh_mono_ms () + self->cfg.heartbeat_ms;
    int64_t queue_scan_at_ms = 0;
    zmq_pollitem_t items[] = {
        { self->router, 0, ZMQ_POLLIN, 0 },
        { NULL, stop_fd, ZMQ_POLLIN, 0 },
        { self->xsub, 0, ZMQ_POLLIN, 0 },
        { self->xpub, 0, ZMQ_POLLIN, 0 },
    };
    int item_count = self->xsub? 4: 2;
    while (true) {
        int64_t now_ms = mesh_mono_ms ();
        int64_t wait_ms = heartbeat_at_ms - now_ms;
        if (self->queued_total && queue_scan_at_ms - now_ms < wait_ms)
            wait_ms = queue_scan_at_ms - now_ms;
        if (zmq_poll (items, item_count, (long) (wait_ms > 0? wait_ms: 0)) < 0) {
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
        if (item_count > 2 && (items[2].revents & ZMQ_POLLIN))
            mesh_counter_add (self->metrics.events_forwarded, s_forward (self->xsub, self->xpub));
        if (item_count > 2 && (items[3].revents & ZMQ_POLLIN))
            mesh_counter_add (self->metrics.subscriptions, s_forward (self->xpub, self->xsub));

        now_ms = mesh_mono_ms ();
        if (now_ms >= heartbeat_at_ms) {
            s_heartbeat (self);
            heartbeat_at_ms = now_ms + self->cfg.heartbeat_ms;
        }
        if (self->queued_total && now_ms >= queue_scan_at_ms) {
            s_expire_queues (self);
            queue_scan_at_ms = now_ms + S_QUEUE_SCAN_MS;
        }
    }
    mesh_log_kv (MESH_LOG_INFO, "broker stopping: DISCONNECT to every worker", NULL);
    s_shutdown (self);
    return 0;
}
