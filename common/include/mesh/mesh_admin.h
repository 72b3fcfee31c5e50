/*  =========================================================================
    mesh_admin - admin HTTP endpoint: /healthz, /ready, /metrics
    Every mesh process serves its liveness, readiness and metrics on an admin
    address (libmicrohttpd, its own thread). Liveness answers 200 whenever
    the process serves HTTP: it never depends on the broker or the database
    (that would turn an outage into a restart storm). Readiness is pushed by
    the owner with mesh_admin_set_ready; it starts false.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_ADMIN_H_INCLUDED
#define MESH_ADMIN_H_INCLUDED

#include "mesh/mesh_metrics.h"

#include <stdbool.h>
#include <sys/socket.h>

typedef struct mesh_admin_s mesh_admin_t;

//  Start serving on `addr` ("host:port", IPv4 or [IPv6]; port 0 picks a free
//  port, see mesh_admin_port). `metrics` is borrowed and must outlive the
//  admin. Returns NULL with *err = MESH_EINVAL (bad address) or MESH_EIO
//  (cannot bind).
mesh_admin_t *
    mesh_admin_new (const char *addr, mesh_metrics_t *metrics, int *err);

//  mesh_admin_new for a process's main: logs where it serves ("admin
//  serving", with the port bound) or why it cannot (an error line), the
//  same lines in every process. Returns the admin or NULL.
mesh_admin_t *
    mesh_admin_open (const char *addr, mesh_metrics_t *metrics);

//  Stop serving and free; nulls the caller's pointer.
void
    mesh_admin_destroy (mesh_admin_t **self_p);

//  Port actually bound.
int
    mesh_admin_port (const mesh_admin_t *self);

//  Set what /ready answers: 200 when true, 503 otherwise. Thread-safe.
void
    mesh_admin_set_ready (mesh_admin_t *self, bool ready);

//  Split "host:port" / "[v6]:port" into host (NUL-terminated, up to
//  host_size) and port. Returns 0 or MESH_EINVAL. Shared with the gateway.
int
    mesh_parse_host_port (const char *addr, char *host, size_t host_size, int *port);

//  Parse "host:port" as mesh_parse_host_port does and resolve it (a numeric
//  host, or "localhost" preferring IPv4; no DNS) into *sockaddr, *port
//  getting the port. Returns 0 or MESH_EINVAL. Shared with the gateway.
int
    mesh_resolve_host_port (const char *addr, struct sockaddr_storage *sockaddr, int *port);

#endif
