/*  =========================================================================
    user_worker - the MDP request handler of mesh-user
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_worker.h"

#include "user_codec.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The methods of service `user` (DESIGN.md). events.list is answered
//  unimplemented by this version: it reads the outbox by `seq`, which the
//  relay assigns, and the relay is a later step of issue 3. Envelope
//  idempotency keys (`idem`) are not honoured yet either; they come with
//  the relay too, since a replayed create must not write a second event.
typedef struct {
    const char *method;         //  Envelope method
    user_codec_fn *call;        //  NULL: answered unimplemented (comes with the relay)
} s_method_t;

static const s_method_t s_methods[] = {
    { "user.create", user_codec_create },
    { "user.get", user_codec_get },
    { "user.list", user_codec_list },
    { "user.update", user_codec_update },
    { "user.delete", user_codec_delete },
    { "events.list", NULL },
};
#define S_METHOD_COUNT (sizeof s_methods / sizeof s_methods[0])
//  Row of the metrics table for methods not in s_methods (a bounded label:
//  never the raw method a client sent)
#define S_METHOD_OTHER S_METHOD_COUNT

struct user_worker_metrics_s {
    mesh_counter_t *requests[S_METHOD_COUNT + 1][MESH_CODE_COUNT_];
    mesh_histogram_t *duration[S_METHOD_COUNT + 1];
};

struct user_worker_s {
    user_app_t *app;                    //  Borrowed
    user_worker_metrics_t *metrics;     //  Borrowed; may be NULL
};

user_worker_metrics_t *
user_worker_metrics_new (mesh_metrics_t *metrics)
{
    user_worker_metrics_t *self = mesh_alloc (sizeof *self);
    for (size_t row = 0; row <= S_METHOD_COUNT; row++) {
        const char *method = row < S_METHOD_COUNT ? s_methods[row].method : "other";
        for (int code = 0; code < MESH_CODE_COUNT_; code++)
            self->requests[row][code] = mesh_metrics_counter (
                metrics, "mesh_user_requests_total",
                "Requests handled by the user service, by method and outcome (error code or "
                "ok)",
                "method", method, "outcome", mesh_code_name ((mesh_code_t) code), NULL);
        self->duration[row] = mesh_metrics_histogram (
            metrics, "mesh_user_request_duration_seconds",
            "Time the user service spent handling a request, by method", NULL, 0, "method",
            method, NULL);
    }
    return self;
}

void
user_worker_metrics_destroy (user_worker_metrics_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

user_worker_t *
user_worker_new (user_app_t *app, user_worker_metrics_t *metrics)
{
    user_worker_t *self = mesh_alloc (sizeof *self);
    self->app = app;
    self->metrics = metrics;
    return self;
}

void
user_worker_destroy (user_worker_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

//  Envelope code for a codec result.
static mesh_code_t
s_code (int rc)
{
    switch (rc) {
    case 0:
        return MESH_CODE_OK;
    case MESH_EINVAL:
    case MESH_ETYPE:
        return MESH_CODE_INVALID_ARGUMENT;
    case MESH_ENOTFOUND:
        return MESH_CODE_NOT_FOUND;
    case MESH_ECONFLICT:
        return MESH_CODE_ALREADY_EXISTS;
    case MESH_EUNAVAIL:
        return MESH_CODE_UNAVAILABLE;
    case MESH_ETIMEDOUT:
        return MESH_CODE_DEADLINE_EXCEEDED;
    default:
        return MESH_CODE_INTERNAL;
    }
}

//  Copy a slice into a NUL-terminated buffer, truncated to fit.
static void
s_copy (mesh_slice_t slice, char *buffer, size_t size)
{
    size_t len = slice.len < size - 1 ? slice.len : size - 1;
    if (len)
        memcpy (buffer, slice.ptr, len);
    buffer[len] = '\0';
}

mesh_code_t
user_worker_handle (void *arg, const mesh_request_t *request, mesh_response_t *response)
{
    user_worker_t *self = arg;
    int64_t started_us = mesh_mono_us ();
    size_t row = S_METHOD_OTHER;
    for (size_t index = 0; index < S_METHOD_COUNT; index++)
        if (mesh_slice_eq (request->method, s_methods[index].method)) {
            row = index;
            break;
        }
    mesh_code_t code;
    if (row == S_METHOD_OTHER || !s_methods[row].call) {
        char method[64];
        s_copy (request->method, method, sizeof method);
        snprintf (response->message, sizeof response->message,
                  "method '%s' is not implemented by service 'user'", method);
        code = MESH_CODE_UNIMPLEMENTED;
    }
    else {
        int rc = s_methods[row].call (self->app, request->body, response->body,
                                      response->message, sizeof response->message);
        code = s_code (rc);
    }
    double seconds = (double) (mesh_mono_us () - started_us) / 1e6;
    if (self->metrics) {
        mesh_counter_inc (self->metrics->requests[row][code]);
        mesh_histogram_observe (self->metrics->duration[row], seconds);
    }
    mesh_log_level_t level = code == MESH_CODE_INTERNAL || code == MESH_CODE_UNAVAILABLE
                                 ? MESH_LOG_WARN : MESH_LOG_DEBUG;
    if (mesh_log_enabled (level)) {
        char id[MESH_ENVELOPE_MAX_ID + 1], method[64], ms[32];
        s_copy (request->id, id, sizeof id);
        s_copy (request->method, method, sizeof method);
        snprintf (ms, sizeof ms, "%.3f", seconds * 1000.0);
        mesh_log_kv (level, "request", "request_id", id, "method", method, "outcome",
                     mesh_code_name (code), "duration_ms", ms, "error",
                     code == MESH_CODE_OK ? NULL : response->message, NULL);
    }
    return code;
}
