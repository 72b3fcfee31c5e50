/*  =========================================================================
    user_relay - numbers outbox events and publishes them to the broker
    Every mesh-user process runs one relay; a PostgreSQL advisory lock (one
    per schema) makes exactly one of them the leader, and the others stand
    by and retry, so when the leader's process dies its session ends, the
    lock is released and a standby takes over within a sweep interval.
    The leader:
    - numbers the rows still without `seq` in one transaction per batch:
      seq = outbox_relay.last_seq + 1, 2, ... in outbox id order, and
      last_seq moves on in the same transaction. Seqs are gap-free and
      stored before anything is published; a row that commits late is
      simply numbered later (the relay never tracks "last id seen");
    - publishes each numbered event, in seq order, as two frames (topic =
      event type, body = user_codec_pack_event) on a PUB socket connected
      to the broker's XSUB;
    - records the last seq it published (outbox_relay.published_seq), so a
      new leader first republishes what the old one may not have sent;
    - sleeps until NOTIFY mesh_outbox (sent by a trigger when a transaction
      that wrote outbox rows commits) or the sweep interval passes, and
      purges idempotency keys older than a day now and then.
    PUB/SUB may still drop an event (a subscriber that is down or slow);
    subscribers catch up through events.list, which reads the same rows.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_RELAY_H_INCLUDED
#define USER_RELAY_H_INCLUDED

#include "mesh/mesh_tracer.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_metrics.h"

#define USER_RELAY_DEFAULT_BATCH 500
#define USER_RELAY_DEFAULT_SWEEP_MS 1000

typedef struct {
    const char *conninfo;       //  PostgreSQL conninfo or URL; copied
    void *zmq_context;          //  Borrowed; must outlive the relay
    const char *events_pub;     //  Broker's XSUB endpoint; copied
    int batch;                  //  Rows numbered per transaction; 0 = default
    int sweep_ms;               //  Sweep and standby retry interval; 0 = default
    mesh_metrics_t *metrics;    //  Borrowed; may be NULL
    const mesh_curve_t *curve;  //  CURVE keys, borrowed (must outlive the relay); NULL = plain
    mesh_tracer_t *tracer;      //  A publish span per event, borrowed; NULL = none
} user_relay_cfg_t;

typedef struct user_relay_s user_relay_t;

//  Create a relay (connects nothing yet). Returns NULL with *err set to
//  MESH_EINVAL when the configuration is incomplete or out of range, or
//  MESH_EIO when the stop signal cannot be made.
user_relay_t *
    user_relay_new (const user_relay_cfg_t *cfg, int *err);

//  Run until user_relay_stop: connect (and reconnect), lead or stand by,
//  number and publish. Returns 0 after a stop, MESH_EIO when the PUB socket
//  cannot be made. Call from one thread.
int
    user_relay_run (user_relay_t *self);

//  Ask a running relay to return; safe from any thread, any number of times.
void
    user_relay_stop (user_relay_t *self);

//  Destroy a relay that is not running. Tolerates NULL; nulls the pointer.
void
    user_relay_destroy (user_relay_t **self_p);

#endif
