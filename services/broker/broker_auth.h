/*  =========================================================================
    broker_auth - who may talk to the broker, and what they may do
    With CURVE on, the broker is its own ZAP handler (ZeroMQ RFC 27): czmq's
    zauth answers CURVE requests with an empty user id and no metadata, so
    the broker could never tell who sent a message. A REP socket bound at
    inproc://zeromq.zap.01 in the broker's context is polled in the broker's
    own loop (libzmq's handshake waits for the reply asynchronously). A
    client key is looked up in a czmq zcertstore over the allow-list
    directory (reloaded when the directory changes); the reply carries the
    certificate's `name` as user id and its grants as ZAP metadata, which
    libzmq then attaches to every message of that connection. The checks
    read them back per message (zmq_msg_gets): nothing is cached by routing
    id, since with ROUTER_HANDOVER a peer can take over another's id.
    The module also counts handshake failures from socket monitors, so a
    plain peer knocking on a CURVE socket shows in /metrics.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef BROKER_AUTH_H_INCLUDED
#define BROKER_AUTH_H_INCLUDED

#include "mesh/mesh_metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

//  The ZAP metadata (message property) names the grants travel under.
//  Every one is in every reply, empty when not granted: libzmq lets ZAP
//  properties win over same-named ones a peer sends in its handshake, so a
//  peer cannot grant itself what its certificate lacks.
#define BROKER_AUTH_USER_ID "User-Id" //  libzmq: the ZAP reply's user id
#define BROKER_AUTH_SERVE "X-Mesh-Serve"
#define BROKER_AUTH_CALL "X-Mesh-Call"
#define BROKER_AUTH_PUBLISH "X-Mesh-Publish"
#define BROKER_AUTH_SUBSCRIBE "X-Mesh-Subscribe"
#define BROKER_AUTH_DELEGATE "X-Mesh-Delegate"

//  What a refusal was about (label "what" of mesh_broker_refusals_total).
typedef enum {
    BROKER_REFUSAL_SERVE,     //  READY for a service not in `serve`
    BROKER_REFUSAL_CALL,      //  Request to a service not in `call`
    BROKER_REFUSAL_ACTOR,     //  Envelope actor not the key's name, no `delegate`
    BROKER_REFUSAL_PUBLISH,   //  Topic no `publish` prefix covers
    BROKER_REFUSAL_SUBSCRIBE, //  Subscription no `subscribe` prefix covers
    BROKER_REFUSAL_COUNT_
} broker_refusal_t;

//  Most sockets one instance monitors for handshake failures.
#define BROKER_AUTH_MAX_MONITORS 3

typedef struct broker_auth_s broker_auth_t;

//  Bind the ZAP handler in `context` (borrowed) over the allow-list
//  directory `allow_dir`. Call before any CURVE server socket binds.
//  Returns NULL with *err set: MESH_EINVAL (not a readable directory),
//  MESH_EIO (the ZAP endpoint is taken).
broker_auth_t *broker_auth_new (void *context, const char *allow_dir, mesh_metrics_t *metrics,
                                int *err);

//  Close the ZAP and monitor sockets; nulls the caller's pointer.
void broker_auth_destroy (broker_auth_t **self_p);

//  Count handshake failures on `socket` (before it binds). `what` names it
//  in logs. Returns 0 or MESH_EIO.
int broker_auth_monitor (broker_auth_t *self, void *socket, const char *what);

//  Fill up to `max` poll items for the broker loop (ZAP socket, monitors).
//  Returns how many.
size_t broker_auth_poll_items (broker_auth_t *self, zmq_pollitem_t *items, size_t max);

//  Handle what the items of broker_auth_poll_items report: answer ZAP
//  requests, count monitor events.
void broker_auth_on_poll (broker_auth_t *self, const zmq_pollitem_t *items, size_t count);

//  Whether the peer that sent `msg` holds the grant `what` for `subject`
//  (`len` bytes): a service name for SERVE and CALL (exact), a topic for
//  PUBLISH and SUBSCRIBE (covered by a prefix). A refusal is logged (with
//  the key's name) and counted.
bool broker_auth_allows (broker_auth_t *self, const zmq_msg_t *msg, broker_refusal_t what,
                         const void *subject, size_t len);

//  Whether the peer that sent `msg` may send a request whose envelope
//  names `actor` (`len` bytes, len 0 = none): its own name, or any when it
//  may delegate. A refusal is logged and counted.
bool broker_auth_allows_actor (broker_auth_t *self, const zmq_msg_t *msg, const char *actor,
                               size_t len);

#endif
