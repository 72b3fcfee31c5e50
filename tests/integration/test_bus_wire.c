/*  =========================================================================
    test_bus_wire - on the wire nothing is in clear when CURVE is on
    Captures loopback traffic to the broker's ROUTER port with tcpdump while
    a client sends an echo request that carries a marker email, then looks
    for the marker's bytes in the capture: absent with CURVE on, present
    with it off (which proves the capture would have seen it). A sentinel
    sent in clear on a raw TCP connection after the reply closes the window:
    packets on lo are captured in order, so once the sentinel is in the
    file, everything before it is too. Skipped without tcpdump or root.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh/mesh_time.h"
#include "mesh_test_curve.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_TCPDUMP "/usr/bin/tcpdump"
#define S_WAIT_MS 10000

static mesh_test_keys_t s_keys;
static mesh_test_broker_t s_broker;
static mesh_proc_t *s_worker;
static mesh_proc_t *s_tcpdump;
static char s_capture[64]; //  The pcap file, "" when none

static void
s_setup (void)
{
    if (access (S_TCPDUMP, X_OK) != 0 || geteuid () != 0)
        return; //  The tests skip
    mesh_test_keys_new (&s_keys);
    mesh_test_keys_add (&s_keys, "worker", (mesh_test_grants_t){.serve = "echo"}, true);
    mesh_test_keys_add (&s_keys, "client", (mesh_test_grants_t){.call = "echo"}, true);
    memset (&s_broker, 0, sizeof s_broker);
}

static void
s_teardown (void)
{
    mesh_proc_destroy (&s_tcpdump);
    if (*s_capture)
        unlink (s_capture);
    mesh_proc_destroy (&s_worker);
    mesh_test_broker_stop (&s_broker);
    mesh_test_keys_destroy (&s_keys);
}

TestSuite (bus_wire, .init = s_setup, .fini = s_teardown, .timeout = 90.);

//  The whole capture file (fresh buffer, caller frees) and its size.
static char *
s_read_capture (size_t *size)
{
    FILE *file = fopen (s_capture, "rb");
    cr_assert_not_null (file, "no capture file");
    fseek (file, 0, SEEK_END);
    long len = ftell (file);
    fseek (file, 0, SEEK_SET);
    char *data = malloc ((size_t)len + 1);
    *size = fread (data, 1, (size_t)len, file);
    fclose (file);
    return data;
}

//  True when the capture holds `text`.
static bool
s_captured (const char *text)
{
    size_t size = 0;
    char *data = s_read_capture (&size);
    bool found = memmem (data, size, text, strlen (text)) != NULL;
    free (data);
    return found;
}

//  Start tcpdump on lo for the broker's ROUTER port; returns when it listens.
static void
s_capture_start (void)
{
    snprintf (s_capture, sizeof s_capture, "/tmp/mesh-wire-%d.pcap", (int)getpid ());
    char filter[32];
    snprintf (filter, sizeof filter, "tcp port %d", s_broker.port);
    //  -U and --immediate-mode: each packet reaches the file as it is seen;
    //  -Z root: keep writing where root created the file
    const char *argv[] = {S_TCPDUMP, "-i",   "lo", "-n",      "-U",   "--immediate-mode",
                          "-Z",      "root", "-w", s_capture, filter, NULL};
    s_tcpdump = mesh_proc_start (argv, NULL);
    cr_assert_not_null (s_tcpdump);
    cr_assert (mesh_proc_wait_log (s_tcpdump, "listening on", S_WAIT_MS),
               "tcpdump did not start listening");
}

//  Send `sentinel` in clear on a raw TCP connection to the broker's port and
//  wait until the capture holds it; then stop tcpdump (by PID).
static void
s_capture_stop (const char *sentinel)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    cr_assert_geq (fd, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons (s_broker.port)};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    cr_assert_eq (connect (fd, (struct sockaddr *)&address, sizeof address), 0);
    cr_assert_eq (send (fd, sentinel, strlen (sentinel), 0), (ssize_t)strlen (sentinel));
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    bool seen = false;
    while (!(seen = s_captured (sentinel)) && mesh_mono_ms () < until)
        usleep (20 * 1000); //  Polls the file, bounded by until
    close (fd);
    cr_assert (seen, "the capture never saw the sentinel");
    mesh_proc_signal (s_tcpdump, SIGTERM);
    cr_assert (mesh_proc_wait_exit (s_tcpdump, S_WAIT_MS, NULL), "tcpdump did not stop");
}

//  Run the broker (CURVE when `curve`) and an echo worker, capture one echo
//  of a marker email, and say whether the marker is in the capture.
static bool
s_marker_on_the_wire (bool curve)
{
    if (access (S_TCPDUMP, X_OK) != 0 || geteuid () != 0)
        cr_skip_test ("needs root and tcpdump (Debian package tcpdump)");
    char secret[256];
    const char *extra[5] = {NULL};
    if (curve) {
        cr_assert (mesh_test_curve_broker_start (&s_broker, &s_keys, 250));
        mesh_test_keys_flags (&s_keys, "worker", extra, secret, sizeof secret);
    }
    else
        cr_assert (mesh_test_broker_start (&s_broker, 250, NULL));
    s_worker = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, 250, extra);
    mesh_curve_t *keys = curve ? mesh_test_keys_curve (&s_keys, "client") : NULL;
    cr_assert (mesh_test_curve_wait_service (s_broker.endpoint, keys, "echo", "200", S_WAIT_MS));

    char marker[64], sentinel[64];
    snprintf (marker, sizeof marker, "marker-%d-%lld@example.com", (int)getpid (),
              (long long)mesh_mono_us ());
    snprintf (sentinel, sizeof sentinel, "sentinel-%d-%lld", (int)getpid (),
              (long long)mesh_mono_us ());
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 1);
    mesh_pack_cstr (&packer, "email");
    mesh_pack_cstr (&packer, marker);

    s_capture_start ();
    //  A fresh client, so its whole connection is in the capture
    mesh_client_t *client = mesh_client_new_curve (NULL, s_broker.endpoint, keys, NULL);
    cr_assert_not_null (client);
    mesh_call_t call = {.service = "echo",
                        .method = "echo",
                        .body = body.data,
                        .body_len = body.size,
                        .timeout_ms = 5000};
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK, "%s", mesh_code_name (reply.code));
    mesh_client_destroy (&client);
    s_capture_stop (sentinel);

    bool found = s_captured (marker);
    msgpack_sbuffer_destroy (&body);
    mesh_curve_destroy (&keys);
    return found;
}

Test (bus_wire, with_curve_the_capture_holds_no_plaintext_email)
{
    cr_assert_not (s_marker_on_the_wire (true), "the marker email crossed the wire in clear");
}

Test (bus_wire, without_curve_the_capture_holds_the_email)
{
    cr_assert (s_marker_on_the_wire (false), "the capture missed a plaintext marker");
}
