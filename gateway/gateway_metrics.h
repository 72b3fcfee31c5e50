/*  =========================================================================
    gateway_metrics - the gateway's Prometheus series
    http_requests_total{method,route,code}, http_request_duration_seconds
    {route} (histogram), http_requests_in_flight, sse_streams and
    mesh_calls_total{service,method,outcome}, and for security
    http_requests_refused_total{reason} and
    http_requests_authenticated_total{credential}. Every label value comes from a
    bounded set: route templates (never raw paths), known methods or OTHER,
    status codes, mesh code names.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_METRICS_H_INCLUDED
#define GATEWAY_METRICS_H_INCLUDED

#include "gateway_routes.h"

#include "mesh/mesh_err.h"
#include "mesh/mesh_metrics.h"

#include <stdbool.h>

typedef struct gateway_metrics_s gateway_metrics_t;

//  Why a request was refused before it reached the mesh (the `reason` label).
typedef enum {
    GATEWAY_REFUSAL_MISSING_CREDENTIAL,     //  401 without a credential
    GATEWAY_REFUSAL_INVALID_CREDENTIAL,     //  401 with one that proves nothing
    GATEWAY_REFUSAL_INSUFFICIENT_SCOPE,     //  403
    GATEWAY_REFUSAL_RATE_LIMITED,           //  429 from the gateway's own limit
    GATEWAY_REFUSAL_ORIGIN_NOT_ALLOWED,     //  403 to a CORS preflight
    GATEWAY_REFUSAL_COUNT_
} gateway_refusal_t;

//  Register the families in `registry` (borrowed; must outlive this).
gateway_metrics_t *
    gateway_metrics_new (mesh_metrics_t *registry);

//  Destroy; nulls the caller's pointer.
void
    gateway_metrics_destroy (gateway_metrics_t **self_p);

//  A request started (in flight +1).
void
    gateway_metrics_request_started (gateway_metrics_t *self);

//  A request ended with `status` (0: no response was sent) after `seconds`.
void
    gateway_metrics_request_done (gateway_metrics_t *self, gateway_method_t method,
                                  gateway_route_id_t route, unsigned int status, double seconds);

//  One mesh call's outcome.
void
    gateway_metrics_mesh_call (gateway_metrics_t *self, const char *service, const char *method,
                               mesh_code_t outcome);

//  A request refused for `reason`.
void
    gateway_metrics_refused (gateway_metrics_t *self, gateway_refusal_t reason);

//  A request authenticated by a JWT or (api_key) an API key.
void
    gateway_metrics_authenticated (gateway_metrics_t *self, bool api_key);

//  SSE streams open (+1 / -1).
void
    gateway_metrics_sse_streams (gateway_metrics_t *self, int delta);

#endif
