/*  =========================================================================
    chaos_check - what must hold after a chaos run, with figures

    Six checks, each printed as one line "check N NAME: PASS|FAIL figures":
    1. writes: acknowledged writes are in PostgreSQL with their values, failed
       ones are not, each unknown one applied once or not at all;
    2. audit: the audit log is the outbox, event for event, seq 1..N;
    3. events: the SSE reader saw seq 1..N once each, in order;
    4. idempotency: no write retried under one key applied twice (event
       counts per user within what was acknowledged and what is in doubt);
    5. availability: outside the fault windows every attempt succeeded, and
       after each fault requests succeeded again within its target;
    6. resources: every process's RSS stayed bounded, and the overload burst
       got fast 429/503 with Retry-After while admitted requests kept their
       latency; at the end every process exits 0 on SIGTERM.

    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */

#ifndef CHAOS_CHECK_H_INCLUDED
#define CHAOS_CHECK_H_INCLUDED

#include "chaos_client.h"
#include "chaos_mesh.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  One injected fault, times in ms since the run's start.
typedef struct {
    const char *kind; //  "kill mesh-user", "stop mesh-user", ... (static)
    char target[32];  //  The process it hit ("" for PostgreSQL, the burst)
    int64_t inject_ms;
    int64_t end_ms;    //  Restarted, continued, back, or over
    int64_t target_ms; //  Requests must succeed again within this of inject
    bool overload;     //  The burst
    bool failed;       //  The fault itself went wrong (a restart that did not come up)
    char note[160];    //  Exit status of a graceful stop, and the like
} chaos_fault_t;

//  What the checks read.
typedef struct {
    PGconn *pg;               //  The mesh's database
    const char *audit_schema; //  Where mesh-audit keeps its log
    chaos_clients_t *clients; //  Stopped; the event reader stopped too
    const chaos_fault_t *faults;
    size_t fault_count;
    const chaos_attempt_t *burst;
    size_t burst_count;
    chaos_mesh_t *mesh;
    int64_t run_end_ms;   //  When the clients stopped
    const char *exits;    //  How each process ended at the final stop
    size_t unclean_exits; //  Those that did not exit 0
} chaos_check_input_t;

//  Run every check, print its line on stdout. Returns the checks that
//  failed as bits (bit N-1 for check N; 0: the run holds).
unsigned chaos_check_all (const chaos_check_input_t *input);

#endif
