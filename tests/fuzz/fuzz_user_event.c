/*  =========================================================================
    fuzz_user_event - libFuzzer harness for the gateway's live event decoder
    gateway_sse_on_event reads every user event the broker's PUB socket
    relays (MessagePack, CloudEvents attributes + seq) and turns it into
    Server-Sent Events text; a different decoder from the audit service's
    audit_codec_event (fuzz_audit_codec). The input is the event payload as
    it comes off the bus. No stream is open, so the decoder runs without a
    socket being used: the client connects to an endpoint nothing serves.
    Check: no crash, leak or sanitizer report, and no huge allocation from
    a few bytes (libFuzzer's -rss_limit_mb and malloc limit).
    Build (clang only): CC=clang cmake -S . -B build/fuzz -DMESH_FUZZ=ON
    Run: scripts/fuzz fuzz_user_event
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_sse.h"

#include "mesh/mesh_client.h"
#include "mesh/mesh_metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static gateway_sse_t *s_sse;

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_sse) {
        //  Kept for the whole run (libFuzzer never returns from main)
        void *context = zmq_ctx_new ();
        int err = 0;
        mesh_client_t *client = mesh_client_new (context, "tcp://127.0.0.1:9", &err);
        mesh_metrics_t *registry = mesh_metrics_new ();
        gateway_metrics_t *metrics = registry ? gateway_metrics_new (registry) : NULL;
        if (!client || !metrics) {
            fprintf (stderr, "fuzz_user_event: cannot set up (%d)\n", err);
            abort ();
        }
        s_sse = gateway_sse_new (client, metrics, 1000);
    }
    gateway_sse_on_event (s_sse, "user.", 5, data, size);
    return 0;
}
