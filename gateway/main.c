/*  =========================================================================
    mesh-gateway - composition root: settings, logging, signals, the loop
    Reads flags and MESH_* variables, blocks SIGTERM/SIGINT and hands a
    signalfd of them to the gateway's loop, which drains and returns.
    Exit status: 0 after a clean drain, 1 when it cannot start, 2 for bad
    settings.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway.h"

#include "mesh/mesh_tracer.h"
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_signal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

static const mesh_cfg_option_t s_options[] = {
    { "http", "MESH_HTTP_ADDR", "127.0.0.1:8080",
      "HTTP host:port for the API and /healthz /ready /metrics (port 0: pick one)" },
    { "broker", "MESH_BROKER", "tcp://127.0.0.1:5555", "broker endpoint" },
    { "events-sub", "MESH_EVENTS_SUB", "tcp://127.0.0.1:5557",
      "broker XPUB endpoint (user events for /v1/events)" },
    { "timeout-ms", "MESH_GATEWAY_TIMEOUT_MS", "5000",
      "deadline of a request (Request-Timeout may shorten it)" },
    { "max-body", "MESH_GATEWAY_MAX_BODY", "65536", "request body bytes at most (413 above)" },
    { "max-header-bytes", "MESH_GATEWAY_MAX_HEADER_BYTES", "16384",
      "memory per connection for the request line and headers" },
    { "max-connections", "MESH_GATEWAY_MAX_CONNECTIONS", "512", "open connections at most" },
    { "idle-timeout-s", "MESH_GATEWAY_IDLE_TIMEOUT_S", "15",
      "close a connection silent this long (stalled or idle)" },
    { "drain-ms", "MESH_GATEWAY_DRAIN_MS", "10000",
      "on SIGTERM, wait this long at most for requests in flight" },
    { "probe-ms", "MESH_GATEWAY_PROBE_MS", "250",
      "interval of mmi.service probes behind /ready" },
    { "heartbeat-ms", "MESH_HEARTBEAT_MS", "1000",
      "the broker's heartbeat: a retry after unavailable waits half of it (at most half "
      "the time left) so the broker has dropped the failed worker's siblings" },
    MESH_CFG_CURVE_OPTIONS,
    //  Security (docs/security.md): authentication is on when any of the
    //  three credential sources is set
    { "jwt-hs256-secret-files", "MESH_GATEWAY_JWT_HS256_SECRET_FILES", "",
      "comma list of files, each an HS256 secret (32 bytes at least) JWTs are verified with" },
    { "jwt-public-key-files", "MESH_GATEWAY_JWT_PUBLIC_KEY_FILES", "",
      "comma list of PEM public keys JWTs are verified with (RSA: RS256, EC P-256: ES256)" },
    { "jwt-issuer", "MESH_GATEWAY_JWT_ISSUER", "", "required 'iss' of JWTs (empty: any)" },
    { "jwt-audience", "MESH_GATEWAY_JWT_AUDIENCE", "",
      "required member of 'aud' of JWTs (empty: any)" },
    { "jwt-leeway-s", "MESH_GATEWAY_JWT_LEEWAY_S", "30", "clock skew allowed on exp and nbf" },
    { "jwt-cache", "MESH_GATEWAY_JWT_CACHE", "1024",
      "verified JWTs remembered (0: verify every request)" },
    { "api-keys-file", "MESH_GATEWAY_API_KEYS_FILE", "",
      "API keys: lines 'NAME SHA256-HEX SCOPE,SCOPE' (meshctl apikey), reread on change" },
    { "rate-limit", "MESH_GATEWAY_RATE_LIMIT", "0",
      "requests per second per caller (identity, or address without one) on /v1; 0: none" },
    { "rate-burst", "MESH_GATEWAY_RATE_BURST", "0",
      "requests a caller may make at once (0: the rate, at least 1)" },
    { "rate-table", "MESH_GATEWAY_RATE_TABLE", "4096", "callers the rate limit remembers" },
    { "cors-origins", "MESH_GATEWAY_CORS_ORIGINS", "",
      "comma list of browser origins allowed (scheme://host[:port], * for any; empty: none)" },
    { "tls-cert-file", "MESH_GATEWAY_TLS_CERT_FILE", "",
      "PEM certificate (chain): serve HTTPS (with --tls-key-file)" },
    { "tls-key-file", "MESH_GATEWAY_TLS_KEY_FILE", "", "PEM private key of the certificate" },
    { "admin", "MESH_GATEWAY_ADMIN_ADDR", "",
      "host:port serving /healthz /ready /metrics only, in plain HTTP (empty: the HTTP port)" },
    MESH_CFG_TRACE_OPTIONS,
    MESH_CFG_LOG_OPTIONS,
};

//  A non-negative decimal number of at most 1e6, nothing around it.
static bool
s_parse_rate (const char *text, double *rate)
{
    char *end = NULL;
    errno = 0;
    *rate = text? strtod (text, &end): 0;
    return text && *text && end && !*end && errno == 0 && isfinite (*rate) && *rate >= 0
        && *rate <= 1e6;
}

int
main (int argc, char **argv)
{
    mesh_cfg_t *cfg = mesh_cfg_new (
        "mesh-gateway", "[options]",
        "HTTP/JSON gateway of the zmesh mesh: REST routes to mesh calls, SSE of user events.",
        s_options, sizeof s_options / sizeof s_options[0]);
    int rc = mesh_cfg_parse (cfg, argc, argv);
    if (mesh_cfg_answer_builtin (cfg, rc, stdout)) {
        mesh_cfg_destroy (&cfg);
        return 0;
    }
    gateway_cfg_t gateway_cfg = gateway_cfg_defaults ();
    long timeout_ms = 0, max_body = 0, max_header = 0, max_connections = 0, idle_s = 0;
    long drain_ms = 0, probe_ms = 0, heartbeat_ms = 0;
    long leeway_s = 0, jwt_cache = 0, rate_burst = 0, rate_table = 0;
    if (rc == 0
        && (mesh_cfg_get_long (cfg, "timeout-ms", 1, 600000, &timeout_ms)
            || mesh_cfg_get_long (cfg, "max-body", 1, 64L * 1024 * 1024, &max_body)
            || mesh_cfg_get_long (cfg, "max-header-bytes", 4096, 1024 * 1024, &max_header)
            || mesh_cfg_get_long (cfg, "max-connections", 1, 100000, &max_connections)
            || mesh_cfg_get_long (cfg, "idle-timeout-s", 1, 3600, &idle_s)
            || mesh_cfg_get_long (cfg, "drain-ms", 0, 600000, &drain_ms)
            || mesh_cfg_get_long (cfg, "probe-ms", 10, 60000, &probe_ms)
            || mesh_cfg_get_long (cfg, "heartbeat-ms", 10, 600000, &heartbeat_ms)
            || mesh_cfg_get_long (cfg, "jwt-leeway-s", 0, 600, &leeway_s)
            || mesh_cfg_get_long (cfg, "jwt-cache", 0, 1000000, &jwt_cache)
            || mesh_cfg_get_long (cfg, "rate-burst", 0, 1000000, &rate_burst)
            || mesh_cfg_get_long (cfg, "rate-table", 8, 10000000, &rate_table)))
        rc = MESH_EINVAL;
    //  A rate may be below one a second (0.1: one request every 10 s)
    double rate_limit = 0;
    const char *problem = NULL;
    if (rc == 0 && !s_parse_rate (mesh_cfg_get (cfg, "rate-limit"), &rate_limit))
        problem = "--rate-limit must be a number of requests per second from 0 to 1000000";
    else if (rc)
        problem = mesh_cfg_error (cfg);
    else if (mesh_log_setup ("gateway", mesh_cfg_get (cfg, "log-level"),
                             mesh_cfg_get (cfg, "log-format")))
        problem = "bad --log-level or --log-format";
    mesh_curve_t *curve = NULL;
    char why[512];
    if (!problem && mesh_curve_from_cfg (cfg, true, &curve, why, sizeof why))
        problem = why;
    mesh_trace_config_t trace;
    if (!problem && mesh_trace_config_from_cfg (cfg, "mesh-gateway", &trace, why, sizeof why))
        problem = why;
    if (problem) {
        fprintf (stderr, "mesh-gateway: %s\n", problem);
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    mesh_cfg_log (cfg);
    gateway_cfg.http_addr = mesh_cfg_get (cfg, "http");
    gateway_cfg.broker = mesh_cfg_get (cfg, "broker");
    gateway_cfg.events_sub = mesh_cfg_get (cfg, "events-sub");
    gateway_cfg.timeout_ms = (int) timeout_ms;
    gateway_cfg.max_body = (size_t) max_body;
    gateway_cfg.max_header_bytes = (size_t) max_header;
    gateway_cfg.max_connections = (unsigned int) max_connections;
    gateway_cfg.idle_timeout_s = (unsigned int) idle_s;
    gateway_cfg.drain_ms = (int) drain_ms;
    gateway_cfg.probe_ms = (int) probe_ms;
    gateway_cfg.retry_delay_ms = (int) heartbeat_ms / 2;
    gateway_cfg.curve = curve;
    gateway_cfg.auth.hs256_secret_files = mesh_cfg_get (cfg, "jwt-hs256-secret-files");
    gateway_cfg.auth.public_key_files = mesh_cfg_get (cfg, "jwt-public-key-files");
    gateway_cfg.auth.issuer = mesh_cfg_get (cfg, "jwt-issuer");
    gateway_cfg.auth.audience = mesh_cfg_get (cfg, "jwt-audience");
    gateway_cfg.auth.leeway_s = (int) leeway_s;
    gateway_cfg.auth.cache_entries = (size_t) jwt_cache;
    gateway_cfg.auth.api_keys_file = mesh_cfg_get (cfg, "api-keys-file");
    gateway_cfg.rate_limit = rate_limit;
    gateway_cfg.rate_burst = (unsigned int) rate_burst;
    gateway_cfg.rate_table = (size_t) rate_table;
    gateway_cfg.cors_origins = mesh_cfg_get (cfg, "cors-origins");
    gateway_cfg.tls_cert_file = mesh_cfg_get (cfg, "tls-cert-file");
    gateway_cfg.tls_key_file = mesh_cfg_get (cfg, "tls-key-file");
    gateway_cfg.admin_addr = mesh_cfg_get (cfg, "admin");
    gateway_cfg.trace = &trace;

    sigset_t signals;
    mesh_signal_block_shutdown (&signals);     //  Before ZeroMQ starts its threads
    int signal_fd = signalfd (-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
    int err = 0;
    gateway_t *gateway = signal_fd >= 0? gateway_new (&gateway_cfg, &err): NULL;
    if (!gateway) {
        mesh_log_kv (MESH_LOG_ERROR, "cannot start", "http", gateway_cfg.http_addr, "error",
                     signal_fd < 0? "signalfd failed": mesh_strerror (err), NULL);
        if (signal_fd >= 0)
            close (signal_fd);
        mesh_curve_destroy (&curve);
        mesh_cfg_destroy (&cfg);
        return 1;
    }
    char port[16], admin_port[16];
    snprintf (port, sizeof port, "%d", gateway_port (gateway));
    snprintf (admin_port, sizeof admin_port, "%d", gateway_admin_port (gateway));
    mesh_log_kv (MESH_LOG_INFO, "gateway serving", "http", gateway_cfg.http_addr, "port", port,
                 "broker", gateway_cfg.broker, "scheme",
                 *gateway_cfg.tls_cert_file? "https": "http", "admin_port", admin_port, NULL);
    rc = gateway_run (gateway, signal_fd);
    gateway_destroy (&gateway);
    close (signal_fd);
    mesh_curve_destroy (&curve);
    mesh_cfg_destroy (&cfg);
    return rc == 0? 0: 1;
}
