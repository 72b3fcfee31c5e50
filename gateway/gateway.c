/*  =========================================================================
    gateway - mesh-gateway: the loop, the sockets, readiness probes
    The loop polls five things: MHD's epoll fd, the mesh client's DEALER,
    the probe DEALER, the SUB socket and the signal fd. Its timeout is the
    nearest of MHD's own timeout, the earliest mesh deadline, the next probe,
    the next retry due and the next SSE ping. After each wake-up it takes every mesh outcome
    (resuming the connections they answer), every event, then lets MHD do
    its I/O, so a resumed connection is answered in the same turn.
    Readiness: an mmi.service probe every probe_ms for `user` and `audit`
    in turn. /ready is 200 when the broker answers and `user` has a worker.
    A call to a service the last probe found without a worker, or while the
    broker does not answer, fails at once with 503 + Retry-After instead of
    waiting in the broker's queue until its deadline.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_internal.h"
#include "gateway_tag.h"

#include "mesh/mdp.h"
#include "mesh/mesh_admin.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_file.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_poll.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

#define S_PROBE_TIMEOUT_MS 1000     //  A probe unanswered this long: broker down
#define S_PING_MS 15000             //  SSE comment interval
#define S_FINAL_FLUSH_MS 500        //  Bound on letting MHD flush at the very end

//  --------------------------------------------------------------------------
//  Defaults of DESIGN.md.
gateway_cfg_t
gateway_cfg_defaults (void)
{
    gateway_cfg_t cfg = {
        .http_addr = "127.0.0.1:8080",
        .broker = "tcp://127.0.0.1:5555",
        .events_sub = "tcp://127.0.0.1:5557",
        .max_connections = 512,
        .idle_timeout_s = 15,
        .max_body = 64 * 1024,
        //  libmicrohttpd zeroes this much per request (its pool reset):
        //  16 KiB holds any real request head and measured 15-18% more
        //  requests/s than 32 KiB (docs/performance.md)
        .max_header_bytes = 16 * 1024,
        .timeout_ms = 5000,
        .drain_ms = 10000,
        .probe_ms = 250,
        .retry_delay_ms = 1000,
        .auth = { .leeway_s = 30, .cache_entries = 1024 },
        .rate_table = 4096,
    };
    return cfg;
}

//  --------------------------------------------------------------------------
//  Service name as the broker knows it.
const char *
gateway__service_name (gateway_service_t service)
{
    return service == GATEWAY_SERVICE_USER? "user": "audit";
}

//  --------------------------------------------------------------------------
//  Why a call to a service without a worker fails.
const char *
gateway__no_worker (gateway_service_t service)
{
    return service == GATEWAY_SERVICE_USER? "service 'user' has no worker"
                                          : "service 'audit' has no worker";
}

//  MHD's messages go to our log at debug level: a misbehaving client must
//  not flood it.
static void
    s_on_mhd_log (void *cls, const char *format, va_list args)
    __attribute__ ((format (printf, 2, 0)));

static void
s_on_mhd_log (void *cls, const char *format, va_list args)
{
    (void) cls;
    if (!mesh_log_enabled (MESH_LOG_DEBUG))
        return;
    char detail[512];
    vsnprintf (detail, sizeof detail, format, args);
    detail[strcspn (detail, "\r\n")] = '\0';
    mesh_log_kv (MESH_LOG_DEBUG, "http server", "detail", detail, NULL);
}

//  A fresh probe DEALER: after a probe times out the old socket may still
//  deliver its late answer, which would be taken for the next one's.
static int
s_probe_open (gateway_t *self)
{
    if (self->probe)
        zmq_close (self->probe);
    self->probe = zmq_socket (self->context, ZMQ_DEALER);
    if (!self->probe)
        return MESH_EIO;
    int linger = 0;
    zmq_setsockopt (self->probe, ZMQ_LINGER, &linger, sizeof linger);
    if (mesh_curve_connect (self->cfg.curve, self->probe, self->cfg.broker) != 0)
        return MESH_EINVAL;
    return 0;
}

//  True when the settings name any credential source.
static bool
s_auth_configured (const gateway_auth_cfg_t *auth)
{
    return (auth->hs256_secret_files && *auth->hs256_secret_files)
        || (auth->public_key_files && *auth->public_key_files)
        || (auth->api_keys_file && *auth->api_keys_file);
}

//  Authentication, rate limit, CORS and the TLS files. Returns 0, or
//  MESH_EINVAL after logging what is wrong.
static int
s_security_new (gateway_t *self, const gateway_cfg_t *cfg)
{
    char error[512] = "";
    if (s_auth_configured (&cfg->auth)) {
        self->auth = gateway_auth_new (&cfg->auth, error, sizeof error);
        if (!self->auth)
            goto fail;
    }
    else
        mesh_log_kv (MESH_LOG_WARN, "no credentials configured: the HTTP API is open to anyone",
                     NULL);
    if (cfg->rate_limit > 0) {
        gateway_ratelimit_cfg_t limit = {
            .rate = cfg->rate_limit,
            .burst = cfg->rate_burst? cfg->rate_burst
                                    : (cfg->rate_limit < 1? 1: (unsigned int) cfg->rate_limit),
            .entries = cfg->rate_table,
        };
        self->ratelimit = gateway_ratelimit_new (&limit);
    }
    self->cors = gateway_cors_new (cfg->cors_origins);
    bool has_cert = cfg->tls_cert_file && *cfg->tls_cert_file;
    bool has_key = cfg->tls_key_file && *cfg->tls_key_file;
    if (has_cert != has_key) {
        snprintf (error, sizeof error, "HTTPS needs both a certificate and a key file");
        goto fail;
    }
    if (has_cert) {
        if (MHD_is_feature_supported (MHD_FEATURE_TLS) != MHD_YES) {
            snprintf (error, sizeof error, "this libmicrohttpd has no TLS support");
            goto fail;
        }
        size_t len = 0;
        self->tls_cert = mesh_file_read (cfg->tls_cert_file, 1024 * 1024, &len, error,
                                            sizeof error);
        if (!self->tls_cert)
            goto fail;
        self->tls_key = mesh_file_read (cfg->tls_key_file, 1024 * 1024, &len, error,
                                           sizeof error);
        if (!self->tls_key)
            goto fail;
    }
    return 0;
fail:
    mesh_log_kv (MESH_LOG_ERROR, "bad security settings", "error", error, NULL);
    return MESH_EINVAL;
}

//  An HTTP server on `addr_text` ("host:port"), HTTPS with the gateway's
//  certificate when `tls`. Returns it with *port bound, or NULL with *err
//  (MESH_EINVAL: a bad address; MESH_EIO: cannot bind, logged).
static struct MHD_Daemon *
s_daemon_start (gateway_t *self, const char *addr_text, bool tls, int *port, int *err)
{
    struct sockaddr_storage addr;
    *err = MESH_EINVAL;
    if (mesh_resolve_host_port (addr_text, &addr, port) != 0)
        return NULL;
    //  No thread of MHD's own: its epoll fd joins our mesh_poll. Suspend and
    //  resume park connections that wait for the mesh.
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_DUAL_STACK;
    if (tls)
        flags |= MHD_USE_TLS;
    *err = MESH_EIO;
    //  MHD keeps pointers to the PEM texts: they live as long as self
    struct MHD_OptionItem tls_options[] = {
        { MHD_OPTION_HTTPS_MEM_CERT, 0, self->tls_cert },
        { MHD_OPTION_HTTPS_MEM_KEY, 0, self->tls_key },
        { MHD_OPTION_END, 0, NULL },
    };
    const gateway_cfg_t *cfg = &self->cfg;
    struct MHD_Daemon *daemon = MHD_start_daemon (
        flags, (uint16_t) *port, NULL, NULL, gateway__on_access, self,
        MHD_OPTION_EXTERNAL_LOGGER, s_on_mhd_log, self,
        MHD_OPTION_ARRAY, tls? tls_options: &tls_options[2],
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *) &addr,
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->max_header_bytes,
        MHD_OPTION_NOTIFY_COMPLETED, gateway__on_completed, self,
        MHD_OPTION_END);
    if (!daemon) {
        mesh_log_kv (MESH_LOG_ERROR, "cannot serve HTTP", "addr", addr_text, "error",
                     strerror (errno), NULL);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || info->port == 0) {
        MHD_stop_daemon (daemon);
        return NULL;
    }
    *port = info->port;
    *err = 0;
    return daemon;
}

//  --------------------------------------------------------------------------
//  Bind the HTTP port and connect to the mesh.
gateway_t *
gateway_new (const gateway_cfg_t *cfg, int *err)
{
    assert (cfg);
    int unused;
    if (!err)
        err = &unused;
    gateway_t *self = mesh_alloc (sizeof (gateway_t));
    mesh_random_init (&self->random);
    self->cfg = *cfg;
    self->registry = mesh_metrics_new ();
    self->metrics = gateway_metrics_new (self->registry);
    if (cfg->trace && cfg->trace->endpoint[0]) {
        *err = MESH_EIO;
        self->tracer = mesh_tracer_new (cfg->trace, self->registry);
        if (!self->tracer)
            goto fail;
    }
    self->cfg.trace = NULL;     //  The tracer holds its copy
    *err = s_security_new (self, cfg);
    if (*err)
        goto fail;
    *err = MESH_EIO;
    self->context = zmq_ctx_new ();
    if (!self->context)
        goto fail;
    self->client = mesh_client_new_curve (self->context, cfg->broker, cfg->curve, err);
    if (!self->client)
        goto fail;
    *err = s_probe_open (self);
    if (*err)
        goto fail;
    self->sub = zmq_socket (self->context, ZMQ_SUB);
    *err = MESH_EIO;
    if (!self->sub)
        goto fail;
    int linger = 0;
    zmq_setsockopt (self->sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->sub, ZMQ_SUBSCRIBE, "user.", 5);
    *err = MESH_EINVAL;
    if (mesh_curve_connect (cfg->curve, self->sub, cfg->events_sub) != 0)
        goto fail;
    self->sse = gateway_sse_new (self->client, self->metrics, cfg->timeout_ms);

    self->daemon = s_daemon_start (self, cfg->http_addr, self->tls_cert != NULL, &self->port,
                                   err);
    if (!self->daemon)
        goto fail;
    if (cfg->admin_addr && *cfg->admin_addr) {
        self->admin_daemon = s_daemon_start (self, cfg->admin_addr, false, &self->admin_port,
                                             err);
        if (!self->admin_daemon)
            goto fail;
    }
    self->probe_due_ms = mesh_mono_ms ();
    *err = 0;
    return self;
fail:
    gateway_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Stop serving and free; nulls the caller's pointer.
void
gateway_destroy (gateway_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_t *self = *self_p;
        //  MHD first: its completion callbacks touch request states, the
        //  SSE streams and the metrics
        if (self->daemon)
            MHD_stop_daemon (self->daemon);
        if (self->admin_daemon)
            MHD_stop_daemon (self->admin_daemon);
        mesh_client_destroy (&self->client);
        gateway__free_requests (self);
        gateway_sse_destroy (&self->sse);
        gateway_auth_destroy (&self->auth);
        gateway_ratelimit_destroy (&self->ratelimit);
        gateway_cors_destroy (&self->cors);
        free (self->tls_cert);
        if (self->tls_key)
            OPENSSL_cleanse (self->tls_key, strlen (self->tls_key));
        free (self->tls_key);
        if (self->probe)
            zmq_close (self->probe);
        if (self->sub)
            zmq_close (self->sub);
        if (self->context)
            zmq_ctx_term (self->context);
        //  Exports what the requests ended, then stops counting into the registry
        mesh_tracer_destroy (&self->tracer);
        gateway_metrics_destroy (&self->metrics);
        mesh_metrics_destroy (&self->registry);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  The HTTP port bound.
int
gateway_port (const gateway_t *self)
{
    assert (self);
    return self->port;
}

//  --------------------------------------------------------------------------
//  The admin port bound, or 0 when the admin routes share the HTTP port.
int
gateway_admin_port (const gateway_t *self)
{
    assert (self);
    return self->admin_port;
}

//  Let both HTTP servers do their I/O.
static void
s_run_http (gateway_t *self)
{
    MHD_run (self->daemon);
    if (self->admin_daemon)
        MHD_run (self->admin_daemon);
}

//  Record what a probe found and log changes, which operators want to see.
static void
s_probe_result (gateway_t *self, bool broker_up, gateway_service_state_t state)
{
    const char *name = gateway__service_name (self->probing);
    bool *down_once = &self->down_once[self->probing];
    if (broker_up && state == GATEWAY_SERVICE_DOWN
        && self->services[self->probing] == GATEWAY_SERVICE_UP && !*down_once) {
        *down_once = true;
        state = GATEWAY_SERVICE_UP;
    }
    else
        *down_once = false;
    if (broker_up != self->broker_up)
        mesh_log_kv (broker_up? MESH_LOG_INFO: MESH_LOG_WARN,
                     broker_up? "broker answers": "broker does not answer", NULL);
    if (broker_up && state != self->services[self->probing])
        mesh_log_kv (MESH_LOG_INFO, state == GATEWAY_SERVICE_UP? "service has workers"
                                                                 : "service has no worker",
                     "service", name, NULL);
    self->broker_up = broker_up;
    if (broker_up)
        self->services[self->probing] = state;
    //  Requests queued in the broker for a service with no worker would
    //  wait there until their deadline: answer them now
    if (!broker_up)
        gateway__fail_waiting (self, GATEWAY_SERVICE_COUNT_, "the broker does not answer");
    else if (state == GATEWAY_SERVICE_DOWN)
        gateway__fail_waiting (self, self->probing, gateway__no_worker (self->probing));
    self->probe_in_flight = false;
    self->probing = (gateway_service_t) ((self->probing + 1) % GATEWAY_SERVICE_COUNT_);
    self->probe_due_ms = mesh_mono_ms () + self->cfg.probe_ms;
}

//  Take a probe's answer (when `readable`), expire it, or send the next one
//  when due. Returns whether it used the probe socket (which then is not
//  settled for mesh_poll).
static bool
s_probe (gateway_t *self, int64_t now_ms, bool readable)
{
    if (self->probe_in_flight) {
        mdp_frames_t frames;
        if (readable && mdp_frames_recv (&frames, self->probe, ZMQ_DONTWAIT) == 0) {
            //  "", MDPC01, mmi.service, "200" | "404"
            bool up = frames.count == 4 && mdp_frame_eq (&frames.frame[3], "200");
            mdp_frames_close (&frames);
            s_probe_result (self, true, up? GATEWAY_SERVICE_UP: GATEWAY_SERVICE_DOWN);
        }
        else if (now_ms >= self->probe_due_ms) {
            s_probe_result (self, false, GATEWAY_SERVICE_UNKNOWN);
            s_probe_open (self);
        }
        return readable || !self->probe_in_flight;
    }
    if (now_ms < self->probe_due_ms)
        return false;
    const char *name = gateway__service_name (self->probing);
    const void *parts[] = { "", MDP_CLIENT, "mmi.service", name };
    size_t sizes[] = { 0, strlen (MDP_CLIENT), strlen ("mmi.service"), strlen (name) };
    if (mdp_send_parts (self->probe, ZMQ_DONTWAIT, 4, parts, sizes) == 0) {
        self->probe_in_flight = true;
        self->probe_due_ms = now_ms + S_PROBE_TIMEOUT_MS;
    }
    else
        self->probe_due_ms = now_ms + self->cfg.probe_ms;
    return true;
}

//  Every outcome the mesh client has now.
static void
s_take_replies (gateway_t *self)
{
    mesh_reply_t reply;
    while (mesh_client_recv (self->client, &reply, 0) == 0) {
        const gateway_tag_t *tag = (const gateway_tag_t *) reply.tag;
        if (tag->kind == GATEWAY_TAG_STREAM)
            gateway_sse_on_reply (self->sse, &reply);
        else
            gateway__on_reply (self, &reply);
    }
}

//  Every event waiting on the SUB socket.
static void
s_take_events (gateway_t *self)
{
    while (true) {
        mdp_frames_t frames;
        if (mdp_frames_recv (&frames, self->sub, ZMQ_DONTWAIT) != 0)
            return;
        if (frames.count == 2 && !frames.overflow)
            gateway_sse_on_event (self->sse, zmq_msg_data (&frames.frame[0]),
                                  zmq_msg_size (&frames.frame[0]),
                                  zmq_msg_data (&frames.frame[1]),
                                  zmq_msg_size (&frames.frame[1]));
        mdp_frames_close (&frames);
    }
}

//  Milliseconds to wait in mesh_poll: the nearest thing due.
static long
s_wait_ms (gateway_t *self, int64_t now_ms, int64_t ping_due_ms, int retry_ms)
{
    int64_t wait_ms = ping_due_ms - now_ms;
    if (retry_ms >= 0 && retry_ms < wait_ms)
        wait_ms = retry_ms;
    if (self->probe_due_ms - now_ms < wait_ms)
        wait_ms = self->probe_due_ms - now_ms;
    int mesh_ms = mesh_client_next_deadline_ms (self->client);
    if (mesh_ms >= 0 && mesh_ms < wait_ms)
        wait_ms = mesh_ms;
    MHD_UNSIGNED_LONG_LONG mhd_ms = 0;
    if (MHD_get_timeout (self->daemon, &mhd_ms) == MHD_YES && (int64_t) mhd_ms < wait_ms)
        wait_ms = (int64_t) mhd_ms;
    if (self->admin_daemon && MHD_get_timeout (self->admin_daemon, &mhd_ms) == MHD_YES
        && (int64_t) mhd_ms < wait_ms)
        wait_ms = (int64_t) mhd_ms;
    return wait_ms < 0? 0: (long) wait_ms;
}

//  --------------------------------------------------------------------------
//  Serve until a shutdown signal, then drain.
int
gateway_run (gateway_t *self, int signal_fd)
{
    assert (self);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->daemon,
                                                            MHD_DAEMON_INFO_EPOLL_FD);
    if (!info)
        return MESH_EIO;
    zmq_pollitem_t items[] = {
        { NULL, info->epoll_fd, ZMQ_POLLIN, 0 },
        { mesh_client_socket (self->client), 0, ZMQ_POLLIN, 0 },
        { self->sub, 0, ZMQ_POLLIN, 0 },
        { NULL, signal_fd, ZMQ_POLLIN, 0 },
        { self->probe, 0, ZMQ_POLLIN, 0 },
        { mesh_client_monitor_socket (self->client), 0, ZMQ_POLLIN, 0 },
        { NULL, -1, ZMQ_POLLIN, 0 },    //  The admin server's epoll fd, when there is one
    };
    size_t count = sizeof items / sizeof items[0] - 1;
    if (self->admin_daemon) {
        const union MHD_DaemonInfo *admin = MHD_get_daemon_info (self->admin_daemon,
                                                                 MHD_DAEMON_INFO_EPOLL_FD);
        if (!admin)
            return MESH_EIO;
        items[count++].fd = admin->epoll_fd;
    }
    int64_t ping_due_ms = mesh_mono_ms () + S_PING_MS;
    int64_t drain_until_ms = 0;
    //  mesh_poll's settled sockets: the SUB and the client's monitor are
    //  drained whenever they have something and never sent on, so they are
    //  settled after the first turn; the probe's DEALER unless s_probe used
    //  it; the client's DEALER by its account
    bool drained_settled = false, probe_settled = false;
    while (true) {
        int64_t now_ms = mesh_mono_ms ();
        int retry_ms = gateway__send_retries (self, now_ms);
        items[4].socket = self->probe;  //  Replaced after a probe times out
        uint32_t settled = (mesh_client_settled (self->client)? UINT32_C (1) << 1: 0)
                         | (drained_settled? UINT32_C (1) << 2: 0)
                         | (probe_settled? UINT32_C (1) << 4: 0)
                         | (drained_settled? UINT32_C (1) << 5: 0);
        if (mesh_poll (items, (int) count, s_wait_ms (self, now_ms, ping_due_ms, retry_ms),
                       settled) < 0) {
            if (errno == EINTR)
                continue;
            return MESH_EIO;
        }
        now_ms = mesh_mono_ms ();
        if (items[3].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo signal_info;
            if (read (signal_fd, &signal_info, sizeof signal_info) > 0 && !self->draining) {
                mesh_log_kv (MESH_LOG_INFO, "shutting down: draining", NULL);
                self->draining = true;
                drain_until_ms = now_ms + self->cfg.drain_ms;
                gateway_sse_end_all (self->sse);
            }
        }
        //  A broker that died took the requests in flight: they come due now
        //  as unavailable, and those that may be retried are
        if ((items[5].revents & ZMQ_POLLIN) && mesh_client_watch (self->client) > 0) {
            char in_flight[24];
            snprintf (in_flight, sizeof in_flight, "%zu", mesh_client_pending (self->client));
            mesh_log_kv (MESH_LOG_WARN, "the connection to the broker closed", "in_flight",
                         in_flight, NULL);
        }
        //  Expired requests are outcomes too, with or without a reply waiting
        if ((items[1].revents & ZMQ_POLLIN) || mesh_client_next_deadline_ms (self->client) == 0)
            s_take_replies (self);
        if (items[2].revents & ZMQ_POLLIN)
            s_take_events (self);
        drained_settled = true;
        probe_settled = !s_probe (self, now_ms, items[4].revents & ZMQ_POLLIN);
        if (now_ms >= ping_due_ms) {
            gateway_sse_ping (self->sse);
            ping_due_ms = now_ms + S_PING_MS;
        }
        s_run_http (self);
        if (self->draining
            && ((mesh_client_pending (self->client) == 0 && self->retries_waiting == 0
                 && gateway_sse_count (self->sse) == 0)
                || now_ms >= drain_until_ms))
            break;
    }
    //  Whatever still waits gets 503; give MHD a bounded moment to send it
    gateway__fail_waiting (self, GATEWAY_SERVICE_COUNT_, "the gateway is shutting down");
    gateway_sse_end_all (self->sse);
    int64_t flush_until_ms = mesh_mono_ms () + S_FINAL_FLUSH_MS;
    while (mesh_mono_ms () < flush_until_ms) {
        s_run_http (self);
        zmq_pollitem_t item = { NULL, info->epoll_fd, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, 10);
        if (gateway_sse_count (self->sse) == 0 && mesh_client_pending (self->client) == 0)
            break;
    }
    s_run_http (self);
    mesh_log_kv (MESH_LOG_INFO, "stopped", NULL);
    return 0;
}
