/*  =========================================================================
    mesh_trace - trace context, sampling, settings and the OTLP span model
    The pure half of tracing (no threads, no I/O): W3C traceparent parse and
    format, the OpenTelemetry samplers, the OTEL_* settings read from the
    environment, the span record and its OTLP/HTTP JSON encoding (hex ids,
    integer enums, 64-bit integers as strings, as the OTLP specification
    defines its JSON form). mesh_tracer starts, ends and exports spans.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_TRACE_H_INCLUDED
#define MESH_TRACE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_TRACEPARENT_SIZE 56  //  "00-" 32 "-" 16 "-" 2, plus NUL
#define MESH_TRACE_ID_HEX_SIZE 33 //  32 hex digits plus NUL
#define MESH_SPAN_ID_HEX_SIZE 17  //  16 hex digits plus NUL
#define MESH_TRACE_FLAG_SAMPLED 0x01

//  One span's identity as W3C Trace Context carries it.
typedef struct {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; //  MESH_TRACE_FLAG_SAMPLED or 0
} mesh_trace_ctx_t;

//  Lower-case hex of `size` bytes into `out` (2 * size + 1 bytes).
void mesh_trace_hex (const uint8_t *bytes, size_t size, char *out);

//  Parse a version-00 traceparent into *ctx. Returns 0, or MESH_EINVAL when
//  `text` is NULL or not one (bad shape, upper-case hex, all-zero ids).
int mesh_traceparent_parse (const char *text, mesh_trace_ctx_t *ctx);

//  Format *ctx as a traceparent into `out` (MESH_TRACEPARENT_SIZE bytes).
void mesh_traceparent_format (const mesh_trace_ctx_t *ctx, char *out);

//  The ids of the traceparent `text` of `len` bytes (need not end in NUL),
//  for a log line: its trace id into `trace_id` (MESH_TRACE_ID_HEX_SIZE
//  bytes) and its parent id, the span of whoever sent it on, into
//  `span_id` (MESH_SPAN_ID_HEX_SIZE). Both "" and false when it is not a
//  traceparent (NULL, empty, bad shape); true when it is.
bool mesh_traceparent_ids (const char *text, size_t len, char *trace_id, char *span_id);

//  --------------------------------------------------------------------------
//  Samplers (OTEL_TRACES_SAMPLER).
typedef enum {
    MESH_SAMPLER_ALWAYS_ON = 0,
    MESH_SAMPLER_ALWAYS_OFF,
    MESH_SAMPLER_RATIO,
    MESH_SAMPLER_PARENT_ALWAYS_ON,
    MESH_SAMPLER_PARENT_ALWAYS_OFF,
    MESH_SAMPLER_PARENT_RATIO,
} mesh_sampler_kind_t;

typedef struct {
    mesh_sampler_kind_t kind;
    double ratio; //  0..1, for the ratio samplers
} mesh_sampler_t;

//  Sampler from OTEL_TRACES_SAMPLER / _ARG values (NULL: unset). The default
//  is parentbased_always_on; a ratio defaults to 1. Returns 0 or MESH_EINVAL
//  for an unknown name or an argument that is not a number in 0..1.
int mesh_sampler_parse (const char *name, const char *arg, mesh_sampler_t *sampler);

//  Whether a span of trace `trace_id` is recorded. `parent` is the remote or
//  local parent (NULL: a root span); parent-based samplers follow its sampled
//  flag. The ratio decision uses the trace id's last 8 bytes, so every
//  process takes the same decision for one trace.
bool mesh_sampler_sample (const mesh_sampler_t *sampler, const mesh_trace_ctx_t *parent,
                          const uint8_t trace_id[16]);

//  --------------------------------------------------------------------------
//  Settings from the OpenTelemetry environment variables.
#define MESH_TRACE_MAX_HEADERS 8
#define MESH_TRACE_MAX_RESOURCE 16

typedef struct {
    char key[64];
    char value[256];
} mesh_trace_pair_t;

typedef struct {
    char endpoint[512]; //  Full URL spans are POSTed to; "" = tracing off
    mesh_trace_pair_t headers[MESH_TRACE_MAX_HEADERS];
    size_t header_count;
    mesh_trace_pair_t resource[MESH_TRACE_MAX_RESOURCE]; //  service.name first
    size_t resource_count;
    mesh_sampler_t sampler;
    size_t queue_size; //  OTEL_BSP_MAX_QUEUE_SIZE, default 2048
    size_t batch_size; //  OTEL_BSP_MAX_EXPORT_BATCH_SIZE, default 512
    int delay_ms;      //  OTEL_BSP_SCHEDULE_DELAY, default 5000
    int timeout_ms;    //  OTEL_EXPORTER_OTLP(_TRACES)_TIMEOUT, default 10000
} mesh_trace_config_t;

//  Read the settings through `lookup` (an environment variable's value, or
//  NULL when unset; `arg` is passed on). `service` is service.name when
//  OTEL_SERVICE_NAME and the resource attributes name none. The traces
//  endpoint is taken as given; the generic one gains "/v1/traces". Returns
//  0, or MESH_EINVAL with a reason written into `error` (`error_size`
//  bytes) for a value that cannot be used.
typedef const char *(mesh_trace_lookup_fn)(void *arg, const char *name);
int mesh_trace_config_read (mesh_trace_config_t *config, const char *service,
                            mesh_trace_lookup_fn *lookup, void *arg, char *error,
                            size_t error_size);

//  --------------------------------------------------------------------------
//  A finished (or running) span, as exported.
#define MESH_SPAN_MAX_ATTRS 12
#define MESH_SPAN_MAX_LINKS 2

typedef enum {
    MESH_SPAN_INTERNAL = 1, //  The OTLP SpanKind numbers
    MESH_SPAN_SERVER = 2,
    MESH_SPAN_CLIENT = 3,
    MESH_SPAN_PRODUCER = 4,
    MESH_SPAN_CONSUMER = 5,
} mesh_span_kind_t;

typedef enum {
    MESH_SPAN_STATUS_UNSET = 0, //  The OTLP StatusCode numbers
    MESH_SPAN_STATUS_OK = 1,
    MESH_SPAN_STATUS_ERROR = 2,
} mesh_span_status_t;

typedef struct {
    char key[48];
    bool is_int;
    int64_t int_value;
    char string_value[128];
} mesh_span_attr_t;

typedef struct {
    mesh_trace_ctx_t ctx;      //  This span's trace id, span id, flags
    uint8_t parent_span_id[8]; //  All zero for a root span
    char name[96];
    mesh_span_kind_t kind;
    uint64_t start_ns; //  Unix time, nanoseconds
    uint64_t end_ns;
    mesh_span_attr_t attrs[MESH_SPAN_MAX_ATTRS];
    size_t attr_count; //  Attributes past the maximum are dropped
    mesh_trace_ctx_t links[MESH_SPAN_MAX_LINKS];
    size_t link_count;
    mesh_span_status_t status;
    char status_message[128];
} mesh_span_record_t;

//  Add a string or integer attribute (copied; cut to fit). Silently drops
//  attributes past MESH_SPAN_MAX_ATTRS, as an SDK's attribute limit does.
//  A NULL span (not sampled, tracing off) takes nothing, so callers need
//  not test.
void mesh_span_record_set_string (mesh_span_record_t *self, const char *key, const char *value);
void mesh_span_record_set_int (mesh_span_record_t *self, const char *key, int64_t value);

//  The OTLP/HTTP JSON body (ExportTraceServiceRequest) for `count` spans of
//  one resource. Returns a fresh NUL-terminated string; caller frees.
char *mesh_trace_encode_json (const mesh_trace_config_t *config,
                              const mesh_span_record_t *const *spans, size_t count);

#endif
