/*  =========================================================================
    audit_worker - the MDP request handler of service `audit`
    audit.list {user_id?, type?, after?, limit?} -> {items, next} over this
    thread's store (audit_codec_list); any other method is unimplemented.
    Counts mesh_audit_requests_total{method,outcome}.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_WORKER_H_INCLUDED
#define AUDIT_WORKER_H_INCLUDED

#include "audit_store.h"

#include "mesh/mesh_metrics.h"
#include "mesh/mesh_worker.h"

typedef struct audit_worker_s audit_worker_t;

//  Handler state for one thread: `store` is borrowed (one per thread);
//  `metrics` may be NULL.
audit_worker_t *
    audit_worker_new (audit_store_t *store, mesh_metrics_t *metrics);

void
    audit_worker_destroy (audit_worker_t **self_p);

//  The mesh_handler_fn; `arg` is an audit_worker_t.
mesh_code_t
    audit_worker_handle (void *arg, const mesh_request_t *request, mesh_response_t *response);

#endif
