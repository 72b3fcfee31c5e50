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
#include "mesh/mesh_trace.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The methods of service `user` (DESIGN.md). Reads ignore an envelope
//  idempotency key (they change nothing, so a retry is already safe).
typedef struct {
    const char *method;         //  Envelope method
    user_codec_fn *call;
    bool changes;               //  Writes: honours an idempotency key
} s_method_t;

static const s_method_t s_methods[] = {
    { "user.create", user_codec_create, true },
    { "user.get", user_codec_get, false },
    { "user.list", user_codec_list, false },
    { "user.update", user_codec_update, true },
    { "user.delete", user_codec_delete, true },
    { "events.list", user_codec_events, false },
};
#define S_METHOD_COUNT (sizeof s_methods / sizeof s_methods[0])
_Static_assert(MESH_ENVELOPE_MAX_ACTOR <= USER_ACTOR_MAX,
               "every actor the envelope lets through must fit the outbox's");
#define S_METHOD_CREATE 0   //  Rows of user.create and user.get: batched by
#define S_METHOD_GET 1      //  user_worker_handle_batch
_Static_assert (MESH_WORKER_MAX_BATCH <= USER_APP_GET_MANY_MAX,
                "a whole batch of gets must fit one user_app_get_many call");
_Static_assert (MESH_WORKER_MAX_BATCH <= USER_APP_CREATE_MANY_MAX,
                "a whole batch of creates must fit one user_app_create_many call");
//  Row of the metrics table for methods not in s_methods (a bounded label:
//  never the raw method a client sent)
#define S_METHOD_OTHER S_METHOD_COUNT

struct user_worker_metrics_s {
    mesh_counter_t *requests[S_METHOD_COUNT + 1][MESH_CODE_COUNT_];
    mesh_histogram_t *duration[S_METHOD_COUNT + 1];
    mesh_counter_t *replays;            //  Answered from a stored reply
};

