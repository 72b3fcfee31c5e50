/*  =========================================================================
    user_test - helpers for the integration tests of mesh-user
    Starting mesh-user processes against a test's broker and schema, calling
    service `user` through libmesh's client, reading reply maps, and
    collecting events from the broker's XPUB or from events.list. Every wait
    is bounded; failures are Criterion assertions.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_TEST_H_INCLUDED
#define USER_TEST_H_INCLUDED

#include "mesh/mesh_client.h"
#include "mesh_test.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Start mesh-user with `workers` threads on `conninfo`, connected to the
//  broker's ROUTER and XSUB, heartbeats of 200 ms, the relay sweeping every
//  200 ms; admin on `admin_addr` (NULL: a free port); `extra` (NULL or
//  NULL-terminated) appended to the arguments. Does not wait for it.
mesh_proc_t *
    user_test_start (const mesh_test_broker_t *broker, const char *conninfo, int workers,
                     const char *admin_addr, const char *const *extra);

//  Stop a mesh-user with SIGTERM and expect exit status 0 within 15 s (a
//  TSan-built process exits 66 when it saw a race); destroys it. Tolerates
//  NULL.
void
    user_test_stop (mesh_proc_t **proc_p);

//  Call `method` of service user with a packed `body` (NULL: nil) and an
//  idempotency key (NULL: none), deadline `timeout_ms` (0: 10 s). The reply
//  is borrowed until the next call on the client.
mesh_reply_t
    user_test_call (mesh_client_t *client, const char *method, const msgpack_sbuffer *body,
                    const char *idem, int timeout_ms);

//  user_test_call with the envelope's `actor` (NULL: none).
mesh_reply_t user_test_call_as (mesh_client_t *client, const char *method,
                                const msgpack_sbuffer *body, const char *idem, const char *actor,
                                int timeout_ms);

//  Initialise `buffer` with a map of string pairs: keys and values
//  alternate, NULL-terminated. The caller destroys the buffer.
void
    user_test_pack_strings (msgpack_sbuffer *buffer, const char *const *pairs);

//  user_test_call with a map of string pairs as the body.
mesh_reply_t
    user_test_call_strings (mesh_client_t *client, const char *method,
                            const char *const *pairs, const char *idem);

//  Field `name` of map `object`, or NULL.
const msgpack_object *
    user_test_get (const msgpack_object *object, const char *name);

//  String field `name` of map `object`, copied into `out` (`size` bytes);
//  asserts that it is a string that fits.
const char *
    user_test_str (const msgpack_object *object, const char *name, char *out, size_t size);

//  Unsigned integer field `name` of map `object`; asserts its type.
uint64_t
    user_test_uint (const msgpack_object *object, const char *name);

//  Assert the reply's code, printing the message when it differs.
void
    user_test_expect_code (const mesh_reply_t *reply, mesh_code_t code);

//  The reply's error message as a C string in `out`.
const char *
    user_test_message (const mesh_reply_t *reply, char *out, size_t size);

//  Events by seq, as seen by a subscriber or by events.list: for each seq
//  1..capacity, how often it was seen and the subject (user id), type and
//  actor of its first sighting.
#define USER_TEST_ACTOR_SIZE (MESH_ENVELOPE_MAX_ACTOR + 1)
typedef struct {
    size_t capacity;            //  Highest seq tracked
    uint32_t *seen;             //  [seq] sightings
    char (*subject)[40];        //  [seq] user id
    char (*type)[16];           //  [seq] event type
    char (*actor)[USER_TEST_ACTOR_SIZE]; //  [seq] actor attribute, "" when absent
    size_t beyond;              //  Events with seq 0 or above capacity
    size_t malformed;           //  Bodies that are not an event map
} user_test_events_t;

//  Make an empty record for seqs 1..capacity.
user_test_events_t *
    user_test_events_new (size_t capacity);

void
    user_test_events_destroy (user_test_events_t **self_p);

//  Record one event map (CloudEvents attributes + seq); checks the
//  attributes every event must have, and that an `actor`, when present,
//  is a non-empty string (none is absent, never empty).
void
    user_test_events_add (user_test_events_t *self, const msgpack_object *event);

//  Record every event of `events.list` from seq 1 on, paging with `limit`
//  until a page comes back short.
void
    user_test_events_fetch_all (user_test_events_t *self, mesh_client_t *client, int limit);

//  Receive from SUB socket `sub` (subscribed to "user.") and record events
//  until `count` distinct seqs are recorded in total or `timeout_ms`
//  passes. Returns the number of distinct seqs recorded.
size_t
    user_test_events_receive (user_test_events_t *self, void *sub, size_t count,
                              int timeout_ms);

//  Distinct seqs recorded; and how many of 1..upto were seen exactly once,
//  never, or more than once.
size_t
    user_test_events_distinct (const user_test_events_t *self);
void
    user_test_events_tally (const user_test_events_t *self, size_t upto, size_t *once,
                            size_t *missing, size_t *repeated);

//  A private PostgreSQL cluster of a test's own (scripts/pg), for tests
//  that stop and start the server. `dir` is the cluster's folder (created
//  when missing). Start writes its DATABASE_URL to `url`; a restarted
//  cluster keeps its port, so the URL stays valid. Both assert success.
void
    user_test_cluster_start (const char *dir, char *url, size_t size);
void
    user_test_cluster_stop (const char *dir);

#endif
