/*  =========================================================================
    broker_metrics - the broker's metric series, looked up once
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "broker_metrics.h"

#include <assert.h>

static const char *const s_malformed_reasons[BROKER_MALFORMED_COUNT_] = {
    [BROKER_MALFORMED_FRAMES] = "frames",
    [BROKER_MALFORMED_HEADER] = "header",
    [BROKER_MALFORMED_COMMAND] = "command",
    [BROKER_MALFORMED_SERVICE] = "service",
    [BROKER_MALFORMED_CREDIT] = "credit",
    [BROKER_MALFORMED_UNKNOWN_WORKER] = "unknown_worker",
    [BROKER_MALFORMED_REPLY] = "reply",
};

//  --------------------------------------------------------------------------
//  Look up the process-wide series.
void
broker_metrics_init (broker_metrics_t *self, mesh_metrics_t *registry)
{
    assert (self);
    assert (registry);
    for (int reason = 0; reason < BROKER_MALFORMED_COUNT_; reason++)
        self->malformed[reason] = mesh_metrics_counter (
            registry, "mesh_broker_malformed_total",
            "Messages dropped because they broke MDP/0.1", "reason",
            s_malformed_reasons[reason], NULL);
    self->opaque_bodies = mesh_metrics_counter (
        registry, "mesh_broker_opaque_bodies_total",
        "Request bodies that are not mesh envelopes, passed through untouched (plain RFC 7)",
        NULL);
    self->mmi = mesh_metrics_counter (registry, "mesh_broker_mmi_requests_total",
                                      "MMI (mmi.*) queries answered by the broker", NULL);
    self->workers_expired = mesh_metrics_counter (
        registry, "mesh_broker_workers_expired_total",
        "Workers dropped after missing heartbeat x liveness", NULL);
    self->events_forwarded = mesh_metrics_counter (
        registry, "mesh_broker_events_forwarded_total",
        "Event messages forwarded from publishers (XSUB) to subscribers (XPUB)", NULL);
    self->subscriptions = mesh_metrics_counter (
        registry, "mesh_broker_subscription_messages_total",
        "Subscribe and unsubscribe messages forwarded from XPUB to XSUB", NULL);
    self->services = mesh_metrics_gauge (registry, "mesh_broker_services",
                                         "Services the broker knows", NULL);
}

//  --------------------------------------------------------------------------
//  Look up the series of one service.
void
broker_service_metrics_init (broker_service_metrics_t *self, mesh_metrics_t *registry,
                             const char *service)
{
    assert (self);
    assert (registry);
    assert (service);
    const char *requests = "mesh_broker_requests_total";
    const char *requests_help = "Requests by service and how the broker saw them end";
    self->replied = mesh_metrics_counter (registry, requests, requests_help, "service", service,
                                          "outcome", "replied", NULL);
    self->no_worker = mesh_metrics_counter (registry, requests, requests_help, "service",
                                            service, "outcome", "no_worker", NULL);
    self->queue_full = mesh_metrics_counter (registry, requests, requests_help, "service",
                                             service, "outcome", "queue_full", NULL);
    self->expired = mesh_metrics_counter (registry, requests, requests_help, "service", service,
                                          "outcome", "expired", NULL);
    self->worker_lost = mesh_metrics_counter (registry, requests, requests_help, "service",
                                              service, "outcome", "worker_lost", NULL);
    self->client_gone = mesh_metrics_counter (registry, requests, requests_help, "service",
                                              service, "outcome", "client_gone", NULL);
    self->queue_depth = mesh_metrics_gauge (registry, "mesh_broker_queue_depth",
                                            "Requests waiting for a worker", "service", service,
                                            NULL);
    self->workers = mesh_metrics_gauge (registry, "mesh_broker_workers",
                                        "Workers registered", "service", service, NULL);
    self->time_in_broker = mesh_metrics_histogram (
        registry, "mesh_broker_time_in_broker_seconds",
        "Time from a request's arrival to its dispatch to a worker", NULL, 0, "service", service,
        NULL);
}
