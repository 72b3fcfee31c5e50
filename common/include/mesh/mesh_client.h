/*  =========================================================================
    mesh_client - asynchronous MDP client on a DEALER socket
    Many requests may be in flight; each reply is matched to its request by
    the envelope id, whatever order replies come in. Every request has a
    deadline (carried in the envelope so the broker and worker can drop it
    too); when it passes with no reply, mesh_client_recv reports it as
    deadline_exceeded itself, so a caller never waits past a deadline even
    when the broker is gone. A connection to the broker that closes (the
    broker died or restarted) makes every request sent on it unavailable at
    once, not at its deadline; requests sent while no broker is connected
    wait in the queue for the next one. A late reply for a request already
    reported is dropped. mesh_client_call is the synchronous helper on top.
    One client belongs to one thread.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_CLIENT_H_INCLUDED
#define MESH_CLIENT_H_INCLUDED

#include "mesh/mesh_curve.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_err.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#define MESH_CLIENT_DEFAULT_TIMEOUT_MS 5000

typedef struct mesh_client_s mesh_client_t;

//  One request to send.
typedef struct {
    const char *service;        //  MDP service ("user")
    const char *method;         //  Envelope method ("user.get")
    const void *body;           //  One packed MessagePack object, or NULL for nil
    size_t body_len;            //  Bytes in body
    int timeout_ms;             //  Deadline from now; 0 = MESH_CLIENT_DEFAULT_TIMEOUT_MS
    const char *id;             //  Request id; NULL = the client makes a unique one
    const char *trace;          //  W3C traceparent or NULL
    const char *idem;           //  Idempotency key or NULL
    const char *actor;          //  Who asks (a key's name, a token's subject) or NULL
    void *tag;                  //  Caller's pointer, given back with the reply
} mesh_call_t;

//  One outcome: a reply, an error reply, or a deadline that passed.
//  Pointers are borrowed: valid until the next recv or call on the client.
typedef struct {
    char id[MESH_ENVELOPE_MAX_ID + 1];  //  The request's id
    void *tag;                  //  The request's tag
    mesh_code_t code;           //  MESH_CODE_OK, or the error
    mesh_slice_t message;       //  Error message (empty on success)
    const msgpack_object *body; //  Reply body on success, else NULL
} mesh_reply_t;

//  Connect to the broker's ROUTER at `endpoint`. `zmq_context` is borrowed
//  (must outlive the client); NULL makes a private one. Returns NULL with
//  *err set (MESH_EINVAL: bad endpoint; MESH_EIO).
mesh_client_t *
    mesh_client_new (void *zmq_context, const char *endpoint, int *err);

//  Same, as a CURVE client when `curve` is not NULL (borrowed; only read
//  here). Returns NULL with *err MESH_EINVAL also when `curve` has no
//  server certificate.
mesh_client_t *mesh_client_new_curve (void *zmq_context, const char *endpoint,
                                      const mesh_curve_t *curve, int *err);

//  Close (pending requests are forgotten); nulls the caller's pointer.
void
    mesh_client_destroy (mesh_client_t **self_p);

//  Send a request. Returns 0, MESH_ECONFLICT (that id is already in
//  flight), MESH_EINVAL (missing service/method, id or actor too long) or
//  MESH_EIO.
//  When `id_out` is not NULL it receives the id used (MESH_ENVELOPE_MAX_ID+1
//  bytes).
int
    mesh_client_send (mesh_client_t *self, const mesh_call_t *call, char *id_out);

//  Wait up to `timeout_ms` (-1 = until the next outcome; returns at the
//  latest when the earliest pending deadline passes) for one outcome.
//  Returns 0 with *reply filled, MESH_ETIMEDOUT when nothing completed in
//  time (or nothing is pending and timeout_ms is -1), MESH_EINTR, MESH_EIO.
int
    mesh_client_recv (mesh_client_t *self, mesh_reply_t *reply, int timeout_ms);

//  Send one request and wait for its outcome (reply or deadline). Returns 0
//  with *reply filled (check reply->code), or a send error. Other requests
//  in flight on this client keep their replies for later recv calls.
int
    mesh_client_call (mesh_client_t *self, const mesh_call_t *call, mesh_reply_t *reply);

//  Requests sent and not yet reported.
size_t
    mesh_client_pending (const mesh_client_t *self);

//  The DEALER socket, for zmq_poll (POLLIN means a reply may be ready;
//  call mesh_client_recv with timeout 0). Borrowed.
void *
    mesh_client_socket (mesh_client_t *self);

//  The PAIR that carries the DEALER's connection events, for zmq_poll next
//  to mesh_client_socket: on POLLIN call mesh_client_watch. Borrowed.
//  (mesh_client_recv and mesh_client_call watch it themselves while they
//  wait; a caller that polls with timeout 0 must do it.)
void *
    mesh_client_monitor_socket (mesh_client_t *self);

//  Read the connection events waiting on the monitor socket. When a
//  connection that finished its handshake has closed, every request sent
//  before comes due at once: mesh_client_next_deadline_ms returns 0 and
//  mesh_client_recv reports each as MESH_CODE_UNAVAILABLE, after any reply
//  that arrived before the close. Such a request may have been carried out.
//  Returns how many such closes it read.
int
    mesh_client_watch (mesh_client_t *self);

//  True when the DEALER is settled for mesh_poll: the client's last use of
//  it was a receive that found nothing (mesh_client_recv returned
//  MESH_ETIMEDOUT), with no send since.
bool
    mesh_client_settled (const mesh_client_t *self);

//  Milliseconds until the earliest pending deadline (0 if passed), or -1
//  when nothing is pending. For callers that poll the socket themselves.
int
    mesh_client_next_deadline_ms (const mesh_client_t *self);

#endif
