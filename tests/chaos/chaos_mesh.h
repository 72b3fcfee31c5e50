/*  =========================================================================
    chaos_mesh - the whole mesh as scripts/run starts it, under a supervisor
    that kills, stops and restarts its processes

    One broker, two mesh-user processes, mesh-audit and mesh-gateway, with
    CURVE on the bus (the keys scripts/keys made) and JWT authentication and
    a per-caller rate limit on HTTP. Every process keeps its ports across
    restarts, so clients never learn a new address. A sampler thread reads
    each process's resident set size from /proc every 250 ms.

    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */

#ifndef CHAOS_MESH_H_INCLUDED
#define CHAOS_MESH_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    CHAOS_BROKER,
    CHAOS_USER_0,
    CHAOS_USER_1,
    CHAOS_AUDIT,
    CHAOS_GATEWAY,
    CHAOS_ROLES
} chaos_role_t;

#define CHAOS_USERS 2

typedef struct {
    const char *keys_dir; //  scripts/keys output: ROLE.key_secret, allow/, jwt secret
    const char *database_url;
    int heartbeat_ms; //  Of broker and workers (liveness 3)
    int rate_limit;   //  Gateway requests per second per caller
} chaos_mesh_config_t;

//  Memory of one role over the run, in KiB.
typedef struct {
    long first_kb; //  First sample after the process was ready
    long max_kb;
    long last_kb;
    size_t samples;
    size_t starts; //  1 + restarts
} chaos_rss_t;

typedef struct chaos_mesh_s chaos_mesh_t;

//  Pick ports and hold the configuration (copied). NULL on failure.
chaos_mesh_t *chaos_mesh_new (const chaos_mesh_config_t *config);

//  Stop every process (SIGTERM, then SIGKILL after 15 s) and the sampler;
//  nulls *self_p.
void chaos_mesh_destroy (chaos_mesh_t **self_p);

//  Start every process in the order of scripts/run and wait until the
//  gateway's /ready answers 200 and `user` has both workers. Starts the
//  RSS sampler. Returns false (with a reason in `why`) when it cannot.
bool chaos_mesh_start (chaos_mesh_t *self, char *why, size_t size);

//  Start `role` (again) and wait until it is ready: the broker serving,
//  a mesh-user's worker registered, audit ready, the gateway serving.
bool chaos_mesh_start_role (chaos_mesh_t *self, chaos_role_t role, char *why, size_t size);

//  Stop every process as scripts/run does (SIGTERM in its order, 15 s
//  each) and write "NAME STATUS, ..." into `report`. Returns how many did
//  not exit 0 in time (a sanitizer report makes a process exit non-zero).
size_t chaos_mesh_stop_all (chaos_mesh_t *self, char *report, size_t size);

//  SIGKILL `role` and reap it.
void chaos_mesh_kill (chaos_mesh_t *self, chaos_role_t role);

//  SIGTERM `role` and wait up to timeout_ms for it to exit. Returns true
//  with its exit status in *status (-1 when a signal ended it) when it did.
bool chaos_mesh_stop_role (chaos_mesh_t *self, chaos_role_t role, int timeout_ms, int *status);

//  Send `signal` (SIGSTOP, SIGCONT) to `role` when it runs.
void chaos_mesh_signal (chaos_mesh_t *self, chaos_role_t role, int signal);

//  The gateway's base URL, http://127.0.0.1:port.
const char *chaos_mesh_base (const chaos_mesh_t *self);

//  Memory of `role` so far (copied under the sampler's lock).
chaos_rss_t chaos_mesh_rss (chaos_mesh_t *self, chaos_role_t role);

//  The role's name ("mesh-broker", "mesh-user-0", ...).
const char *chaos_role_name (chaos_role_t role);

//  The tail (last `size` - 1 bytes at most) of the role's current log.
void chaos_mesh_log_tail (chaos_mesh_t *self, chaos_role_t role, char *buffer, size_t size);

#endif
