/*  =========================================================================
    test_trace_export - mesh_tracer against a stand-in OTLP collector
    Spans reach the collector in batches with the resource and headers the
    OTEL_* settings give; a collector that refuses, or a port where none
    listens, costs the caller nothing but counted drops; a full queue drops
    and counts instead of waiting; a sampler that says no records nothing.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_metrics.h"
#include "mesh/mesh_time.h"
#include "mesh/mesh_tracer.h"
#include "otlp_test.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

TestSuite (trace_export, .timeout = 60.);

//  Settings for `endpoint` with `extra` pairs on top (NULL-terminated).
static mesh_trace_config_t
s_config (const char *endpoint, const char *const *extra)
{
    const char *env[32] = {"OTEL_EXPORTER_OTLP_ENDPOINT", endpoint,
                           "OTEL_SERVICE_NAME",           "export-test",
                           "OTEL_BSP_SCHEDULE_DELAY",     "50"};
    size_t used = 6;
    for (size_t index = 0; extra && extra[index] && used < 30; index++)
        env[used++] = extra[index];
    env[used] = NULL;
    mesh_trace_config_t config;
    char error[256];
    cr_assert_eq (otlp_test_config_read (env, &config, error, sizeof error), 0,
                  "%s", error);
    return config;
}

//  Start and end `count` spans; returns the last one's context.
static mesh_trace_ctx_t
s_spans (mesh_tracer_t *tracer, size_t count)
{
    mesh_trace_ctx_t ctx = {0};
    for (size_t index = 0; index < count; index++) {
        mesh_span_record_t *span =
            mesh_tracer_start (tracer, "work", MESH_SPAN_INTERNAL, NULL, &ctx);
        mesh_span_record_set_int (span, "index", (int64_t)index);
        mesh_tracer_end (tracer, &span);
        cr_assert_null (span);
    }
    return ctx;
}

//  Wait until the counter reaches `value` (bounded). Returns its value.
static uint64_t
s_wait_counter (mesh_metrics_t *metrics, const char *outcome, uint64_t value, int timeout_ms)
{
    mesh_counter_t *counter =
        mesh_metrics_counter (metrics, "mesh_trace_spans_total", NULL, "outcome", outcome, NULL);
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (mesh_counter_value (counter) < value && mesh_mono_ms () < until)
        usleep (10 * 1000);
    return mesh_counter_value (counter);
}

Test (trace_export, no_endpoint_is_no_tracer)
{
    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_trace_config_t config = s_config ("", NULL);
    cr_assert_str_eq (config.endpoint, "");
    mesh_tracer_t *tracer = mesh_tracer_new (&config, metrics);
    cr_assert_null (tracer);
    mesh_trace_ctx_t ctx = {.flags = 7};
    cr_assert_null (mesh_tracer_start (NULL, "x", MESH_SPAN_SERVER, NULL, &ctx));
    cr_assert_eq (ctx.flags, 7); //  untouched
    mesh_tracer_end (NULL, &(mesh_span_record_t *){NULL});
    mesh_tracer_destroy (&tracer);
    mesh_metrics_destroy (&metrics);
}

Test (trace_export, spans_reach_the_collector_with_resource_and_headers)
{
    otlp_test_t otlp;
    otlp_test_start (&otlp, 200);
    mesh_metrics_t *metrics = mesh_metrics_new ();
    const char *extra[] = {"OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k%201",
                           "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "7", NULL};
    mesh_trace_config_t config = s_config (otlp.endpoint, extra);
    mesh_tracer_t *tracer = mesh_tracer_new (&config, metrics);
    cr_assert_not_null (tracer);

    //  A parent and a child: the child carries the parent's ids
    mesh_trace_ctx_t parent_ctx, child_ctx;
    mesh_span_record_t *parent =
        mesh_tracer_start (tracer, "parent", MESH_SPAN_SERVER, NULL, &parent_ctx);
    mesh_span_record_t *child =
        mesh_tracer_start (tracer, "child", MESH_SPAN_CLIENT, &parent_ctx, &child_ctx);
    cr_assert (parent && child);
    cr_assert_eq (memcmp (parent_ctx.trace_id, child_ctx.trace_id, 16), 0);
    cr_assert_neq (memcmp (parent_ctx.span_id, child_ctx.span_id, 8), 0);
    cr_assert_eq (child_ctx.flags, MESH_TRACE_FLAG_SAMPLED);
    mesh_tracer_end (tracer, &child);
    mesh_tracer_end (tracer, &parent);
    s_spans (tracer, 20); //  More than one batch of 7

    char trace_id[MESH_TRACE_ID_HEX_SIZE], parent_id[MESH_SPAN_ID_HEX_SIZE];
    mesh_trace_hex (parent_ctx.trace_id, 16, trace_id);
    mesh_trace_hex (parent_ctx.span_id, 8, parent_id);
    json_t *pair = otlp_test_wait (&otlp, trace_id, 2, 10000);
    cr_assert_not_null (pair, "parent and child never arrived");
    json_t *got_child = otlp_test_find (pair, "export-test", "child");
    cr_assert_not_null (got_child);
    cr_assert_str_eq (json_string_value (json_object_get (got_child, "parentSpanId")), parent_id);
    cr_assert_eq (json_integer_value (json_object_get (got_child, "kind")), MESH_SPAN_CLIENT);
    cr_assert_str_eq (
        json_string_value (json_object_get (json_object_get (got_child, "headers"), "x-api-key")),
        "k 1");
    json_decref (pair);
    json_t *all = otlp_test_wait (&otlp, NULL, 22, 10000);
    cr_assert_not_null (all, "not every span arrived");
    json_decref (all);
    cr_assert_eq (s_wait_counter (metrics, "exported", 22, 10000), 22);
    mesh_tracer_destroy (&tracer);
    cr_assert_null (tracer);
    mesh_metrics_destroy (&metrics);
    otlp_test_stop (&otlp);
}

Test (trace_export, destroy_flushes_what_is_queued)
{
    otlp_test_t otlp;
    otlp_test_start (&otlp, 200);
    mesh_metrics_t *metrics = mesh_metrics_new ();
    //  A delay far longer than the test: only the flush on destroy sends
    const char *extra[] = {"OTEL_BSP_SCHEDULE_DELAY", "600000", NULL};
    mesh_trace_config_t config = s_config (otlp.endpoint, extra);
    mesh_tracer_t *tracer = mesh_tracer_new (&config, metrics);
    s_spans (tracer, 5);
    mesh_tracer_destroy (&tracer);
    json_t *all = otlp_test_spans (&otlp);
    cr_assert_eq (json_array_size (all), 5);
    json_decref (all);
    mesh_metrics_destroy (&metrics);
    otlp_test_stop (&otlp);
}

Test (trace_export, refused_and_unreachable_collectors_count_drops)
{
    otlp_test_t otlp;
    otlp_test_start (&otlp, 503);
    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_trace_config_t config = s_config (otlp.endpoint, NULL);
    mesh_tracer_t *tracer = mesh_tracer_new (&config, metrics);
    s_spans (tracer, 10);
    cr_assert_eq (s_wait_counter (metrics, "dropped_export", 10, 10000), 10);
    mesh_tracer_destroy (&tracer);
    mesh_metrics_destroy (&metrics);
    otlp_test_stop (&otlp);

    //  A closed port: connection refused
    metrics = mesh_metrics_new ();
    char closed[64];
    snprintf (closed, sizeof closed, "http://127.0.0.1:%d", mesh_test_free_port ());
    config = s_config (closed, NULL);
    tracer = mesh_tracer_new (&config, metrics);
    s_spans (tracer, 10);
    cr_assert_eq (s_wait_counter (metrics, "dropped_export", 10, 10000), 10);
    cr_assert_eq (s_wait_counter (metrics, "exported", 0, 0), 0);
    mesh_tracer_destroy (&tracer);
    mesh_metrics_destroy (&metrics);
}

Test (trace_export, a_full_queue_drops_instead_of_waiting)
{
    //  A collector that accepts connections and never answers: the exporter
    //  is stuck in one POST (up to its timeout) while the queue fills
    int listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    cr_assert_eq (bind (listener, (struct sockaddr *)&address, sizeof address), 0);
    cr_assert_eq (listen (listener, 8), 0);
    socklen_t len = sizeof address;
    getsockname (listener, (struct sockaddr *)&address, &len);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "http://127.0.0.1:%d", ntohs (address.sin_port));
    mesh_metrics_t *metrics = mesh_metrics_new ();
    const char *extra[] = {"OTEL_BSP_MAX_QUEUE_SIZE",
                           "16",
                           "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                           "4",
                           "OTEL_EXPORTER_OTLP_TIMEOUT",
                           "3000",
                           NULL};
    mesh_trace_config_t config = s_config (endpoint, extra);
    mesh_tracer_t *tracer = mesh_tracer_new (&config, metrics);
    //  Each end returns at once; at most the queue plus one batch is held
    s_spans (tracer, 1000);
    uint64_t dropped = s_wait_counter (metrics, "dropped_queue", 1000 - 16 - 4, 0);
    cr_assert_geq (dropped, 1000 - 16 - 4, "dropped %lu", (unsigned long)dropped);
    mesh_tracer_destroy (&tracer);
    uint64_t failed = s_wait_counter (metrics, "dropped_export", 0, 0);
    cr_assert_eq (dropped + failed, 1000, "queue %lu export %lu", (unsigned long)dropped,
                  (unsigned long)failed);
    mesh_metrics_destroy (&metrics);
    close (listener);
}

Test (trace_export, sampled_out_spans_are_not_recorded)
{
    otlp_test_t otlp;
    otlp_test_start (&otlp, 200);
    mesh_metrics_t *metrics = mesh_metrics_new ();
    const char *extra[] = {"OTEL_TRACES_SAMPLER", "parentbased_always_off", NULL};
    mesh_trace_config_t config = s_config (otlp.endpoint, extra);
    mesh_tracer_t *tracer = mesh_tracer_new (&config, metrics);
    mesh_trace_ctx_t root;
    cr_assert_null (mesh_tracer_start (tracer, "root", MESH_SPAN_SERVER, NULL, &root));
    cr_assert_eq (root.flags, 0); //  propagated as not sampled
    //  A sampled remote parent is followed
    mesh_trace_ctx_t child;
    mesh_span_record_t *span = mesh_tracer_start_remote (
        tracer, "child", MESH_SPAN_SERVER,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &child);
    cr_assert_not_null (span);
    mesh_tracer_end (tracer, &span);
    mesh_tracer_destroy (&tracer);
    json_t *all = otlp_test_spans (&otlp);
    cr_assert_eq (json_array_size (all), 1);
    cr_assert_str_eq (json_string_value (json_object_get (json_array_get (all, 0), "name")),
                      "child");
    json_decref (all);
    mesh_metrics_destroy (&metrics);
    otlp_test_stop (&otlp);
}
