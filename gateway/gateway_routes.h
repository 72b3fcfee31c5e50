/*  =========================================================================
    gateway_routes - the HTTP route table of the gateway
    One row per path template: the template itself (the `route` label of
    every HTTP metric, so raw paths never become label values), the methods
    it allows and their Allow header. Matching is exact on the path; the
    one path parameter ({id}) is returned for the handler to validate.
    Also the small validators routes share: UUIDs and query integers.
    Pure: no I/O.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_ROUTES_H_INCLUDED
#define GATEWAY_ROUTES_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    GATEWAY_ROUTE_USERS,        //  /v1/users
    GATEWAY_ROUTE_USER,         //  /v1/users/{id}
    GATEWAY_ROUTE_AUDIT,        //  /v1/audit
    GATEWAY_ROUTE_EVENTS,       //  /v1/events
    GATEWAY_ROUTE_HEALTHZ,      //  /healthz
    GATEWAY_ROUTE_READY,        //  /ready
    GATEWAY_ROUTE_METRICS,      //  /metrics
    GATEWAY_ROUTE_OPENAPI,      //  /openapi.yaml
    GATEWAY_ROUTE_UNMATCHED,    //  Anything else (label "unmatched")
    GATEWAY_ROUTE_COUNT_
} gateway_route_id_t;

//  Methods as bits, so a row lists what it allows.
typedef enum {
    GATEWAY_METHOD_OTHER = 0,
    GATEWAY_METHOD_GET = 1 << 0,
    GATEWAY_METHOD_HEAD = 1 << 1,
    GATEWAY_METHOD_POST = 1 << 2,
    GATEWAY_METHOD_PATCH = 1 << 3,
    GATEWAY_METHOD_DELETE = 1 << 4,
} gateway_method_t;

typedef struct {
    gateway_route_id_t id;
    const char *template;       //  "/v1/users/{id}": the metrics label
    unsigned int methods;       //  gateway_method_t bits allowed
    const char *allow;          //  The Allow header for 405
} gateway_route_t;

//  The method for an HTTP method name (case-sensitive, as HTTP says).
gateway_method_t
    gateway_method_parse (const char *name);

//  Label value for a method: "GET", ... or "OTHER" (bounded label set).
const char *
    gateway_method_label (gateway_method_t method);

//  The row for `path` (never NULL: GATEWAY_ROUTE_UNMATCHED when none).
//  For /v1/users/{id} the raw segment is copied into `param` (param_size
//  bytes); a segment that does not fit is truncated to "" so that it fails
//  validation rather than matching another id.
const gateway_route_t *
    gateway_route_match (const char *path, char *param, size_t param_size);

//  The row of `id`.
const gateway_route_t *
    gateway_route_get (gateway_route_id_t id);

//  True when `text` is a UUID in canonical 8-4-4-4-12 hex form; writes it
//  lower-cased into `out` (37 bytes) when `out` is not NULL.
bool
    gateway_uuid_parse (const char *text, char *out);

//  Parse a decimal integer in [min, max] with nothing else around it.
//  Returns true with *value set.
bool
    gateway_parse_long (const char *text, long min, long max, long *value);

#endif
