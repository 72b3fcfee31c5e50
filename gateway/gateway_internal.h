/*  =========================================================================
    gateway_internal - what gateway.c (loop, probes) and gateway_request.c
    (HTTP requests) share. Not a public interface.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_INTERNAL_H_INCLUDED
#define GATEWAY_INTERNAL_H_INCLUDED

#include "gateway.h"
#include "gateway_auth.h"
#include "gateway_cors.h"
#include "gateway_ratelimit.h"
#include "gateway_metrics.h"
#include "gateway_sse.h"
#include "gateway_trace.h"

#include "mesh/mesh_client.h"
#include "mesh/mesh_metrics.h"
#include "mesh/mesh_tracer.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

//  What the last mmi.service probe said about a service.
typedef enum {
    GATEWAY_SERVICE_UNKNOWN,    //  No answer yet: calls go out
    GATEWAY_SERVICE_UP,         //  Has a worker
    GATEWAY_SERVICE_DOWN,       //  No worker: calls fail fast with 503
} gateway_service_state_t;

//  Services the gateway calls, probed in turn.
typedef enum {
    GATEWAY_SERVICE_USER,
    GATEWAY_SERVICE_AUDIT,
    GATEWAY_SERVICE_COUNT_
} gateway_service_t;

typedef struct gateway_request_s gateway_request_t;

struct gateway_s {
    gateway_cfg_t cfg;          //  Copied; strings borrowed from the caller
    mesh_random_t random;    //  Request ids and trace ids
    struct MHD_Daemon *daemon;  //  HTTP server, owned
    int port;                   //  HTTP port bound
    struct MHD_Daemon *admin_daemon;    //  Admin routes only, owned; NULL: on `daemon`
    int admin_port;             //  Its port, 0 when none
    void *context;              //  ZeroMQ context, owned
    mesh_client_t *client;      //  Mesh calls, owned
    void *probe;                //  DEALER for mmi.service, owned
    void *sub;                  //  SUB on the broker's XPUB, owned
    mesh_metrics_t *registry;   //  Served on /metrics, owned
    gateway_metrics_t *metrics; //  Owned
    mesh_tracer_t *tracer;      //  Spans, owned; NULL: tracing off
    gateway_sse_t *sse;         //  /v1/events streams, owned
    gateway_auth_t *auth;       //  Owned; NULL: no authentication
    gateway_ratelimit_t *ratelimit; //  Owned; NULL: no rate limit
    gateway_cors_t *cors;       //  Owned (allows nothing when not configured)
    char *tls_cert;             //  PEM text MHD serves with, owned (NULL: plain HTTP)
    char *tls_key;
    gateway_request_t *requests;    //  Every request state not yet freed
    uint64_t id_counter;        //  Suffix for duplicate X-Request-IDs in flight
    size_t retries_waiting;     //  Requests whose retry is not yet due
    bool draining;              //  SIGTERM seen: not ready, finishing
    //  Probes: one mmi.service in flight at a time on `probe`
    gateway_service_state_t services[GATEWAY_SERVICE_COUNT_];
    //  The last probe found a service UP before without a worker: one
    //  more must agree before it counts as DOWN (a restarted broker is
    //  asked before its workers' READYs have arrived)
    bool down_once[GATEWAY_SERVICE_COUNT_];
    bool broker_up;             //  The last probe was answered
    gateway_service_t probing;  //  Service of the probe in flight
    bool probe_in_flight;
    int64_t probe_due_ms;       //  Monotonic: next probe, or the one in flight expires
};

//  Service name as the broker knows it.
const char *
    gateway__service_name (gateway_service_t service);

//  Why a call to `service` fails while it has no worker (static text).
const char *
    gateway__no_worker (gateway_service_t service);

//  MHD's access handler and completion callback (gateway_request.c).
enum MHD_Result
    gateway__on_access (void *cls, struct MHD_Connection *connection, const char *url,
                        const char *method, const char *version, const char *upload_data,
                        size_t *upload_data_size, void **req_cls);
void
    gateway__on_completed (void *cls, struct MHD_Connection *connection, void **req_cls,
                           enum MHD_RequestTerminationCode toe);

//  The outcome of a mesh call whose tag is a request.
void
    gateway__on_reply (gateway_t *self, const mesh_reply_t *reply);

//  Send the retries that are due; returns the milliseconds until the next
//  one, or -1 when none waits.
int
    gateway__send_retries (gateway_t *self, int64_t now_ms);

//  Answer 503 with `why` to the requests waiting for `service`, or for
//  any service when it is GATEWAY_SERVICE_COUNT_.
void
    gateway__fail_waiting (gateway_t *self, gateway_service_t service, const char *why);

//  Free every request state left (after the HTTP server has stopped).
void
    gateway__free_requests (gateway_t *self);

#endif
