/*  =========================================================================
    audit_subscriber - the ingest thread of mesh-audit
    Subscribes to "user." on the broker's XPUB first, then catches up
    through events.list (audit_ingest: the Clone pattern), then stores live
    events as they come, catching up again on a gap, after a failure, and
    every catch-up interval (which also finds the tail of a burst whose last
    events the stream dropped). Malformed event messages (not two frames,
    not MessagePack, missing or wrong fields) are logged, counted by reason
    and skipped. Owns its SUB socket, its mesh client, its database
    connection (audit_store_pg) and the ingest state.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_SUBSCRIBER_H_INCLUDED
#define AUDIT_SUBSCRIBER_H_INCLUDED

#include "mesh/mesh_tracer.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_metrics.h"

#include <stdbool.h>

typedef struct {
    const char *conninfo;       //  PostgreSQL; copied
    const char *schema;         //  Prepared by audit_schema_prepare; copied
    void *zmq_context;          //  Borrowed
    const char *broker;         //  Broker ROUTER (events.list); copied
    const char *events_sub;     //  Broker XPUB; copied
    int catchup_ms;             //  Periodic catch-up interval
    mesh_metrics_t *metrics;    //  Borrowed; may be NULL
    const mesh_curve_t *curve;  //  CURVE keys for both sockets, borrowed; NULL = plain
    mesh_tracer_t *tracer;      //  An ingest span per live event, borrowed; NULL = none
} audit_subscriber_cfg_t;

typedef struct audit_subscriber_s audit_subscriber_t;

//  Returns NULL with *err MESH_EINVAL (bad settings) or MESH_EIO.
audit_subscriber_t *
    audit_subscriber_new (const audit_subscriber_cfg_t *cfg, int *err);

//  Run until audit_subscriber_stop. Returns 0, or MESH_EIO when a socket
//  cannot be made. One thread.
int
    audit_subscriber_run (audit_subscriber_t *self);

//  Ask run to return; any thread.
void
    audit_subscriber_stop (audit_subscriber_t *self);

//  True once the first catch-up has completed (readiness); any thread.
bool
    audit_subscriber_caught_up (audit_subscriber_t *self);

//  Destroy a subscriber that is not running; nulls the pointer.
void
    audit_subscriber_destroy (audit_subscriber_t **self_p);

#endif