struct user_worker_s {
    user_app_t *app;                    //  Borrowed
    user_repo_t *repo;                  //  Borrowed: the app's repository
    user_worker_metrics_t *metrics;     //  Borrowed; may be NULL
    msgpack_sbuffer request;            //  Method and body of an idempotent request
    msgpack_sbuffer reply;              //  Its reply, before it is stored
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
    self->replays = mesh_metrics_counter (
        metrics, "mesh_user_idempotent_replays_total",
        "Requests answered with the stored reply of an earlier request with the same "
        "idempotency key",
        NULL);
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
user_worker_new (user_app_t *app, user_repo_t *repo, user_worker_metrics_t *metrics)
{
    user_worker_t *self = mesh_alloc (sizeof *self);
    self->app = app;
    self->repo = repo;
    self->metrics = metrics;
    msgpack_sbuffer_init (&self->request);
    msgpack_sbuffer_init (&self->reply);
    return self;
}

void
user_worker_destroy (user_worker_t **self_p)
{
    if (self_p && *self_p) {
        user_worker_t *self = *self_p;
        msgpack_sbuffer_destroy (&self->request);
        msgpack_sbuffer_destroy (&self->reply);
        free (self);
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

//  Append raw packed bytes (one object) to a packer.
static void
s_pack_raw (msgpack_packer *packer, const void *bytes, size_t len)
{
    packer->callback (packer->data, (const char *) bytes, len);
}

//  Run a change under the request's idempotency key: the first request
//  with a key runs the method and stores its reply in the same
//  transaction as the change; a retry gets that reply and changes nothing;
//  the key with a different request is failed_precondition. Errors are not
//  stored (the change is undone), so a retry after one runs again.
//  Returns the codec's status, MESH_ECONFLICT for a reused key (the caller
//  answers failed_precondition; *reused is set), or a store error.
static int
s_call_idempotent (user_worker_t *self, const s_method_t *method, const mesh_request_t *request,
                   mesh_response_t *response, bool *reused)
{
    char key[USER_IDEM_KEY_MAX + 1];
    if (request->idem.len > USER_IDEM_KEY_MAX) {
        snprintf (response->message, sizeof response->message,
                  "idempotency key longer than %d bytes", USER_IDEM_KEY_MAX);
        return MESH_EINVAL;
    }
    s_copy (request->idem, key, sizeof key);
    //  The request as compared with a retry: method, the actor when there
    //  is one, then the body as packed again from its decoded form. With the
    //  actor in it, a key is one caller's: another caller reusing it gets
    //  failed_precondition, never the first caller's stored reply. (Packed
    //  only when present, so keys stored before actors existed still match.)
    self->request.size = 0;
    msgpack_packer packer;
    msgpack_packer_init (&packer, &self->request, msgpack_sbuffer_write);
    mesh_pack_cstr (&packer, method->method);
    if (request->actor.len) {
        msgpack_pack_str (&packer, request->actor.len);
        msgpack_pack_str_body (&packer, request->actor.ptr, request->actor.len);
    }
    if (request->body)
        msgpack_pack_object (&packer, *request->body);
    else
        msgpack_pack_nil (&packer);

    void *stored = NULL;
    size_t stored_len = 0;
    int rc = user_repo_idem_claim (self->repo, key, self->request.data, self->request.size,
                                   &stored, &stored_len);
    if (rc == MESH_ECONFLICT) {
        *reused = true;
        snprintf (response->message, sizeof response->message,
                  "idempotency key already used with a different request");
        return rc;
    }
    if (rc) {
        snprintf (response->message, sizeof response->message, "%s",
                  rc == MESH_EUNAVAIL ? "database unavailable" : mesh_strerror (rc));
        return rc;
    }
    if (stored) {
        s_pack_raw (response->body, stored, stored_len);
        free (stored);
        if (self->metrics)
            mesh_counter_inc (self->metrics->replays);
        return 0;
    }
    self->reply.size = 0;
    msgpack_packer_init (&packer, &self->reply, msgpack_sbuffer_write);
    rc = method->call (self->app, request->actor, request->body, &packer, response->message,
                       sizeof response->message);
    if (rc) {
        user_repo_idem_release (self->repo);
        return rc;
    }
    rc = user_repo_idem_complete (self->repo, self->reply.data, self->reply.size);
    if (rc) {
        snprintf (response->message, sizeof response->message, "%s",
                  rc == MESH_EUNAVAIL ? "database unavailable" : mesh_strerror (rc));
        return rc;
    }
    s_pack_raw (response->body, self->reply.data, self->reply.size);
    return 0;
}

//  Row of s_methods for a method (S_METHOD_OTHER when unknown).
static size_t
s_row (mesh_slice_t method)
{
    for (size_t index = 0; index < S_METHOD_COUNT; index++)
        if (mesh_slice_eq (method, s_methods[index].method))
            return index;
    return S_METHOD_OTHER;
}

//  Count and log one request's outcome.
static void
s_account (user_worker_t *self, size_t row, mesh_code_t code, double seconds,
           const mesh_request_t *request, const mesh_response_t *response)
{
    if (self->metrics) {
        mesh_counter_inc (self->metrics->requests[row][code]);
        mesh_histogram_observe (self->metrics->duration[row], seconds);
    }
    mesh_log_level_t level = code == MESH_CODE_INTERNAL || code == MESH_CODE_UNAVAILABLE
                                 ? MESH_LOG_WARN : MESH_LOG_DEBUG;
    if (mesh_log_enabled (level)) {
        char id[MESH_ENVELOPE_MAX_ID + 1], method[64], ms[32];
        char trace_id[MESH_TRACE_ID_HEX_SIZE], span_id[MESH_SPAN_ID_HEX_SIZE];
        s_copy (request->id, id, sizeof id);
        s_copy (request->method, method, sizeof method);
        snprintf (ms, sizeof ms, "%.3f", seconds * 1000.0);
        //  The parent id: this worker's span when it traces, else the caller's
        mesh_traceparent_ids (request->trace.ptr, request->trace.len, trace_id, span_id);
        mesh_log_kv (level, "request", "request_id", id, "trace_id",
                     *trace_id ? trace_id : NULL, "span_id", *span_id ? span_id : NULL,
                     "method", method, "outcome",
                     mesh_code_name (code), "duration_ms", ms, "error",
                     code == MESH_CODE_OK ? NULL : response->message, NULL);
    }
}

mesh_code_t
user_worker_handle (void *arg, const mesh_request_t *request, mesh_response_t *response)
{
    user_worker_t *self = arg;
    int64_t started_us = mesh_mono_us ();
    size_t row = s_row (request->method);
    mesh_code_t code;
    if (row == S_METHOD_OTHER) {
        char method[64];
        s_copy (request->method, method, sizeof method);
        snprintf (response->message, sizeof response->message,
                  "method '%s' is not implemented by service 'user'", method);
        code = MESH_CODE_UNIMPLEMENTED;
    }
    else {
        char trace[USER_TRACE_SIZE];
        s_copy (request->trace, trace, sizeof trace);
        user_repo_set_request (self->repo, request->deadline_ms,
                               request->trace.len < sizeof trace ? trace : NULL);
        bool reused = false;
        int rc =
            request->idem.len && s_methods[row].changes
                ? s_call_idempotent (self, &s_methods[row], request, response, &reused)
                : s_methods[row].call (self->app, request->actor, request->body, response->body,
                                       response->message, sizeof response->message);
        code = reused ? MESH_CODE_FAILED_PRECONDITION : s_code (rc);
    }
    s_account (self, row, code, (double) (mesh_mono_us () - started_us) / 1e6, request,
               response);
    return code;
}

//  The requests of a batch that one call serves together: their slots in
//  the batch, and the earliest of their deadlines (0 = none), which bounds
//  the shared statements.
typedef struct {
    size_t slots[MESH_WORKER_MAX_BATCH];
    size_t count;
    uint64_t deadline_ms;
} s_group_t;

static void
s_group_add (s_group_t *group, size_t slot, uint64_t deadline_ms)
{
    group->slots[group->count++] = slot;
    if (deadline_ms && (!group->deadline_ms || deadline_ms < group->deadline_ms))
        group->deadline_ms = deadline_ms;
}

//  The batch's user.get requests, fetched in one database round trip.
static void
s_handle_gets (user_worker_t *self, const s_group_t *gets, const mesh_request_t *requests,
               mesh_response_t *responses, mesh_code_t *codes)
{
    int64_t started_us = mesh_mono_us ();
    const msgpack_object *bodies[MESH_WORKER_MAX_BATCH];
    char trace_text[MESH_WORKER_MAX_BATCH][USER_TRACE_SIZE];
    const char *traces[MESH_WORKER_MAX_BATCH];
    msgpack_packer *replies[MESH_WORKER_MAX_BATCH];
    char *messages[MESH_WORKER_MAX_BATCH];
    int rcs[MESH_WORKER_MAX_BATCH];
    for (size_t index = 0; index < gets->count; index++) {
        const mesh_request_t *request = &requests[gets->slots[index]];
        //  Each get's statement span goes under its own request's trace
        s_copy (request->trace, trace_text[index], sizeof trace_text[index]);
        traces[index] = request->trace.len < sizeof trace_text[index]? trace_text[index]: NULL;
        bodies[index] = request->body;
        replies[index] = responses[gets->slots[index]].body;
        messages[index] = responses[gets->slots[index]].message;
    }
    user_repo_set_request (self->repo, gets->deadline_ms, NULL);
    user_codec_get_many (self->app, bodies, traces, gets->count, replies, messages,
                         sizeof responses[0].message, rcs);
    double seconds = (double) (mesh_mono_us () - started_us) / 1e6;
    for (size_t index = 0; index < gets->count; index++) {
        size_t slot = gets->slots[index];
        codes[slot] = s_code (rcs[index]);
        s_account (self, S_METHOD_GET, codes[slot], seconds, &requests[slot], &responses[slot]);
    }
}

//  The batch's user.create requests without an idempotency key, stored in
//  one transaction (one commit for all), each answered on its own.
static void
s_handle_creates (user_worker_t *self, const s_group_t *creates, const mesh_request_t *requests,
                  mesh_response_t *responses, mesh_code_t *codes)
{
    int64_t started_us = mesh_mono_us ();
    user_codec_request_t asked[MESH_WORKER_MAX_BATCH];
    char traces[MESH_WORKER_MAX_BATCH][USER_TRACE_SIZE];
    msgpack_packer *replies[MESH_WORKER_MAX_BATCH];
    char *messages[MESH_WORKER_MAX_BATCH];
    int rcs[MESH_WORKER_MAX_BATCH];
    for (size_t index = 0; index < creates->count; index++) {
        const mesh_request_t *request = &requests[creates->slots[index]];
        s_copy (request->trace, traces[index], sizeof traces[index]);
        asked[index] = (user_codec_request_t) {
            .actor = request->actor,
            .body = request->body,
            .trace = request->trace.len < sizeof traces[index]? traces[index]: NULL,
        };
        replies[index] = responses[creates->slots[index]].body;
        messages[index] = responses[creates->slots[index]].message;
    }
    //  Each create's trace goes with its own event, not the request's
    user_repo_set_request (self->repo, creates->deadline_ms, NULL);
    user_codec_create_many (self->app, asked, creates->count, replies, messages,
                            sizeof responses[0].message, rcs);
    double seconds = (double) (mesh_mono_us () - started_us) / 1e6;
    for (size_t index = 0; index < creates->count; index++) {
        size_t slot = creates->slots[index];
        codes[slot] = s_code (rcs[index]);
        s_account (self, S_METHOD_CREATE, codes[slot], seconds, &requests[slot],
                   &responses[slot]);
    }
}

void
user_worker_handle_batch (void *arg, const mesh_request_t *requests, mesh_response_t *responses,
                          mesh_code_t *codes, size_t count)
{
    user_worker_t *self = arg;
    //  The batch's user.get requests go to the database together (one
    //  round trip), and so do its creates without an idempotency key (one
    //  transaction: a key's unit of work is a transaction of its own);
    //  everything else one by one, in order
    s_group_t gets = {.count = 0}, creates = {.count = 0};
    bool grouped[MESH_WORKER_MAX_BATCH] = {false};
    for (size_t index = 0; index < count && index < MESH_WORKER_MAX_BATCH; index++) {
        size_t row = s_row (requests[index].method);
        if (row == S_METHOD_GET)
            s_group_add (&gets, index, requests[index].deadline_ms);
        else if (row == S_METHOD_CREATE && requests[index].idem.len == 0)
            s_group_add (&creates, index, requests[index].deadline_ms);
    }
    //  A group of one has nothing to share: the plain path
    if (gets.count > 1) {
        s_handle_gets (self, &gets, requests, responses, codes);
        for (size_t index = 0; index < gets.count; index++)
            grouped[gets.slots[index]] = true;
    }
    if (creates.count > 1) {
        s_handle_creates (self, &creates, requests, responses, codes);
        for (size_t index = 0; index < creates.count; index++)
            grouped[creates.slots[index]] = true;
    }
    for (size_t index = 0; index < count; index++)
        if (index >= MESH_WORKER_MAX_BATCH || !grouped[index])
            codes[index] = user_worker_handle (self, &requests[index], &responses[index]);
}
