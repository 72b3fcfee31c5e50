/*  =========================================================================
    broker_metrics - the broker's metric series, looked up once
    Series are created when a service first registers a worker (so the
    number of series is bounded by real services, never by names clients
    make up) and kept as pointers so the hot path only bumps atomics.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef BROKER_METRICS_H_INCLUDED
#define BROKER_METRICS_H_INCLUDED

#include "mesh/mesh_metrics.h"

//  Why a message was dropped as malformed (label "reason").
typedef enum {
    BROKER_MALFORMED_FRAMES,    //  Too few or too many frames
    BROKER_MALFORMED_HEADER,    //  Missing empty delimiter or unknown protocol
    BROKER_MALFORMED_COMMAND,   //  Unknown or misplaced worker command
    BROKER_MALFORMED_SERVICE,   //  Unusable service name
    BROKER_MALFORMED_CREDIT,    //  READY credit frame not 1..1000
    BROKER_MALFORMED_UNKNOWN_WORKER,    //  Command from a worker that never said READY
    BROKER_MALFORMED_REPLY,     //  REPLY for a request the worker does not hold
    BROKER_MALFORMED_COUNT_
} broker_malformed_t;

//  Per-service series; the outcome of every request ends in exactly one.
typedef struct {
    mesh_counter_t *replied;            //  Worker's reply forwarded
    mesh_counter_t *no_worker;          //  unavailable: no worker before the deadline
    mesh_counter_t *queue_full;         //  resource_exhausted
    mesh_counter_t *expired;            //  deadline_exceeded in the queue
    mesh_counter_t *worker_lost;        //  unavailable: the worker died holding it
    mesh_counter_t *client_gone;        //  Reply could not be delivered
    mesh_gauge_t *queue_depth;          //  Requests waiting
    mesh_gauge_t *workers;              //  Workers registered
    mesh_histogram_t *time_in_broker;   //  Receive to dispatch, seconds
} broker_service_metrics_t;

//  Process-wide series.
typedef struct {
    mesh_counter_t *malformed[BROKER_MALFORMED_COUNT_];
    mesh_counter_t *opaque_bodies;      //  Bodies that are not envelopes (passed through)
    mesh_counter_t *mmi;                //  MMI queries answered
    mesh_counter_t *workers_expired;    //  Workers dropped after missed heartbeats
    mesh_counter_t *events_forwarded;   //  Event messages XSUB -> XPUB
    mesh_counter_t *subscriptions;      //  Subscription messages XPUB -> XSUB
    mesh_gauge_t *services;             //  Services known
} broker_metrics_t;

//  Look up the process-wide series in `registry`.
void
    broker_metrics_init (broker_metrics_t *self, mesh_metrics_t *registry);

//  Look up the series of `service` (label value) in `registry`.
void
    broker_service_metrics_init (broker_service_metrics_t *self, mesh_metrics_t *registry,
                                 const char *service);

#endif
