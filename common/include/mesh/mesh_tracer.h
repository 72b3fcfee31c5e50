/*  =========================================================================
    mesh_tracer - spans of one process and their OTLP/HTTP exporter
    A tracer samples and starts spans, and ends them into a bounded queue
    that one background thread drains in batches (size or delay, whichever
    comes first) and POSTs as OTLP/HTTP JSON with libcurl, with a bounded
    timeout. Ending a span never waits on the collector: a full queue drops
    the span, a failed POST drops its batch, and both are counted in
    mesh_trace_spans_total{outcome="exported|dropped_queue|dropped_export"}.
    Tracing is off when no endpoint is set: mesh_tracer_new returns NULL and
    every call here takes a NULL tracer and does nothing, so off costs one
    branch. Thread-safe: any thread may start and end spans.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_TRACER_H_INCLUDED
#define MESH_TRACER_H_INCLUDED

#include "mesh/mesh_cfg.h"
#include "mesh/mesh_metrics.h"
#include "mesh/mesh_trace.h"

typedef struct mesh_tracer_s mesh_tracer_t;

//  The OpenTelemetry settings every process has, as mesh_cfg options: the
//  flag is the variable's name in lower case with dashes, so a flag may
//  override the environment like every other setting.
#define MESH_CFG_TRACE_OPTIONS                                                                     \
    {"otel-exporter-otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", "",                             \
     "OTLP/HTTP collector; spans go to it + /v1/traces (empty: tracing off)"},                     \
        {"otel-exporter-otlp-traces-endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "",           \
         "full URL spans are POSTed to (wins over the one above)"},                                \
        {"otel-exporter-otlp-headers", "OTEL_EXPORTER_OTLP_HEADERS", "",                           \
         "key=value,... headers of every export (never printed)"},                                 \
        {"otel-exporter-otlp-timeout", "OTEL_EXPORTER_OTLP_TIMEOUT", "10000",                      \
         "ms one export may take before its spans are dropped"},                                   \
        {"otel-service-name", "OTEL_SERVICE_NAME", "", "service.name (empty: mesh-<role>)"},       \
        {"otel-resource-attributes", "OTEL_RESOURCE_ATTRIBUTES", "",                               \
         "key=value,... resource attributes of every span"},                                       \
        {"otel-traces-sampler", "OTEL_TRACES_SAMPLER", "parentbased_always_on",                    \
         "always_on, always_off, traceidratio, parentbased_always_on|_always_off|_traceidratio"},  \
        {"otel-traces-sampler-arg", "OTEL_TRACES_SAMPLER_ARG", "1",                                \
         "ratio 0..1 of the traceidratio samplers"},                                               \
        {"otel-bsp-max-queue-size", "OTEL_BSP_MAX_QUEUE_SIZE", "2048",                             \
         "spans waiting for export at most (more are dropped)"},                                   \
        {"otel-bsp-max-export-batch-size", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512",                \
         "spans per export at most"},                                                              \
    {                                                                                              \
        "otel-bsp-schedule-delay", "OTEL_BSP_SCHEDULE_DELAY", "5000",                              \
            "ms between exports when no batch fills"                                               \
    }

//  The trace settings the MESH_CFG_TRACE_OPTIONS of `cfg` give, into
//  *config (an empty endpoint: tracing off). `service` is the default
//  service.name. Returns 0, or MESH_EINVAL with a reason in `why`
//  (`why_size` bytes).
int mesh_trace_config_from_cfg (const mesh_cfg_t *cfg, const char *service,
                                mesh_trace_config_t *config, char *why, size_t why_size);

//  A tracer for `config` (copied), counting into `metrics` (borrowed; must
//  outlive the tracer). Returns NULL when config->endpoint is empty (tracing
//  off) or the exporter thread cannot start.
mesh_tracer_t *mesh_tracer_new (const mesh_trace_config_t *config, mesh_metrics_t *metrics);

//  Stop the exporter: one last export of what is queued (bounded by the
//  export timeout), then join the thread. Nulls the caller's pointer.
void mesh_tracer_destroy (mesh_tracer_t **self_p);

//  Start a span named `name` of `kind` under `parent` (NULL: a new trace).
//  *ctx gets the new span's context (trace id of the parent or a new one, a
//  new span id, the sampled flag as decided) so that callers can propagate
//  it even when the span is not recorded. Returns the span to fill (owned
//  by the caller until mesh_tracer_end), or NULL when `self` is NULL (and
//  *ctx is left untouched) or the sampler says no.
mesh_span_record_t *mesh_tracer_start (mesh_tracer_t *self, const char *name, mesh_span_kind_t kind,
                                       const mesh_trace_ctx_t *parent, mesh_trace_ctx_t *ctx);

//  Same with the parent taken from a traceparent string (NULL or invalid:
//  a new trace).
mesh_span_record_t *mesh_tracer_start_remote (mesh_tracer_t *self, const char *name,
                                              mesh_span_kind_t kind, const char *traceparent,
                                              mesh_trace_ctx_t *ctx);

//  End the span now and hand it to the exporter; takes ownership and nulls
//  *span_p. Safe with a NULL tracer or span.
void mesh_tracer_end (mesh_tracer_t *self, mesh_span_record_t **span_p);

//  Unix time in nanoseconds (span times).
uint64_t mesh_trace_now_ns (void);

#endif
