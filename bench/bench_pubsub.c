/*  =========================================================================
    bench_pubsub - the baseline of scripts/bench events: a bare ZeroMQ
    PUB/SUB of event-sized messages over loopback TCP, no persistence
    One process, two threads: the publisher binds a PUB socket and, once a
    probe has reached the subscriber (so no message is lost to the slow
    joiner), sends `count` two-frame messages (as fast as it can, or paced
    at `rate` per second, for latency at a given load) (topic "user.created", a body
    of `size` bytes that starts with the send time); the subscriber thread
    receives them and records each one's latency. Prints one key=value line.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "bench.h"

#include "mesh/mesh_time.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef struct {
    void *context;
    char endpoint[64];
    long count;
    uint32_t *latency_us;       //  [count]
    long received;
    atomic_bool probed;         //  The subscriber has seen a probe
    int64_t last_us;            //  When the last message arrived
} s_run_t;

static int
s_compare (const void *left, const void *right)
{
    uint32_t a = *(const uint32_t *) left, b = *(const uint32_t *) right;
    return a < b ? -1 : a > b;
}

static void *
s_subscriber (void *arg)
{
    s_run_t *run = arg;
    void *sub = zmq_socket (run->context, ZMQ_SUB);
    int hwm = 0, timeout = 10000;
    zmq_setsockopt (sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect (sub, run->endpoint);
    char topic[32], body[65536];
    while (run->received < run->count) {
        int topic_len = zmq_recv (sub, topic, sizeof topic, 0);
        if (topic_len < 0)
            break;      //  Ten seconds of silence: the publisher gave up
        int body_len = zmq_recv (sub, body, sizeof body, 0);
        if (body_len < 8)
            continue;
        if (topic_len == 5 && memcmp (topic, "probe", 5) == 0) {
            atomic_store (&run->probed, true);
            continue;
        }
        int64_t sent_us;
        memcpy (&sent_us, body, sizeof sent_us);
        run->last_us = mesh_mono_us ();
        int64_t latency = run->last_us - sent_us;
        run->latency_us[run->received++] = (uint32_t) (latency > 0 ? latency : 0);
    }
    zmq_close (sub);
    return NULL;
}

int
bench_pubsub_run (long count, int size, long rate, const char *label)
{
    if (count < 1 || size < 8 || size > 65536)
        return 2;
    s_run_t run = { .context = zmq_ctx_new (), .count = count };
    run.latency_us = calloc ((size_t) count, sizeof (uint32_t));
    void *pub = zmq_socket (run.context, ZMQ_PUB);
    int hwm = 0;
    zmq_setsockopt (pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    size_t endpoint_size = sizeof run.endpoint;
    if (!run.latency_us || zmq_bind (pub, "tcp://127.0.0.1:*")
        || zmq_getsockopt (pub, ZMQ_LAST_ENDPOINT, run.endpoint, &endpoint_size)) {
        fprintf (stderr, "mesh-bench: pubsub: cannot bind\n");
        return 1;
    }
    atomic_init (&run.probed, false);
    pthread_t thread;
    pthread_create (&thread, NULL, s_subscriber, &run);
    char *body = calloc (1, (size_t) size);
    //  Probe until the subscription has reached the publisher (bounded)
    int64_t until = mesh_mono_ms () + 10000;
    while (!atomic_load (&run.probed) && mesh_mono_ms () < until) {
        zmq_send (pub, "probe", 5, ZMQ_SNDMORE);
        zmq_send (pub, body, (size_t) size, 0);
        zmq_pollitem_t none = { NULL, -1, 0, 0 };
        zmq_poll (&none, 0, 1);
    }
    int64_t start_us = mesh_mono_us ();
    for (long index = 0; index < count; index++) {
        int64_t now_us = mesh_mono_us ();
        //  Paced: message `index` is due at start + index / rate
        int64_t due_us = rate > 0 ? start_us + index * 1000000 / rate : now_us;
        if (due_us > now_us + 1000) {
            zmq_pollitem_t none = { NULL, -1, 0, 0 };
            zmq_poll (&none, 0, (long) ((due_us - now_us) / 1000));
            now_us = mesh_mono_us ();
        }
        memcpy (body, &now_us, sizeof now_us);
        zmq_send (pub, "user.created", 12, ZMQ_SNDMORE);
        zmq_send (pub, body, (size_t) size, 0);
    }
    pthread_join (thread, NULL);
    double seconds = (double) (run.last_us - start_us) / 1e6;
    int rc = run.received == count ? 0 : 1;
    if (run.received > 0)
        qsort (run.latency_us, (size_t) run.received, sizeof (uint32_t), s_compare);
    printf ("label=%s mode=pubsub count=%ld received=%ld size=%d rate=%ld seconds=%.3f "
            "rps=%.0f p50_us=%u p99_us=%u\n",
            label, count, run.received, size, rate, seconds,
            seconds > 0 ? (double) run.received / seconds : 0,
            run.received ? run.latency_us[run.received / 2] : 0,
            run.received ? run.latency_us[(long) ((double) run.received * 0.99)] : 0);
    free (body);
    free (run.latency_us);
    zmq_close (pub);
    zmq_ctx_term (run.context);
    return rc;
}
