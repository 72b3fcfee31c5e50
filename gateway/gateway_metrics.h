/*  =========================================================================
    gateway_metrics - the gateway's Prometheus series
    http_requests_total{method,route,code}, http_request_duration_seconds
    {route} (histogram), http_requests_in_flight, sse_streams and
    mesh_calls_total{service,method,outcome}. Every label value comes from a
    bounded set: route templates (never raw paths), known methods or OTHER,
    status codes, mesh code names.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_METRICS_H_INCLUDED
#define GATEWAY_METRICS_H_INCLUDED

#include "gateway_routes.h"

#include "mesh/mesh_err.h"
#include "mesh/mesh_metrics.h"

typedef struct gateway_metrics_s gateway_metrics_t;

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

//  SSE streams open (+1 / -1).
void
    gateway_metrics_sse_streams (gateway_metrics_t *self, int delta);

#endif
