/*  =========================================================================
    mesh-user - composition root: settings, logging, schema, worker threads
    Start-up: migrate the schema on one connection (exit 1 if that fails),
    then MESH_USER_WORKERS threads, each with its own PostgreSQL connection
    (user_repo_pg), use cases (user_app) and MDP worker of service `user`,
    and one outbox relay thread (user_relay: leads or stands by).
    SIGTERM/SIGINT are blocked in every thread and taken by sigwait on the
    main thread, which stops the workers (each sends DISCONNECT), joins
    them and exits 0. Admin HTTP: /healthz, /ready (once the workers run),
    /metrics.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_app.h"
#include "user_relay.h"
#include "user_repo_pg.h"
#include "user_schema.h"
#include "user_worker.h"

#include "mesh/mesh_tracer.h"
#include "mesh/mesh_admin.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_signal.h"
#include "mesh/mesh_metrics.h"
#include "mesh/mesh_pg.h"
#include "mesh/mesh_worker.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <zmq.h>

static const mesh_cfg_option_t s_options[] = {
    { "broker", "MESH_BROKER", "tcp://127.0.0.1:5555", "broker endpoint" },
    { "database-url", "DATABASE_URL", NULL,
      "PostgreSQL conninfo or postgresql:// URL (required; never logged)" },
    //  Defaults: one worker thread holding up to 64 requests. On the 2-core
    //  machine of docs/performance.md fewer, fuller batches win: a batch's
    //  creates share one commit (one WAL flush) and its gets one round trip,
    //  so one full worker per process beats four a quarter full. Two
    //  processes (scripts/run) keep the service up while one restarts.
    { "workers", "MESH_USER_WORKERS", "1",
      "worker threads, each with its own database connection" },
    //  Credit lets a worker thread hold several requests; the ones that
    //  arrive together are handled as a batch, their user.get lookups in
    //  one database round trip (libpq pipeline). Each held request waits
    //  for the batch before it, so credit trades a little latency for far
    //  fewer wake-ups per request (scripts/bench user, docs/performance.md).
    { "credit", "MESH_USER_CREDIT", "64",
      "requests each worker thread holds at once; they are handled in batches" },
    { "events-pub", "MESH_EVENTS_PUB", "tcp://127.0.0.1:5556",
      "broker's event XSUB endpoint the outbox relay publishes to" },
    { "relay-batch", NULL, "500", "outbox rows the relay numbers per transaction" },
    { "relay-sweep-ms", NULL, "1000",
      "relay sweep interval (backs up NOTIFY; standby retry), milliseconds" },
    { "admin", "MESH_ADMIN_ADDR", "127.0.0.1:0",
      "admin HTTP host:port for /healthz /ready /metrics (port 0: pick one)" },
    { "heartbeat-ms", "MESH_HEARTBEAT_MS", "1000", "heartbeat interval in milliseconds" },
    { "liveness", "MESH_LIVENESS", "3", "missed heartbeats before reconnecting" },
    MESH_CFG_CURVE_OPTIONS,
    MESH_CFG_TRACE_OPTIONS,
    MESH_CFG_LOG_OPTIONS,
};

//  What one worker thread's handler owns.
typedef struct {
    user_repo_t *repo;          //  Its own connection
    user_app_t *app;
    user_worker_t *handler;
} s_slot_t;

//  Random (version 4) UUID from getrandom.
static void
s_make_id (void *arg, char out[USER_ID_SIZE])
{
    (void) arg;
    unsigned char bytes[16];
    size_t have = 0;
    while (have < sizeof bytes) {
        ssize_t got = getrandom (bytes + have, sizeof bytes - have, 0);
        if (got > 0)
            have += (size_t) got;
        else if (got < 0 && errno == EINTR)
            continue;
        else
            abort ();   //  No randomness: ids could collide; refuse to go on
    }
    bytes[6] = (unsigned char) ((bytes[6] & 0x0F) | 0x40);
    bytes[8] = (unsigned char) ((bytes[8] & 0x3F) | 0x80);
    snprintf (out, USER_ID_SIZE,
              "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
              bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
              bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14],
              bytes[15]);
}

static int64_t
s_now_us (void *arg)
{
    (void) arg;
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static void *
s_run_relay (void *arg)
{
    user_relay_t *relay = arg;
    int rc = user_relay_run (relay);
    if (rc)
        mesh_log_kv (MESH_LOG_ERROR, "relay stopped", "error", mesh_strerror (rc), NULL);
    return NULL;
}


//  Apply the migrations on one connection. Returns 0 or a MESH_E* code.
static int
s_migrate (const char *conninfo)
{
    PGconn *conn = mesh_pg_connect_logged (conninfo);
    if (!conn)
        return MESH_EUNAVAIL;
    int applied = 0;
    char error[512] = "";
    int rc = user_schema_migrate (conn, &applied, error, sizeof error);
    PQfinish (conn);
    char count[16];
    snprintf (count, sizeof count, "%d", applied);
    if (rc) {
        mesh_log_kv (MESH_LOG_ERROR, "schema migration failed", "error", error, "applied",
                     count, NULL);
        return rc;
    }
    mesh_log_kv (MESH_LOG_INFO, "schema up to date", "applied", count, NULL);
    return 0;
}

int
main (int argc, char **argv)
{
    mesh_cfg_t *cfg = mesh_cfg_new (
        "mesh-user", "[options]",
        "User service of the zmesh mesh: MDP workers of service 'user' on PostgreSQL.",
        s_options, sizeof s_options / sizeof s_options[0]);
    int rc = mesh_cfg_parse (cfg, argc, argv);
    if (mesh_cfg_answer_builtin (cfg, rc, stdout)) {
        mesh_cfg_destroy (&cfg);
        return 0;
    }
    long workers = 4, credit = 1, heartbeat_ms = 1000, liveness = 3;
    long relay_batch = USER_RELAY_DEFAULT_BATCH, relay_sweep_ms = USER_RELAY_DEFAULT_SWEEP_MS;
    if (rc == 0
        && (mesh_cfg_get_long (cfg, "workers", 1, 256, &workers)
            || mesh_cfg_get_long (cfg, "credit", 1, 1000, &credit)
            || mesh_cfg_get_long (cfg, "relay-batch", 1, 100000, &relay_batch)
            || mesh_cfg_get_long (cfg, "relay-sweep-ms", 10, 3600000, &relay_sweep_ms)
            || mesh_cfg_get_long (cfg, "heartbeat-ms", 10, 600000, &heartbeat_ms)
            || mesh_cfg_get_long (cfg, "liveness", 1, 100, &liveness)))
        rc = MESH_EINVAL;
    const char *database_url = rc == 0 ? mesh_cfg_get (cfg, "database-url") : NULL;
    const char *problem = NULL;
    if (rc)
        problem = mesh_cfg_error (cfg);
    else if (!database_url || !*database_url)
        problem = "--database-url (DATABASE_URL) is required";
    else if (mesh_log_setup ("user", mesh_cfg_get (cfg, "log-level"),
                             mesh_cfg_get (cfg, "log-format")))
        problem = "bad --log-level or --log-format";
    mesh_curve_t *curve = NULL;
    char why[512];
    if (!problem && mesh_curve_from_cfg (cfg, true, &curve, why, sizeof why))
        problem = why;
    mesh_trace_config_t trace;
    if (!problem && mesh_trace_config_from_cfg (cfg, "mesh-user", &trace, why, sizeof why))
        problem = why;
    if (problem) {
        fprintf (stderr, "mesh-user: %s\n", problem);
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    mesh_cfg_log (cfg);

    //  Before any thread starts, so that only sigwait below takes them
    sigset_t signals;
    mesh_signal_block_shutdown (&signals);     //  Before any thread starts

    int exit_code = 1;
    int err = 0;
    mesh_metrics_t *metrics = mesh_metrics_new ();
    user_worker_metrics_t *series = user_worker_metrics_new (metrics);
    user_pg_metrics_t *pg_series = user_pg_metrics_new (metrics);
    //  NULL when no endpoint is set: tracing off
    mesh_tracer_t *tracer = mesh_tracer_new (&trace, metrics);
    user_pg_metrics_set_tracer (pg_series, tracer);
    user_relay_t *relay = NULL;
    pthread_t relay_thread;
    bool relay_started = false;
    mesh_admin_t *admin = NULL;
    void *context = NULL;
    s_slot_t *slots = mesh_alloc ((size_t) workers * sizeof (s_slot_t));
    mesh_worker_pool_t *pool = mesh_worker_pool_new ();
    user_app_env_t env = { .make_id = s_make_id, .now_us = s_now_us, .arg = NULL };

    admin = mesh_admin_open (mesh_cfg_get (cfg, "admin"), metrics);
    if (!admin)
        goto done;
    if (s_migrate (database_url))
        goto done;

    context = zmq_ctx_new ();
    if (!context) {
        mesh_log_error ("cannot create a ZeroMQ context");
        goto done;
    }
    for (long index = 0; index < workers; index++) {
        s_slot_t *slot = &slots[index];
        slot->repo = user_repo_pg_new (database_url, pg_series, &err);
        if (!slot->repo) {
            mesh_log_kv (MESH_LOG_ERROR, "cannot open a database connection", "error",
                         mesh_strerror (err), NULL);
            goto stop;
        }
        slot->app = user_app_new (slot->repo, &env);
        slot->handler = user_worker_new (slot->app, slot->repo, series);
        mesh_worker_cfg_t worker_cfg = {
            .zmq_context = context,
            .broker = mesh_cfg_get (cfg, "broker"),
            .service = "user",
            .credit = (int) credit,
            .heartbeat_ms = (int) heartbeat_ms,
            .liveness = (int) liveness,
            .handler = user_worker_handle,
            .batch_handler = user_worker_handle_batch,
            .handler_arg = slot->handler,
            .curve = curve,
            .tracer = tracer,
        };
        err = mesh_worker_pool_start (pool, &worker_cfg);
        if (err) {
            mesh_log_kv (MESH_LOG_ERROR, "cannot start a worker", "error", mesh_strerror (err),
                         NULL);
            goto stop;
        }
    }
    user_relay_cfg_t relay_cfg = {
        .conninfo = database_url,
        .zmq_context = context,
        .events_pub = mesh_cfg_get (cfg, "events-pub"),
        .batch = (int) relay_batch,
        .sweep_ms = (int) relay_sweep_ms,
        .metrics = metrics,
        .curve = curve,
        .tracer = tracer,
    };
    relay = user_relay_new (&relay_cfg, &err);
    if (!relay) {
        mesh_log_kv (MESH_LOG_ERROR, "bad relay settings", "error", mesh_strerror (err), NULL);
        goto stop;
    }
    if (pthread_create (&relay_thread, NULL, s_run_relay, relay)) {
        mesh_log_error ("cannot start the relay thread");
        goto stop;
    }
    relay_started = true;
    mesh_admin_set_ready (admin, true);
    char count[16];
    snprintf (count, sizeof count, "%ld", workers);
    mesh_log_kv (MESH_LOG_INFO, "user service ready", "workers", count, "broker",
                 mesh_cfg_get (cfg, "broker"), NULL);

    int signal = 0;
    sigwait (&signals, &signal);
    mesh_log_kv (MESH_LOG_INFO, "stopping", "signal", signal == SIGINT ? "SIGINT" : "SIGTERM",
                 NULL);
    exit_code = 0;
stop:
    mesh_admin_set_ready (admin, false);
    //  Workers first (they DISCONNECT, so the broker stops sending), then
    //  the relay, whose last act is recording what it published
    mesh_worker_pool_stop (pool);
    if (relay_started) {
        user_relay_stop (relay);
        pthread_join (relay_thread, NULL);
    }
    user_relay_destroy (&relay);
    for (long index = 0; index < workers; index++) {
        s_slot_t *slot = &slots[index];
        user_worker_destroy (&slot->handler);
        user_app_destroy (&slot->app);
        user_repo_destroy (&slot->repo);
    }
    if (exit_code == 0)
        mesh_log_kv (MESH_LOG_INFO, "user service stopped", NULL);
done:
    mesh_worker_pool_destroy (&pool);
    free (slots);
    if (context)
        zmq_ctx_term (context);
    mesh_admin_destroy (&admin);
    mesh_tracer_destroy (&tracer);      //  After the workers and the relay: their spans go out
    user_worker_metrics_destroy (&series);
    user_pg_metrics_destroy (&pg_series);
    mesh_metrics_destroy (&metrics);
    mesh_curve_destroy (&curve);
    mesh_cfg_destroy (&cfg);
    return exit_code;
}
