/*  =========================================================================
    test_mesh_trace - unit tests of trace context, samplers, OTEL_* settings
    and the OTLP/HTTP JSON encoding. No threads, no sockets.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_err.h"
#include "mesh/mesh_trace.h"
#include "otlp_test.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

//  Read settings from `env`; asserts on the result code.
static void
s_read (const char *const *env, int expected, mesh_trace_config_t *config)
{
    char error[256] = "";
    int rc = otlp_test_config_read (env, config, error, sizeof error);
    cr_assert_eq (rc, expected, "rc %d (%s)", rc, error);
    if (rc != 0)
        cr_assert_neq (error[0], '\0');
}

Test (mesh_trace, traceparent_round_trips)
{
    const char *text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    mesh_trace_ctx_t ctx;
    cr_assert_eq (mesh_traceparent_parse (text, &ctx), 0);
    cr_assert_eq (ctx.trace_id[0], 0x4b);
    cr_assert_eq (ctx.trace_id[15], 0x36);
    cr_assert_eq (ctx.span_id[7], 0xb7);
    cr_assert_eq (ctx.flags, MESH_TRACE_FLAG_SAMPLED);
    char out[MESH_TRACEPARENT_SIZE];
    mesh_traceparent_format (&ctx, out);
    cr_assert_str_eq (out, text);
    cr_assert_eq (
        mesh_traceparent_parse ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &ctx),
        0);
    cr_assert_eq (ctx.flags, 0);
}

Test (mesh_trace, traceparent_ids_are_for_log_lines)
{
    //  From a slice that does not end in NUL (an envelope field)
    const char *text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 and more";
    char trace_id[MESH_TRACE_ID_HEX_SIZE], span_id[MESH_SPAN_ID_HEX_SIZE];
    cr_assert (mesh_traceparent_ids (text, 55, trace_id, span_id));
    cr_assert_str_eq (trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    cr_assert_str_eq (span_id, "00f067aa0ba902b7");
    //  Not a traceparent: both empty
    cr_assert_not (mesh_traceparent_ids (text, 54, trace_id, span_id));
    cr_assert_str_eq (trace_id, "");
    cr_assert_str_eq (span_id, "");
    cr_assert_not (mesh_traceparent_ids (text, strlen (text), trace_id, span_id));
    cr_assert_not (mesh_traceparent_ids (NULL, 0, trace_id, span_id));
    cr_assert_not (mesh_traceparent_ids (
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", 55, trace_id, span_id));
    cr_assert_str_eq (span_id, "");
}

Test (mesh_trace, traceparent_rejects_what_is_not_one)
{
    const char *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   //  short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011", //  long
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  //  version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  //  upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  //  zero trace
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  //  zero span
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",  //  separator
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",  //  flags
    };
    mesh_trace_ctx_t ctx;
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        cr_assert_eq (mesh_traceparent_parse (bad[index], &ctx), MESH_EINVAL, "%s", bad[index]);
    cr_assert_eq (mesh_traceparent_parse (NULL, &ctx), MESH_EINVAL);
}

Test (mesh_trace, sampler_names_and_arguments)
{
    mesh_sampler_t sampler;
    cr_assert_eq (mesh_sampler_parse (NULL, NULL, &sampler), 0);
    cr_assert_eq (sampler.kind, MESH_SAMPLER_PARENT_ALWAYS_ON);
    cr_assert_eq (mesh_sampler_parse ("parentbased_traceidratio", "0.25", &sampler), 0);
    cr_assert_eq (sampler.kind, MESH_SAMPLER_PARENT_RATIO);
    cr_assert_float_eq (sampler.ratio, 0.25, 1e-12);
    cr_assert_eq (mesh_sampler_parse ("traceidratio", NULL, &sampler), 0);
    cr_assert_float_eq (sampler.ratio, 1.0, 1e-12);
    cr_assert_eq (mesh_sampler_parse ("always_off", "junk", &sampler), 0); //  arg unused
    cr_assert_eq (mesh_sampler_parse ("traceidratio", "1.5", &sampler), MESH_EINVAL);
    cr_assert_eq (mesh_sampler_parse ("traceidratio", "-0.1", &sampler), MESH_EINVAL);
    cr_assert_eq (mesh_sampler_parse ("traceidratio", "half", &sampler), MESH_EINVAL);
    cr_assert_eq (mesh_sampler_parse ("jaeger_remote", NULL, &sampler), MESH_EINVAL);
}

//  A trace id whose last 8 bytes are `low` (big-endian).
static void
s_trace_id (uint64_t low, uint8_t *trace_id)
{
    memset (trace_id, 0xAB, 8);
    for (int index = 15; index >= 8; index--, low >>= 8)
        trace_id[index] = (uint8_t)(low & 0xFF);
}

Test (mesh_trace, samplers_decide_as_the_specification_says)
{
    uint8_t low[16], high[16];
    s_trace_id (0x0000000000000001u, low);  //  Below any ratio > 0
    s_trace_id (0xFFFFFFFFFFFFFFF0u, high); //  Above any ratio < 1
    mesh_trace_ctx_t sampled = {.flags = MESH_TRACE_FLAG_SAMPLED};
    mesh_trace_ctx_t unsampled = {.flags = 0};
    mesh_sampler_t on = {MESH_SAMPLER_ALWAYS_ON, 1}, off = {MESH_SAMPLER_ALWAYS_OFF, 1};
    cr_assert (mesh_sampler_sample (&on, &unsampled, high));
    cr_assert_not (mesh_sampler_sample (&off, &sampled, low));
    mesh_sampler_t ratio = {MESH_SAMPLER_RATIO, 0.5};
    cr_assert (mesh_sampler_sample (&ratio, NULL, low));
    cr_assert_not (mesh_sampler_sample (&ratio, NULL, high));
    cr_assert_not (mesh_sampler_sample (&ratio, &sampled, high)); //  ignores the parent
    mesh_sampler_t parent_on = {MESH_SAMPLER_PARENT_ALWAYS_ON, 1};
    cr_assert (mesh_sampler_sample (&parent_on, NULL, high));
    cr_assert_not (mesh_sampler_sample (&parent_on, &unsampled, low));
    mesh_sampler_t parent_off = {MESH_SAMPLER_PARENT_ALWAYS_OFF, 1};
    cr_assert_not (mesh_sampler_sample (&parent_off, NULL, low));
    cr_assert (mesh_sampler_sample (&parent_off, &sampled, high));
    mesh_sampler_t parent_ratio = {MESH_SAMPLER_PARENT_RATIO, 0.5};
    cr_assert (mesh_sampler_sample (&parent_ratio, NULL, low));
    cr_assert_not (mesh_sampler_sample (&parent_ratio, NULL, high));
    cr_assert (mesh_sampler_sample (&parent_ratio, &sampled, high)); //  parent wins
    cr_assert_not (mesh_sampler_sample (&parent_ratio, &unsampled, low));
    mesh_sampler_t zero = {MESH_SAMPLER_RATIO, 0.0};
    cr_assert_not (mesh_sampler_sample (&zero, NULL, low));
}

Test (mesh_trace, ratio_samples_about_its_share)
{
    //  Trace ids spread evenly over the 64-bit space: the share is exact
    //  to one step
    mesh_sampler_t ratio = {MESH_SAMPLER_RATIO, 0.1};
    size_t kept = 0;
    uint8_t trace_id[16];
    for (uint64_t index = 0; index < 1000; index++) {
        s_trace_id (index * (UINT64_MAX / 1000), trace_id);
        kept += mesh_sampler_sample (&ratio, NULL, trace_id);
    }
    cr_assert (kept >= 99 && kept <= 101, "kept %zu of 1000", kept);
}

Test (mesh_trace, no_endpoint_means_off)
{
    mesh_trace_config_t config;
    const char *env[] = {NULL};
    s_read (env, 0, &config);
    cr_assert_str_eq (config.endpoint, "");
    cr_assert_str_eq (config.resource[0].key, "service.name");
    cr_assert_str_eq (config.resource[0].value, "mesh-test");
    cr_assert_eq (config.sampler.kind, MESH_SAMPLER_PARENT_ALWAYS_ON);
    cr_assert_eq (config.queue_size, 2048);
    cr_assert_eq (config.batch_size, 512);
    cr_assert_eq (config.delay_ms, 5000);
    cr_assert_eq (config.timeout_ms, 10000);
}

Test (mesh_trace, endpoints_follow_the_specification)
{
    mesh_trace_config_t config;
    const char *base[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318", NULL};
    s_read (base, 0, &config);
    cr_assert_str_eq (config.endpoint, "http://collector:4318/v1/traces");
    const char *slash[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/", NULL};
    s_read (slash, 0, &config);
    cr_assert_str_eq (config.endpoint, "http://collector:4318/v1/traces");
    //  The signal's own endpoint is used as is and wins
    const char *traces[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318",
                            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:1234/x", NULL};
    s_read (traces, 0, &config);
    cr_assert_str_eq (config.endpoint, "http://other:1234/x");
}

Test (mesh_trace, headers_resource_and_batching)
{
    mesh_trace_config_t config;
    const char *env[] = {
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "api-key=secret%20one , x-tenant=a%2Cb",
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment=prod,service.name=ignored,host.name=h1",
        "OTEL_SERVICE_NAME",
        "gateway-eu",
        "OTEL_TRACES_SAMPLER",
        "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG",
        "0.05",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "100",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "500",
        "OTEL_BSP_SCHEDULE_DELAY",
        "200",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "1500",
        NULL,
    };
    s_read (env, 0, &config);
    cr_assert_eq (config.header_count, 2);
    cr_assert_str_eq (config.headers[0].key, "api-key");
    cr_assert_str_eq (config.headers[0].value, "secret one");
    cr_assert_str_eq (config.headers[1].key, "x-tenant");
    cr_assert_str_eq (config.headers[1].value, "a,b");
    cr_assert_eq (config.resource_count, 3);
    cr_assert_str_eq (config.resource[0].value, "gateway-eu");
    cr_assert_str_eq (config.resource[1].key, "deployment.environment");
    cr_assert_str_eq (config.resource[2].key, "host.name");
    cr_assert_eq (config.sampler.kind, MESH_SAMPLER_PARENT_RATIO);
    cr_assert_float_eq (config.sampler.ratio, 0.05, 1e-12);
    cr_assert_eq (config.queue_size, 100);
    cr_assert_eq (config.batch_size, 100); //  never more than the queue
    cr_assert_eq (config.delay_ms, 200);
    cr_assert_eq (config.timeout_ms, 1500);
}

Test (mesh_trace, service_name_from_the_resource_attributes)
{
    mesh_trace_config_t config;
    const char *env[] = {"OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs", NULL};
    s_read (env, 0, &config);
    cr_assert_eq (config.resource_count, 1);
    cr_assert_str_eq (config.resource[0].value, "from-attrs");
}

Test (mesh_trace, bad_settings_are_refused)
{
    mesh_trace_config_t config;
    const char *sampler[] = {"OTEL_TRACES_SAMPLER", "sometimes", NULL};
    s_read (sampler, MESH_EINVAL, &config);
    const char *arg[] = {"OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2",
                         NULL};
    s_read (arg, MESH_EINVAL, &config);
    const char *headers[] = {"OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign", NULL};
    s_read (headers, MESH_EINVAL, &config);
    const char *escape[] = {"OTEL_RESOURCE_ATTRIBUTES", "a=%zz", NULL};
    s_read (escape, MESH_EINVAL, &config);
    const char *cut[] = {"OTEL_RESOURCE_ATTRIBUTES", "a=b%2", NULL};
    s_read (cut, MESH_EINVAL, &config);
    const char *queue[] = {"OTEL_BSP_MAX_QUEUE_SIZE", "0", NULL};
    s_read (queue, MESH_EINVAL, &config);
    const char *delay[] = {"OTEL_BSP_SCHEDULE_DELAY", "5s", NULL};
    s_read (delay, MESH_EINVAL, &config);
}

Test (mesh_trace, encodes_otlp_json)
{
    mesh_trace_config_t config;
    const char *env[] = {"OTEL_SERVICE_NAME", "gw", "OTEL_RESOURCE_ATTRIBUTES", "host.name=h1",
                         NULL};
    s_read (env, 0, &config);
    mesh_span_record_t span = {.kind = MESH_SPAN_SERVER,
                               .start_ns = 1700000000123456789u,
                               .end_ns = 1700000000223456789u,
                               .status = MESH_SPAN_STATUS_ERROR};
    cr_assert_eq (mesh_traceparent_parse ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                          &span.ctx),
                  0);
    memset (span.parent_span_id, 0x11, sizeof span.parent_span_id);
    snprintf (span.name, sizeof span.name, "GET /v1/users/{id}");
    snprintf (span.status_message, sizeof span.status_message, "boom");
    mesh_span_record_set_string (&span, "http.request.method", "GET");
    mesh_span_record_set_int (&span, "http.response.status_code", 503);
    span.links[0] = span.ctx;
    span.link_count = 1;
    mesh_span_record_t root = span;
    memset (root.parent_span_id, 0, sizeof root.parent_span_id);
    const mesh_span_record_t *spans[] = {&span, &root};
    char *text = mesh_trace_encode_json (&config, spans, 2);
    cr_assert_not_null (text);
    json_error_t error;
    json_t *body = json_loads (text, 0, &error);
    free (text);
    cr_assert_not_null (body, "%s", error.text);
    json_t *resource =
        json_object_get (json_array_get (json_object_get (body, "resourceSpans"), 0), "resource");
    json_t *first = json_array_get (json_object_get (resource, "attributes"), 0);
    cr_assert_str_eq (json_string_value (json_object_get (first, "key")), "service.name");
    cr_assert_str_eq (
        json_string_value (json_object_get (json_object_get (first, "value"), "stringValue")),
        "gw");
    json_t *scope = json_array_get (
        json_object_get (json_array_get (json_object_get (body, "resourceSpans"), 0), "scopeSpans"),
        0);
    json_t *list = json_object_get (scope, "spans");
    cr_assert_eq (json_array_size (list), 2);
    json_t *one = json_array_get (list, 0);
    //  OTLP JSON: hex ids, integer enums, 64-bit integers as strings
    cr_assert_str_eq (json_string_value (json_object_get (one, "traceId")),
                      "4bf92f3577b34da6a3ce929d0e0e4736");
    cr_assert_str_eq (json_string_value (json_object_get (one, "spanId")), "00f067aa0ba902b7");
    cr_assert_str_eq (json_string_value (json_object_get (one, "parentSpanId")),
                      "1111111111111111");
    cr_assert_eq (json_integer_value (json_object_get (one, "kind")), 2);
    cr_assert_str_eq (json_string_value (json_object_get (one, "startTimeUnixNano")),
                      "1700000000123456789");
    cr_assert_str_eq (json_string_value (json_object_get (one, "endTimeUnixNano")),
                      "1700000000223456789");
    json_t *attr = json_array_get (json_object_get (one, "attributes"), 1);
    cr_assert_str_eq (json_string_value (json_object_get (attr, "key")),
                      "http.response.status_code");
    cr_assert_str_eq (
        json_string_value (json_object_get (json_object_get (attr, "value"), "intValue")), "503");
    json_t *status = json_object_get (one, "status");
    cr_assert_eq (json_integer_value (json_object_get (status, "code")), 2);
    cr_assert_str_eq (json_string_value (json_object_get (status, "message")), "boom");
    json_t *link = json_array_get (json_object_get (one, "links"), 0);
    cr_assert_str_eq (json_string_value (json_object_get (link, "spanId")), "00f067aa0ba902b7");
    //  A root span has no parentSpanId at all
    cr_assert_null (json_object_get (json_array_get (list, 1), "parentSpanId"));
    json_decref (body);
}

Test (mesh_trace, encoded_strings_are_escaped_and_valid_utf8)
{
    mesh_trace_config_t config;
    const char *env[] = {"OTEL_SERVICE_NAME", "g\"w", NULL};
    s_read (env, 0, &config);
    mesh_span_record_t span = {.kind = MESH_SPAN_CLIENT, .start_ns = 1, .end_ns = 2};
    cr_assert_eq (mesh_traceparent_parse ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                          &span.ctx),
                  0);
    //  Quote, backslash, control characters, UTF-8 kept, bytes that are not
    //  UTF-8 (a stray continuation, a cut sequence, an overlong, a surrogate)
    snprintf (span.name, sizeof span.name, "a\"b\\c\n\x01 caf\xc3\xa9 \x80 \xe2\x82 \xc0\xaf \xed\xa0\x80.");
    mesh_span_record_set_string (&span, "k\tey", "\xf0\x9f\x98\x80\xf4\x90\x80\x80");
    const mesh_span_record_t *spans[] = {&span};
    char *text = mesh_trace_encode_json (&config, spans, 1);
    json_error_t error;
    json_t *body = json_loads (text, 0, &error);
    cr_assert_not_null (body, "%s: %s", error.text, text);
    free (text);
    json_t *resource_spans = json_array_get (json_object_get (body, "resourceSpans"), 0);
    json_t *service = json_array_get (
        json_object_get (json_object_get (resource_spans, "resource"), "attributes"), 0);
    cr_assert_str_eq (
        json_string_value (json_object_get (json_object_get (service, "value"), "stringValue")),
        "g\"w");
    json_t *one = json_array_get (
        json_object_get (json_array_get (json_object_get (resource_spans, "scopeSpans"), 0),
                         "spans"),
        0);
    cr_assert_str_eq (json_string_value (json_object_get (one, "name")),
                      "a\"b\\c\n\x01 caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
                      "\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd.");
    json_t *attr = json_array_get (json_object_get (one, "attributes"), 0);
    cr_assert_str_eq (json_string_value (json_object_get (attr, "key")), "k\tey");
    cr_assert_str_eq (
        json_string_value (json_object_get (json_object_get (attr, "value"), "stringValue")),
        "\xf0\x9f\x98\x80\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json_decref (body);
}

Test (mesh_trace, attributes_past_the_limit_are_dropped)
{
    mesh_span_record_t span = {0};
    for (int index = 0; index < MESH_SPAN_MAX_ATTRS + 3; index++)
        mesh_span_record_set_int (&span, "n", index);
    cr_assert_eq (span.attr_count, MESH_SPAN_MAX_ATTRS);
}
