/*  =========================================================================
    gateway_cors - which browser origins may call the API (CORS)
    Origins are a setting (a comma list, `*` for any); none by default, so
    a browser page on another origin gets no Access-Control-* header and
    cannot read a response. A preflight (OPTIONS with Origin and Access-
    Control-Request-Method) from an allowed origin is answered 204 with the
    route's methods, the request headers the API reads and a max-age.
    Responses to an allowed origin carry Access-Control-Allow-Origin (that
    origin), Vary: Origin and the headers a script may read. Pure.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_CORS_H_INCLUDED
#define GATEWAY_CORS_H_INCLUDED

#include <stdbool.h>

//  Request headers a preflight may ask for.
#define GATEWAY_CORS_ALLOW_HEADERS                                                                 \
    "Authorization, Content-Type, Idempotency-Key, X-Request-ID, traceparent, "                    \
    "Request-Timeout, Last-Event-ID"
//  Response headers a script may read.
#define GATEWAY_CORS_EXPOSE_HEADERS                                                                \
    "X-Request-ID, Location, Retry-After, RateLimit, RateLimit-Policy, WWW-Authenticate, "         \
    "traceparent"
#define GATEWAY_CORS_MAX_AGE "600" //  Seconds a browser may keep a preflight's answer

typedef struct gateway_cors_s gateway_cors_t;

//  Origins from a comma list (spaces around items ignored; NULL or "":
//  none). Copied.
gateway_cors_t *gateway_cors_new (const char *origins);

//  Destroy; nulls the caller's pointer.
void gateway_cors_destroy (gateway_cors_t **self_p);

//  True when any origin is allowed at all (the setting is not empty).
bool gateway_cors_enabled (const gateway_cors_t *self);

//  True when `origin` (an Origin header; NULL: none) may read responses.
//  Compared exactly, as browsers send it (scheme://host[:port]).
bool gateway_cors_allowed (const gateway_cors_t *self, const char *origin);

#endif
