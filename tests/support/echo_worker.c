/*  =========================================================================
    mesh-echo-worker - a libmesh worker for tests and benchmarks
    Methods: "echo" replies with the request body; "whoami" replies with
    "PID/THREAD" (tests count which worker served what); "sleep" {ms} waits
    then replies {} ; "fail" {code} replies with that error code. With
    --reply-request 1 any other method is answered {method, actor, id}: what
    the worker was asked and for whom (the gateway's security tests).
    Several threads may each run a worker (--threads), sharing one context.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_signal.h"
#include "mesh/mesh_worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

typedef struct {
    int thread_index;           //  For whoami
    bool reply_request;         //  Answer unknown methods with what was asked
    mesh_worker_t *worker;      //  Owned by main
} s_thread_t;

static const mesh_cfg_option_t s_options[] = {
    { "broker", "MESH_BROKER", "tcp://127.0.0.1:5555", "broker endpoint" },
    { "service", NULL, "echo", "service to serve" },
    { "credit", NULL, "1", "requests held at once (1 = plain RFC 7 READY)" },
    { "threads", NULL, "1", "worker threads (each a separate worker)" },
    { "reply-request", NULL, "0", "1: answer any other method with {method, actor, id}" },
    { "heartbeat-ms", "MESH_HEARTBEAT_MS", "1000", "heartbeat interval" },
    { "liveness", "MESH_LIVENESS", "3", "missed heartbeats before reconnecting" },
    MESH_CFG_CURVE_OPTIONS,
    MESH_CFG_LOG_OPTIONS,
};

//  Unsigned field `name` of map `body`, or `fallback`.
static uint64_t
s_field_u64 (const msgpack_object *body, const char *name, uint64_t fallback)
{
    if (!body || body->type != MSGPACK_OBJECT_MAP)
        return fallback;
    for (uint32_t index = 0; index < body->via.map.size; index++) {
        const msgpack_object_kv *pair = &body->via.map.ptr[index];
        if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == strlen (name)
            && memcmp (pair->key.via.str.ptr, name, strlen (name)) == 0
            && pair->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return pair->val.via.u64;
    }
    return fallback;
}

static mesh_code_t
s_handle (void *arg, const mesh_request_t *request, mesh_response_t *response)
{
    s_thread_t *thread = arg;
    if (mesh_slice_eq (request->method, "echo")) {
        if (request->body)
            msgpack_pack_object (response->body, *request->body);
        else
            msgpack_pack_nil (response->body);
        return MESH_CODE_OK;
    }
    if (mesh_slice_eq (request->method, "actor")) {
        //  The actor the broker let through (CURVE tests)
        msgpack_pack_str (response->body, request->actor.len);
        msgpack_pack_str_body (response->body, request->actor.ptr, request->actor.len);
        return MESH_CODE_OK;
    }
    if (mesh_slice_eq (request->method, "whoami")) {
        char who[64];
        snprintf (who, sizeof who, "%d/%d", (int) getpid (), thread->thread_index);
        mesh_pack_cstr (response->body, who);
        return MESH_CODE_OK;
    }
    if (mesh_slice_eq (request->method, "sleep")) {
        uint64_t ms = s_field_u64 (request->body, "ms", 0);
        struct timespec pause = { (time_t) (ms / 1000), (long) (ms % 1000) * 1000000L };
        nanosleep (&pause, NULL);
        msgpack_pack_map (response->body, 0);
        return MESH_CODE_OK;
    }
    if (mesh_slice_eq (request->method, "fail")) {
        snprintf (response->message, sizeof response->message, "failed on request");
        return (mesh_code_t) s_field_u64 (request->body, "code", MESH_CODE_INTERNAL);
    }
    if (thread->reply_request) {
        const mesh_slice_t fields[] = { request->method, request->actor, request->id };
        const char *const names[] = { "method", "actor", "id" };
        msgpack_pack_map (response->body, 3);
        for (size_t index = 0; index < 3; index++) {
            mesh_pack_cstr (response->body, names[index]);
            msgpack_pack_str_with_body (response->body, fields[index].ptr, fields[index].len);
        }
        return MESH_CODE_OK;
    }
    snprintf (response->message, sizeof response->message, "unknown method");
    return MESH_CODE_UNIMPLEMENTED;
}

static void *
s_run (void *arg)
{
    s_thread_t *thread = arg;
    mesh_worker_run (thread->worker);
    return NULL;
}

int
main (int argc, char **argv)
{
    mesh_cfg_t *cfg = mesh_cfg_new ("mesh-echo-worker", "[options]",
                                    "Echo worker for zmesh tests and benchmarks.", s_options,
                                    sizeof s_options / sizeof s_options[0]);
    int rc = mesh_cfg_parse (cfg, argc, argv);
    long credit = 1, threads = 1, heartbeat_ms = 1000, liveness = 3, reply_request = 0;
    if (mesh_cfg_answer_builtin (cfg, rc, stdout)) {
        mesh_cfg_destroy (&cfg);
        return 0;
    }
    if (rc || mesh_cfg_get_long (cfg, "credit", 1, 1000, &credit)
        || mesh_cfg_get_long (cfg, "threads", 1, 64, &threads)
        || mesh_cfg_get_long (cfg, "heartbeat-ms", 10, 60000, &heartbeat_ms)
        || mesh_cfg_get_long (cfg, "liveness", 1, 100, &liveness)
        || mesh_cfg_get_long (cfg, "reply-request", 0, 1, &reply_request)
        || mesh_log_setup ("echo-worker", mesh_cfg_get (cfg, "log-level"),
                           mesh_cfg_get (cfg, "log-format"))) {
        fprintf (stderr, "mesh-echo-worker: %s\n", mesh_cfg_error (cfg));
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    mesh_curve_t *curve = NULL;
    char why[512];
    if (mesh_curve_from_cfg (cfg, true, &curve, why, sizeof why)) {
        fprintf (stderr, "mesh-echo-worker: %s\n", why);
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    sigset_t signals;
    mesh_signal_block_shutdown (&signals);     //  Before any thread starts

    void *context = zmq_ctx_new ();
    s_thread_t *pool = calloc ((size_t) threads, sizeof (s_thread_t));
    pthread_t *ids = calloc ((size_t) threads, sizeof (pthread_t));
    for (long index = 0; index < threads; index++) {
        pool[index].thread_index = (int) index;
        pool[index].reply_request = reply_request != 0;
        mesh_worker_cfg_t worker_cfg = {
            .zmq_context = context,
            .broker = mesh_cfg_get (cfg, "broker"),
            .service = mesh_cfg_get (cfg, "service"),
            .credit = (int) credit,
            .heartbeat_ms = (int) heartbeat_ms,
            .liveness = (int) liveness,
            .handler = s_handle,
            .handler_arg = &pool[index],
            .curve = curve,
        };
        pool[index].worker = mesh_worker_new (&worker_cfg, NULL);
        if (!pool[index].worker) {
            fprintf (stderr, "mesh-echo-worker: bad worker settings\n");
            return 2;
        }
        pthread_create (&ids[index], NULL, s_run, &pool[index]);
    }
    mesh_log_kv (MESH_LOG_INFO, "echo worker ready", "service", mesh_cfg_get (cfg, "service"),
                 NULL);
    int signal = 0;
    sigwait (&signals, &signal);
    for (long index = 0; index < threads; index++)
        mesh_worker_stop (pool[index].worker);
    for (long index = 0; index < threads; index++) {
        pthread_join (ids[index], NULL);
        mesh_worker_destroy (&pool[index].worker);
    }
    free (pool);
    free (ids);
    zmq_ctx_term (context);
    mesh_curve_destroy (&curve);
    mesh_cfg_destroy (&cfg);
    return 0;
}
