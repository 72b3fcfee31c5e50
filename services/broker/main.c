/*  =========================================================================
    mesh-broker - composition root: settings, logging, admin, broker loop
    SIGTERM/SIGINT arrive on a signalfd the broker polls, so shutdown runs
    on the broker's own thread: workers get DISCONNECT and the process
    exits 0.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "broker.h"
#include "mesh/mesh_admin.h"
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_signal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

static const mesh_cfg_option_t s_options[] = {
    { "bind", "MESH_BROKER_BIND", "tcp://127.0.0.1:5555",
      "ROUTER endpoints for clients and workers, comma-separated (containers: tcp://*:5555)" },
    { "events-xsub", "MESH_EVENTS_XSUB_BIND", "tcp://127.0.0.1:5556",
      "XSUB endpoints publishers connect to, comma-separated (empty: no event proxy)" },
    { "events-xpub", "MESH_EVENTS_XPUB_BIND", "tcp://127.0.0.1:5557",
      "XPUB endpoints subscribers connect to, comma-separated (empty: no event proxy)" },
    { "admin", "MESH_ADMIN_ADDR", "127.0.0.1:9100",
      "admin HTTP host:port for /healthz /ready /metrics (port 0: pick one)" },
    { "heartbeat-ms", "MESH_HEARTBEAT_MS", "1000", "heartbeat interval in milliseconds" },
    { "liveness", "MESH_LIVENESS", "3", "missed heartbeats before a worker counts as dead" },
    { "default-wait-ms", "MESH_BROKER_DEFAULT_WAIT_MS", "5000",
      "how long a request without a deadline waits for a worker" },
    { "queue-max", "MESH_BROKER_QUEUE_MAX", "10000", "requests queued per service at most" },
    { "max-services", "MESH_BROKER_MAX_SERVICES", "1000", "services tracked at most" },
    MESH_CFG_CURVE_OPTIONS,
    { "curve-allow", "MESH_CURVE_ALLOW", "",
      "directory of allowed public CURVE certificates, reloaded when it changes "
      "(required with --curve-cert)" },
    MESH_CFG_LOG_OPTIONS,
};

//  Read the numeric settings into *cfg. Returns 0 or MESH_EINVAL.
static int
s_numbers (mesh_cfg_t *cfg, broker_cfg_t *broker_cfg)
{
    long heartbeat_ms, liveness, wait_ms, queue_max, max_services;
    if (mesh_cfg_get_long (cfg, "heartbeat-ms", 10, 600000, &heartbeat_ms)
        || mesh_cfg_get_long (cfg, "liveness", 1, 100, &liveness)
        || mesh_cfg_get_long (cfg, "default-wait-ms", 1, 3600000, &wait_ms)
        || mesh_cfg_get_long (cfg, "queue-max", 1, 10000000, &queue_max)
        || mesh_cfg_get_long (cfg, "max-services", 1, 1000000, &max_services))
        return MESH_EINVAL;
    broker_cfg->heartbeat_ms = (int) heartbeat_ms;
    broker_cfg->liveness = (int) liveness;
    broker_cfg->default_wait_ms = (int) wait_ms;
    broker_cfg->queue_max = (size_t) queue_max;
    broker_cfg->max_services = (size_t) max_services;
    return 0;
}

int
main (int argc, char **argv)
{
    mesh_cfg_t *cfg = mesh_cfg_new (
        "mesh-broker", "[options]",
        "Majordomo (MDP/0.1 + MMI) broker of the zmesh mesh, with worker credit, and the\n"
        "XSUB/XPUB proxy that carries user events.",
        s_options, sizeof s_options / sizeof s_options[0]);
    int rc = mesh_cfg_parse (cfg, argc, argv);
    if (mesh_cfg_answer_builtin (cfg, rc, stdout)) {
        mesh_cfg_destroy (&cfg);
        return 0;
    }
    broker_cfg_t broker_cfg = broker_cfg_defaults ();
    if (rc == 0)
        rc = s_numbers (cfg, &broker_cfg);
    if (rc == 0 && mesh_log_setup ("broker", mesh_cfg_get (cfg, "log-level"),
                                   mesh_cfg_get (cfg, "log-format")))
        rc = MESH_EINVAL;
    if (rc) {
        fprintf (stderr, "mesh-broker: %s\n",
                 *mesh_cfg_error (cfg)? mesh_cfg_error (cfg): "bad --log-level or --log-format");
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    //  The broker is the CURVE server: its own certificate only
    mesh_curve_t *curve = NULL;
    char why[512];
    const char *allow = mesh_cfg_get (cfg, "curve-allow");
    rc = mesh_curve_from_cfg (cfg, false, &curve, why, sizeof why);
    if (rc == 0 && curve && (!allow || !*allow)) {
        snprintf (why, sizeof why,
                  "--curve-cert needs --curve-allow (the allowed keys): "
                  "CURVE without it would admit anyone");
        rc = MESH_EINVAL;
    }
    if (rc) {
        fprintf (stderr, "mesh-broker: %s\n", why);
        mesh_curve_destroy (&curve);
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    mesh_cfg_log (cfg);

    //  Signals become readable on a descriptor the broker polls
    sigset_t signals;
    mesh_signal_block_shutdown (&signals);     //  Before any thread starts
    int signal_fd = signalfd (-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);

    mesh_metrics_t *metrics = mesh_metrics_new ();
    broker_cfg.bind = mesh_cfg_get (cfg, "bind");
    const char *xsub = mesh_cfg_get (cfg, "events-xsub");
    const char *xpub = mesh_cfg_get (cfg, "events-xpub");
    broker_cfg.xsub_bind = xsub && *xsub? xsub: NULL;
    broker_cfg.xpub_bind = xpub && *xpub? xpub: NULL;
    broker_cfg.metrics = metrics;
    broker_cfg.curve = curve;
    broker_cfg.curve_allow = allow;

    int exit_code = 1;
    int err = 0;
    mesh_admin_t *admin = NULL;
    broker_t *broker = NULL;
    if (signal_fd < 0) {
        mesh_log_error ("cannot create signalfd");
        goto done;
    }
    admin = mesh_admin_open (mesh_cfg_get (cfg, "admin"), metrics);
    if (!admin)
        goto done;
    broker = broker_new (&broker_cfg, &err);
    if (!broker) {
        mesh_log_kv (MESH_LOG_ERROR, "cannot start broker", "error", mesh_strerror (err), NULL);
        if (err == MESH_EINVAL)
            exit_code = 2; //  A setting is wrong (e.g. --curve-allow), as for flags
        goto done;
    }
    mesh_admin_set_ready (admin, true);
    rc = broker_run (broker, signal_fd);
    mesh_admin_set_ready (admin, false);
    exit_code = rc? 1: 0;
    mesh_log_kv (MESH_LOG_INFO, "broker stopped", NULL);
done:
    broker_destroy (&broker);
    mesh_admin_destroy (&admin);
    mesh_metrics_destroy (&metrics);
    mesh_curve_destroy (&curve);
    if (signal_fd >= 0)
        close (signal_fd);
    mesh_cfg_destroy (&cfg);
    return exit_code;
}
