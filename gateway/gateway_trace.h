/*  =========================================================================
    gateway_trace - request ids and W3C trace context for HTTP requests
    X-Request-ID is taken from the client when it is a sane token, else
    made (a random UUID); it is returned, logged and carried in the
    envelope. traceparent (W3C Trace Context) is taken when valid, keeping
    its trace id and giving the gateway's hop a fresh span id; otherwise a
    new trace starts. Random bytes come from a mesh_random_t: the
    kernel's getrandom, read 4 KiB at a time, so making ids costs no system
    call per request (three getrandom calls were 3 of a request's 5 system
    calls on GET /healthz).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_TRACE_H_INCLUDED
#define GATEWAY_TRACE_H_INCLUDED

#include "mesh/mesh_random.h"
#include "mesh/mesh_trace.h"

#include <stdbool.h>
#include <stddef.h>

//  Longest X-Request-ID taken from a client: leaves room in an envelope id
//  (MESH_ENVELOPE_MAX_ID) for a suffix that keeps concurrent duplicates apart.
#define GATEWAY_REQUEST_ID_MAX 100
#define GATEWAY_TRACEPARENT_SIZE MESH_TRACEPARENT_SIZE
#define GATEWAY_TRACE_ID_SIZE MESH_TRACE_ID_HEX_SIZE

//  True when `text` may be used as a request id: 1..GATEWAY_REQUEST_ID_MAX
//  bytes of visible ASCII other than '"' and '\\'.
bool
    gateway_request_id_valid (const char *text);

//  A random (version 4) UUID, lower-case, into `out` (37 bytes).
void
    gateway_uuid_make (mesh_random_t *random, char *out);

//  The traceparent to send on: same trace id and flags as `incoming` when
//  that is a valid version-00 traceparent (NULL: none), a new parent id
//  either way. Writes it into `out` (GATEWAY_TRACEPARENT_SIZE bytes) and its
//  trace id into `trace_id` (GATEWAY_TRACE_ID_SIZE bytes).
void
    gateway_traceparent_next (mesh_random_t *random, const char *incoming, char *out,
                              char *trace_id);

#endif
