/*  =========================================================================
    user_worker - the MDP request handler of mesh-user
    user_worker_handle is a mesh_handler_fn (mesh/mesh_worker.h): it
    dispatches on the envelope method to user_codec, maps the result to the
    envelope's error codes (MESH_EINVAL invalid_argument, MESH_ENOTFOUND
    not_found, MESH_ECONFLICT already_exists, MESH_EUNAVAIL unavailable,
    MESH_ETIMEDOUT deadline_exceeded, anything else internal; an unknown
    method unimplemented; an idempotency key reused with a different
    request failed_precondition), counts it in
    mesh_user_requests_total{method,outcome} and logs it at debug level
    with request_id = the envelope id.
    One user_worker_t per worker thread (it borrows that thread's app); the
    metrics table is shared by all threads (its counters are lock-free).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_WORKER_H_INCLUDED
#define USER_WORKER_H_INCLUDED

#include "user_app.h"

#include "mesh/mesh_metrics.h"
#include "mesh/mesh_worker.h"

//  Series of the user service, looked up once for every method and outcome.
typedef struct user_worker_metrics_s user_worker_metrics_t;

//  Create every series in `metrics` (borrowed; must outlive the table), so
//  /metrics shows each method and outcome from the start, at zero.
user_worker_metrics_t *
    user_worker_metrics_new (mesh_metrics_t *metrics);

//  Destroy the table (not the series); nulls the caller's pointer.
void
    user_worker_metrics_destroy (user_worker_metrics_t **self_p);

typedef struct user_worker_s user_worker_t;

//  Handler state for one thread: `app`, `repo` (the app's repository: the
//  handler passes it each request's deadline and trace, and runs changes
//  with an idempotency key as units of work on it) and `metrics` are
//  borrowed and must outlive it; `metrics` may be NULL (nothing counted).
user_worker_t *
    user_worker_new (user_app_t *app, user_repo_t *repo, user_worker_metrics_t *metrics);

//  Destroy; nulls the caller's pointer. Tolerates NULL.
void
    user_worker_destroy (user_worker_t **self_p);

//  The mesh_handler_fn; `arg` is a user_worker_t.
mesh_code_t
    user_worker_handle (void *arg, const mesh_request_t *request, mesh_response_t *response);

//  The mesh_batch_handler_fn: the batch's user.get requests are fetched
//  together (user_app_get_many: one database round trip), its user.create
//  requests without an idempotency key are stored together
//  (user_app_create_many: one transaction, one commit, an answer each),
//  the others are handled one by one as user_worker_handle does. `arg` is
//  a user_worker_t.
void
    user_worker_handle_batch (void *arg, const mesh_request_t *requests,
                              mesh_response_t *responses, mesh_code_t *codes, size_t count);

#endif
