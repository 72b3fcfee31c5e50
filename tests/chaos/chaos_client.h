/*  =========================================================================
    chaos_client - careful HTTP clients of the mesh, and what they saw

    Each steady client is a thread with its own identity (token) and its own
    users: it creates, reads, updates, deletes and lists them at a steady
    pace through the gateway, sends every write with an Idempotency-Key,
    retries 429/503/504/timeouts with backoff (honouring Retry-After) under
    the same key, and records every operation (ok, failed, unknown) and
    every attempt in its ledger. After a write ends unknown it leaves that
    user alone, so the user's final state is one of two known states.

    The event reader holds GET /v1/events open and resumes with
    Last-Event-ID after every disconnect, recording each seq it sees.

    The burst sends reads from one more identity at a fixed rate for a
    while, without retries, and records each answer.

    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */

#ifndef CHAOS_CLIENT_H_INCLUDED
#define CHAOS_CLIENT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { CHAOS_OK, CHAOS_FAILED, CHAOS_UNKNOWN } chaos_result_t;

typedef enum {
    CHAOS_CREATE,
    CHAOS_CREATE_INVALID,   //  Bad email: 422, must leave nothing
    CHAOS_CREATE_DUPLICATE, //  Email of a live user: 409, must leave nothing
    CHAOS_GET,
    CHAOS_UPDATE,
    CHAOS_UPDATE_DUPLICATE, //  Email of another live user: 409, must change nothing
    CHAOS_DELETE,
    CHAOS_LIST,
    CHAOS_KINDS
} chaos_kind_t;

//  One HTTP exchange. Times are ms since the run's start (monotonic).
typedef struct {
    int64_t start_ms;
    int64_t end_ms;
    long status;      //  0: no answer (refused, reset, timeout)
    bool retry_after; //  The answer carried Retry-After
} chaos_attempt_t;

//  One operation, as a careful client sees it.
typedef struct {
    uint64_t number; //  Per client, from 1
    chaos_kind_t kind;
    chaos_result_t result;
    long status;      //  Of the last attempt
    char user_id[40]; //  "" for list and unknown creates
    char key[48];     //  Idempotency-Key ("" for reads)
    char name[48];    //  Sent (create, update)
    char email[80];
    size_t first_attempt; //  Index in the client's attempts
    size_t attempts;
    bool stale_read; //  A get that did not show the user's acknowledged state
} chaos_op_t;

//  One user a client created (acknowledged), and what it must look like.
typedef struct {
    char id[40];
    char name[48]; //  Acknowledged values
    char email[80];
    bool deleted;              //  Delete acknowledged
    bool pending;              //  A write on it ended unknown: it holds one of two states
    chaos_kind_t pending_kind; //  CHAOS_UPDATE or CHAOS_DELETE
    char pending_name[48];
    char pending_email[80];
    size_t updates_ok; //  Updates acknowledged
} chaos_user_t;

typedef struct {
    chaos_op_t *ops;
    size_t op_count;
    chaos_attempt_t *attempts;
    size_t attempt_count;
    chaos_user_t *users;
    size_t user_count;
} chaos_ledger_t;

typedef struct chaos_clients_s chaos_clients_t;

//  `count` steady clients against `base`, client i authenticated with
//  tokens[i] (borrowed), each at `rate` operations per second, choices
//  seeded by `seed`. `epoch_ms` (mesh_mono_ms) is time zero of the ledger.
chaos_clients_t *chaos_clients_new (const char *base, const char *const *tokens, size_t count,
                                    double rate, uint64_t seed, int64_t epoch_ms);

//  Stop (when running) and free; nulls *self_p.
void chaos_clients_destroy (chaos_clients_t **self_p);

//  Start the client threads and the event reader (token: events_token).
bool chaos_clients_start (chaos_clients_t *self, const char *events_token);

//  Stop the clients: each finishes its operation in progress (retries
//  included) and returns. The event reader goes on.
void chaos_clients_stop (chaos_clients_t *self);

//  Client `index`'s ledger (valid after chaos_clients_stop).
const chaos_ledger_t *chaos_clients_ledger (const chaos_clients_t *self, size_t index);

size_t chaos_clients_count (const chaos_clients_t *self);

//  Let the event reader run until it has seen `seq` or timeout_ms passed,
//  then stop it. Returns true when it saw `seq`.
bool chaos_clients_events_until (chaos_clients_t *self, int64_t seq, int timeout_ms);

//  The seqs the event reader saw, in order, and how often it connected.
const int64_t *chaos_clients_events (const chaos_clients_t *self, size_t *count,
                                     size_t *connections);

//  The burst: `threads` threads sending GET /v1/users?limit=1 with `token`
//  at `rate` requests per second in all, for `duration_ms`, no retries.
//  Blocks until done; the answers go to *attempts (caller frees) and
//  *count. Returns false when it could not start.
bool chaos_burst_run (const char *base, const char *token, size_t threads, double rate,
                      int duration_ms, int64_t epoch_ms, chaos_attempt_t **attempts, size_t *count);

//  xorshift64*: the run's choices, repeatable from a seed (state never 0).
uint64_t chaos_random (uint64_t *state);

//  Sleep `ms` milliseconds (nothing when ms <= 0).
void chaos_sleep_ms (int64_t ms);

//  Name of a kind, for the ledger ("create", "get", ...).
const char *chaos_kind_name (chaos_kind_t kind);

//  Name of a result ("ok", "failed", "unknown").
const char *chaos_result_name (chaos_result_t result);

//  Write every client's operations to `path` as JSON lines. Returns false
//  when the file cannot be written.
bool chaos_clients_write_ledger (const chaos_clients_t *self, const char *path);

#endif
