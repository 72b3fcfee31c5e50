/*  =========================================================================
    mesh_test_curve - CURVE keys and a CURVE broker for tests
    A test's keys live in a fresh temp directory: keys/ holds every pair
    (NAME.key, NAME.key_secret, written with czmq's zcert as meshctl keygen
    does) and allow/ is the broker's allow-list, where a test copies public
    certificates in and out (rotation, revocation) while the broker runs.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_TEST_CURVE_H_INCLUDED
#define MESH_TEST_CURVE_H_INCLUDED

#include "mesh/mesh_curve.h"
#include "mesh_test.h"

#include <stdbool.h>

typedef struct {
    char dir[64];     //  The temp directory, "" when none
    char keys[96];    //  dir/keys
    char allow[96];   //  dir/allow
    char server[160]; //  dir/keys/broker.key (the broker's public certificate)
} mesh_test_keys_t;

//  What a test key may do (NULL: not granted), as certificate metadata.
typedef struct {
    const char *serve;
    const char *call;
    const char *publish;
    const char *subscribe;
    bool delegate;
} mesh_test_grants_t;

//  Make the directory and the broker's own pair. Fails the test
//  (cr_assert) when it cannot.
void mesh_test_keys_new (mesh_test_keys_t *keys);

//  Write the pair of `name` with `grants` into keys/; when `allow`, copy
//  its public certificate into allow/. Fails the test when it cannot.
void mesh_test_keys_add (mesh_test_keys_t *keys, const char *name, mesh_test_grants_t grants,
                         bool allow);

//  Put `name`'s public certificate in allow/ (`allowed`) or take it out.
void mesh_test_keys_allow (mesh_test_keys_t *keys, const char *name, bool allowed);

//  Path of `name`'s secret certificate into `buffer`; returns buffer.
const char *mesh_test_keys_secret (const mesh_test_keys_t *keys, const char *name, char *buffer,
                                   size_t size);

//  Keys of `name` as a client of the test broker (caller destroys).
//  Fails the test when they cannot be loaded.
mesh_curve_t *mesh_test_keys_curve (const mesh_test_keys_t *keys, const char *name);

//  Remove the directory and everything in it. Safe on an empty *keys.
void mesh_test_keys_destroy (mesh_test_keys_t *keys);

//  Start mesh-broker with CURVE on (its key, keys->allow) and extra flags,
//  ready once it logs "broker serving" (plain MMI cannot reach it). As
//  mesh_test_broker_start otherwise.
bool mesh_test_curve_broker_start (mesh_test_broker_t *broker, const mesh_test_keys_t *keys,
                                   int heartbeat_ms);

//  The flags --curve-cert SECRET --curve-server-cert SERVER for `name`, in
//  argv[0..3] (the paths live in `buffer`, `size` bytes).
void mesh_test_keys_flags (const mesh_test_keys_t *keys, const char *name, const char *argv[4],
                           char *buffer, size_t size);

//  Ask `mmi.service` about `service` as the holder of `curve` until the
//  broker answers `want` ("200", "404"). Returns true when it did within
//  timeout_ms.
bool mesh_test_curve_wait_service (const char *endpoint, const mesh_curve_t *curve,
                                   const char *service, const char *want, int timeout_ms);

//  Wait until metric `name` with `labels` (as mesh_test_metric) reaches
//  at least `value` on the broker's /metrics. Returns true when it did
//  within timeout_ms.
bool mesh_test_wait_metric (const mesh_test_broker_t *broker, const char *name, const char *labels,
                            double value, int timeout_ms);

#endif
