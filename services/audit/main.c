/*  =========================================================================
    mesh-audit - composition root: settings, schema, ingest thread, workers
    Start-up: create and migrate the audit schema (exit 1 if that fails),
    start the ingest thread (audit_subscriber: subscribe, catch up, store)
    and MESH_AUDIT_WORKERS threads serving audit.list, each with its own
    database connection. /ready turns 200 once the ingest has caught up the
    first time and the workers run. SIGTERM/SIGINT stop everything and exit 0.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_schema.h"
#include "audit_store_pg.h"
#include "audit_subscriber.h"
#include "audit_worker.h"

#include "mesh/mesh_tracer.h"
#include "mesh/mesh_admin.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_metrics.h"
#include "mesh/mesh_pg.h"
#include "mesh/mesh_signal.h"
#include "mesh/mesh_worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static const mesh_cfg_option_t s_options[] = {
    { "broker", "MESH_BROKER", "tcp://127.0.0.1:5555",
      "broker endpoint (audit.list workers; events.list catch-up)" },
    { "events-sub", "MESH_EVENTS_SUB", "tcp://127.0.0.1:5557", "broker's event XPUB endpoint" },
    { "database-url", "DATABASE_URL", NULL,
      "PostgreSQL conninfo or postgresql:// URL (required; never logged)" },
    { "schema", "MESH_AUDIT_SCHEMA", "audit", "schema of the audit tables (created if missing)" },
    { "workers", "MESH_AUDIT_WORKERS", "2", "audit.list worker threads" },
    { "catchup-ms", NULL, "2000",
      "catch up through events.list at least this often (finds a lost tail), milliseconds" },
    { "admin", "MESH_ADMIN_ADDR", "127.0.0.1:9102",
      "admin HTTP host:port for /healthz /ready /metrics (port 0: pick one)" },
    { "heartbeat-ms", "MESH_HEARTBEAT_MS", "1000", "heartbeat interval in milliseconds" },
    { "liveness", "MESH_LIVENESS", "3", "missed heartbeats before reconnecting" },
    MESH_CFG_CURVE_OPTIONS,
    MESH_CFG_TRACE_OPTIONS,
    MESH_CFG_LOG_OPTIONS,
};

//  What one worker thread's handler owns.
typedef struct {
    audit_store_t *store;       //  Its own connection
    audit_worker_t *handler;
} s_slot_t;

static void *
s_run_ingest (void *arg)
{
    int rc = audit_subscriber_run (arg);
    if (rc)
        mesh_log_kv (MESH_LOG_ERROR, "ingest stopped", "error", mesh_strerror (rc), NULL);
    return NULL;
}

//  Create, use and migrate the schema on one connection.
static int
s_prepare (const char *conninfo, const char *schema)
{
    PGconn *conn = mesh_pg_connect_logged (conninfo);
    if (!conn)
        return MESH_EUNAVAIL;
    int applied = 0;
    char error[512] = "";
    int rc = audit_schema_prepare (conn, schema, &applied, error, sizeof error);
    PQfinish (conn);
    char count[16];
    snprintf (count, sizeof count, "%d", applied);
    if (rc)
        mesh_log_kv (MESH_LOG_ERROR, "schema migration failed", "error", error, NULL);
    else
        mesh_log_kv (MESH_LOG_INFO, "schema up to date", "schema", schema, "applied", count,
                     NULL);
    return rc;
}

//  Wait for SIGTERM/SIGINT; meanwhile turn /ready on once the ingest has
//  caught up. Returns the signal.
static int
s_wait (const sigset_t *signals, mesh_admin_t *admin, audit_subscriber_t *ingest)
{
    bool ready = false;
    while (true) {
        struct timespec tick = { 0, 100 * 1000000 };
        int signal = sigtimedwait (signals, NULL, &tick);
        if (signal > 0)
            return signal;
        if (!ready && audit_subscriber_caught_up (ingest)) {
            mesh_admin_set_ready (admin, true);
            mesh_log_kv (MESH_LOG_INFO, "audit service ready", NULL);
            ready = true;
        }
    }
}

int
main (int argc, char **argv)
{
    mesh_cfg_t *cfg = mesh_cfg_new (
        "mesh-audit", "[options]",
        "Audit service of the zmesh mesh: every user event, stored once, and audit.list.",
        s_options, sizeof s_options / sizeof s_options[0]);
    int rc = mesh_cfg_parse (cfg, argc, argv);
    if (mesh_cfg_answer_builtin (cfg, rc, stdout)) {
        mesh_cfg_destroy (&cfg);
        return 0;
    }
    long workers = 2, catchup_ms = 2000, heartbeat_ms = 1000, liveness = 3;
    if (rc == 0
        && (mesh_cfg_get_long (cfg, "workers", 1, 64, &workers)
            || mesh_cfg_get_long (cfg, "catchup-ms", 10, 3600000, &catchup_ms)
            || mesh_cfg_get_long (cfg, "heartbeat-ms", 10, 600000, &heartbeat_ms)
            || mesh_cfg_get_long (cfg, "liveness", 1, 100, &liveness)))
        rc = MESH_EINVAL;
    const char *database_url = rc == 0 ? mesh_cfg_get (cfg, "database-url") : NULL;
    const char *schema = rc == 0 ? mesh_cfg_get (cfg, "schema") : NULL;
    const char *problem = NULL;
    if (rc)
        problem = mesh_cfg_error (cfg);
    else if (!database_url || !*database_url)
        problem = "--database-url (DATABASE_URL) is required";
    else if (!audit_schema_name_valid (schema))
        problem = "--schema must be a plain lower-case identifier (a-z, 0-9, _)";
    else if (mesh_log_setup ("audit", mesh_cfg_get (cfg, "log-level"),
                             mesh_cfg_get (cfg, "log-format")))
        problem = "bad --log-level or --log-format";
    mesh_curve_t *curve = NULL;
    char why[512];
    if (!problem && mesh_curve_from_cfg (cfg, true, &curve, why, sizeof why))
        problem = why;
    mesh_trace_config_t trace;
    if (!problem && mesh_trace_config_from_cfg (cfg, "mesh-audit", &trace, why, sizeof why))
        problem = why;
    if (problem) {
        fprintf (stderr, "mesh-audit: %s\n", problem);
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    mesh_cfg_log (cfg);

    sigset_t signals;
    mesh_signal_block_shutdown (&signals);     //  Before any thread starts

    int exit_code = 1, err = 0;
    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_tracer_t *tracer = mesh_tracer_new (&trace, metrics);     //  NULL: tracing off
    mesh_admin_t *admin = NULL;
    void *context = NULL;
    audit_subscriber_t *ingest = NULL;
    pthread_t ingest_thread;
    bool ingest_started = false;
    s_slot_t *slots = mesh_alloc ((size_t) workers * sizeof (s_slot_t));
    mesh_worker_pool_t *pool = mesh_worker_pool_new ();

    admin = mesh_admin_open (mesh_cfg_get (cfg, "admin"), metrics);
    if (!admin)
        goto done;
    if (s_prepare (database_url, schema))
        goto done;
    context = zmq_ctx_new ();
    if (!context)
        goto done;

    audit_subscriber_cfg_t ingest_cfg = {
        .conninfo = database_url,
        .schema = schema,
        .zmq_context = context,
        .broker = mesh_cfg_get (cfg, "broker"),
        .events_sub = mesh_cfg_get (cfg, "events-sub"),
        .catchup_ms = (int) catchup_ms,
        .metrics = metrics,
        .curve = curve,
        .tracer = tracer,
    };
    ingest = audit_subscriber_new (&ingest_cfg, &err);
    if (!ingest || pthread_create (&ingest_thread, NULL, s_run_ingest, ingest)) {
        mesh_log_kv (MESH_LOG_ERROR, "cannot start the ingest", "error", mesh_strerror (err),
                     NULL);
        goto stop;
    }
    ingest_started = true;
    for (long index = 0; index < workers; index++) {
        s_slot_t *slot = &slots[index];
        slot->store = audit_store_pg_new (database_url, schema, &err);
        if (!slot->store) {
            mesh_log_kv (MESH_LOG_ERROR, "cannot open a database connection", "error",
                         mesh_strerror (err), NULL);
            goto stop;
        }
        slot->handler = audit_worker_new (slot->store, metrics);
        mesh_worker_cfg_t worker_cfg = {
            .zmq_context = context,
            .broker = mesh_cfg_get (cfg, "broker"),
            .service = "audit",
            .credit = 1,
            .heartbeat_ms = (int) heartbeat_ms,
            .liveness = (int) liveness,
            .handler = audit_worker_handle,
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
    int signal = s_wait (&signals, admin, ingest);
    mesh_log_kv (MESH_LOG_INFO, "stopping", "signal", signal == SIGINT ? "SIGINT" : "SIGTERM",
                 NULL);
    exit_code = 0;
stop:
    mesh_admin_set_ready (admin, false);
    mesh_worker_pool_stop (pool);
    if (ingest_started) {
        audit_subscriber_stop (ingest);
        pthread_join (ingest_thread, NULL);
    }
    audit_subscriber_destroy (&ingest);
    for (long index = 0; index < workers; index++) {
        audit_worker_destroy (&slots[index].handler);
        audit_store_destroy (&slots[index].store);
    }
    if (exit_code == 0)
        mesh_log_kv (MESH_LOG_INFO, "audit service stopped", NULL);
done:
    mesh_worker_pool_destroy (&pool);
    free (slots);
    if (context)
        zmq_ctx_term (context);
    mesh_admin_destroy (&admin);
    mesh_tracer_destroy (&tracer);      //  After the workers and the ingest: their spans go out
    mesh_metrics_destroy (&metrics);
    mesh_curve_destroy (&curve);
    mesh_cfg_destroy (&cfg);
    return exit_code;
}
