/*  =========================================================================
    otlp_test - a stand-in OTLP/HTTP collector for tests, and its spans
    Starts tests/support/otlp_receiver.py on a free loopback port: it
    decodes each export with OTLP's own .proto definitions (the npm package
    pinned in tests/support/otlp) and Google's protobuf runtime (Debian's
    python3-protobuf), not with code the project wrote, and refuses what
    does not decode. Reads back the spans it received, one JSON object each.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef OTLP_TEST_H_INCLUDED
#define OTLP_TEST_H_INCLUDED

#include "mesh_test.h"

#include "mesh/mesh_trace.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    mesh_proc_t *proc;
    int port;
    char file[64];     //  Spans received, one JSON line each
    char endpoint[64]; //  http://127.0.0.1:port (OTEL_EXPORTER_OTLP_ENDPOINT)
} otlp_test_t;

//  Start the receiver; `status` is what it answers every POST (200: take the
//  spans). Fails the test when it does not start within 10 s.
void otlp_test_start (otlp_test_t *self, int status);

//  Stop it and remove its file.
void otlp_test_stop (otlp_test_t *self);

//  Every span received so far, as a JSON array (caller decrefs). Fails the
//  test on a line the receiver marked as an error.
json_t *otlp_test_spans (otlp_test_t *self);

//  Wait up to timeout_ms until at least `count` spans were received whose
//  trace id is `trace_id` (NULL: any). Returns them (caller decrefs), or
//  NULL on timeout.
json_t *otlp_test_wait (otlp_test_t *self, const char *trace_id, size_t count, int timeout_ms);

//  Wait up to timeout_ms until trace `trace_id` holds a span of each
//  service, name pair of `wanted` (NULL-terminated: service, name, ...;
//  processes export on their own schedules, so spans arrive in any order).
//  Returns every span of the trace received by then (caller decrefs), or
//  NULL on timeout.
json_t *otlp_test_wait_spans (otlp_test_t *self, const char *trace_id, const char *const *wanted,
                              int timeout_ms);

//  The first span of `spans` with `name` and service `service` (NULL: any),
//  or NULL. Borrowed from `spans`.
json_t *otlp_test_find (json_t *spans, const char *service, const char *name);

//  String value of attribute `key` of `span`, or NULL (int values are
//  strings in OTLP JSON too).
const char *otlp_test_attr (json_t *span, const char *key);

//  mesh_trace_config_read over a stand-in environment: `env` holds
//  NULL-terminated name, value pairs (borrowed for the call). Service name
//  "mesh-test". Returns what mesh_trace_config_read returns.
int otlp_test_config_read (const char *const *env, mesh_trace_config_t *config, char *error,
                           size_t error_size);

#endif
