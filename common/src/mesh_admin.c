/*  =========================================================================
    mesh_admin - admin HTTP endpoint: /healthz, /ready, /metrics
    A small libmicrohttpd server on its own polling thread. It binds exactly
    the address it is given (a numeric IPv4 or [IPv6] host, or "localhost"),
    never a wildcard it was not asked for, and keeps few connections with a
    short idle timeout: it is for probes and Prometheus, not for the public.
    Liveness answers whenever the thread serves; readiness is a flag the
    owner flips; /metrics renders the borrowed registry on the HTTP thread
    while the owner's threads keep updating it (mesh_metrics is built for
    exactly that).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_admin.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"

#include <assert.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define S_CONNECTION_LIMIT 64       //  Probes and scrapers only
#define S_CONNECTION_TIMEOUT_S 10   //  Idle connections are closed after this

static const char s_text_plain[] = "text/plain; charset=utf-8";
static const char s_metrics_type[] = "text/plain; version=0.0.4; charset=utf-8";

struct mesh_admin_s {
    struct MHD_Daemon *daemon;      //  HTTP server and its thread, owned
    mesh_metrics_t *metrics;        //  Registry served on /metrics, borrowed
    atomic_bool ready;              //  What /ready answers
    atomic_bool started;            //  MHD_start_daemon has returned
    struct sockaddr_storage addr;   //  Address bound
    int port;                       //  Port bound (the real one for port 0)
};

//  --------------------------------------------------------------------------
//  Split "host:port" / "[v6]:port" into host and port. Returns 0 or
//  MESH_EINVAL. The host must not be empty: binding every interface is
//  asked for explicitly ("0.0.0.0:9100", "[::]:9100").
int
mesh_parse_host_port (const char *addr, char *host, size_t host_size, int *port)
{
    assert (addr);
    assert (host);
    assert (host_size > 0);
    assert (port);
    host[0] = '\0';
    const char *host_start = addr;
    const char *host_end;
    const char *colon;
    if (addr[0] == '[') {
        host_start = addr + 1;
        host_end = strchr (host_start, ']');
        if (!host_end || host_end[1] != ':')
            return MESH_EINVAL;
        colon = host_end + 1;
    }
    else {
        colon = strchr (addr, ':');
        if (!colon || strchr (colon + 1, ':'))
            return MESH_EINVAL;     //  No port, or an IPv6 address without []
        host_end = colon;
    }
    size_t host_len = (size_t) (host_end - host_start);
    if (host_len == 0 || host_len >= host_size)
        return MESH_EINVAL;
    for (size_t index = 0; index < host_len; index++) {
        unsigned char c = (unsigned char) host_start[index];
        if (c <= ' ' || c >= 0x7F || c == '[' || c == ']')
            return MESH_EINVAL;     //  Never part of an address or host name
    }

    //  Port: 1 to 5 decimal digits, nothing else (no sign, no spaces)
    const char *digits = colon + 1;
    size_t digit_count = strlen (digits);
    if (digit_count == 0 || digit_count > 5 || strspn (digits, "0123456789") != digit_count)
        return MESH_EINVAL;
    int value = atoi (digits);
    if (value > 65535)
        return MESH_EINVAL;

    memcpy (host, host_start, host_len);
    host[host_len] = '\0';
    *port = value;
    return 0;
}

//  --------------------------------------------------------------------------
//  Resolve `host` (numeric, or "localhost") and `port` into *addr. Prefers
//  IPv4 for "localhost", the address Prometheus and probes try first.
//  Returns 0 or MESH_EINVAL.
static int
s_resolve (const char *host, int port, struct sockaddr_storage *addr)
{
    struct addrinfo hints;
    memset (&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (strcasecmp (host, "localhost") != 0)
        hints.ai_flags |= AI_NUMERICHOST;   //  No DNS: an admin address is an address
    char service[8];
    snprintf (service, sizeof service, "%d", port);
    struct addrinfo *result = NULL;
    if (getaddrinfo (host, service, &hints, &result) != 0)
        return MESH_EINVAL;
    const struct addrinfo *chosen = NULL;
    for (const struct addrinfo *entry = result; entry; entry = entry->ai_next) {
        if (entry->ai_family != AF_INET && entry->ai_family != AF_INET6)
            continue;
        if (!chosen || (chosen->ai_family != AF_INET && entry->ai_family == AF_INET))
            chosen = entry;
    }
    int rc = MESH_EINVAL;
    if (chosen && chosen->ai_addrlen <= sizeof (*addr)) {
        memset (addr, 0, sizeof (*addr));
        memcpy (addr, chosen->ai_addr, chosen->ai_addrlen);
        rc = 0;
    }
    freeaddrinfo (result);
    return rc;
}

//  --------------------------------------------------------------------------
//  Parse and resolve "host:port". Returns 0 or MESH_EINVAL.
int
mesh_resolve_host_port (const char *addr, struct sockaddr_storage *sockaddr, int *port)
{
    assert (addr);
    assert (sockaddr);
    assert (port);
    char host[256];
    if (mesh_parse_host_port (addr, host, sizeof host, port) != 0)
        return MESH_EINVAL;
    return s_resolve (host, *port, sockaddr);
}

//  --------------------------------------------------------------------------
//  Route MHD's own messages to our log: warnings while starting (why a bind
//  failed), debug afterwards (a misbehaving client must not flood the log).
static void
    s_on_mhd_log (void *cls, const char *format, va_list args)
    __attribute__ ((format (printf, 2, 0)));

static void
s_on_mhd_log (void *cls, const char *format, va_list args)
{
    const mesh_admin_t *self = (const mesh_admin_t *) cls;
    mesh_log_level_t level = atomic_load (&self->started)? MESH_LOG_DEBUG: MESH_LOG_WARN;
    if (!mesh_log_enabled (level))
        return;
    char detail[512];
    vsnprintf (detail, sizeof detail, format, args);
    size_t len = strlen (detail);
    while (len > 0 && (detail[len - 1] == '\n' || detail[len - 1] == '\r'))
        detail[--len] = '\0';
    mesh_log_kv (level, "admin http", "detail", detail, (const char *) NULL);
}

//  --------------------------------------------------------------------------
//  Queue a response of `len` bytes from `body` with `status` and content
//  type; an optional extra header (name, value). `free_body` hands a malloc'd
//  body to MHD; otherwise `body` must be static. Returns MHD_YES or MHD_NO.
static enum MHD_Result
s_respond (struct MHD_Connection *connection, unsigned int status, const char *type,
           const char *body, size_t len, bool free_body, const char *header, const char *value)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        len, (void *) body, free_body? MHD_RESPMEM_MUST_FREE: MHD_RESPMEM_PERSISTENT);
    if (!response) {
        if (free_body)
            free ((void *) body);
        return MHD_NO;          //  MHD closes the connection
    }
    enum MHD_Result result = MHD_NO;
    if (MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type) == MHD_YES
        && MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store")
               == MHD_YES
        && (!header || MHD_add_response_header (response, header, value) == MHD_YES))
        result = MHD_queue_response (connection, status, response);
    MHD_destroy_response (response);
    return result;
}

//  --------------------------------------------------------------------------
//  Answer one request. Every route answers on the first call: none reads a
//  body, and MHD discards (and closes after) a body we did not read. Unknown
//  paths get 404 whatever the method; known paths 405 for methods other than
//  GET and HEAD (MHD drops the body of a HEAD answer itself).
static enum MHD_Result
s_on_request (void *cls, struct MHD_Connection *connection, const char *url,
              const char *method, const char *version, const char *upload_data,
              size_t *upload_data_size, void **req_cls)
{
    mesh_admin_t *self = (mesh_admin_t *) cls;
    bool healthz = strcmp (url, "/healthz") == 0;
    bool ready = strcmp (url, "/ready") == 0;
    bool metrics = strcmp (url, "/metrics") == 0;
    if (!healthz && !ready && !metrics) {
        static const char body[] = "not found\n";
        return s_respond (connection, MHD_HTTP_NOT_FOUND, s_text_plain, body,
                          sizeof body - 1, false, NULL, NULL);
    }
    if (strcmp (method, MHD_HTTP_METHOD_GET) != 0 && strcmp (method, MHD_HTTP_METHOD_HEAD) != 0) {
        static const char body[] = "method not allowed\n";
        return s_respond (connection, MHD_HTTP_METHOD_NOT_ALLOWED, s_text_plain, body,
                          sizeof body - 1, false, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }
    if (healthz) {
        static const char body[] = "ok\n";
        return s_respond (connection, MHD_HTTP_OK, s_text_plain, body, sizeof body - 1, false,
                          NULL, NULL);
    }
    if (ready) {
        if (atomic_load (&self->ready)) {
            static const char body[] = "ready\n";
            return s_respond (connection, MHD_HTTP_OK, s_text_plain, body, sizeof body - 1,
                              false, NULL, NULL);
        }
        static const char body[] = "not ready\n";
        return s_respond (connection, MHD_HTTP_SERVICE_UNAVAILABLE, s_text_plain, body,
                          sizeof body - 1, false, NULL, NULL);
    }
    size_t len = 0;
    char *text = mesh_metrics_render (self->metrics, &len);
    return s_respond (connection, MHD_HTTP_OK, s_metrics_type, text, len, true, NULL, NULL);
}

//  --------------------------------------------------------------------------
//  Start serving on `addr`. Returns NULL with *err = MESH_EINVAL (bad
//  address) or MESH_EIO (cannot bind, or MHD cannot start its thread).
mesh_admin_t *
mesh_admin_new (const char *addr, mesh_metrics_t *metrics, int *err)
{
    assert (addr);
    assert (metrics);
    int rc = MESH_EINVAL;
    mesh_admin_t *self = mesh_alloc (sizeof (mesh_admin_t));
    self->metrics = metrics;
    atomic_init (&self->ready, false);
    atomic_init (&self->started, false);

    char host[256];
    int port = 0;
    if (mesh_parse_host_port (addr, host, sizeof host, &port) != 0
        || s_resolve (host, port, &self->addr) != 0)
        goto fail;

    //  MHD picks the socket family from the flags, not from the address
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (self->addr.ss_family == AF_INET6)
        flags |= MHD_USE_DUAL_STACK;
    rc = MESH_EIO;
    //  The logger goes first so that MHD reports option errors through it;
    //  the port argument is ignored with SOCK_ADDR but names it in messages.
    self->daemon = MHD_start_daemon (
        flags, (uint16_t) port, NULL, NULL, s_on_request, self,
        MHD_OPTION_EXTERNAL_LOGGER, s_on_mhd_log, self,
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *) &self->addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int) S_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) S_CONNECTION_TIMEOUT_S,
        MHD_OPTION_END);
    atomic_store (&self->started, true);
    if (!self->daemon)
        goto fail;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->daemon,
                                                            MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0)
        goto fail;
    self->port = info->port;
    if (err)
        *err = 0;
    return self;
fail:
    mesh_admin_destroy (&self);
    if (err)
        *err = rc;
    return NULL;
}

//  --------------------------------------------------------------------------
//  Stop serving and free; nulls the caller's pointer. Waits for the HTTP
//  thread, so no request touches the registry after this returns.
void
mesh_admin_destroy (mesh_admin_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mesh_admin_t *self = *self_p;
        if (self->daemon)
            MHD_stop_daemon (self->daemon);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Port actually bound.
int
mesh_admin_port (const mesh_admin_t *self)
{
    assert (self);
    return self->port;
}

//  --------------------------------------------------------------------------
//  Set what /ready answers. Thread-safe.
void
mesh_admin_set_ready (mesh_admin_t *self, bool ready)
{
    assert (self);
    atomic_store (&self->ready, ready);
}

//  --------------------------------------------------------------------------
mesh_admin_t *
mesh_admin_open (const char *addr, mesh_metrics_t *metrics)
{
    int err = 0;
    mesh_admin_t *self = mesh_admin_new (addr, metrics, &err);
    if (!self) {
        mesh_log_kv (MESH_LOG_ERROR, "cannot serve admin HTTP", "addr", addr, "error",
                     mesh_strerror (err), NULL);
        return NULL;
    }
    char port[16];
    snprintf (port, sizeof port, "%d", mesh_admin_port (self));
    mesh_log_kv (MESH_LOG_INFO, "admin serving", "addr", addr, "port", port, NULL);
    return self;
}
