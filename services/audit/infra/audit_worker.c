/*  =========================================================================
    audit_worker - the MDP request handler of service `audit`
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_worker.h"

#include "audit_codec.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_trace.h"

#include <stdio.h>
#include <stdlib.h>

struct audit_worker_s {
    audit_store_t *store;                       //  Borrowed
    mesh_counter_t *requests[2][MESH_CODE_COUNT_];  //  [audit.list, other][code]
};

audit_worker_t *
audit_worker_new (audit_store_t *store, mesh_metrics_t *metrics)
{
    audit_worker_t *self = mesh_alloc (sizeof *self);
    self->store = store;
    for (int row = 0; metrics && row < 2; row++)
        for (int code = 0; code < MESH_CODE_COUNT_; code++)
            self->requests[row][code] = mesh_metrics_counter (
                metrics, "mesh_audit_requests_total",
                "Requests handled by the audit service, by method and outcome", "method",
                row == 0 ? "audit.list" : "other", "outcome",
                mesh_code_name ((mesh_code_t) code), NULL);
    return self;
}

void
audit_worker_destroy (audit_worker_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

mesh_code_t
audit_worker_handle (void *arg, const mesh_request_t *request, mesh_response_t *response)
{
    audit_worker_t *self = arg;
    int row = mesh_slice_eq (request->method, "audit.list") ? 0 : 1;
    mesh_code_t code;
    if (row == 1) {
        snprintf (response->message, sizeof response->message,
                  "method '%.*s' is not implemented by service 'audit'",
                  (int) (request->method.len < 64 ? request->method.len : 64),
                  request->method.ptr);
        code = MESH_CODE_UNIMPLEMENTED;
    }
    else {
        int rc = audit_codec_list (self->store, request->body, response->body,
                                   response->message, sizeof response->message);
        code = rc == 0 ? MESH_CODE_OK
             : rc == MESH_EINVAL ? MESH_CODE_INVALID_ARGUMENT
             : rc == MESH_EUNAVAIL ? MESH_CODE_UNAVAILABLE
                                   : MESH_CODE_INTERNAL;
    }
    if (self->requests[row][code])
        mesh_counter_inc (self->requests[row][code]);
    mesh_log_level_t level = code == MESH_CODE_INTERNAL || code == MESH_CODE_UNAVAILABLE
                                 ? MESH_LOG_WARN : MESH_LOG_DEBUG;
    if (mesh_log_enabled (level)) {
        char id[MESH_ENVELOPE_MAX_ID + 1];
        char trace_id[MESH_TRACE_ID_HEX_SIZE], span_id[MESH_SPAN_ID_HEX_SIZE];
        snprintf (id, sizeof id, "%.*s", (int) request->id.len, request->id.ptr);
        //  The parent id: this worker's span when it traces, else the caller's
        mesh_traceparent_ids (request->trace.ptr, request->trace.len, trace_id, span_id);
        mesh_log_kv (level, "request", "request_id", id, "trace_id", *trace_id ? trace_id : NULL,
                     "span_id", *span_id ? span_id : NULL, "method",
                     row == 0 ? "audit.list" : "other", "outcome", mesh_code_name (code), "error",
                     code == MESH_CODE_OK ? NULL : response->message, NULL);
    }
    return code;
}
