/*  =========================================================================
    gateway_sse - GET /v1/events: user events as Server-Sent Events
    The gateway holds one SUB socket on the broker's XPUB; each live event
    is formatted once ("id: seq", "event: type", "data: the CloudEvent as
    JSON") and appended to every open stream. A stream never shows a gap
    or a repeat: it remembers the last seq it sent; an event at or below it
    is skipped, one past a gap (PUB/SUB drops) or a Last-Event-ID on connect
    makes it catch up through `events.list` {after_seq} on service user,
    page by page, before it takes live events again. A stream whose client
    reads too slowly is ended; the client resumes with Last-Event-ID.
    Streams wait for data suspended (MHD_suspend_connection): no thread and
    no busy loop per client.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_SSE_H_INCLUDED
#define GATEWAY_SSE_H_INCLUDED

#include "gateway_metrics.h"

#include "mesh/mesh_client.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gateway_sse_s gateway_sse_t;

//  A set of streams making catch-up calls on `client` with `timeout_ms`
//  each. `client` and `metrics` are borrowed and must outlive the set.
gateway_sse_t *
    gateway_sse_new (mesh_client_t *client, gateway_metrics_t *metrics, int timeout_ms);

//  Destroy the set and every stream left (call after the HTTP server has
//  stopped and the client is destroyed); nulls the caller's pointer.
void
    gateway_sse_destroy (gateway_sse_t **self_p);

//  Open a stream for `connection`. With `resume`, events after `last_seq`
//  are sent first (catch-up) by calls made for `actor` (the caller's
//  identity; NULL: none). `request_id` and the ids of `traceparent` (the
//  request's; NULL: none) go on the stream's log lines. Returns the
//  response to queue with status 200 (the caller destroys its reference
//  after queueing).
struct MHD_Response *
    gateway_sse_open (gateway_sse_t *self, struct MHD_Connection *connection, bool resume,
                      uint64_t last_seq, const char *request_id, const char *traceparent,
                      const char *actor);

//  One event from the SUB socket: topic frame and MessagePack payload.
//  Malformed events are dropped (counted in the log at debug level).
void
    gateway_sse_on_event (gateway_sse_t *self, const void *topic, size_t topic_len,
                          const void *payload, size_t payload_len);

//  The outcome of a call whose tag is a stream's.
void
    gateway_sse_on_reply (gateway_sse_t *self, const mesh_reply_t *reply);

//  Send a comment line to every stream (keeps proxies from timing it out
//  and finds clients that have gone).
void
    gateway_sse_ping (gateway_sse_t *self);

//  End every stream (shutdown): each finishes its response after the data
//  it holds.
void
    gateway_sse_end_all (gateway_sse_t *self);

//  Streams whose connection MHD has not yet released.
size_t
    gateway_sse_count (const gateway_sse_t *self);

#endif
