/*  =========================================================================
    gateway_request - one HTTP request, from headers to response
    MHD calls the access handler first with the headers, then with body
    pieces, then once more with none. The first call settles everything the
    headers decide (route, method, content type, declared length, ids),
    answering at once when that is an error. Body pieces are copied up to
    the limit. The last call turns the request into a mesh call, sends it,
    and suspends the connection; gateway__on_reply builds the response
    and resumes it, and MHD calls the handler again to queue it.
    A request state is freed by MHD's completion callback, unless a mesh
    call with its tag is still in flight (only at shutdown): then the
    reply, or gateway__free_requests, frees it.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_internal.h"
#include "gateway_body.h"
#include "gateway_openapi.h"
#include "gateway_problem.h"
#include "gateway_routes.h"
#include "gateway_tag.h"
#include "gateway_trace.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_json.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_LIST_DEFAULT_LIMIT 50
#define S_LIST_MAX_LIMIT 500
#define S_IDEM_MAX 255              //  Idempotency-Key bytes at most
#define S_RETRY_AFTER "1"           //  Seconds, with 429 and 503

struct gateway_request_s {
    gateway_tag_t tag;          //  GATEWAY_TAG_REQUEST; first member
    gateway_t *owner;
    struct MHD_Connection *connection;  //  NULL once MHD completed the request
    gateway_request_t *prev;    //  In owner->requests
    gateway_request_t *next;
    const gateway_route_t *route;
    gateway_method_t method;
    int64_t started_us;         //  Monotonic, for the duration histogram
    int64_t deadline_ms;        //  Monotonic deadline of the whole request
    unsigned int status;        //  Status queued (0: none yet)
    char request_id[GATEWAY_REQUEST_ID_MAX + 1];
    char traceparent[GATEWAY_TRACEPARENT_SIZE];
    char trace_id[GATEWAY_TRACE_ID_SIZE];
    char span_id[MESH_SPAN_ID_HEX_SIZE];    //  The server span's; off: the parent id sent on
    mesh_span_record_t *server_span;    //  Owned; NULL: not traced or not sampled
    mesh_span_record_t *call_span;      //  The mesh call's client span, owned
    char call_traceparent[GATEWAY_TRACEPARENT_SIZE];    //  Sent in the envelope
    char param[40];             //  Raw {id} segment
    char id[37];                //  {id} as a canonical UUID
    char idem[S_IDEM_MAX + 1];  //  Idempotency-Key, "" when none
    char *body;                 //  Request body so far
    size_t body_len;
    bool body_too_large;        //  Stop reading: 413 or close
    gateway_service_t service;  //  Of the mesh call
    const char *mesh_method;    //  "user.get", ...
    msgpack_sbuffer packed;     //  Call body, kept for the one retry
    bool retried;               //  The one retry on unavailable was used
    int64_t retry_at_ms;        //  Monotonic: the retry waits until then (0: none)
    bool in_mesh;               //  A call with this tag is in flight
    bool answered;              //  The mesh's answer, or a 503 instead, is decided
    bool defer;                 //  Answers wait for MHD's next call (see s_queue)
    struct MHD_Response *response;  //  Built early or while suspended; queued next call
    //  Security: who asks, what the answer must say about it
    char actor[MESH_ENVELOPE_MAX_ACTOR + 1];    //  Authenticated identity, "" when none
    char origin[256];           //  An allowed CORS Origin to answer to, "" when none
    char ratelimit_policy[64];  //  RateLimit-Policy, "" when no limit applies
    char ratelimit_state[64];   //  RateLimit
    unsigned int retry_after_s; //  Retry-After of a rate-limit 429 (0: the default)
    char www_authenticate[320]; //  With a 401 or 403, "" otherwise
};

//  Request states live in a list so that shutdown can find them all.
static gateway_request_t *
s_request_new (gateway_t *self, struct MHD_Connection *connection)
{
    gateway_request_t *request = mesh_alloc (sizeof (gateway_request_t));
    request->tag.kind = GATEWAY_TAG_REQUEST;
    request->owner = self;
    request->connection = connection;
    request->started_us = mesh_mono_us ();
    msgpack_sbuffer_init (&request->packed);
    request->next = self->requests;
    if (self->requests)
        self->requests->prev = request;
    self->requests = request;
    return request;
}

static void
s_request_free (gateway_request_t *request)
{
    gateway_t *self = request->owner;
    if (request->prev)
        request->prev->next = request->next;
    else
        self->requests = request->next;
    if (request->next)
        request->next->prev = request->prev;
    if (request->response)
        MHD_destroy_response (request->response);
    //  Spans of a request cut short (shutdown) are not exported
    mesh_tracer_end (NULL, &request->server_span);
    mesh_tracer_end (NULL, &request->call_span);
    msgpack_sbuffer_destroy (&request->packed);
    free (request->body);
    free (request);
}

//  --------------------------------------------------------------------------
//  Responses

//  The headers security adds to an answer: CORS for an allowed origin (and
//  Vary whenever origins are configured, so caches keep answers apart),
//  the caller's rate limit, the challenge of a 401 or 403.
static void
s_security_headers (gateway_request_t *request, struct MHD_Response *response)
{
    if (request->origin[0]) {
        MHD_add_response_header (response, "Access-Control-Allow-Origin", request->origin);
        MHD_add_response_header (response, "Access-Control-Expose-Headers",
                                 GATEWAY_CORS_EXPOSE_HEADERS);
    }
    if (gateway_cors_enabled (request->owner->cors))
        MHD_add_response_header (response, "Vary", "Origin");
    if (request->ratelimit_policy[0]) {
        MHD_add_response_header (response, "RateLimit-Policy", request->ratelimit_policy);
        MHD_add_response_header (response, "RateLimit", request->ratelimit_state);
    }
    if (request->www_authenticate[0])
        MHD_add_response_header (response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                 request->www_authenticate);
}

//  A response from `len` bytes of `body` (copied) with `type`, plus the
//  headers every answer carries. NULL when MHD cannot make one.
static struct MHD_Response *
s_response (gateway_request_t *request, const char *type, const char *body, size_t len)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        len, (void *) body, MHD_RESPMEM_MUST_COPY);
    if (!response)
        return NULL;
    if (type)
        MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header (response, "X-Request-ID", request->request_id);
    MHD_add_response_header (response, "traceparent", request->traceparent);
    MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (request->owner->draining)
        MHD_add_response_header (response, MHD_HTTP_HEADER_CONNECTION, "close");
    s_security_headers (request, response);
    return response;
}

//  A response with `json` as its body (the reference is consumed).
static struct MHD_Response *
s_json_response (gateway_request_t *request, json_t *json, const char *type)
{
    char *text = json_dumps (json, JSON_COMPACT);
    json_decref (json);
    if (!text)
        return NULL;
    struct MHD_Response *response = s_response (request, type, text, strlen (text));
    free (text);
    return response;
}

//  The problem+json response of `kind`, with Allow or Retry-After when the
//  status calls for it.
static struct MHD_Response *
s_problem_response (gateway_request_t *request, gateway_problem_t kind, const char *detail,
                    unsigned int *status)
{
    json_t *problem = gateway_problem_new (kind, detail, request->request_id);
    struct MHD_Response *response = s_json_response (request, problem,
                                                     "application/problem+json");
    *status = gateway_problem_status (kind);
    if (response && *status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, request->route->allow);
    if (response && (*status == 429 || *status == 503)) {
        char retry_after[16];
        snprintf (retry_after, sizeof retry_after, "%u", request->retry_after_s);
        MHD_add_response_header (response, MHD_HTTP_HEADER_RETRY_AFTER,
                                 request->retry_after_s? retry_after: S_RETRY_AFTER);
    }
    return response;
}

//  Queue `response` with `status` and drop our reference. While the
//  headers of a request without a body are read, the answer is kept for
//  MHD's next call instead: MHD closes the connection after a response
//  queued on the first call, and keep-alive clients should keep theirs.
static enum MHD_Result
s_queue (gateway_request_t *request, unsigned int status, struct MHD_Response *response)
{
    if (!response)
        return MHD_NO;          //  MHD closes the connection
    request->status = status;
    if (request->defer) {
        request->response = response;
        return MHD_YES;
    }
    enum MHD_Result result = MHD_queue_response (request->connection, status, response);
    MHD_destroy_response (response);
    return result;
}

//  Answer now with a problem.
static enum MHD_Result
s_fail (gateway_request_t *request, gateway_problem_t kind, const char *detail)
{
    unsigned int status = 0;
    struct MHD_Response *response = s_problem_response (request, kind, detail, &status);
    return s_queue (request, status, response);
}

//  Answer now with a plain-text body.
static enum MHD_Result
s_text (gateway_request_t *request, unsigned int status, const char *type, const char *body,
        size_t len)
{
    return s_queue (request, status, s_response (request, type, body, len));
}

//  --------------------------------------------------------------------------
//  The first call: headers

//  A header of the request, or NULL.
static const char *
s_header (gateway_request_t *request, const char *name)
{
    return MHD_lookup_connection_value (request->connection, MHD_HEADER_KIND, name);
}

//  True when a Content-Type names JSON (parameters such as charset allowed).
static bool
s_is_json (const char *type)
{
    if (!type)
        return false;
    size_t len = strcspn (type, "; \t");
    return (len == 16 && strncasecmp (type, "application/json", len) == 0)
        || (len == 28 && strncasecmp (type, "application/merge-patch+json", len) == 0);
}

//  Deadline from Request-Timeout (seconds, decimal, may only shorten the
//  default). Returns false when the header is malformed.
static bool
s_set_deadline (gateway_request_t *request)
{
    int timeout_ms = request->owner->cfg.timeout_ms;
    const char *header = s_header (request, "Request-Timeout");
    if (header) {
        char *end = NULL;
        errno = 0;
        double seconds = strtod (header, &end);
        if (errno || end == header || *end || !isfinite (seconds) || seconds <= 0
            || strspn (header, "0123456789.") != strlen (header))
            return false;
        if (seconds * 1000.0 < timeout_ms)
            timeout_ms = seconds * 1000.0 < 1? 1: (int) (seconds * 1000.0);
    }
    request->deadline_ms = mesh_mono_ms () + timeout_ms;
    return true;
}

//  Answer the routes that need no body and no mesh call.
static enum MHD_Result
s_answer_local (gateway_request_t *request)
{
    gateway_t *self = request->owner;
    static const char text_plain[] = "text/plain; charset=utf-8";
    switch (request->route->id) {
        case GATEWAY_ROUTE_HEALTHZ:
            return s_text (request, MHD_HTTP_OK, text_plain, "ok\n", 3);
        case GATEWAY_ROUTE_READY: {
            bool ready = !self->draining && self->broker_up
                      && self->services[GATEWAY_SERVICE_USER] == GATEWAY_SERVICE_UP;
            if (ready)
                return s_text (request, MHD_HTTP_OK, text_plain, "ready\n", 6);
            const char *why = self->draining? "shutting down\n"
                            : !self->broker_up? "broker does not answer\n"
                                              : "service user has no worker\n";
            return s_text (request, MHD_HTTP_SERVICE_UNAVAILABLE, text_plain, why,
                           strlen (why));
        }
        case GATEWAY_ROUTE_METRICS: {
            size_t len = 0;
            char *text = mesh_metrics_render (self->registry, &len);
            enum MHD_Result result = s_text (request, MHD_HTTP_OK,
                                             "text/plain; version=0.0.4; charset=utf-8",
                                             text, len);
            free (text);
            return result;
        }
        case GATEWAY_ROUTE_OPENAPI:
            return s_text (request, MHD_HTTP_OK, "application/yaml",
                           (const char *) gateway_openapi_yaml, gateway_openapi_yaml_len);
        default:
            assert (false);
            return MHD_NO;
    }
}

//  GET /v1/events: open a stream, resuming after Last-Event-ID.
static enum MHD_Result
s_open_events (gateway_request_t *request)
{
    const char *last = s_header (request, "Last-Event-ID");
    long long seq = 0;
    bool resume = last && *last;
    if (resume) {
        char *end = NULL;
        errno = 0;
        seq = strtoll (last, &end, 10);
        if (errno || *end || seq < 0 || strspn (last, "0123456789") != strlen (last))
            return s_fail (request, GATEWAY_PROBLEM_BAD_PARAMETER,
                           "header 'Last-Event-ID' must be an event seq (a decimal integer)");
    }
    if (request->owner->draining)
        return s_fail (request, GATEWAY_PROBLEM_UNAVAILABLE, "the gateway is shutting down");
    struct MHD_Response *response = gateway_sse_open (request->owner->sse, request->connection,
                                                      resume, (uint64_t) seq,
                                                      request->request_id, request->traceparent,
                                                      request->actor);
    if (!response)
        return MHD_NO;
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header (response, "X-Request-ID", request->request_id);
    s_security_headers (request, response);
    return s_queue (request, MHD_HTTP_OK, response);
}

//  --------------------------------------------------------------------------
//  Security: CORS, authentication, rate limit, scopes

//  Remember the Origin when it is allowed, to answer it.
static void
s_take_origin (gateway_request_t *request)
{
    const char *origin = s_header (request, "Origin");
    if (origin && strlen (origin) < sizeof request->origin &&
        gateway_cors_allowed (request->owner->cors, origin))
        snprintf (request->origin, sizeof request->origin, "%s", origin);
}

//  A CORS preflight: 204 with what the route allows, for an allowed origin.
static enum MHD_Result
s_preflight (gateway_request_t *request)
{
    if (!request->origin[0]) {
        char detail[320];
        const char *origin = s_header (request, "Origin");
        snprintf (detail, sizeof detail,
                  "origin '%.200s' may not call the API (see MESH_GATEWAY_CORS_ORIGINS)",
                  origin ? origin : "");
        gateway_metrics_refused (request->owner->metrics, GATEWAY_REFUSAL_ORIGIN_NOT_ALLOWED);
        return s_fail (request, GATEWAY_PROBLEM_ORIGIN_NOT_ALLOWED, detail);
    }
    struct MHD_Response *response = s_response (request, NULL, "", 0);
    if (response) {
        MHD_add_response_header (response, "Access-Control-Allow-Methods", request->route->allow);
        MHD_add_response_header (response, "Access-Control-Allow-Headers",
                                 GATEWAY_CORS_ALLOW_HEADERS);
        MHD_add_response_header (response, "Access-Control-Max-Age", GATEWAY_CORS_MAX_AGE);
    }
    return s_queue (request, MHD_HTTP_NO_CONTENT, response);
}

//  The scope a request needs (0: the route is open to anyone).
static unsigned int
s_scope_needed (const gateway_request_t *request)
{
    switch (request->route->id) {
    case GATEWAY_ROUTE_USERS:
    case GATEWAY_ROUTE_USER:
        return request->method & (GATEWAY_METHOD_GET | GATEWAY_METHOD_HEAD)
                   ? GATEWAY_SCOPE_USERS_READ
                   : GATEWAY_SCOPE_USERS_WRITE;
    case GATEWAY_ROUTE_AUDIT:
        return GATEWAY_SCOPE_AUDIT_READ;
    case GATEWAY_ROUTE_EVENTS:
        return GATEWAY_SCOPE_EVENTS_READ;
    default:
        return 0;
    }
}

//  Take a token from the caller's bucket: its identity's when it has one,
//  its address's otherwise. Returns false when the bucket is empty.
static bool
s_take_token (gateway_request_t *request)
{
    gateway_t *self = request->owner;
    char key[GATEWAY_RATELIMIT_KEY_MAX + 1];
    if (request->actor[0])
        snprintf (key, sizeof key, "id:%s", request->actor);
    else {
        char address[INET6_ADDRSTRLEN] = "unknown";
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info (request->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *peer = info ? info->client_addr : NULL;
        //  Copied out, not cast: a struct sockaddr promises less alignment
        //  than the family's own struct
        if (peer && peer->sa_family == AF_INET) {
            struct sockaddr_in in4;
            memcpy (&in4, peer, sizeof in4);
            inet_ntop (AF_INET, &in4.sin_addr, address, sizeof address);
        }
        else if (peer && peer->sa_family == AF_INET6) {
            struct sockaddr_in6 in6;
            memcpy (&in6, peer, sizeof in6);
            inet_ntop (AF_INET6, &in6.sin6_addr, address, sizeof address);
        }
        snprintf (key, sizeof key, "ip:%s", address);
    }
    gateway_ratelimit_result_t result;
    gateway_ratelimit_take (self->ratelimit, key, mesh_mono_ms (), &result);
    gateway_ratelimit_headers (self->ratelimit, &result, request->ratelimit_policy,
                               request->ratelimit_state, sizeof request->ratelimit_policy);
    request->retry_after_s = result.retry_after_s;
    return result.allowed;
}

//  `text` with what a quoted-string of a challenge cannot hold replaced.
static void
s_challenge_text (const char *text, char *out, size_t size)
{
    snprintf (out, size, "%s", text);
    for (char *at = out; *at; at++)
        if (*at == '"' || *at == '\\' || (unsigned char)*at < 0x20 || (unsigned char)*at > 0x7e)
            *at = '?';
}

//  Authenticate, limit and authorise a request to an API route. Returns
//  true to go on, false after answering 401, 403 or 429.
static bool
s_admit (gateway_request_t *request, enum MHD_Result *result)
{
    gateway_t *self = request->owner;
    unsigned int scope = s_scope_needed (request);
    if (!scope)
        return true;
    gateway_auth_outcome_t outcome = GATEWAY_AUTH_OK;
    gateway_identity_t identity = {.scopes = 0};
    char why[192] = "";
    if (self->auth) {
        outcome =
            gateway_auth_check (self->auth, s_header (request, MHD_HTTP_HEADER_AUTHORIZATION),
                                (int64_t)(mesh_wall_ms () / 1000), &identity, why, sizeof why);
        if (outcome == GATEWAY_AUTH_OK) {
            snprintf (request->actor, sizeof request->actor, "%s", identity.actor);
            gateway_metrics_authenticated (self->metrics, identity.api_key);
        }
    }
    //  Before the 401: guessing keys costs tokens from the address's bucket
    if (self->ratelimit && !s_take_token (request)) {
        char detail[128];
        snprintf (detail, sizeof detail, "over the rate limit of %s; retry in %u s",
                  request->actor[0] ? "this identity" : "this address", request->retry_after_s);
        gateway_metrics_refused (self->metrics, GATEWAY_REFUSAL_RATE_LIMITED);
        *result = s_fail (request, GATEWAY_PROBLEM_RATE_LIMITED, detail);
        return false;
    }
    if (outcome != GATEWAY_AUTH_OK) {
        char description[192];
        s_challenge_text (why, description, sizeof description);
        if (outcome == GATEWAY_AUTH_MISSING)
            snprintf (request->www_authenticate, sizeof request->www_authenticate,
                      "Bearer realm=\"zmesh\"");
        else
            snprintf (request->www_authenticate, sizeof request->www_authenticate,
                      "Bearer realm=\"zmesh\", error=\"invalid_token\", "
                      "error_description=\"%s\"",
                      description);
        gateway_metrics_refused (self->metrics, outcome == GATEWAY_AUTH_MISSING
                                                    ? GATEWAY_REFUSAL_MISSING_CREDENTIAL
                                                    : GATEWAY_REFUSAL_INVALID_CREDENTIAL);
        *result = s_fail (request, GATEWAY_PROBLEM_UNAUTHENTICATED, why);
        return false;
    }
    if (self->auth && !(identity.scopes & scope)) {
        const char *name = gateway_scope_name (scope);
        snprintf (request->www_authenticate, sizeof request->www_authenticate,
                  "Bearer realm=\"zmesh\", error=\"insufficient_scope\", scope=\"%s\"", name);
        char detail[128];
        snprintf (detail, sizeof detail, "the credential does not grant scope '%s'", name);
        gateway_metrics_refused (self->metrics, GATEWAY_REFUSAL_INSUFFICIENT_SCOPE);
        *result = s_fail (request, GATEWAY_PROBLEM_PERMISSION_DENIED, detail);
        return false;
    }
    return true;
}

//  With a separate admin address: true when the route is served on the
//  server the request came to (/healthz, /ready, /metrics on the admin
//  one, everything else on the API one).
static bool
s_on_its_server (gateway_request_t *request)
{
    gateway_route_id_t id = request->route->id;
    bool admin_route = id == GATEWAY_ROUTE_HEALTHZ || id == GATEWAY_ROUTE_READY
                    || id == GATEWAY_ROUTE_METRICS;
    const union MHD_ConnectionInfo *info = MHD_get_connection_info (
        request->connection, MHD_CONNECTION_INFO_DAEMON);
    bool on_admin = info && info->daemon == request->owner->admin_daemon;
    return admin_route == on_admin;
}

//  The request's trace context: with tracing on, a server span under the
//  client's traceparent (the sampler decides; the ids go on either way);
//  off, a fresh parent id for the same trace as before.
static void
s_trace_start (gateway_request_t *request)
{
    gateway_t *self = request->owner;
    const char *incoming = s_header (request, "traceparent");
    if (!self->tracer) {
        gateway_traceparent_next (&self->random, incoming, request->traceparent,
                                  request->trace_id);
        //  The log line's span_id: the parent id the gateway sends on
        mesh_traceparent_ids (request->traceparent, strlen (request->traceparent),
                              request->trace_id, request->span_id);
        return;
    }
    mesh_trace_ctx_t ctx;
    //  Named when the route is known (s_server_span_end)
    request->server_span = mesh_tracer_start_remote (self->tracer, "HTTP", MESH_SPAN_SERVER,
                                                     incoming, &ctx);
    mesh_traceparent_format (&ctx, request->traceparent);
    mesh_trace_hex (ctx.trace_id, sizeof ctx.trace_id, request->trace_id);
    mesh_trace_hex (ctx.span_id, sizeof ctx.span_id, request->span_id);
}

//  End the server span: named "METHOD /route/{template}", with the HTTP
//  semantic conventions' attributes.
static void
s_server_span_end (gateway_request_t *request)
{
    mesh_span_record_t *span = request->server_span;
    if (!span)
        return;
    const char *method = gateway_method_label (request->method);
    bool routed = request->route && request->route->id != GATEWAY_ROUTE_UNMATCHED;
    if (routed)
        snprintf (span->name, sizeof span->name, "%s %s", method, request->route->template);
    else
        snprintf (span->name, sizeof span->name, "%s", method);
    mesh_span_record_set_string (span, "http.request.method", method);
    if (routed)
        mesh_span_record_set_string (span, "http.route", request->route->template);
    mesh_span_record_set_int (span, "http.response.status_code", request->status);
    //  Server spans: only 5xx is an error (4xx is the client's)
    if (request->status >= 500 || request->status == 0)
        span->status = MESH_SPAN_STATUS_ERROR;
    mesh_tracer_end (request->owner->tracer, &request->server_span);
}

//  End the mesh call's client span with the call's outcome.
static void
s_call_span_end (gateway_request_t *request, mesh_code_t code)
{
    mesh_span_record_t *span = request->call_span;
    if (!span)
        return;
    if (code != MESH_CODE_OK) {
        span->status = MESH_SPAN_STATUS_ERROR;
        snprintf (span->status_message, sizeof span->status_message, "%s",
                  mesh_code_name (code));
    }
    mesh_span_record_set_string (span, "rpc.zmesh.code", mesh_code_name (code));
    mesh_tracer_end (request->owner->tracer, &request->call_span);
}

//  Start the mesh call's client span; the envelope carries its context so
//  the worker's span hangs under it. Returns the traceparent to send.
static const char *
s_call_span_start (gateway_request_t *request, const char *service)
{
    gateway_t *self = request->owner;
    if (!request->server_span)
        return request->traceparent;
    mesh_trace_ctx_t parent = request->server_span->ctx, ctx;
    char name[96];
    snprintf (name, sizeof name, "%s/%s", service, request->mesh_method);
    request->call_span = mesh_tracer_start (self->tracer, name, MESH_SPAN_CLIENT, &parent, &ctx);
    mesh_span_record_set_string (request->call_span, "rpc.system", "zmesh");
    mesh_span_record_set_string (request->call_span, "rpc.service", service);
    mesh_span_record_set_string (request->call_span, "rpc.method", request->mesh_method);
    mesh_traceparent_format (&ctx, request->call_traceparent);
    return request->call_traceparent;
}

//  What the headers decide. Returns MHD_YES to go on reading the body.
static enum MHD_Result
s_on_headers (gateway_request_t *request, const char *url, const char *method)
{
    gateway_t *self = request->owner;
    const char *incoming_id = s_header (request, "X-Request-ID");
    if (incoming_id && gateway_request_id_valid (incoming_id))
        snprintf (request->request_id, sizeof request->request_id, "%s", incoming_id);
    else
        gateway_uuid_make (&self->random, request->request_id);
    s_trace_start (request);
    request->route = gateway_route_match (url, request->param, sizeof request->param);
    request->method = gateway_method_parse (method);
    gateway_metrics_request_started (self->metrics);

    if (self->admin_daemon && !s_on_its_server (request))
        request->route = gateway_route_get (GATEWAY_ROUTE_UNMATCHED);
    if (request->route->id == GATEWAY_ROUTE_UNMATCHED) {
        char detail[160];
        snprintf (detail, sizeof detail, "no route for path '%.100s'", url);
        return s_fail (request, GATEWAY_PROBLEM_NOT_FOUND, detail);
    }
    s_take_origin (request);
    if (strcmp (method, MHD_HTTP_METHOD_OPTIONS) == 0
        && s_header (request, "Access-Control-Request-Method"))
        return s_preflight (request);
    if (!(request->route->methods & request->method)) {
        char detail[160];
        snprintf (detail, sizeof detail, "method %.20s is not allowed on %s; allowed: %s",
                  method, request->route->template, request->route->allow);
        return s_fail (request, GATEWAY_PROBLEM_METHOD_NOT_ALLOWED, detail);
    }
    enum MHD_Result refused = MHD_NO;
    if (!s_admit (request, &refused))
        return refused;
    if (request->route->id == GATEWAY_ROUTE_EVENTS)
        return s_open_events (request);
    if (request->route->id != GATEWAY_ROUTE_USERS && request->route->id != GATEWAY_ROUTE_USER
        && request->route->id != GATEWAY_ROUTE_AUDIT)
        return s_answer_local (request);

    if (request->route->id == GATEWAY_ROUTE_USER
        && !gateway_uuid_parse (request->param, request->id))
        return s_fail (request, GATEWAY_PROBLEM_BAD_PARAMETER,
                       "path parameter 'id' must be a UUID");
    if (!s_set_deadline (request))
        return s_fail (request, GATEWAY_PROBLEM_BAD_PARAMETER,
                       "header 'Request-Timeout' must be a positive number of seconds");
    const char *idem = s_header (request, "Idempotency-Key");
    if (idem) {
        if (!gateway_request_id_valid (idem) || strlen (idem) > S_IDEM_MAX)
            return s_fail (request, GATEWAY_PROBLEM_BAD_PARAMETER,
                           "header 'Idempotency-Key' must be 1 to 100 visible ASCII characters");
        snprintf (request->idem, sizeof request->idem, "%s", idem);
    }
    if (request->method & (GATEWAY_METHOD_POST | GATEWAY_METHOD_PATCH)) {
        if (!s_is_json (s_header (request, MHD_HTTP_HEADER_CONTENT_TYPE)))
            return s_fail (request, GATEWAY_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                           "header 'Content-Type' must be application/json");
        //  A declared length over the limit is refused before any byte is read
        const char *length = s_header (request, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull (length, NULL, 10) > self->cfg.max_body) {
            char detail[96];
            snprintf (detail, sizeof detail, "the body may have at most %zu bytes",
                      self->cfg.max_body);
            return s_fail (request, GATEWAY_PROBLEM_BODY_TOO_LARGE, detail);
        }
    }
    return MHD_YES;
}

//  --------------------------------------------------------------------------
//  The last call: the mesh call

//  Query parameters of one route: names allowed, values found.
typedef struct {
    const char *const *names;   //  NULL-terminated
    const char *values[5];      //  By index in names; NULL when absent
    char error[160];            //  First problem seen, "" when none
} s_query_t;

static enum MHD_Result
s_on_query_arg (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void) kind;
    s_query_t *query = (s_query_t *) cls;
    for (size_t index = 0; query->names[index]; index++)
        if (strcmp (key, query->names[index]) == 0) {
            if (query->values[index]) {
                snprintf (query->error, sizeof query->error,
                          "query parameter '%.40s' is given more than once", key);
                return MHD_NO;
            }
            query->values[index] = value? value: "";
            return MHD_YES;
        }
    snprintf (query->error, sizeof query->error, "unknown query parameter '%.40s'", key);
    return MHD_NO;
}

//  Read the query into `query` (names set by the caller). False with
//  query->error set on an unknown or repeated parameter.
static bool
s_read_query (gateway_request_t *request, s_query_t *query)
{
    MHD_get_connection_values (request->connection, MHD_GET_ARGUMENT_KIND, s_on_query_arg,
                               query);
    return query->error[0] == '\0';
}

//  Pack `json` (an object) as the call body. Returns 0 or MESH_ETOODEEP.
static int
s_pack_json (gateway_request_t *request, const json_t *json)
{
    msgpack_packer packer;
    msgpack_packer_init (&packer, &request->packed, msgpack_sbuffer_write);
    return mesh_json_to_msgpack (json, &packer, MESH_JSON_MAX_DEPTH);
}

//  Build the call for a list route's query. Returns false after answering.
static bool
s_build_list (gateway_request_t *request, enum MHD_Result *result)
{
    bool audit = request->route->id == GATEWAY_ROUTE_AUDIT;
    static const char *const user_names[] = { "limit", "after", NULL };
    static const char *const audit_names[] = {"limit", "after", "user_id", "type", "actor", NULL};
    s_query_t query = { .names = audit? audit_names: user_names };
    long limit = S_LIST_DEFAULT_LIMIT;
    long after_seq = 0;
    char user_id[37];
    const char *detail = NULL;
    if (!s_read_query (request, &query))
        detail = query.error;
    else if (query.values[0]
             && !gateway_parse_long (query.values[0], 1, S_LIST_MAX_LIMIT, &limit))
        detail = "query parameter 'limit' must be an integer from 1 to 500";
    else if (query.values[1] && !query.values[1][0])
        detail = "query parameter 'after' must not be empty";
    //  The audit log pages by seq (an integer); users by an opaque cursor
    else if (audit && query.values[1]
             && !gateway_parse_long (query.values[1], 0, LONG_MAX, &after_seq))
        detail = "query parameter 'after' must be the 'next' of a page (an integer)";
    else if (audit && query.values[2] && !gateway_uuid_parse (query.values[2], user_id))
        detail = "query parameter 'user_id' must be a UUID";
    else if (audit && query.values[3] && !query.values[3][0])
        detail = "query parameter 'type' must not be empty";
    else if (audit && query.values[4] && !query.values[4][0])
        detail = "query parameter 'actor' must not be empty";
    if (detail) {
        *result = s_fail (request, GATEWAY_PROBLEM_BAD_PARAMETER, detail);
        return false;
    }
    json_t *body = json_object ();
    json_object_set_new (body, "limit", json_integer (limit));
    if (audit && query.values[2])
        json_object_set_new (body, "user_id", json_string (user_id));
    if (audit && query.values[1])
        json_object_set_new (body, "after", json_integer (after_seq));
    //  The string parameters: the users' opaque 'after'; the audit log's
    //  'type' and 'actor' (its 'after' is an integer, set above). jansson
    //  refuses strings that are not UTF-8 (json_string gives NULL)
    static const char *const names[] = {NULL, "after", NULL, "type", "actor"};
    for (size_t index = audit ? 3 : 1; index < (audit ? 5u : 2u); index++)
        if (query.values[index]
            && json_object_set_new (body, names[index], json_string (query.values[index]))) {
            json_decref (body);
            char problem[96];
            snprintf (problem, sizeof problem, "query parameter '%s' must be UTF-8",
                      names[index]);
            *result = s_fail (request, GATEWAY_PROBLEM_BAD_PARAMETER, problem);
            return false;
        }
    s_pack_json (request, body);
    json_decref (body);
    request->service = audit? GATEWAY_SERVICE_AUDIT: GATEWAY_SERVICE_USER;
    request->mesh_method = audit? "audit.list": "user.list";
    return true;
}

//  Build the mesh call from route, method, path, query and body. Returns
//  false after answering a problem.
static bool
s_build_call (gateway_request_t *request, enum MHD_Result *result)
{
    gateway_route_id_t route = request->route->id;
    if (route == GATEWAY_ROUTE_AUDIT
        || (route == GATEWAY_ROUTE_USERS && !(request->method & GATEWAY_METHOD_POST)))
        return s_build_list (request, result);
    request->service = GATEWAY_SERVICE_USER;
    request->mesh_method = route == GATEWAY_ROUTE_USERS        ? "user.create"
                         : request->method == GATEWAY_METHOD_PATCH ? "user.update"
                         : request->method == GATEWAY_METHOD_DELETE ? "user.delete"
                                                                    : "user.get";
    const char *id = route == GATEWAY_ROUTE_USER? request->id: NULL;
    if (request->method & (GATEWAY_METHOD_POST | GATEWAY_METHOD_PATCH)) {
        gateway_problem_t kind;
        char detail[GATEWAY_BODY_DETAIL_SIZE];
        if (!gateway_body_pack (request->body, request->body_len, id, &request->packed, &kind,
                                detail)) {
            *result = s_fail (request, kind, detail);
            return false;
        }
        return true;
    }
    //  GET and DELETE: {"id": ...} straight to MessagePack (the id is a
    //  parsed UUID, plain ASCII), no JSON tree on the hottest path
    msgpack_packer packer;
    msgpack_packer_init (&packer, &request->packed, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, id? 1: 0);
    if (id) {
        mesh_pack_cstr (&packer, "id");
        mesh_pack_cstr (&packer, id);
    }
    return true;
}

//  Send (or resend) the call with the time left. Returns 0 or a MESH_E*
//  code; an X-Request-ID already in flight gets a unique suffix, so two
//  requests may carry the same one.
static int
s_send (gateway_request_t *request)
{
    gateway_t *self = request->owner;
    int64_t left_ms = request->deadline_ms - mesh_mono_ms ();
    if (left_ms <= 0)
        return MESH_ETIMEDOUT;
    const char *service = gateway__service_name (request->service);
    //  A retry is a second call: the first one's span ended with its reply
    const char *traceparent = s_call_span_start (request, service);
    mesh_call_t call = {
        .service = service,
        .method = request->mesh_method,
        .body = request->packed.data,
        .body_len = request->packed.size,
        .timeout_ms = (int) left_ms,
        .id = request->request_id,
        .trace = traceparent,
        .idem = request->idem[0]? request->idem: NULL,
        .actor = request->actor[0]? request->actor: NULL,
        .tag = request,
    };
    int rc = mesh_client_send (self->client, &call, NULL);
    if (rc == MESH_ECONFLICT) {
        char id[MESH_ENVELOPE_MAX_ID + 1];
        snprintf (id, sizeof id, "%s~%" PRIu64, request->request_id, ++self->id_counter);
        call.id = id;
        rc = mesh_client_send (self->client, &call, NULL);
    }
    if (rc == 0)
        request->in_mesh = true;
    else
        s_call_span_end (request, rc == MESH_ETIMEDOUT? MESH_CODE_DEADLINE_EXCEEDED
                                                       : MESH_CODE_UNAVAILABLE);
    return rc;
}

//  Why a call cannot go out now, or NULL: the last probe found the broker
//  silent or the service without a worker.
static const char *
s_fail_fast (gateway_request_t *request)
{
    gateway_t *self = request->owner;
    if (!self->broker_up && self->services[request->service] != GATEWAY_SERVICE_UNKNOWN)
        return "the broker does not answer";
    if (self->services[request->service] == GATEWAY_SERVICE_DOWN)
        return gateway__no_worker (request->service);
    return NULL;
}

//  The body is complete: call the mesh, or answer a problem.
static enum MHD_Result
s_dispatch (gateway_request_t *request)
{
    if (request->body_too_large) {
        char detail[96];
        snprintf (detail, sizeof detail, "the body may have at most %zu bytes",
                  request->owner->cfg.max_body);
        return s_fail (request, GATEWAY_PROBLEM_BODY_TOO_LARGE, detail);
    }
    enum MHD_Result result = MHD_NO;
    if (!s_build_call (request, &result))
        return result;
    const char *unavailable = s_fail_fast (request);
    if (unavailable)
        return s_fail (request, GATEWAY_PROBLEM_UNAVAILABLE, unavailable);
    int rc = s_send (request);
    if (rc == MESH_ETIMEDOUT)
        return s_fail (request, GATEWAY_PROBLEM_DEADLINE_EXCEEDED,
                       "the deadline passed before the call went out");
    if (rc)
        return s_fail (request, GATEWAY_PROBLEM_UNAVAILABLE, mesh_strerror (rc));
    MHD_suspend_connection (request->connection);
    return MHD_YES;
}

//  --------------------------------------------------------------------------
//  MHD's access handler.
enum MHD_Result
gateway__on_access (void *cls, struct MHD_Connection *connection, const char *url,
                    const char *method, const char *version, const char *upload_data,
                    size_t *upload_data_size, void **req_cls)
{
    (void) version;
    gateway_t *self = (gateway_t *) cls;
    gateway_request_t *request = *req_cls;
    if (!request) {
        request = s_request_new (self, connection);
        *req_cls = request;
        //  A request with a body that is refused now is refused before it
        //  is read, and its connection closes: better than reading 10 MiB
        const char *length = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_CONTENT_LENGTH);
        request->defer = !MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                       MHD_HTTP_HEADER_TRANSFER_ENCODING)
                      && (!length || strcmp (length, "0") == 0);
        enum MHD_Result result = s_on_headers (request, url, method);
        request->defer = false;
        return result;
    }
    if (request->response) {
        //  Resumed with the mesh's answer
        struct MHD_Response *response = request->response;
        request->response = NULL;
        return s_queue (request, request->status, response);
    }
    if (*upload_data_size) {
        size_t piece = *upload_data_size;
        *upload_data_size = 0;
        if (request->body_too_large || request->body_len + piece > self->cfg.max_body) {
            //  A chunked body over the limit: stop reading it at all. MHD
            //  cannot answer in the middle of a body, so the connection
            //  closes (a bounded close, not a buffered 10 MiB).
            request->body_too_large = true;
            request->status = 413;
            return MHD_NO;
        }
        request->body = mesh_realloc (request->body, request->body_len + piece);
        memcpy (request->body + request->body_len, upload_data, piece);
        request->body_len += piece;
        return MHD_YES;
    }
    return s_dispatch (request);
}

//  Turn a mesh outcome into the response to queue on resume. Returns it
//  and sets request->status.
static struct MHD_Response *
s_reply_response (gateway_request_t *request, const mesh_reply_t *reply)
{
    if (reply->code != MESH_CODE_OK) {
        char detail[512];
        snprintf (detail, sizeof detail, "%.*s", (int) reply->message.len, reply->message.ptr);
        return s_problem_response (request, gateway_problem_for_code (reply->code), detail,
                                   &request->status);
    }
    if (request->method == GATEWAY_METHOD_DELETE) {
        request->status = MHD_HTTP_NO_CONTENT;
        return s_response (request, NULL, "", 0);
    }
    json_t *json = reply->body? mesh_msgpack_to_json (reply->body, MESH_JSON_MAX_DEPTH): NULL;
    if (!json)
        return s_problem_response (request, GATEWAY_PROBLEM_BAD_GATEWAY,
                                   "the reply cannot be expressed as JSON", &request->status);
    request->status = MHD_HTTP_OK;
    char location[64] = "";
    if (request->method == GATEWAY_METHOD_POST) {
        request->status = MHD_HTTP_CREATED;
        const char *id = json_string_value (json_object_get (json, "id"));
        if (id && gateway_uuid_parse (id, NULL))
            snprintf (location, sizeof location, "/v1/users/%s", id);
    }
    struct MHD_Response *response = s_json_response (request, json, "application/json");
    if (response && location[0])
        MHD_add_response_header (response, MHD_HTTP_HEADER_LOCATION, location);
    return response;
}

//  True when the request may be sent again after `code`: unavailable, for
//  a GET (or HEAD), or a change (POST, PATCH, DELETE) with an
//  Idempotency-Key, which the user service applies once however often it
//  comes; once.
static bool
s_should_retry (const gateway_request_t *request, mesh_code_t code)
{
    if (code != MESH_CODE_UNAVAILABLE || request->retried)
        return false;
    return (request->method & (GATEWAY_METHOD_GET | GATEWAY_METHOD_HEAD))
        || ((request->method
             & (GATEWAY_METHOD_POST | GATEWAY_METHOD_PATCH | GATEWAY_METHOD_DELETE))
            && request->idem[0]);
}

//  --------------------------------------------------------------------------
//  The outcome of a mesh call whose tag is a request.
void
gateway__on_reply (gateway_t *self, const mesh_reply_t *reply)
{
    gateway_request_t *request = (gateway_request_t *) reply->tag;
    request->in_mesh = false;
    gateway_metrics_mesh_call (self->metrics, gateway__service_name (request->service),
                               request->mesh_method, reply->code);
    s_call_span_end (request, reply->code);
    if (!request->connection) {
        s_request_free (request);   //  MHD is done with it (shutdown)
        return;
    }
    if (request->answered)
        return;                     //  Answered early (fail_waiting)
    if (s_should_retry (request, reply->code) && !request->owner->draining) {
        //  Not at once: the broker drops a killed process's workers when it
        //  next sends to them, and a frozen one's as each falls silent past
        //  heartbeat x liveness, so an immediate retry can land on a sibling
        //  of the worker that failed. Half a heartbeat (retry_delay_ms) lets
        //  most of them go without eating the second after a frozen
        //  worker's expiry; half the time left at most, so the retry has
        //  time to be served.
        request->retried = true;
        int64_t now_ms = mesh_mono_ms ();
        int64_t delay_ms = (request->deadline_ms - now_ms) / 2;
        if (delay_ms > self->cfg.retry_delay_ms)
            delay_ms = self->cfg.retry_delay_ms;
        if (delay_ms > 0) {
            mesh_log_kv (MESH_LOG_DEBUG, "retrying once after unavailable", "request_id",
                         request->request_id, "trace_id", request->trace_id, "span_id",
                         request->span_id[0]? request->span_id: NULL, "method",
                         request->mesh_method, NULL);
            request->retry_at_ms = now_ms + delay_ms;
            self->retries_waiting++;
            return;
        }
    }
    request->answered = true;
    request->response = s_reply_response (request, reply);
    if (!request->response)
        request->status = 0;
    MHD_resume_connection (request->connection);
}

//  --------------------------------------------------------------------------
//  Send the retries that are due; milliseconds until the next, or -1.
int
gateway__send_retries (gateway_t *self, int64_t now_ms)
{
    int64_t next_ms = -1;
    for (gateway_request_t *request = self->requests; request && self->retries_waiting;
         request = request->next) {
        if (!request->retry_at_ms)
            continue;
        if (request->retry_at_ms > now_ms) {
            if (next_ms < 0 || request->retry_at_ms - now_ms < next_ms)
                next_ms = request->retry_at_ms - now_ms;
            continue;
        }
        request->retry_at_ms = 0;
        self->retries_waiting--;
        const char *unavailable = s_fail_fast (request);
        int rc = unavailable? MESH_EUNAVAIL: s_send (request);
        if (rc == 0)
            continue;
        request->answered = true;
        request->response = s_problem_response (
            request, rc == MESH_ETIMEDOUT? GATEWAY_PROBLEM_DEADLINE_EXCEEDED
                                         : GATEWAY_PROBLEM_UNAVAILABLE,
            unavailable? unavailable: mesh_strerror (rc), &request->status);
        MHD_resume_connection (request->connection);
    }
    return next_ms < 0? -1: (int) next_ms;
}

//  --------------------------------------------------------------------------
//  Answer 503 to the requests waiting for `service` (every service when it
//  is GATEWAY_SERVICE_COUNT_). Their calls stay in flight until their
//  outcome or deadline comes, which then finds them answered.
void
gateway__fail_waiting (gateway_t *self, gateway_service_t service, const char *why)
{
    for (gateway_request_t *request = self->requests; request; request = request->next)
        if ((request->in_mesh || request->retry_at_ms) && request->connection
            && !request->answered
            && (service == GATEWAY_SERVICE_COUNT_ || request->service == service)) {
            if (request->retry_at_ms) {
                request->retry_at_ms = 0;
                self->retries_waiting--;
            }
            request->answered = true;
            request->response = s_problem_response (request, GATEWAY_PROBLEM_UNAVAILABLE, why,
                                                    &request->status);
            MHD_resume_connection (request->connection);
        }
}

//  --------------------------------------------------------------------------
//  MHD is done with a request: count it, log it, free it.
void
gateway__on_completed (void *cls, struct MHD_Connection *connection, void **req_cls,
                       enum MHD_RequestTerminationCode toe)
{
    (void) connection;
    (void) toe;
    gateway_t *self = (gateway_t *) cls;
    gateway_request_t *request = *req_cls;
    if (!request)
        return;
    *req_cls = NULL;
    double seconds = (double) (mesh_mono_us () - request->started_us) / 1e6;
    gateway_metrics_request_done (self->metrics, request->method, request->route->id,
                                  request->status, seconds);
    mesh_log_level_t level = request->status >= 500 || request->status == 0? MESH_LOG_WARN
                                                                            : MESH_LOG_INFO;
    if (mesh_log_enabled (level)) {
        char status[16], ms[32];
        snprintf (status, sizeof status, "%u", request->status);
        snprintf (ms, sizeof ms, "%.3f", seconds * 1000.0);
        mesh_log_kv (level, "http request", "request_id", request->request_id, "trace_id",
                     request->trace_id, "span_id", request->span_id[0]? request->span_id: NULL,
                     "method", gateway_method_label (request->method),
                     "route", request->route->template, "status", status, "duration_ms", ms,
                     request->actor[0]? "actor": NULL, request->actor, NULL);
    }
    s_server_span_end (request);
    request->connection = NULL;
    if (!request->in_mesh)
        s_request_free (request);
}

//  --------------------------------------------------------------------------
//  Free every request state left.
void
gateway__free_requests (gateway_t *self)
{
    while (self->requests)
        s_request_free (self->requests);
}
