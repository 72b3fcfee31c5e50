/*  =========================================================================
    bench - shared parts of mesh-bench, the benchmark driver
    mesh-bench is one binary with several commands (direct-server, client,
    wait-service, free-port) that scripts/bench starts as separate
    processes (forwarder too: a bare MDP forwarder to compare the broker
    with on the same machine). This header carries what the command files share: the
    client's settings and the CPU-time readers (/proc/PID/stat, getrusage).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_BENCH_H_INCLUDED
#define MESH_BENCH_H_INCLUDED

#include "mesh/mesh_curve.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_ENDPOINTS 8
#define BENCH_MAX_PIDS 16

//  What `mesh-bench client` does.
typedef struct {
    bool broker;                //  Through the broker with libmesh (else raw DEALER)
    const char *endpoints[BENCH_MAX_ENDPOINTS];    //  Borrowed; connect to each
    int endpoint_count;
    const char *service;        //  MDP service (broker mode)
    const char *method;         //  Envelope method
    int window;                 //  Requests kept in flight
    long requests;              //  Timed requests at most; 0 = bounded by duration only
    long duration_ms;           //  Timed part at most this long; 0 = bounded by requests only
    long warmup;                //  Completions before the timed part starts
    int body_size;              //  Bytes of the msgpack bin body
    int timeout_ms;             //  Request deadline; a reply later than this is an error
    int broker_pids[BENCH_MAX_PIDS];   //  Processes whose CPU counts as "broker"
    int broker_pid_count;
    int worker_pids[BENCH_MAX_PIDS];   //  Processes whose CPU counts as "workers"
    int worker_pid_count;
    const char *label;          //  Echoed in the result line, or NULL
    //  Broker mode only: what each request asks. BENCH_ECHO sends the bin
    //  body and expects it back; BENCH_USER_GET sends {id} with an id drawn
    //  at random from `ids`; BENCH_USER_CREATE sends {name, email} with an
    //  email no request used before. Both user workloads expect a map back.
    enum { BENCH_ECHO, BENCH_USER_GET, BENCH_USER_CREATE } workload;
    char (*ids)[40];            //  Borrowed: user ids for BENCH_USER_GET
    size_t id_count;
    const mesh_curve_t *curve;  //  CURVE keys (broker mode), borrowed; NULL = plain
} bench_client_cfg_t;

//  Run the client and print one result line (key=value pairs) on stdout.
//  Returns 0, or 1 when the run failed (lost replies, connect error).
int
    bench_client_run (const bench_client_cfg_t *cfg);

//  Run the bare MDP forwarder (bench_forwarder.c) bound at `bind` until
//  killed. Prints "ready ENDPOINT" once bound. Returns 1 on failure.
int
    bench_forwarder_run (const char *bind);

//  CPU time (user + system) of process `pid` in microseconds, from
//  /proc/PID/stat (clock-tick granularity, usually 10 ms). Returns -1 when
//  the process cannot be read.
int64_t
    bench_proc_cpu_us (int pid);

//  Sum of bench_proc_cpu_us over `count` pids; -1 when any is unreadable or
//  count is 0.
int64_t
    bench_procs_cpu_us (const int *pids, int count);

//  CPU time of this process (all threads) in microseconds.
int64_t
    bench_self_cpu_us (void);

//  The baseline of scripts/bench events (bench_pubsub.c): a bare PUB/SUB
//  of `count` messages of `size` bytes over loopback TCP, at `rate` per
//  second (0: as fast as possible). Prints one
//  key=value line (rps, p50_us, p99_us). Returns 0, 1 when messages were
//  lost, 2 on bad arguments.
int
    bench_pubsub_run (long count, int size, long rate, const char *label);

#endif
