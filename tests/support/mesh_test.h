/*  =========================================================================
    mesh_test - helpers for tests that run real mesh processes
    Processes are started with fork/exec (killed by the kernel if the test
    process dies first), their stderr (JSON log lines)
    goes to a temp file that tests can wait on, and they are stopped by PID.
    Every wait is bounded. Ports come from the kernel (bind to port 0).
    Also what several integration tests need around those processes: the
    sockets a test opens (so teardown can close them all), the broker's
    /metrics and its Prometheus text, MMI queries, and raw MDP requests.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_TEST_H_INCLUDED
#define MESH_TEST_H_INCLUDED

#include "mesh/mesh_curve.h"
#include "mesh/mesh_envelope.h"

#include <libpq-fe.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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
    const char *ready_log;      //  When set, ready once the log holds it (not on MMI)
} mesh_test_broker_t;

//  Start mesh-broker with heartbeat `heartbeat_ms` (liveness 3) and extra
//  flags (NULL-terminated, may be NULL). Same ports as *broker when its port
//  is non-zero (for restarts); otherwise fresh ones, and up to three tries on
//  new fresh ports, since a port found free a moment ago can be taken by
//  another process before the broker binds it. Returns true when it serves
//  within 10 s (per try); false with nothing left running (broker->proc NULL).
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

//  Same as the holder of `curve` (NULL: plain).
bool
    mesh_test_mmi_curve (const char *endpoint, const mesh_curve_t *curve, const char *mmi_service,
                         const char *body, char *answer, size_t size, int timeout_ms);

//  A worker in a child process on a raw DEALER: READY for `service`, then
//  heartbeats every heartbeat_ms and never answers a request. It stays
//  alive in the broker's eyes for as long as it runs, so a request it holds
//  comes back only through its death (or the broker's). It dies with the
//  test process (the caller kills and reaps it) and gives up by itself
//  after two minutes. Returns its pid; fails the test when fork fails.
pid_t
    mesh_test_holder_start (const char *endpoint, const char *service, int heartbeat_ms);

//  Wait until the broker reports `service` with at least `workers` workers
//  (mmi.services). Returns true when it does within timeout_ms.
bool
    mesh_test_wait_workers (const char *endpoint, const char *service, size_t workers,
                            int timeout_ms);

//  One service as mmi.services reports it.
typedef struct {
    bool listed;                //  mmi.services lists the service at all
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

//  Ask `mmi.service` about `service` until the broker answers `want` ("200",
//  "404"); each query is bounded by the time left (1 s at most). Returns true
//  when it did within timeout_ms. `answer` (size bytes, may be NULL) gets
//  the last answer, "" when none came.
bool
    mesh_test_wait_service (const char *endpoint, const char *service, const char *want,
                            char *answer, size_t size, int timeout_ms);

//  Start the test echo worker (mesh-echo-worker) for `service` with
//  `credit` and `heartbeat_ms`, plus extra flags (may be NULL).
mesh_proc_t *
    mesh_test_echo_worker (const char *endpoint, const char *service, int credit,
                           int heartbeat_ms, const char *const *extra);

//  Pack {"ms": ms}, the body of the echo worker's "sleep" method, into
//  *buffer, which this initialises; the caller destroys it.
void
    mesh_test_pack_sleep (msgpack_sbuffer *buffer, uint32_t ms);

//  --------------------------------------------------------------------------
//  Raw MDP clients: what a peer without libmesh's client would send and see.

//  Send one request on a raw DEALER: "", MDPC01, service, then the envelope
//  {v, id, method, deadline_ms (0: none), body: nil}. Fails the test
//  (cr_assert) when the send fails.
void
    mesh_test_send_request (void *dealer, const char *service, const char *id,
                            const char *method, uint64_t deadline_ms);

//  One reply as a raw client saw it.
typedef struct {
    char service[64];           //  Service frame of the reply
    char id[MESH_ENVELOPE_MAX_ID + 1];  //  Envelope id
    bool is_error;
    mesh_code_t code;           //  MESH_CODE_OK on success
    int64_t at_mono_ms;         //  When it arrived (mesh_mono_ms)
    uint64_t at_wall_ms;        //  The same moment, unix ms (mesh_wall_ms)
} mesh_test_reply_t;

//  Wait up to timeout_ms (0: only what is already there) for one reply on a
//  raw DEALER and decode it into *reply. Returns false when none came. Fails
//  the test (cr_assert) unless it is "", MDPC01, service, reply envelope.
bool
    mesh_test_recv_reply (void *dealer, int timeout_ms, mesh_test_reply_t *reply);

//  --------------------------------------------------------------------------
//  Sockets a test opens, closed all together

typedef struct mesh_test_sockets_s mesh_test_sockets_t;

//  A ZeroMQ context for one test's sockets. Its destructor (called from the
//  suite's teardown) closes every socket opened through it, so a failed
//  assertion cannot leave one open and make zmq_ctx_term hang. Sends on its
//  sockets time out after send_timeout_ms. Returns NULL when no context can
//  be created.
mesh_test_sockets_t *
    mesh_test_sockets_new (int send_timeout_ms);

//  Open a socket of `type` with linger 0 and bounded sends, connected to
//  `endpoint` unless that is NULL. Borrowed: `self` closes it. Fails the
//  test (cr_assert) when it cannot be made or connected, or past 32 sockets.
void *
    mesh_test_sockets_open (mesh_test_sockets_t *self, int type, const char *endpoint);

//  The context, for what a test makes on it itself (a mesh_client_t, ...);
//  destroy those before the sockets. Borrowed.
void *
    mesh_test_sockets_context (mesh_test_sockets_t *self);

//  Close every socket, then terminate the context; nulls *self_p. Safe on
//  a NULL reference.
void
    mesh_test_sockets_destroy (mesh_test_sockets_t **self_p);

//  --------------------------------------------------------------------------
//  HTTP and Prometheus text

//  GET `url` with libcurl (no proxy, 2 s to connect, 5 s in all). Returns
//  the body (fresh NUL-terminated string; caller frees) and sets *status to
//  the HTTP status, or NULL with *status 0 when no response came. status
//  may be NULL.
char *
    mesh_test_http_get (const char *url, long *status);

//  GET http://<broker->admin>/metrics. Returns the Prometheus text (fresh
//  string; caller frees) when the answer is 200, else NULL.
char *
    mesh_test_broker_metrics (const mesh_test_broker_t *broker);

//  Sum of the samples of metric `name` in Prometheus text whose label set
//  contains `labels` as written, e.g. "reason=\"credit\"" or, in the
//  series' label order, "service=\"echo\",outcome=\"expired\"". NULL labels:
//  every sample of `name`. Returns -1 when no sample matches.
double
    mesh_test_metric (const char *text, const char *name, const char *labels);

//  Check Prometheus text with promtool (Debian's prometheus package).
//  Returns true when it passes or promtool is not installed; else false
//  with promtool's complaint in `output` (`size` bytes).
bool
    mesh_test_promtool_check (const char *text, char *output, size_t size);

//  --------------------------------------------------------------------------
//  PostgreSQL: a fresh schema of the DATABASE_URL database per test

typedef struct {
    char name[64];              //  The schema, "" when none
    char conninfo[1024];        //  DATABASE_URL with search_path set to it
    PGconn *admin;              //  Creates and drops the schema (NULL when none)
} mesh_test_pg_schema_t;

//  Connect to DATABASE_URL (client_min_messages = warning) and create the
//  schema "<prefix>_<pid>_<counter>" in *schema, with a conninfo whose
//  options=-csearch_path=... points there (as a URL query parameter or one
//  more keyword, as DATABASE_URL is written). Returns false, with *schema
//  empty, when DATABASE_URL is unset or empty: the test then skips
//  (cr_skip_test). Fails the test (cr_assert) when it cannot connect or
//  create the schema.
bool
    mesh_test_pg_schema_new (mesh_test_pg_schema_t *schema, const char *prefix);

//  Drop the schema (CASCADE, errors ignored) and close the connection.
//  Safe on an empty *schema.
void
    mesh_test_pg_schema_drop (mesh_test_pg_schema_t *schema);

//  Drop schema `name` (CASCADE, errors ignored) on `admin`: a test's second
//  schema (an audit log's). Nothing when `admin` is NULL or `name` empty.
void
    mesh_test_pg_drop (PGconn *admin, const char *name);

//  Run a statement that must succeed (PGRES_COMMAND_OK or _TUPLES_OK);
//  fails the test (cr_assert) otherwise.
void
    mesh_test_pg_exec (PGconn *conn, const char *sql);

//  One integer from a one-row, one-column query with at most one text
//  parameter (NULL: none). Fails the test (cr_assert) on an error or
//  another number of rows.
long
    mesh_test_pg_long (PGconn *conn, const char *sql, const char *param);

#endif
