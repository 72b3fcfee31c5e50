/*  =========================================================================
    mesh_worker - MDP worker: READY, heartbeats, reconnect, credit
    Registers with the broker for one service and calls a handler for each
    request. Heartbeats go both ways; when the broker is silent for
    heartbeat x liveness, or says DISCONNECT, or its connection closes (a
    broker that died: mesh_monitor), the worker drops its socket and
    reconnects with a fresh one after a backoff that doubles up to a cap
    (Paranoid Pirate); its READY waits in the queue for the next broker. With credit N > 1 the READY carries N and the broker
    keeps up to N requests queued at this worker, so the next request is
    already here when a reply goes out. Requests whose envelope deadline has
    passed are answered deadline_exceeded without calling the handler.
    The handler runs on the thread that called mesh_worker_run; while it
    runs, a small companion thread keeps the heartbeats going, so a slow
    handler (a long database query) is not mistaken for a dead worker,
    while a killed process still is. Handlers should still respect the
    request's deadline: the caller has given up after it.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_WORKER_H_INCLUDED
#define MESH_WORKER_H_INCLUDED

#include "mesh/mesh_curve.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_tracer.h"

#include <msgpack.h>

typedef struct mesh_worker_s mesh_worker_t;

//  A decoded request. Borrowed views, valid during the handler call only.
typedef struct {
    mesh_slice_t id;            //  Request id (log it as request_id)
    mesh_slice_t method;        //  "user.get"
    mesh_slice_t trace;         //  traceparent of this hop, or empty: with a tracer the
                                //  worker's server span (children go under it), else the caller's
    mesh_slice_t idem;          //  Idempotency key or empty
    mesh_slice_t actor;         //  Who asks, or empty (with CURVE the broker vouches for it)
    uint64_t deadline_ms;       //  Unix ms; 0 = none
    const msgpack_object *body; //  Request body, or NULL when absent
} mesh_request_t;

//  What the handler gives back.
typedef struct {
    msgpack_packer *body;       //  On success pack exactly one object here
    char message[256];          //  On error, a message for the caller
} mesh_response_t;

//  Handle one request. Return MESH_CODE_OK after packing the body, or an
//  error code (with response->message set); anything packed is then
//  discarded.
typedef mesh_code_t (mesh_handler_fn) (void *arg, const mesh_request_t *request,
                                       mesh_response_t *response);

//  Handle `count` requests at once: the requests the socket held together,
//  at most min(credit, MESH_WORKER_MAX_BATCH), so a handler can serve them
//  with fewer round trips to its own backend (e.g. a database pipeline).
//  For each i, pack the reply body into responses[i].body and set codes[i]
//  as mesh_handler_fn would return it (with responses[i].message on error).
typedef void (mesh_batch_handler_fn) (void *arg, const mesh_request_t *requests,
                                      mesh_response_t *responses, mesh_code_t *codes,
                                      size_t count);

//  Most requests a batch handler gets at once.
#define MESH_WORKER_MAX_BATCH 64

typedef struct {
    void *zmq_context;          //  Borrowed; NULL = a private context
    const char *broker;         //  Endpoint, e.g. "tcp://127.0.0.1:5555"
    const char *service;        //  Service to register for
    int credit;                 //  Requests held at once, 1..1000 (1 = plain RFC 7 READY)
    int heartbeat_ms;           //  Default 1000
    int liveness;               //  Missed heartbeats before reconnecting; default 3
    int reconnect_min_ms;       //  First backoff; default 100
    int reconnect_max_ms;       //  Backoff cap; default 2000
    mesh_handler_fn *handler;   //  One of handler and batch_handler is required
    mesh_batch_handler_fn *batch_handler;   //  Used instead of handler when set
    void *handler_arg;          //  Passed to the handler
    const mesh_curve_t *curve;  //  CURVE keys (borrowed, must outlive the worker); NULL = plain
    mesh_tracer_t *tracer;      //  A server span per request (borrowed); NULL = none
} mesh_worker_cfg_t;

//  Create a worker (does not connect yet). Returns NULL with *err set when
//  the configuration is invalid (MESH_EINVAL).
mesh_worker_t *
    mesh_worker_new (const mesh_worker_cfg_t *cfg, int *err);

//  Destroy; nulls the caller's pointer. Not while mesh_worker_run runs.
void
    mesh_worker_destroy (mesh_worker_t **self_p);

//  Serve until mesh_worker_stop: connect, READY, handle requests, keep
//  reconnecting while the broker is away. On stop sends DISCONNECT and
//  returns 0. Returns MESH_EIO on an unrecoverable socket error.
int
    mesh_worker_run (mesh_worker_t *self);

//  Ask mesh_worker_run to return. Safe from any thread and from a signal
//  handler (it writes one byte to a pipe).
void
    mesh_worker_stop (mesh_worker_t *self);

//  Requests handled since creation (for tests and metrics). Thread-safe.
uint64_t
    mesh_worker_handled (const mesh_worker_t *self);

//  --------------------------------------------------------------------------
//  A pool of workers, one thread each: what a service's main needs to start
//  N workers and to stop them all on shutdown. The handler state of each
//  worker stays the caller's (it must outlive mesh_worker_pool_stop).

typedef struct mesh_worker_pool_s mesh_worker_pool_t;

//  An empty pool.
mesh_worker_pool_t *
    mesh_worker_pool_new (void);

//  Create a worker from `cfg` and start a thread running it. Returns 0, or
//  MESH_EINVAL (bad cfg) / MESH_EIO (no thread): nothing was added.
int
    mesh_worker_pool_start (mesh_worker_pool_t *self, const mesh_worker_cfg_t *cfg);

//  Workers started so far.
size_t
    mesh_worker_pool_size (const mesh_worker_pool_t *self);

//  Stop every worker (each sends DISCONNECT), join the threads and destroy
//  the workers; the pool is empty again. Idempotent.
void
    mesh_worker_pool_stop (mesh_worker_pool_t *self);

//  Stop (if needed) and free the pool. Tolerates NULL; nulls the pointer.
void
    mesh_worker_pool_destroy (mesh_worker_pool_t **self_p);

#endif
