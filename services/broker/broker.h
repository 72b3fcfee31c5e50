/*  =========================================================================
    broker - Majordomo (MDP/0.1 + MMI) broker and the event proxy
    One thread runs everything: the ROUTER that clients and workers talk to,
    and the XSUB/XPUB pair that forwards events. Requests go to the least
    recently used worker of their service that has spare credit; when none
    has, they wait in the service's bounded queue until a worker frees up or
    their deadline passes. The broker answers for the mesh when it must
    (no worker, queue full, expired in queue, worker died) with error
    envelopes. Malformed input is counted and dropped, never fatal.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef BROKER_H_INCLUDED
#define BROKER_H_INCLUDED

#include "mesh/mesh_curve.h"
#include "mesh/mesh_metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *bind;           //  ROUTER endpoints, comma-separated: "tcp://127.0.0.1:5555"
    const char *xsub_bind;      //  Publishers connect here (same form); NULL = no event proxy
    const char *xpub_bind;      //  Subscribers connect here (same form); NULL = no event proxy
    int heartbeat_ms;           //  Heartbeat interval, default 1000
    int liveness;               //  Missed heartbeats before a worker is dead, default 3
    int default_wait_ms;        //  Queue wait for requests without a deadline, default 5000
    size_t queue_max;           //  Requests queued per service, default 10000
    size_t max_services;        //  Services known at once, default 1000
    size_t max_frame;           //  Largest accepted message in bytes, default 1 MiB + 64 KiB
    mesh_metrics_t *metrics;    //  Borrowed; must outlive the broker
    const mesh_curve_t *curve;  //  Own keys, borrowed; NULL = plain (no CURVE, no checks)
    const char *curve_allow;    //  Allow-list directory; required with curve
} broker_cfg_t;

typedef struct broker_s broker_t;

//  Defaults for every field but the endpoints and metrics.
broker_cfg_t
    broker_cfg_defaults (void);

//  Create the broker and bind its sockets. Returns NULL with *err set
//  (MESH_EINVAL: bad configuration, e.g. curve without curve_allow;
//  MESH_EIO: cannot bind) and a reason in the log. With `curve` every
//  socket is a CURVE server, the broker answers ZAP itself and every
//  message is checked against its sender's certificate (broker_auth.h).
broker_t *
    broker_new (const broker_cfg_t *cfg, int *err);

//  Destroy; nulls the caller's pointer.
void
    broker_destroy (broker_t **self_p);

//  Serve until `stop_fd` becomes readable (a signalfd or pipe; the broker
//  does not read it). Then tell every worker DISCONNECT and return 0.
//  Returns MESH_EIO on an unrecoverable socket error.
int
    broker_run (broker_t *self, int stop_fd);

//  First endpoint actually bound for the ROUTER (resolves port 0 / wildcard).
//  Borrowed; valid while the broker lives.
const char *
    broker_endpoint (const broker_t *self);

#endif
