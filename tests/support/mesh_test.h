/*  =========================================================================
    mesh_test - helpers for tests that run real mesh processes
    Processes are started with fork/exec (killed by the kernel if the test
    process dies first), their stderr (JSON log lines)
    goes to a temp file that tests can wait on, and they are stopped by PID.
    Every wait is bounded. Ports come from the kernel (bind to port 0).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_TEST_H_INCLUDED
#define MESH_TEST_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct mesh_proc_s mesh_proc_t;

//  A TCP port on 127.0.0.1 that was free a moment ago.
int
    mesh_test_free_port (void);

//  Full path of a binary built by the project into `buffer`: from
//  MESH_PROCESS_BIN_DIR when set (sanitized processes), else MESH_BIN_DIR
//  (set by ctest). Returns buffer.
const char *
    mesh_test_bin (const char *name, char *buffer, size_t size);

//  Start `argv[0]` (a path) with `argv`, adding `env` ("NAME=value", NULL-
//  terminated, may be NULL) to the environment. stderr goes to a temp file.
//  Returns NULL when the process cannot be started.
mesh_proc_t *
    mesh_proc_start (const char *const *argv, const char *const *env);

//  Wait until the process's stderr contains `text` (from the start of its
//  output). Returns true when seen within timeout_ms.
bool
    mesh_proc_wait_log (mesh_proc_t *self, const char *text, int timeout_ms);

//  The process's stderr so far (fresh string; caller frees).
char *
    mesh_proc_log (mesh_proc_t *self);

//  Send `signal` to the process (by PID, only if still running).
void
    mesh_proc_signal (mesh_proc_t *self, int signal);

//  Wait up to timeout_ms for the process to exit. Returns true with
//  *status (waitpid status) when it did.
bool
    mesh_proc_wait_exit (mesh_proc_t *self, int timeout_ms, int *status);

//  PID of the process.
pid_t
    mesh_proc_pid (const mesh_proc_t *self);

//  Kill (SIGKILL) if still running, reap, remove the log file; nulls *self_p.
void
    mesh_proc_destroy (mesh_proc_t **self_p);

//  A broker on free loopback ports, started and ready (it answers MMI).
typedef struct {
    mesh_proc_t *proc;
    int port;                   //  ROUTER port
    int xsub_port;
    int xpub_port;
    int admin_port;
    char endpoint[64];          //  tcp://127.0.0.1:port
    char xsub[64];
    char xpub[64];
    char admin[64];             //  127.0.0.1:port
} mesh_test_broker_t;

//  Start mesh-broker with heartbeat `heartbeat_ms` (liveness 3) and extra
//  flags (NULL-terminated, may be NULL). Same ports as *broker when its port
//  is non-zero (for restarts). Returns true when it serves within 10 s.
bool
    mesh_test_broker_start (mesh_test_broker_t *broker, int heartbeat_ms,
                            const char *const *extra);

//  Stop it with SIGTERM and reap (SIGKILL after 5 s). Expects (Criterion
//  cr_expect) a clean exit 0: under the sanitizer builds a race, leak or
//  undefined behaviour in the broker makes its exit status non-zero and so
//  fails the test that ran it. Safe when the broker is not running.
void
    mesh_test_broker_stop (mesh_test_broker_t *broker);

//  Ask the broker `mmi.service NAME` over a raw DEALER; returns the answer
//  ("200", "404", ...) copied into `answer`, or false on timeout.
bool
    mesh_test_mmi (const char *endpoint, const char *mmi_service, const char *body, char *answer,
                   size_t size, int timeout_ms);

//  Wait until the broker reports `service` with at least `workers` workers
//  (mmi.services). Returns true when it does within timeout_ms.
bool
    mesh_test_wait_workers (const char *endpoint, const char *service, size_t workers,
                            int timeout_ms);

//  One service as mmi.services reports it.
typedef struct {
    size_t workers;
    size_t idle_credit;
    size_t queued;
    size_t in_flight;
} mesh_test_service_stats_t;

//  Ask the broker (mmi.services) for `service`'s numbers. Returns false when
//  the broker does not answer in timeout_ms; a service it does not list
//  gives all zeros.
bool
    mesh_test_service_stats (const char *endpoint, const char *service,
                             mesh_test_service_stats_t *stats, int timeout_ms);

//  Wait until `service` has queued >= queued and in_flight >= in_flight.
bool
    mesh_test_wait_load (const char *endpoint, const char *service, size_t queued,
                         size_t in_flight, int timeout_ms);

//  Start the test echo worker (mesh-echo-worker) for `service` with
//  `credit` and `heartbeat_ms`, plus extra flags (may be NULL).
mesh_proc_t *
    mesh_test_echo_worker (const char *endpoint, const char *service, int credit,
                           int heartbeat_ms, const char *const *extra);

#endif
