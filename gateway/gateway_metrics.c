/*  =========================================================================
    gateway_metrics - the gateway's Prometheus series
    Series are looked up in the registry when used (a mutex and a hash
    lookup): the gateway's loop is one thread and label sets are bounded,
    so the registry never grows past routes x methods x codes.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_metrics.h"

#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

static const char s_requests[] = "http_requests_total";
static const char s_requests_help[] = "HTTP requests answered, by method, route template and status";
static const char s_duration[] = "http_request_duration_seconds";
static const char s_duration_help[] = "Time from request headers to response, by route template";
static const char s_mesh_calls[] = "mesh_calls_total";
static const char s_mesh_calls_help[] = "Mesh calls made by the gateway, by service, method and outcome";

static const char *const s_refusals[GATEWAY_REFUSAL_COUNT_] = {
    "missing_credential", "invalid_credential", "insufficient_scope", "rate_limited",
    "origin_not_allowed",
};

struct gateway_metrics_s {
    mesh_metrics_t *registry;   //  Borrowed
    mesh_gauge_t *in_flight;    //  HTTP requests not yet answered
    mesh_gauge_t *sse_streams;  //  Open /v1/events streams
    mesh_histogram_t *duration[GATEWAY_ROUTE_COUNT_];   //  One per route template
    mesh_counter_t *refused[GATEWAY_REFUSAL_COUNT_];    //  By reason
    mesh_counter_t *authenticated[2];   //  JWT, API key
};

//  --------------------------------------------------------------------------
//  Register the families.
gateway_metrics_t *
gateway_metrics_new (mesh_metrics_t *registry)
{
    assert (registry);
    gateway_metrics_t *self = mesh_alloc (sizeof (gateway_metrics_t));
    self->registry = registry;
    self->in_flight = mesh_metrics_gauge (registry, "http_requests_in_flight",
                                          "HTTP requests received and not yet answered", NULL);
    self->sse_streams = mesh_metrics_gauge (registry, "http_sse_streams",
                                            "Open server-sent event streams (/v1/events)", NULL);
    //  Every route's histogram exists from the start: dashboards see zeros
    for (int route = 0; route < GATEWAY_ROUTE_COUNT_; route++)
        self->duration[route] = mesh_metrics_histogram (
            registry, s_duration, s_duration_help, NULL, 0, "route",
            gateway_route_get ((gateway_route_id_t) route)->template, NULL);
    for (int reason = 0; reason < GATEWAY_REFUSAL_COUNT_; reason++)
        self->refused[reason] = mesh_metrics_counter (
            registry, "http_requests_refused_total",
            "HTTP requests refused before the mesh: credential, scope, rate limit, CORS origin",
            "reason", s_refusals[reason], NULL);
    for (int kind = 0; kind < 2; kind++)
        self->authenticated[kind] = mesh_metrics_counter (
            registry, "http_requests_authenticated_total",
            "HTTP requests whose credential was accepted, by kind", "credential",
            kind? "api_key": "jwt", NULL);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
gateway_metrics_destroy (gateway_metrics_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  A request started.
void
gateway_metrics_request_started (gateway_metrics_t *self)
{
    assert (self);
    mesh_gauge_add (self->in_flight, 1);
}

//  --------------------------------------------------------------------------
//  A request ended.
void
gateway_metrics_request_done (gateway_metrics_t *self, gateway_method_t method,
                              gateway_route_id_t route, unsigned int status, double seconds)
{
    assert (self);
    assert (route < GATEWAY_ROUTE_COUNT_);
    mesh_gauge_add (self->in_flight, -1);
    char code[16] = "none";
    if (status >= 100 && status <= 599)
        snprintf (code, sizeof code, "%u", status);
    mesh_counter_inc (mesh_metrics_counter (self->registry, s_requests, s_requests_help,
                                            "method", gateway_method_label (method), "route",
                                            gateway_route_get (route)->template, "code", code,
                                            NULL));
    mesh_histogram_observe (self->duration[route], seconds);
}

//  --------------------------------------------------------------------------
//  One mesh call's outcome.
void
gateway_metrics_mesh_call (gateway_metrics_t *self, const char *service, const char *method,
                           mesh_code_t outcome)
{
    assert (self);
    mesh_counter_inc (mesh_metrics_counter (self->registry, s_mesh_calls, s_mesh_calls_help,
                                            "service", service, "method", method, "outcome",
                                            mesh_code_name (outcome), NULL));
}

//  --------------------------------------------------------------------------
//  A request refused.
void
gateway_metrics_refused (gateway_metrics_t *self, gateway_refusal_t reason)
{
    assert (self);
    assert (reason < GATEWAY_REFUSAL_COUNT_);
    mesh_counter_inc (self->refused[reason]);
}

//  --------------------------------------------------------------------------
//  A request authenticated.
void
gateway_metrics_authenticated (gateway_metrics_t *self, bool api_key)
{
    assert (self);
    mesh_counter_inc (self->authenticated[api_key? 1: 0]);
}

//  --------------------------------------------------------------------------
//  SSE streams open.
void
gateway_metrics_sse_streams (gateway_metrics_t *self, int delta)
{
    assert (self);
    mesh_gauge_add (self->sse_streams, delta);
}
