/*  =========================================================================
    mesh_trace - trace context, sampling, settings and the OTLP span model
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_trace.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_text.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
void
mesh_trace_hex (const uint8_t *bytes, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t index = 0; index < size; index++) {
        out[2 * index] = digits[bytes[index] >> 4];
        out[2 * index + 1] = digits[bytes[index] & 0xF];
    }
    out[2 * size] = '\0';
}

//  Value of one lower-case hex digit, or -1.
static int
s_hex_digit (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

//  Decode 2 * size lower-case hex digits. Returns 0, or -1 when one is not a
//  digit; *nonzero tells whether any byte is not zero.
static int
s_unhex (const char *text, uint8_t *bytes, size_t size, bool *nonzero)
{
    *nonzero = false;
    for (size_t index = 0; index < size; index++) {
        int high = s_hex_digit (text[2 * index]);
        int low = s_hex_digit (text[2 * index + 1]);
        if (high < 0 || low < 0)
            return -1;
        bytes[index] = (uint8_t)(high << 4 | low);
        *nonzero |= bytes[index] != 0;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
int
mesh_traceparent_parse (const char *text, mesh_trace_ctx_t *ctx)
{
    assert (ctx);
    if (!text || strlen (text) != 55 || strncmp (text, "00-", 3) != 0 || text[35] != '-' ||
        text[52] != '-')
        return MESH_EINVAL;
    mesh_trace_ctx_t parsed;
    bool trace_set, span_set, unused;
    if (s_unhex (text + 3, parsed.trace_id, 16, &trace_set) != 0 ||
        s_unhex (text + 36, parsed.span_id, 8, &span_set) != 0 ||
        s_unhex (text + 53, &parsed.flags, 1, &unused) != 0 || !trace_set || !span_set)
        return MESH_EINVAL;
    *ctx = parsed;
    return 0;
}

//  --------------------------------------------------------------------------
void
mesh_traceparent_format (const mesh_trace_ctx_t *ctx, char *out)
{
    assert (ctx && out);
    char trace[MESH_TRACE_ID_HEX_SIZE], span[MESH_SPAN_ID_HEX_SIZE];
    mesh_trace_hex (ctx->trace_id, 16, trace);
    mesh_trace_hex (ctx->span_id, 8, span);
    snprintf (out, MESH_TRACEPARENT_SIZE, "00-%s-%s-%02x", trace, span, ctx->flags);
}

//  --------------------------------------------------------------------------
bool
mesh_traceparent_ids (const char *text, size_t len, char *trace_id, char *span_id)
{
    assert (trace_id && span_id);
    trace_id[0] = span_id[0] = '\0';
    char copy[MESH_TRACEPARENT_SIZE];
    mesh_trace_ctx_t ctx;
    if (!text || len != MESH_TRACEPARENT_SIZE - 1)
        return false;
    memcpy (copy, text, len);
    copy[len] = '\0';
    if (mesh_traceparent_parse (copy, &ctx) != 0)
        return false;
    mesh_trace_hex (ctx.trace_id, sizeof ctx.trace_id, trace_id);
    mesh_trace_hex (ctx.span_id, sizeof ctx.span_id, span_id);
    return true;
}

//  --------------------------------------------------------------------------
int
mesh_sampler_parse (const char *name, const char *arg, mesh_sampler_t *sampler)
{
    assert (sampler);
    static const struct {
        const char *name;
        mesh_sampler_kind_t kind;
    } names[] = {
        {"always_on", MESH_SAMPLER_ALWAYS_ON},
        {"always_off", MESH_SAMPLER_ALWAYS_OFF},
        {"traceidratio", MESH_SAMPLER_RATIO},
        {"parentbased_always_on", MESH_SAMPLER_PARENT_ALWAYS_ON},
        {"parentbased_always_off", MESH_SAMPLER_PARENT_ALWAYS_OFF},
        {"parentbased_traceidratio", MESH_SAMPLER_PARENT_RATIO},
    };
    mesh_sampler_t parsed = {MESH_SAMPLER_PARENT_ALWAYS_ON, 1.0};
    if (name && *name) {
        size_t index = 0;
        while (index < sizeof names / sizeof names[0] && strcmp (names[index].name, name) != 0)
            index++;
        if (index == sizeof names / sizeof names[0])
            return MESH_EINVAL;
        parsed.kind = names[index].kind;
    }
    bool uses_ratio = parsed.kind == MESH_SAMPLER_RATIO || parsed.kind == MESH_SAMPLER_PARENT_RATIO;
    if (uses_ratio && arg && *arg) {
        char *end = NULL;
        errno = 0;
        double ratio = strtod (arg, &end);
        if (errno || *end || !(ratio >= 0.0 && ratio <= 1.0))
            return MESH_EINVAL;
        parsed.ratio = ratio;
    }
    *sampler = parsed;
    return 0;
}

//  The ratio decision: the trace id's last 8 bytes, big-endian, below
//  ratio * 2^64 (the W3C random part of a trace id is its right half).
static bool
s_ratio_sample (double ratio, const uint8_t trace_id[16])
{
    if (ratio >= 1.0)
        return true;
    if (ratio <= 0.0)
        return false;
    uint64_t value = 0;
    for (int index = 8; index < 16; index++)
        value = value << 8 | trace_id[index];
    return (double)value < ratio * 18446744073709551616.0;
}

//  --------------------------------------------------------------------------
bool
mesh_sampler_sample (const mesh_sampler_t *sampler, const mesh_trace_ctx_t *parent,
                     const uint8_t trace_id[16])
{
    assert (sampler && trace_id);
    switch (sampler->kind) {
    case MESH_SAMPLER_ALWAYS_ON:
        return true;
    case MESH_SAMPLER_ALWAYS_OFF:
        return false;
    case MESH_SAMPLER_RATIO:
        return s_ratio_sample (sampler->ratio, trace_id);
    case MESH_SAMPLER_PARENT_ALWAYS_ON:
        return parent ? (parent->flags & MESH_TRACE_FLAG_SAMPLED) != 0 : true;
    case MESH_SAMPLER_PARENT_ALWAYS_OFF:
        return parent ? (parent->flags & MESH_TRACE_FLAG_SAMPLED) != 0 : false;
    case MESH_SAMPLER_PARENT_RATIO:
        return parent ? (parent->flags & MESH_TRACE_FLAG_SAMPLED) != 0
                      : s_ratio_sample (sampler->ratio, trace_id);
    }
    return false;
}

//  Copy `len` bytes of `text` into `out` (`size` bytes), decoding %XX as
//  the W3C Baggage format used by OTEL_RESOURCE_ATTRIBUTES and
//  OTEL_EXPORTER_OTLP_HEADERS asks, and trimming spaces. Returns 0 or -1
//  when it does not fit or a % escape is bad.
static int
s_copy_decoded (const char *text, size_t len, char *out, size_t size)
{
    while (len && *text == ' ')
        text++, len--;
    while (len && text[len - 1] == ' ')
        len--;
    size_t used = 0;
    for (size_t index = 0; index < len; index++) {
        char c = text[index];
        if (c == '%') {
            if (index + 2 >= len)
                return -1;
            int high = s_hex_digit ((char)(text[index + 1] | 0x20));
            int low = s_hex_digit ((char)(text[index + 2] | 0x20));
            if (high < 0 || low < 0)
                return -1;
            c = (char)(high << 4 | low);
            index += 2;
        }
        if (used + 1 >= size)
            return -1;
        out[used++] = c;
    }
    out[used] = '\0';
    return 0;
}

//  Parse "k1=v1,k2=v2" into pairs. Returns 0 or -1.
static int
s_parse_pairs (const char *text, mesh_trace_pair_t *pairs, size_t max, size_t *count)
{
    while (*text) {
        const char *end = strchr (text, ',');
        size_t len = end ? (size_t)(end - text) : strlen (text);
        const char *equals = memchr (text, '=', len);
        if (!equals) {
            //  An empty member (",,", or a trailing comma) is allowed
            for (size_t index = 0; index < len; index++)
                if (text[index] != ' ')
                    return -1;
        }
        else {
            if (*count == max)
                return -1;
            mesh_trace_pair_t *pair = &pairs[*count];
            if (s_copy_decoded (text, (size_t)(equals - text), pair->key, sizeof pair->key) != 0 ||
                !pair->key[0] ||
                s_copy_decoded (equals + 1, len - (size_t)(equals - text) - 1, pair->value,
                                sizeof pair->value) != 0)
                return -1;
            (*count)++;
        }
        text += len + (end ? 1 : 0);
    }
    return 0;
}

//  Copy `value` into `out` (`size` bytes), cut to fit.
static void
s_copy (char *out, size_t size, const char *value)
{
    snprintf (out, size, "%s", value ? value : "");
}

//  A positive integer setting, or `fallback` when unset. Returns -1 when bad.
static long
s_positive (const char *text, long fallback, long max)
{
    if (!text || !*text)
        return fallback;
    char *end = NULL;
    errno = 0;
    long value = strtol (text, &end, 10);
    if (errno || *end || value <= 0 || value > max)
        return -1;
    return value;
}

//  --------------------------------------------------------------------------
int
mesh_trace_config_read (mesh_trace_config_t *config, const char *service,
                        mesh_trace_lookup_fn *lookup, void *arg, char *error, size_t error_size)
{
    assert (config && service && lookup && error);
    memset (config, 0, sizeof *config);
    const char *traces = lookup (arg, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    const char *base = lookup (arg, "OTEL_EXPORTER_OTLP_ENDPOINT");
    int written = 0;
    if (traces && *traces)
        written = snprintf (config->endpoint, sizeof config->endpoint, "%s", traces);
    else if (base && *base) {
        size_t len = strlen (base);
        //  The spec joins with exactly one '/'
        written = snprintf (config->endpoint, sizeof config->endpoint, "%.*s/v1/traces",
                            (int)(base[len - 1] == '/' ? len - 1 : len), base);
    }
    if (written < 0 || (size_t)written >= sizeof config->endpoint) {
        snprintf (error, error_size, "OTLP endpoint is longer than %zu bytes",
                  sizeof config->endpoint - 1);
        return MESH_EINVAL;
    }
    const char *headers = lookup (arg, "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
    if (!headers || !*headers)
        headers = lookup (arg, "OTEL_EXPORTER_OTLP_HEADERS");
    if (headers && s_parse_pairs (headers, config->headers, MESH_TRACE_MAX_HEADERS,
                                  &config->header_count) != 0) {
        snprintf (error, error_size,
                  "OTEL_EXPORTER_OTLP_HEADERS: not key=value,... "
                  "(at most %d)",
                  MESH_TRACE_MAX_HEADERS);
        return MESH_EINVAL;
    }
    //  service.name comes first; OTEL_SERVICE_NAME wins over the attribute
    snprintf (config->resource[0].key, sizeof config->resource[0].key, "service.name");
    config->resource_count = 1;
    const char *attributes = lookup (arg, "OTEL_RESOURCE_ATTRIBUTES");
    if (attributes && s_parse_pairs (attributes, config->resource, MESH_TRACE_MAX_RESOURCE,
                                     &config->resource_count) != 0) {
        snprintf (error, error_size,
                  "OTEL_RESOURCE_ATTRIBUTES: not key=value,... "
                  "(at most %d)",
                  MESH_TRACE_MAX_RESOURCE - 1);
        return MESH_EINVAL;
    }
    //  OTEL_SERVICE_NAME, else a service.name attribute, else the binary's
    const char *name = lookup (arg, "OTEL_SERVICE_NAME");
    char attribute_name[sizeof config->resource[0].value] = "";
    for (size_t index = 1; index < config->resource_count; index++)
        if (strcmp (config->resource[index].key, "service.name") == 0) {
            memcpy (attribute_name, config->resource[index].value, sizeof attribute_name);
            config->resource[index--] = config->resource[--config->resource_count];
        }
    if (!name || !*name)
        name = attribute_name[0] ? attribute_name : service;
    s_copy (config->resource[0].value, sizeof config->resource[0].value, name);

    if (mesh_sampler_parse (lookup (arg, "OTEL_TRACES_SAMPLER"),
                            lookup (arg, "OTEL_TRACES_SAMPLER_ARG"), &config->sampler) != 0) {
        snprintf (error, error_size,
                  "OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG: an "
                  "unknown sampler or a ratio not in 0..1");
        return MESH_EINVAL;
    }
    const char *timeout = lookup (arg, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
    if (!timeout || !*timeout)
        timeout = lookup (arg, "OTEL_EXPORTER_OTLP_TIMEOUT");
    long queue = s_positive (lookup (arg, "OTEL_BSP_MAX_QUEUE_SIZE"), 2048, 1 << 20);
    long batch = s_positive (lookup (arg, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), 512, 1 << 20);
    long delay = s_positive (lookup (arg, "OTEL_BSP_SCHEDULE_DELAY"), 5000, 3600000);
    long timeout_ms = s_positive (timeout, 10000, 3600000);
    if (queue < 0 || batch < 0 || delay < 0 || timeout_ms < 0) {
        snprintf (error, error_size,
                  "OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "
                  "OTEL_BSP_SCHEDULE_DELAY, OTEL_EXPORTER_OTLP_TIMEOUT: "
                  "positive integers");
        return MESH_EINVAL;
    }
    config->queue_size = (size_t)queue;
    //  The spec: a batch larger than the queue is the queue
    config->batch_size = (size_t)(batch < queue ? batch : queue);
    config->delay_ms = (int)delay;
    config->timeout_ms = (int)timeout_ms;
    return 0;
}

//  --------------------------------------------------------------------------
void
mesh_span_record_set_string (mesh_span_record_t *self, const char *key, const char *value)
{
    assert (key);
    if (!self || self->attr_count == MESH_SPAN_MAX_ATTRS)
        return;
    mesh_span_attr_t *attr = &self->attrs[self->attr_count++];
    s_copy (attr->key, sizeof attr->key, key);
    attr->is_int = false;
    s_copy (attr->string_value, sizeof attr->string_value, value);
}

//  --------------------------------------------------------------------------
void
mesh_span_record_set_int (mesh_span_record_t *self, const char *key, int64_t value)
{
    assert (key);
    if (!self || self->attr_count == MESH_SPAN_MAX_ATTRS)
        return;
    mesh_span_attr_t *attr = &self->attrs[self->attr_count++];
    s_copy (attr->key, sizeof attr->key, key);
    attr->is_int = true;
    attr->int_value = value;
}

//  The export body is written straight into one growing buffer: the spans
//  of a batch have a fixed shape, and building a jansson tree for each (a
//  hash table per object, a block per string) was most of a traced
//  request's CPU (docs/tracing.md, "Cost"). mesh_text is the buffer.

//  `value` as a JSON string (RFC 8259): quotes, backslashes and control
//  characters escaped; a byte that is not valid UTF-8 (a value cut to fit
//  its field, or foreign input) becomes U+FFFD, so the body always parses.
static void
s_text_string (mesh_text_t *self, const char *value)
{
    mesh_text_append (self, "\"", 1);
    const unsigned char *at = (const unsigned char *)value;
    while (*at) {
        const unsigned char *run = at;
        while (*at >= 0x20 && *at < 0x80 && *at != '"' && *at != '\\')
            at++;
        mesh_text_append (self, (const char *)run, (size_t)(at - run));
        if (!*at)
            break;
        if (*at >= 0x80) {
            size_t len = mesh_utf8_length (at);
            if (len)
                mesh_text_append (self, (const char *)at, len);
            else
                mesh_text_puts (self, "\\ufffd");
            at += len ? len : 1;
            continue;
        }
        char escape[8];
        if (*at == '"' || *at == '\\')
            snprintf (escape, sizeof escape, "\\%c", *at);
        else
            snprintf (escape, sizeof escape, "\\u%04x", *at);
        mesh_text_puts (self, escape);
        at++;
    }
    mesh_text_append (self, "\"", 1);
}

//  "key":"value" (the value escaped), with a leading comma unless `first`.
static void
s_text_field (mesh_text_t *self, bool first, const char *key, const char *value)
{
    if (!first)
        mesh_text_append (self, ",", 1);
    s_text_string (self, key);
    mesh_text_append (self, ":", 1);
    s_text_string (self, value);
}

//  An OTLP KeyValue with a string value.
static void
s_text_string_kv (mesh_text_t *self, const char *key, const char *value)
{
    mesh_text_append (self, "{", 1);
    s_text_field (self, true, "key", key);
    mesh_text_puts (self, ",\"value\":{");
    s_text_field (self, true, "stringValue", value);
    mesh_text_append (self, "}}", 2);
}

//  One span as an OTLP JSON Span object: hex ids, integer enums, 64-bit
//  integers as decimal strings.
static void
s_text_span (mesh_text_t *self, const mesh_span_record_t *span)
{
    char trace[MESH_TRACE_ID_HEX_SIZE], id[MESH_SPAN_ID_HEX_SIZE], parent[MESH_SPAN_ID_HEX_SIZE];
    char number[64];
    mesh_trace_hex (span->ctx.trace_id, 16, trace);
    mesh_trace_hex (span->ctx.span_id, 8, id);
    mesh_trace_hex (span->parent_span_id, 8, parent);
    mesh_text_append (self, "{", 1);
    s_text_field (self, true, "traceId", trace);
    s_text_field (self, false, "spanId", id);
    if (strcmp (parent, "0000000000000000") != 0)
        s_text_field (self, false, "parentSpanId", parent);
    s_text_field (self, false, "name", span->name);
    snprintf (number, sizeof number, ",\"kind\":%d,\"flags\":%u", (int)span->kind,
              (unsigned)span->ctx.flags);
    mesh_text_puts (self, number);
    snprintf (number, sizeof number, "%" PRIu64, span->start_ns);
    s_text_field (self, false, "startTimeUnixNano", number);
    snprintf (number, sizeof number, "%" PRIu64, span->end_ns);
    s_text_field (self, false, "endTimeUnixNano", number);
    mesh_text_puts (self, ",\"attributes\":[");
    for (size_t index = 0; index < span->attr_count; index++) {
        const mesh_span_attr_t *attr = &span->attrs[index];
        if (index)
            mesh_text_append (self, ",", 1);
        if (attr->is_int) {
            snprintf (number, sizeof number, "%" PRId64, attr->int_value);
            mesh_text_append (self, "{", 1);
            s_text_field (self, true, "key", attr->key);
            mesh_text_puts (self, ",\"value\":{");
            s_text_field (self, true, "intValue", number);
            mesh_text_append (self, "}}", 2);
        }
        else
            s_text_string_kv (self, attr->key, attr->string_value);
    }
    mesh_text_append (self, "]", 1);
    if (span->link_count) {
        mesh_text_puts (self, ",\"links\":[");
        for (size_t index = 0; index < span->link_count; index++) {
            mesh_trace_hex (span->links[index].trace_id, 16, trace);
            mesh_trace_hex (span->links[index].span_id, 8, id);
            mesh_text_puts (self, index ? ",{" : "{");
            s_text_field (self, true, "traceId", trace);
            s_text_field (self, false, "spanId", id);
            mesh_text_append (self, "}", 1);
        }
        mesh_text_append (self, "]", 1);
    }
    snprintf (number, sizeof number, ",\"status\":{\"code\":%d", (int)span->status);
    mesh_text_puts (self, number);
    if (span->status_message[0])
        s_text_field (self, false, "message", span->status_message);
    mesh_text_append (self, "}}", 2);
}

//  --------------------------------------------------------------------------
char *
mesh_trace_encode_json (const mesh_trace_config_t *config, const mesh_span_record_t *const *spans,
                        size_t count)
{
    assert (config && (spans || count == 0));
    //  About 600 bytes a span: one allocation for most batches
    mesh_text_t text = {NULL, 0, 0};
    text.size = 1024 + count * 1024;
    text.data = mesh_alloc (text.size);
    mesh_text_puts (&text, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    for (size_t index = 0; index < config->resource_count; index++) {
        if (index)
            mesh_text_append (&text, ",", 1);
        s_text_string_kv (&text, config->resource[index].key, config->resource[index].value);
    }
    mesh_text_puts (&text, "]},\"scopeSpans\":[{\"scope\":{");
    s_text_field (&text, true, "name", "zmesh");
    s_text_field (&text, false, "version", MESH_VERSION);
    mesh_text_puts (&text, "},\"spans\":[");
    for (size_t index = 0; index < count; index++) {
        if (index)
            mesh_text_append (&text, ",", 1);
        s_text_span (&text, spans[index]);
    }
    mesh_text_puts (&text, "]}]}]}");
    return text.data;
}
