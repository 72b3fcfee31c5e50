/*  =========================================================================
    gateway - mesh-gateway: HTTP/JSON in front of the mesh
    One thread runs everything: libmicrohttpd without a thread of its own
    (epoll mode, its epoll fd polled by us), the mesh client's DEALER, a
    DEALER for MMI probes, the SUB socket of the event stream and a signal
    fd, all in one zmq_poll. A request that needs the mesh sends its call
    and suspends its connection; the reply resumes it. So a request waiting
    for the mesh holds no thread, and there are no locks.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_H_INCLUDED
#define GATEWAY_H_INCLUDED

#include "mesh/mesh_trace.h"
#include "mesh/mesh_curve.h"
#include "gateway_auth.h"

#include <stddef.h>

typedef struct gateway_s gateway_t;

typedef struct {
    const char *http_addr;      //  "host:port" to serve (port 0: pick one)
    const char *broker;         //  Broker ROUTER endpoint
    const char *events_sub;     //  Broker XPUB endpoint
    unsigned int max_connections;   //  Open HTTP connections at most
    unsigned int idle_timeout_s;    //  Close a connection silent this long
    size_t max_body;            //  Request body bytes at most (413 above)
    size_t max_header_bytes;    //  Per-connection memory for the request head
    int timeout_ms;             //  Deadline of a request (Request-Timeout may shorten)
    int drain_ms;               //  Bound on finishing in-flight work at shutdown
    int probe_ms;               //  Interval of mmi.service probes (readiness)
    int retry_delay_ms;         //  Wait before the one retry (half the broker's heartbeat)
    const mesh_curve_t *curve;  //  CURVE keys for every mesh socket, borrowed; NULL = plain
    //  Security (docs/security.md). Authentication is on when the auth
    //  settings name any credential source (JWT keys or an API keys file)
    gateway_auth_cfg_t auth;    //  Strings borrowed from the caller
    const char *cors_origins;   //  Comma list of allowed origins; NULL/"": none
    double rate_limit;          //  Requests per second per caller; 0: no limit
    unsigned int rate_burst;    //  Bucket size (0: rate, at least 1)
    size_t rate_table;          //  Callers remembered at most
    const char *tls_cert_file;  //  PEM certificate chain: HTTPS when set (with the key)
    const char *tls_key_file;   //  PEM private key
    const char *admin_addr;     //  "host:port" for /healthz /ready /metrics only; NULL/"": the HTTP port
    const mesh_trace_config_t *trace;   //  Tracing (copied); NULL or no endpoint: off
} gateway_cfg_t;

//  Defaults of DESIGN.md (addresses must still be set).
gateway_cfg_t
    gateway_cfg_defaults (void);

//  Bind the HTTP port and connect to the mesh. Returns NULL with *err:
//  MESH_EINVAL (bad address or endpoint, unreadable or invalid key,
//  certificate or API keys file: logged) or MESH_EIO (cannot bind).
gateway_t *
    gateway_new (const gateway_cfg_t *cfg, int *err);

//  Stop serving and free; nulls the caller's pointer.
void
    gateway_destroy (gateway_t **self_p);

//  The HTTP port bound.
int
    gateway_port (const gateway_t *self);

//  The admin port bound (plain HTTP), or 0 when the admin routes are served
//  on the HTTP port (no admin_addr).
int
    gateway_admin_port (const gateway_t *self);

//  Serve until `signal_fd` (a signalfd of the shutdown signals) is
//  readable, then drain: /ready answers 503 at once, event streams end,
//  requests waiting for the mesh finish (at most drain_ms), and it
//  returns 0. Returns MESH_EIO if polling fails.
int
    gateway_run (gateway_t *self, int signal_fd);

#endif
