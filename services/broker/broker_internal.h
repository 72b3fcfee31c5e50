/*  =========================================================================
    broker_internal - what the broker's source files share
    The broker is one actor split by subject: broker.c (the loop and the
    protocol), broker_service.c (services, their queues, dispatch and the
    answers the broker gives for the mesh), broker_worker.c (workers, their
    ready lists and in-flight slots). Only these files include this header.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef BROKER_INTERNAL_H_INCLUDED
#define BROKER_INTERNAL_H_INCLUDED

#include "broker.h"
#include "broker_auth.h"
#include "broker_metrics.h"
#include "mesh/mdp.h"
#include "mesh/mesh_envelope.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#define BROKER_PEER_ID_MAX 255           //  ZeroMQ routing ids are 1..255 bytes
#define BROKER_REQUEST_POOL_MAX 4096     //  Queued-request records kept for reuse

//  A peer's routing id, copied out of its frame.
typedef struct {
    uint8_t len;
    uint8_t bytes[BROKER_PEER_ID_MAX];
} broker_peer_id_t;

//  What the broker keeps of a request to answer for it later.
typedef struct {
    broker_peer_id_t client;         //  Where the reply goes
    uint8_t id_len;             //  Envelope id length
    bool enveloped;             //  Body was an envelope (id valid)
    char id[MESH_ENVELOPE_MAX_ID];  //  Envelope id, not NUL-terminated
    int64_t received_us;        //  Arrival, monotonic
} broker_ticket_t;

//  A request waiting in a service queue; records are pooled.
typedef struct broker_request_s {
    struct broker_request_s *next;   //  Queue order, or free list
    broker_ticket_t ticket;          //  Who and which request
    uint64_t deadline_ms;       //  Unix ms after which it is answered for
    int body_count;             //  Frames in body
    zmq_msg_t body[MDP_MAX_FRAMES]; //  Body frames, owned
} broker_request_t;

typedef struct broker_service_s broker_service_t;

//  A registered worker.
typedef struct broker_worker_s {
    broker_peer_id_t identity;       //  Routing id; also the hash key
    broker_service_t *service;       //  Service it serves
    int credit;                 //  Requests it may hold
    int in_flight;              //  Requests it holds
    broker_ticket_t *slots;          //  [credit] tickets of held requests
    bool *slot_used;            //  [credit] which slots hold a request
    int64_t expiry_ms;          //  Dead when silent past this (monotonic)
    struct broker_worker_s *prev;    //  Ready list (spare credit), LRU order
    struct broker_worker_s *next;
    bool listed;                //  In the ready list
    bool leaving;               //  Said it is leaving: nothing new, DISCONNECT once idle
} broker_worker_t;

//  A service: its ready workers and its queue.
struct broker_service_s {
    char name[MDP_MAX_SERVICE_NAME + 1];    //  NUL-terminated; the hash key
    size_t name_len;            //  Bytes in name
    broker_worker_t *ready_head;     //  Least recently used worker with spare credit
    broker_worker_t *ready_tail;
    broker_request_t *queue_head;    //  Oldest waiting request
    broker_request_t *queue_tail;
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
    zhashx_t *services;         //  name -> broker_service_t, owns values
    zhashx_t *workers;          //  broker_peer_id_t -> broker_worker_t, owns values
    broker_request_t *request_pool;  //  Free queued-request records
    size_t request_pool_size;   //  Records in the pool
    size_t queued_total;        //  Requests queued over all services
    int64_t now_us;             //  Monotonic time of the current wake-up
    broker_service_t *last_service;  //  Service of the previous request (one-entry cache)
    msgpack_sbuffer buffer;     //  Builds error envelopes and MMI replies
    broker_metrics_t metrics;   //  Process-wide series
    broker_service_metrics_t unregistered_metrics;  //  Services that never had a worker
    broker_auth_t *auth;        //  ZAP handler and checks, owned; NULL = plain broker
};

//  ---------------------------------------------------------------- workers
//  Hash and compare routing ids (worker hash keys).
size_t
    broker__peer_id_hash (const void *key);
int
    broker__peer_id_compare (const void *a, const void *b);

//  Copy a routing-id frame into *id. Returns false when it cannot be one.
bool
    broker__peer_id_from (broker_peer_id_t *id, zmq_msg_t *frame);

//  Hex of a routing id for logs.
void
    broker__peer_id_hex (const broker_peer_id_t *id, char *hex, size_t size);

//  Free a worker (hash destructor).
void
    broker__worker_destroy (void **item_p);

//  Ready list: append at the tail (most recently used).
void
    broker__ready_append (broker_service_t *service, broker_worker_t *worker);

//  Ready list: remove the worker if it is listed.
void
    broker__ready_remove (broker_service_t *service, broker_worker_t *worker);

//  Forget a worker: every request it held is answered unavailable.
void
    broker__worker_delete (broker_t *self, broker_worker_t *worker, const char *why);

//  Send REQUEST to `worker`: identity, "", MDPW01, 0x02, client, "", body.
//  Body frames move (zero copy) and are consumed on success; on failure
//  they are left with the caller. Returns 0, MESH_EUNAVAIL (worker gone)
//  or MESH_EBUSY (its queue is full).
int
    broker__send_request (broker_t *self, broker_worker_t *worker, const broker_ticket_t *ticket,
                          zmq_msg_t *body, int body_count);

//  Send a bare worker command (HEARTBEAT, DISCONNECT) to `identity`.
int
    broker__send_command (broker_t *self, const broker_peer_id_t *identity, mdp_command_t command);

//  Find the slot of `worker` holding the request this REPLY answers: the
//  client must match; when the client has several requests at this worker
//  the envelope id decides. Returns the slot or -1.
int
    broker__find_slot (broker_t *self, broker_worker_t *worker, const broker_peer_id_t *client,
                       zmq_msg_t *body, int body_count);

//  ---------------------------------------------------------------- services
//  Free a service and its queued requests (hash destructor).
void
    broker__service_destroy (void **item_p);

//  Send a client reply: client, "", MDPC01, service, body bytes. Returns 0
//  or MESH_EUNAVAIL when the client is gone.
int
    broker__send_client (broker_t *self, const broker_peer_id_t *client, const char *service,
                         const void *body, size_t body_size);

//  Answer a request on the mesh's behalf with an error envelope. Plain RFC 7
//  requests (no envelope) get one too, with an empty id: better than silence.
void
    broker__answer_error (broker_t *self, broker_service_t *service, const broker_ticket_t *ticket,
                          mesh_code_t code, const char *message);

//  Take a queued-request record from the pool.
broker_request_t *
    broker__request_new (broker_t *self);

//  Return a record to the pool; closes any body frames it still holds.
void
    broker__request_free (broker_t *self, broker_request_t *request);

//  Hand a request to the least recently used worker with spare credit.
//  Returns 0 when dispatched (body consumed), MESH_ENOTFOUND when no worker
//  can take it (body untouched).
int
    broker__dispatch (broker_t *self, broker_service_t *service, const broker_ticket_t *ticket,
                      zmq_msg_t *body, int body_count);

//  Move queued requests to ready workers while both exist.
void
    broker__drain_queue (broker_t *self, broker_service_t *service);

//  Look up a service by name; create it when `create` and under the limit.
broker_service_t *
    broker__service_require (broker_t *self, const void *name, size_t len, bool create);

//  Forget a service nobody serves or waits for, unless it ever had a
//  worker (its metric series exist; it is likely to come back).
void
    broker__service_reap (broker_t *self, broker_service_t *service);

//  Answer every queued request whose deadline has passed.
void
    broker__expire_queues (broker_t *self);

#endif
