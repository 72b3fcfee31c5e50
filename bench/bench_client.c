/*  =========================================================================
    bench_client - one asynchronous client that keeps W requests in flight
    Two transports with the same workload (one envelope frame per request,
    a msgpack bin body of --body-size bytes):
    - broker: libmesh's mesh_client (envelope encode with a fresh id and a
      deadline, reply decode and matching by id), exactly what a mesh user
      pays, through mesh-broker to mesh-echo-worker;
    - direct: a raw DEALER sending "" + a prebuilt envelope to one or more
      ROUTER echo servers (mesh-bench direct-server), no broker, no codec.
      The slot number rides in the first body bytes so replies can come
      back in any order (two servers).
    After --warmup completions the timed part starts: wall time, every
    latency (monotonic µs from send to reply) and CPU time of this process
    and of the processes named by --broker-pids and --worker-pids.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "bench.h"
#include "mesh/mesh_client.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_time.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#define S_DRAIN_MS 2000         //  After the timed part, wait this long for stragglers

//  State of one run, shared by both transports.
typedef struct {
    const bench_client_cfg_t *cfg;
    int64_t *sent_us;           //  [window] send time of the request in each slot
    uint32_t *latency_us;       //  Latencies of the timed part
    size_t latency_count;
    size_t latency_capacity;
    long completed;             //  Successful replies, warm-up included
    long timed;                 //  Successful replies in the timed part
    long errors;                //  Error replies, bad bodies, local deadlines
    int in_flight;              //  Requests sent and not yet answered
    bool timing;                //  In the timed part
    bool stopped;               //  Timed part over: send nothing more
    int64_t start_us, stop_us;  //  Timed part, monotonic
    int64_t self_cpu[2];        //  CPU µs at start and stop of the timed part
    int64_t broker_cpu[2];
    int64_t worker_cpu[2];
} s_run_t;

//  --------------------------------------------------------------------------
//  CPU time of `pid` from /proc/PID/stat: fields 14 and 15 (utime, stime)
//  in clock ticks, summed over every thread of the process.
int64_t
bench_proc_cpu_us (int pid)
{
    char path[64], text[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    size_t size = fread (text, 1, sizeof text - 1, file);
    fclose (file);
    text[size] = '\0';
    //  The command name (field 2) may hold spaces and parentheses: skip to
    //  the last ')'; field 3 (state) follows.
    const char *rest = strrchr (text, ')');
    unsigned long utime = 0, stime = 0;
    if (!rest
        || sscanf (rest + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                   &stime)
               != 2)
        return -1;
    long ticks = sysconf (_SC_CLK_TCK);
    if (ticks <= 0)
        return -1;
    return (int64_t) (utime + stime) * 1000000 / ticks;
}

//  --------------------------------------------------------------------------
//  Sum over several processes.
int64_t
bench_procs_cpu_us (const int *pids, int count)
{
    if (count <= 0)
        return -1;
    int64_t total = 0;
    for (int index = 0; index < count; index++) {
        int64_t cpu = bench_proc_cpu_us (pids[index]);
        if (cpu < 0)
            return -1;
        total += cpu;
    }
    return total;
}

//  --------------------------------------------------------------------------
//  CPU time of this process (every thread, including ZeroMQ's I/O thread).
int64_t
bench_self_cpu_us (void)
{
    struct rusage usage;
    if (getrusage (RUSAGE_SELF, &usage) != 0)
        return -1;
    return (int64_t) (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000
         + usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
}

//  Take the CPU readings for edge 0 (start) or 1 (stop) of the timed part.
static void
s_snapshot (s_run_t *run, int edge)
{
    run->self_cpu[edge] = bench_self_cpu_us ();
    run->broker_cpu[edge] =
        bench_procs_cpu_us (run->cfg->broker_pids, run->cfg->broker_pid_count);
    run->worker_cpu[edge] =
        bench_procs_cpu_us (run->cfg->worker_pids, run->cfg->worker_pid_count);
}

static void
s_start_timing (s_run_t *run, int64_t now_us)
{
    run->timing = true;
    run->start_us = now_us;
    s_snapshot (run, 0);
}

//  Account for one outcome of the request in `slot`. Returns true when the
//  slot should carry a new request.
static bool
s_complete (s_run_t *run, int slot, bool ok, int64_t now_us)
{
    const bench_client_cfg_t *cfg = run->cfg;
    run->in_flight--;
    if (!ok)
        run->errors++;
    else {
        run->completed++;
        if (run->timing) {
            if (run->latency_count == run->latency_capacity) {
                run->latency_capacity = run->latency_capacity? run->latency_capacity * 2: 65536;
                run->latency_us =
                    realloc (run->latency_us, run->latency_capacity * sizeof (uint32_t));
                if (!run->latency_us)
                    abort ();
            }
            int64_t latency = now_us - run->sent_us[slot];
            run->latency_us[run->latency_count++] =
                (uint32_t) (latency < 0? 0: latency > UINT32_MAX? UINT32_MAX: latency);
            run->timed++;
        }
    }
    if (!run->timing && !run->stopped && run->completed >= cfg->warmup)
        s_start_timing (run, now_us);
    else
    if (run->timing
        && ((cfg->requests && run->timed >= cfg->requests)
            || (cfg->duration_ms && now_us - run->start_us >= cfg->duration_ms * 1000))) {
        run->timing = false;
        run->stopped = true;
        run->stop_us = now_us;
        s_snapshot (run, 1);
    }
    return !run->stopped;
}

static int
s_compare_u32 (const void *a, const void *b)
{
    uint32_t left = *(const uint32_t *) a, right = *(const uint32_t *) b;
    return left < right? -1: left > right;
}

//  Percentile `fraction` of sorted latencies (nearest rank).
static uint32_t
s_percentile (const s_run_t *run, double fraction)
{
    if (run->latency_count == 0)
        return 0;
    size_t rank = (size_t) (fraction * (double) run->latency_count);
    if (rank >= run->latency_count)
        rank = run->latency_count - 1;
    return run->latency_us[rank];
}

//  Print a CPU figure in µs per request, or "na".
static void
s_print_cpu (const char *key, const int64_t *cpu, long requests)
{
    if (cpu[0] < 0 || cpu[1] < 0 || requests <= 0)
        printf (" %s=na", key);
    else
        printf (" %s=%.2f", key, (double) (cpu[1] - cpu[0]) / (double) requests);
}

//  Print the result line.
static void
s_report (s_run_t *run)
{
    const bench_client_cfg_t *cfg = run->cfg;
    qsort (run->latency_us, run->latency_count, sizeof (uint32_t), s_compare_u32);
    double seconds = (double) (run->stop_us - run->start_us) / 1e6;
    printf ("label=%s mode=%s window=%d endpoints=%d body=%d requests=%ld errors=%ld "
            "seconds=%.3f rps=%.0f p50_us=%" PRIu32 " p90_us=%" PRIu32 " p99_us=%" PRIu32
            " max_us=%" PRIu32,
            cfg->label? cfg->label: "-", cfg->broker? "broker": "direct", cfg->window,
            cfg->endpoint_count, cfg->body_size, run->timed, run->errors, seconds,
            seconds > 0? (double) run->timed / seconds: 0.0, s_percentile (run, 0.50),
            s_percentile (run, 0.90), s_percentile (run, 0.99),
            run->latency_count? run->latency_us[run->latency_count - 1]: 0);
    s_print_cpu ("client_cpu_us_per_req", run->self_cpu, run->timed);
    s_print_cpu ("broker_cpu_us_per_req", run->broker_cpu, run->timed);
    s_print_cpu ("worker_cpu_us_per_req", run->worker_cpu, run->timed);
    printf ("\n");
    fflush (stdout);
}

//  Pack the request the direct transport sends, with a body of zero bytes
//  after the slot number. Returns the offset of the body bytes.
static size_t
s_pack_direct_request (const bench_client_cfg_t *cfg, msgpack_sbuffer *buffer)
{
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    //  Same fields and sizes as mesh_client_send makes: a 16-hex prefix,
    //  a counter, a deadline
    mesh_request_head_t head = {
        .id = "0123456789abcdef-1a2b3",
        .method = cfg->method,
        .deadline_ms = mesh_wall_ms () + (uint64_t) cfg->timeout_ms,
    };
    mesh_envelope_pack_request_head (&packer, &head);
    msgpack_pack_bin (&packer, (size_t) cfg->body_size);
    size_t offset = buffer->size;
    char *zeros = calloc (1, (size_t) cfg->body_size + 1);
    if (!zeros)
        abort ();
    msgpack_pack_bin_body (&packer, zeros, (size_t) cfg->body_size);
    free (zeros);
    return offset;
}

//  Direct transport: raw DEALER to ROUTER echo servers.
static int
s_run_direct (s_run_t *run)
{
    const bench_client_cfg_t *cfg = run->cfg;
    void *context = zmq_ctx_new ();
    void *dealer = zmq_socket (context, ZMQ_DEALER);
    int linger = 0, hwm = 100000;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    for (int index = 0; index < cfg->endpoint_count; index++)
        if (zmq_connect (dealer, cfg->endpoints[index]) != 0) {
            fprintf (stderr, "mesh-bench: cannot connect to %s: %s\n", cfg->endpoints[index],
                     zmq_strerror (errno));
            zmq_close (dealer);
            zmq_ctx_term (context);
            return 1;
        }
    msgpack_sbuffer request;
    msgpack_sbuffer_init (&request);
    size_t slot_offset = s_pack_direct_request (cfg, &request);

    int rc = 0;
    for (int slot = 0; slot < cfg->window && rc == 0; slot++) {
        memcpy (request.data + slot_offset, &slot, sizeof slot);
        run->sent_us[slot] = mesh_mono_us ();
        if (zmq_send (dealer, "", 0, ZMQ_SNDMORE) < 0
            || zmq_send (dealer, request.data, request.size, 0) < 0)
            rc = 1;
        run->in_flight++;
    }
    int64_t idle_since_us = mesh_mono_us ();
    while (rc == 0 && run->in_flight > 0) {
        zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 100) < 0 && errno != EINTR) {
            rc = 1;
            break;
        }
        int64_t now_us = mesh_mono_us ();
        if (!(item.revents & ZMQ_POLLIN)) {
            long limit_ms = run->stopped? S_DRAIN_MS: cfg->timeout_ms;
            if (now_us - idle_since_us > limit_ms * 1000) {
                if (!run->stopped) {
                    fprintf (stderr, "mesh-bench: %d replies lost\n", run->in_flight);
                    rc = 1;
                }
                break;
            }
            continue;
        }
        idle_since_us = now_us;
        //  Take every reply waiting: "", envelope
        for (int batch = 0; batch < 1024; batch++) {
            zmq_msg_t delimiter, body;
            zmq_msg_init (&delimiter);
            if (zmq_msg_recv (&delimiter, dealer, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&delimiter);
                break;
            }
            bool more = zmq_msg_more (&delimiter);
            zmq_msg_close (&delimiter);
            if (!more)
                continue;
            zmq_msg_init (&body);
            if (zmq_msg_recv (&body, dealer, 0) < 0) {
                zmq_msg_close (&body);
                break;
            }
            int slot = -1;
            if (zmq_msg_size (&body) == request.size)
                memcpy (&slot, (const char *) zmq_msg_data (&body) + slot_offset, sizeof slot);
            zmq_msg_close (&body);
            if (slot < 0 || slot >= cfg->window) {
                run->errors++;
                continue;
            }
            now_us = mesh_mono_us ();
            if (s_complete (run, slot, true, now_us)) {
                memcpy (request.data + slot_offset, &slot, sizeof slot);
                run->sent_us[slot] = now_us;
                zmq_send (dealer, "", 0, ZMQ_SNDMORE);
                zmq_send (dealer, request.data, request.size, 0);
                run->in_flight++;
            }
        }
    }
    msgpack_sbuffer_destroy (&request);
    zmq_close (dealer);
    zmq_ctx_term (context);
    return rc;
}

//  Pack the next request body of a user workload into `body` (emptied).
//  `serial` makes each create's email unique within the run; the pid
//  across runs against the same database.
static void
s_user_body (const bench_client_cfg_t *cfg, msgpack_sbuffer *body, uint64_t serial,
             uint64_t *random)
{
    body->size = 0;
    msgpack_packer packer;
    msgpack_packer_init (&packer, body, msgpack_sbuffer_write);
    if (cfg->workload == BENCH_USER_GET) {
        //  xorshift64: cheap, and the same draw sequence in every run
        *random ^= *random << 13;
        *random ^= *random >> 7;
        *random ^= *random << 17;
        msgpack_pack_map (&packer, 1);
        mesh_pack_cstr (&packer, "id");
        mesh_pack_cstr (&packer, cfg->ids[*random % cfg->id_count]);
    }
    else {
        char email[64];
        snprintf (email, sizeof email, "b%ld-%" PRIu64 "@bench.example", (long) getpid (),
                  serial);
        msgpack_pack_map (&packer, 2);
        mesh_pack_cstr (&packer, "name");
        mesh_pack_cstr (&packer, "Bench User");
        mesh_pack_cstr (&packer, "email");
        mesh_pack_cstr (&packer, email);
    }
}

//  Broker transport: libmesh's asynchronous client.
static int
s_run_broker (s_run_t *run)
{
    const bench_client_cfg_t *cfg = run->cfg;
    int err = 0;
    mesh_client_t *client = mesh_client_new_curve (NULL, cfg->endpoints[0], cfg->curve, &err);
    if (!client) {
        fprintf (stderr, "mesh-bench: cannot connect to %s: %s\n", cfg->endpoints[0],
                 mesh_strerror (err));
        return 1;
    }
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &body, msgpack_sbuffer_write);
    char *bytes = calloc (1, (size_t) cfg->body_size + 1);
    if (!bytes)
        abort ();
    memset (bytes, 'x', (size_t) cfg->body_size);
    msgpack_pack_bin (&packer, (size_t) cfg->body_size);
    msgpack_pack_bin_body (&packer, bytes, (size_t) cfg->body_size);
    free (bytes);
    mesh_call_t call = {
        .service = cfg->service,
        .method = cfg->method,
        .body = body.data,
        .body_len = body.size,
        .timeout_ms = cfg->timeout_ms,
    };

    bool user = cfg->workload != BENCH_ECHO;
    uint64_t serial = 0, random = 0x9E3779B97F4A7C15u;
    int rc = 0;
    for (int slot = 0; slot < cfg->window && rc == 0; slot++) {
        call.tag = (void *) (intptr_t) slot;
        run->sent_us[slot] = mesh_mono_us ();
        if (user) {
            s_user_body (cfg, &body, serial++, &random);
            call.body = body.data;
            call.body_len = body.size;
        }
        if (mesh_client_send (client, &call, NULL) != 0)
            rc = 1;
        else
            run->in_flight++;
    }
    int64_t idle_since_us = mesh_mono_us ();
    while (rc == 0 && run->in_flight > 0) {
        mesh_reply_t reply;
        int result = mesh_client_recv (client, &reply, 100);
        int64_t now_us = mesh_mono_us ();
        if (result == MESH_ETIMEDOUT) {
            long limit_ms = run->stopped? S_DRAIN_MS: cfg->timeout_ms + 1000;
            if (now_us - idle_since_us > limit_ms * 1000) {
                if (!run->stopped) {
                    fprintf (stderr, "mesh-bench: %d replies lost\n", run->in_flight);
                    rc = 1;
                }
                break;
            }
            continue;
        }
        if (result != 0) {
            fprintf (stderr, "mesh-bench: recv: %s\n", mesh_strerror (result));
            rc = 1;
            break;
        }
        idle_since_us = now_us;
        int slot = (int) (intptr_t) reply.tag;
        bool ok = reply.code == MESH_CODE_OK && reply.body
               && (user ? reply.body->type == MSGPACK_OBJECT_MAP
                        : reply.body->type == MSGPACK_OBJECT_BIN
                              && reply.body->via.bin.size == (uint32_t) cfg->body_size);
        if (!ok && run->errors < 5)
            fprintf (stderr, "mesh-bench: error reply: %s %.*s\n", mesh_code_name (reply.code),
                     (int) reply.message.len, reply.message.ptr);
        if (s_complete (run, slot, ok, now_us)) {
            call.tag = (void *) (intptr_t) slot;
            run->sent_us[slot] = now_us;
            if (user) {
                s_user_body (cfg, &body, serial++, &random);
                call.body = body.data;
                call.body_len = body.size;
            }
            if (mesh_client_send (client, &call, NULL) != 0)
                rc = 1;
            else
                run->in_flight++;
        }
    }
    msgpack_sbuffer_destroy (&body);
    mesh_client_destroy (&client);
    return rc;
}

//  --------------------------------------------------------------------------
//  Run the client and print the result line.
int
bench_client_run (const bench_client_cfg_t *cfg)
{
    s_run_t run = { .cfg = cfg };
    run.sent_us = calloc ((size_t) cfg->window, sizeof (int64_t));
    if (!run.sent_us)
        abort ();
    if (cfg->requests > 0) {
        run.latency_capacity = (size_t) cfg->requests;
        run.latency_us = malloc (run.latency_capacity * sizeof (uint32_t));
        if (!run.latency_us)
            abort ();
    }
    if (cfg->warmup == 0)
        s_start_timing (&run, mesh_mono_us ());
    int rc = cfg->broker? s_run_broker (&run): s_run_direct (&run);
    if (rc == 0 && !run.stopped) {
        fprintf (stderr, "mesh-bench: the timed part never ended\n");
        rc = 1;
    }
    if (rc == 0)
        s_report (&run);
    free (run.sent_us);
    free (run.latency_us);
    return rc;
}
