/*  =========================================================================
    test_broker_fuzz - mesh-broker survives 10 000 malformed frame sets
    Several DEALER sockets (and relaxed REQ sockets, a PUSH socket of the
    wrong type, raw TCP garbage) throw random and almost-valid MDP at a
    real broker: random frame counts and sizes, valid-looking prefixes with
    random commands, service names and bodies, truncated and mistyped
    envelopes, MessagePack that claims absurd sizes or nests too deep,
    READY with bad credit, REPLY from unknown workers, and one frame over
    the broker's size limit. Afterwards the broker must still be alive,
    still serve a normal request, answer MMI, count what it dropped on
    /metrics, and exit 0 on SIGTERM (under the sanitizer builds that also
    means no leak and no undefined behaviour).
    The generator is seeded: the seed is printed, MESH_FUZZ_SEED replays it.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#define S_MESSAGES 10000        //  Frame sets thrown at the broker
#define S_DEALERS 4             //  DEALER sockets
#define S_REQS 2                //  REQ sockets (relaxed)
#define S_SENDERS (S_DEALERS + S_REQS)
#define S_MAX_PARTS 21          //  Frames per generated message, at most
#define S_BIG_FRAME (64 * 1024)
#define S_WAIT_MS 10000         //  Bound on every wait
#define S_DEFAULT_SEED 20250101ULL
//  The broker's default ZMQ_MAXMSGSIZE (broker_cfg_defaults): 1 MiB + 64 KiB
#define S_BROKER_MAX_FRAME (1024 * 1024 + 64 * 1024)

static mesh_test_broker_t s_broker;
static mesh_proc_t *s_worker;
static mesh_test_sockets_t *s_sockets;  //  Every socket a test opened; teardown closes them
static mesh_client_t *s_client; //  On s_sockets' context; teardown destroys it first

static void
s_setup (void)
{
    memset (&s_broker, 0, sizeof s_broker);
    cr_assert (mesh_test_broker_start (&s_broker, 500, NULL), "broker did not start");
    //  The real worker registers first; fuzz READYs never name its service
    s_worker = mesh_test_echo_worker (s_broker.endpoint, "echo", 4, 500, NULL);
    cr_assert_not_null (s_worker);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, S_WAIT_MS));
    s_sockets = mesh_test_sockets_new (S_WAIT_MS);
    cr_assert_not_null (s_sockets);
}

static void
s_teardown (void)
{
    mesh_client_destroy (&s_client);
    mesh_test_sockets_destroy (&s_sockets);
    mesh_proc_destroy (&s_worker);
    mesh_test_broker_stop (&s_broker);     //  Expects exit status 0
}

TestSuite (broker_fuzz, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  ------------------------------------------------------------ randomness

static uint64_t s_state;

//  xorshift64*: small, fast and replayable.
static uint64_t
s_random (void)
{
    s_state ^= s_state >> 12;
    s_state ^= s_state << 25;
    s_state ^= s_state >> 27;
    return s_state * UINT64_C (2685821657736338717);
}

//  Uniform in [0, bound).
static size_t
s_below (size_t bound)
{
    return bound? (size_t) (s_random () % bound): 0;
}

//  True with probability percent/100.
static bool
s_chance (int percent)
{
    return (int) s_below (100) < percent;
}

//  ------------------------------------------------------------- generator

//  One generated message: up to S_MAX_PARTS frames in one arena.
typedef struct {
    int count;
    size_t size[S_MAX_PARTS];
    size_t offset[S_MAX_PARTS];
    unsigned char arena[S_MAX_PARTS * 512 + 4 * S_BIG_FRAME];
    size_t used;
} s_message_t;

//  Start a new frame; returns where to write it.
static unsigned char *
s_frame_begin (s_message_t *message)
{
    cr_assert_lt (message->count, S_MAX_PARTS);
    message->offset[message->count] = message->used;
    message->size[message->count] = 0;
    return message->arena + message->used;
}

//  Close the frame started last with `size` bytes.
static void
s_frame_end (s_message_t *message, size_t size)
{
    cr_assert_leq (message->used + size, sizeof message->arena);
    message->size[message->count++] = size;
    message->used += size;
}

static void
s_frame_bytes (s_message_t *message, const void *data, size_t size)
{
    unsigned char *at = s_frame_begin (message);
    memcpy (at, data, size);
    s_frame_end (message, size);
}

static void
s_frame_str (s_message_t *message, const char *text)
{
    s_frame_bytes (message, text, strlen (text));
}

//  A frame of random bytes: mostly 0..300, sometimes up to 64 KiB.
static void
s_frame_random (s_message_t *message)
{
    size_t size = s_chance (3)? s_below (S_BIG_FRAME + 1): s_below (301);
    if (message->used + size > sizeof message->arena)
        size = 0;
    unsigned char *at = s_frame_begin (message);
    for (size_t index = 0; index < size; index++)
        at[index] = (unsigned char) s_random ();
    s_frame_end (message, size);
}

//  A service name: valid ones, broken ones, MMI ones. Never a READY for
//  "echo" (the real worker's service): see s_ready_service.
static void
s_frame_service (s_message_t *message, bool for_ready)
{
    static const char *const names[] = {
        "echo", "fz-a", "fz-b", "user", "mmi.service", "mmi.services", "mmi.nope", "mmi.",
        "mmi", "", "bad name", "tab\there", "quote\"", "caf\xc3\xa9", "\x01", "\x7f",
    };
    size_t pick = s_below (sizeof names / sizeof names[0] + 3);
    if (for_ready && pick == 0)
        pick = 1;
    if (pick < sizeof names / sizeof names[0])
        s_frame_str (message, names[pick]);
    else
    if (pick == sizeof names / sizeof names[0]) {
        //  255 (valid) or 256 (too long) bytes
        size_t size = 255 + s_below (2);
        unsigned char *at = s_frame_begin (message);
        memset (at, 's', size);
        s_frame_end (message, size);
    }
    else
    if (pick == sizeof names / sizeof names[0] + 1) {
        //  Random printable name, unlikely to repeat: exercises service creation
        char name[24];
        snprintf (name, sizeof name, "fz-%llx", (unsigned long long) s_below (100000));
        s_frame_str (message, name);
    }
    else
        s_frame_random (message);
}

//  A credit frame for READY: good, zero, too big, non-digits, too long.
static void
s_frame_credit (s_message_t *message)
{
    static const char *const credits[] = { "1", "8", "1000", "0", "1001", "", "12a", "00001",
                                           "-1", "99999999999999999999", " 5", "5\n" };
    s_frame_str (message, credits[s_below (sizeof credits / sizeof credits[0])]);
}

//  A MessagePack body: valid, truncated, mistyped, absurd, deep or random.
static void
s_frame_body (s_message_t *message)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    int shape = (int) s_below (10);
    if (shape == 0) {
        s_frame_random (message);
        msgpack_sbuffer_destroy (&buffer);
        return;
    }
    if (shape == 1) {
        //  Claims four billion items in a handful of bytes
        static const char *const absurd[] = { "\xdd\xff\xff\xff\xff", "\xdf\xff\xff\xff\xff",
                                              "\xdd\x0f\xff\xff\xff", "\xc6\xff\xff\xff\xff" };
        const char *bytes = absurd[s_below (4)];
        msgpack_sbuffer_write (&buffer, bytes, 5);
    }
    else
    if (shape == 2) {
        //  Nested 20..60 levels deep
        int depth = 20 + (int) s_below (41);
        msgpack_pack_map (&packer, 3);
        msgpack_pack_str_with_body (&packer, "v", 1);
        msgpack_pack_uint8 (&packer, 1);
        msgpack_pack_str_with_body (&packer, "id", 2);
        msgpack_pack_str_with_body (&packer, "deep", 4);
        msgpack_pack_str_with_body (&packer, "body", 4);
        for (int level = 0; level < depth; level++)
            msgpack_pack_array (&packer, 1);
        msgpack_pack_nil (&packer);
    }
    else {
        //  An envelope, then maybe broken: wrong types, bad version, huge
        //  id, unknown keys, error shapes
        int fields = 4 + (int) s_below (3);
        msgpack_pack_map (&packer, (size_t) fields);
        msgpack_pack_str_with_body (&packer, "v", 1);
        if (s_chance (80))
            msgpack_pack_uint8 (&packer, 1);
        else
        if (s_chance (50))
            msgpack_pack_uint8 (&packer, (uint8_t) s_below (4));
        else
            msgpack_pack_str_with_body (&packer, "1", 1);
        msgpack_pack_str_with_body (&packer, "id", 2);
        if (s_chance (85)) {
            char id[200];
            size_t len = s_chance (90)? 1 + s_below (40): 120 + s_below (20);
            for (size_t index = 0; index < len; index++)
                id[index] = (char) ('a' + s_below (26));
            msgpack_pack_str_with_body (&packer, id, len);
        }
        else
            msgpack_pack_int64 (&packer, (int64_t) s_random ());
        msgpack_pack_str_with_body (&packer, "method", 6);
        static const char *const methods[] = { "echo", "whoami", "nope", "" };
        const char *method = methods[s_below (4)];
        if (s_chance (90))
            msgpack_pack_str_with_body (&packer, method, strlen (method));
        else
            msgpack_pack_array (&packer, 0);
        msgpack_pack_str_with_body (&packer, "body", 4);
        msgpack_pack_map (&packer, 1);
        msgpack_pack_str_with_body (&packer, "k", 1);
        msgpack_pack_bin_with_body (&packer, "\x00\x01", 2);
        for (int field = 4; field < fields; field++) {
            int kind = (int) s_below (5);
            if (kind == 0) {
                msgpack_pack_str_with_body (&packer, "deadline", 8);
                if (s_chance (50))
                    msgpack_pack_int64 (&packer, -1 - (int64_t) s_below (1000));
                else
                    msgpack_pack_uint64 (&packer, s_random ());
            }
            else
            if (kind == 1) {
                msgpack_pack_str_with_body (&packer, "trace", 5);
                msgpack_pack_double (&packer, 1.5);
            }
            else
            if (kind == 2) {
                msgpack_pack_str_with_body (&packer, "error", 5);
                if (s_chance (50))
                    msgpack_pack_str_with_body (&packer, "internal", 8);
                else {
                    msgpack_pack_map (&packer, 1);
                    msgpack_pack_str_with_body (&packer, "message", 7);
                    msgpack_pack_nil (&packer);
                }
            }
            else
            if (kind == 3) {
                msgpack_pack_str_with_body (&packer, "x-unknown", 9);
                msgpack_pack_map (&packer, 0);
            }
            else {
                msgpack_pack_uint32 (&packer, (uint32_t) s_random ());
                msgpack_pack_nil (&packer);
            }
        }
        //  Truncate, extend or flip bytes of a third of them
        int damage = (int) s_below (6);
        if (damage == 0 && buffer.size > 1)
            buffer.size = 1 + s_below (buffer.size - 1);
        else
        if (damage == 1)
            msgpack_pack_nil (&packer);
        else
        if (damage == 2)
            for (int flip = 0; flip < 3; flip++)
                buffer.data[s_below (buffer.size)] = (char) s_random ();
    }
    s_frame_bytes (message, buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
}

//  Generate one message. Half are random frame sets; half start like MDP.
//  `req` sockets add the empty delimiter themselves.
static void
s_generate (s_message_t *message, bool req)
{
    message->count = 0;
    message->used = 0;
    int shape = (int) s_below (10);
    if (shape < 5) {
        //  Random frame count 0..20 (0 becomes one empty frame: ZeroMQ has
        //  no zero-frame message), random bytes
        int count = (int) s_below (21);
        if (count == 0)
            s_frame_bytes (message, "", 0);
        for (int index = 0; index < count; index++)
            s_frame_random (message);
        return;
    }
    if (!req) {
        if (s_chance (90))
            s_frame_bytes (message, "", 0);
        else
            s_frame_random (message);   //  A non-empty delimiter
    }
    if (shape < 8) {
        //  Client: MDPC01, service, 0..3 bodies
        static const char *const headers[] = { "MDPC01", "MDPC01", "MDPC01", "MDPC0",
                                               "MDPC012", "mdpc01", "MDPW01" };
        s_frame_str (message, headers[s_below (sizeof headers / sizeof headers[0])]);
        if (s_chance (95))
            s_frame_service (message, false);
        int bodies = (int) s_below (4);
        for (int index = 0; index < bodies; index++)
            s_frame_body (message);
        return;
    }
    //  Worker: MDPW01, a command byte (sometimes invalid or long), frames
    s_frame_str (message, s_chance (90)? "MDPW01": "MDPW02");
    if (!s_chance (95))
        return;
    int command = (int) s_below (8);
    if (s_chance (5)) {
        s_frame_bytes (message, "\x01\x01", 2);
        command = 0;
    }
    else {
        unsigned char byte = (unsigned char) command;
        s_frame_bytes (message, &byte, 1);
    }
    if (command == 0x01) {
        //  READY: service, maybe credit, maybe extra frames
        if (s_chance (95))
            s_frame_service (message, true);
        if (s_chance (50))
            s_frame_credit (message);
        if (s_chance (10))
            s_frame_random (message);
    }
    else
    if (command == 0x03 || command == 0x02) {
        //  REPLY (from a worker the broker does not know, mostly): client
        //  address, empty frame, bodies; REQUEST is never valid from a worker
        if (s_chance (90))
            s_frame_random (message);
        if (s_chance (80))
            s_frame_bytes (message, "", 0);
        int bodies = (int) s_below (3);
        for (int index = 0; index < bodies; index++)
            s_frame_body (message);
    }
    else {
        int extra = (int) s_below (3);
        for (int index = 0; index < extra; index++)
            s_frame_random (message);
    }
}

//  --------------------------------------------------------------- sockets

//  Send a generated message; every send is bounded by ZMQ_SNDTIMEO.
static void
s_send (void *socket, const s_message_t *message)
{
    for (int index = 0; index < message->count; index++) {
        int flags = index + 1 < message->count? ZMQ_SNDMORE: 0;
        int rc = zmq_send (socket, message->arena + message->offset[index], message->size[index],
                           flags);
        cr_assert_eq (rc, (int) message->size[index], "send: %s", zmq_strerror (zmq_errno ()));
    }
}

//  Drop everything waiting on `socket` (replies, heartbeats, requests sent
//  to fuzz "workers"). Returns how many messages.
static int
s_drain (void *socket)
{
    int messages = 0;
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    while (zmq_msg_recv (&frame, socket, ZMQ_DONTWAIT) >= 0)
        if (!zmq_msg_more (&frame))
            messages++;
    zmq_msg_close (&frame);
    return messages;
}

//  Write random bytes (and a torn ZMTP greeting) to the broker's port
//  over plain TCP, then close.
static void
s_raw_tcp_garbage (int rounds)
{
    for (int round = 0; round < rounds; round++) {
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        cr_assert_geq (fd, 0);
        struct sockaddr_in address = { .sin_family = AF_INET,
                                       .sin_port = htons ((uint16_t) s_broker.port) };
        address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        struct timeval timeout = { 2, 0 };
        setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        cr_assert_eq (connect (fd, (struct sockaddr *) &address, sizeof address), 0);
        unsigned char bytes[4096];
        size_t size = 1 + s_below (sizeof bytes);
        for (size_t index = 0; index < size; index++)
            bytes[index] = (unsigned char) s_random ();
        if (round % 2 == 0 && size > 12) {
            //  ZMTP 3 signature, then garbage where the version should be
            static const unsigned char greeting[10] = { 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f };
            memcpy (bytes, greeting, sizeof greeting);
        }
        //  The broker may close on us mid-write: that is fine
        ssize_t written = send (fd, bytes, size, MSG_NOSIGNAL);
        (void) written;
        close (fd);
    }
}

//  Fail with the tail of the broker's log if it has exited.
static void
s_assert_broker_alive (void)
{
    int status = 0;
    if (!mesh_proc_wait_exit (s_broker.proc, 0, &status))
        return;
    char *log = mesh_proc_log (s_broker.proc);
    size_t len = strlen (log);
    cr_log_error ("broker log tail:\n%s", log + (len > 4000? len - 4000: 0));
    free (log);
    cr_assert_fail ("the broker died (wait status 0x%x)", (unsigned) status);
}

//  Send the MMI request "mmi.sync-N" (any unknown mmi.* service gets 501,
//  and the reply names the service).
static void
s_send_sync (void *socket, bool req, const char *service)
{
    if (!req)
        zmq_send (socket, "", 0, ZMQ_SNDMORE);
    zmq_send (socket, "MDPC01", 6, ZMQ_SNDMORE);
    zmq_send (socket, service, strlen (service), ZMQ_SNDMORE);
    cr_assert_eq (zmq_send (socket, "", 0, 0), 0, "sync: %s", zmq_strerror (zmq_errno ()));
}

//  A unique MMI service name is echoed back in the reply's service frame:
//  when the reply to it arrives, everything this socket sent before it has
//  been handled (ZeroMQ keeps one connection's messages in order).
static void
s_sync (void *socket, bool req, int index)
{
    char service[32];
    snprintf (service, sizeof service, "mmi.sync-%d", index);
    s_send_sync (socket, req, service);
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    while (true) {
        int64_t left = until - mesh_mono_ms ();
        if (left <= 0) {
            s_assert_broker_alive ();
            cr_assert_fail ("socket %d: broker did not catch up within %d ms", index, S_WAIT_MS);
        }
        zmq_pollitem_t item = { socket, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) left) != 1)
            continue;
        //  Look for the service frame among this message's frames
        bool found = false;
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        do {
            if (zmq_msg_recv (&frame, socket, 0) < 0)
                break;
            if (zmq_msg_size (&frame) == strlen (service)
                && memcmp (zmq_msg_data (&frame), service, strlen (service)) == 0)
                found = true;
        } while (zmq_msg_more (&frame));
        zmq_msg_close (&frame);
        if (found)
            return;
        //  A REQ takes one reply per request: that was an older one, ask again
        if (req)
            s_send_sync (socket, req, service);
    }
}

//  Connect a socket monitor to `socket`; returns the PAIR to read events.
static void *
s_monitor (void *socket, const char *name)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://monitor-%s", name);
    cr_assert_eq (zmq_socket_monitor (socket, endpoint,
                                      ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED),
                  0);
    return mesh_test_sockets_open (s_sockets, ZMQ_PAIR, endpoint);
}

//  Wait for monitor event `wanted`. Returns true when seen within timeout.
static bool
s_monitor_wait (void *monitor, int wanted, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (true) {
        int64_t left = until - mesh_mono_ms ();
        if (left <= 0)
            return false;
        zmq_pollitem_t item = { monitor, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) left) != 1)
            continue;
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        int event = -1;
        if (zmq_msg_recv (&frame, monitor, 0) >= 0 && zmq_msg_size (&frame) >= 2) {
            uint16_t number;
            memcpy (&number, zmq_msg_data (&frame), 2);
            event = number;
        }
        //  Then the endpoint frame, which we do not need
        bool more = zmq_msg_more (&frame);
        while (more && zmq_msg_recv (&frame, monitor, 0) >= 0)
            more = zmq_msg_more (&frame);
        zmq_msg_close (&frame);
        if (event == wanted)
            return true;
    }
}

//  A normal request through the broker to the echo worker.
static void
s_expect_echo_works (const char *text)
{
    s_client = mesh_client_new (mesh_test_sockets_context (s_sockets), s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &body, msgpack_sbuffer_write);
    msgpack_pack_str_with_body (&packer, text, strlen (text));
    mesh_call_t call = { .service = "echo", .method = "echo", .body = body.data,
                         .body_len = body.size, .timeout_ms = S_WAIT_MS };
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK, "echo after fuzzing: %s: %.*s",
                  mesh_code_name (reply.code), (int) reply.message.len, reply.message.ptr);
    cr_assert_not_null (reply.body);
    cr_assert_eq (reply.body->type, MSGPACK_OBJECT_STR);
    cr_assert_eq (reply.body->via.str.size, strlen (text));
    cr_assert (memcmp (reply.body->via.str.ptr, text, strlen (text)) == 0);
    msgpack_sbuffer_destroy (&body);
    mesh_client_destroy (&s_client);
}

//  --------------------------------------------------------------- the test

Test (broker_fuzz, survives_10000_malformed_frame_sets)
{
    uint64_t seed = S_DEFAULT_SEED;
    const char *env_seed = getenv ("MESH_FUZZ_SEED");
    if (env_seed && *env_seed)
        seed = strtoull (env_seed, NULL, 0);
    s_state = seed? seed: 1;
    //  Always printed (cr_log_info shows only with --verbose; cr_log_warn
    //  makes Criterion exit non-zero)
    fprintf (stderr, "broker_fuzz: seed %llu (replay with MESH_FUZZ_SEED=%llu)\n",
             (unsigned long long) seed, (unsigned long long) seed);
    int64_t started_ms = mesh_mono_ms ();

    //  Every malformed-reason counter gets at least one hit from these
    //  hand-made messages; the random ones add volume
    void *senders[S_SENDERS];
    for (int index = 0; index < S_DEALERS; index++)
        senders[index] = mesh_test_sockets_open (s_sockets, ZMQ_DEALER, s_broker.endpoint);
    for (int index = S_DEALERS; index < S_SENDERS; index++) {
        senders[index] = mesh_test_sockets_open (s_sockets, ZMQ_REQ, NULL);
        int on = 1;
        //  Relaxed: a REQ may send again without waiting for a reply
        zmq_setsockopt (senders[index], ZMQ_REQ_RELAXED, &on, sizeof on);
        cr_assert_eq (zmq_connect (senders[index], s_broker.endpoint), 0);
    }
    {
        s_message_t *message = malloc (sizeof (s_message_t));
        void *dealer = senders[0];
        struct {
            int count;
            const char *frames[7];
            size_t sizes[7];
        } known[] = {
            { 1, { "x" }, { 1 } },                                          //  frames
            { 3, { "x", "MDPC01", "echo" }, { 1, 6, 4 } },                  //  header
            { 3, { "", "MDPW01", "\x09" }, { 0, 6, 1 } },                   //  command
            { 4, { "", "MDPC01", "bad name", "b" }, { 0, 6, 8, 1 } },       //  service
            { 5, { "", "MDPW01", "\x01", "fz-credit", "0" }, { 0, 6, 1, 9, 1 } },  //  credit
            { 3, { "", "MDPW01", "\x04" }, { 0, 6, 1 } },                   //  unknown_worker
            { 4, { "", "MDPW01", "\x01", "fz-known" }, { 0, 6, 1, 8 } },    //  READY ...
            { 6, { "", "MDPW01", "\x03", "nobody", "", "b" }, { 0, 6, 1, 6, 0, 1 } },  //  reply
        };
        for (size_t row = 0; row < sizeof known / sizeof known[0]; row++) {
            message->count = 0;
            message->used = 0;
            for (int index = 0; index < known[row].count; index++)
                s_frame_bytes (message, known[row].frames[index], known[row].sizes[index]);
            //  Rows after the READY come from that registered worker
            s_send (dealer, message);
        }
        free (message);
        s_sync (dealer, false, 0);
    }

    //  The storm
    s_message_t *message = malloc (sizeof (s_message_t));
    int sent[S_SENDERS] = { 0 };
    int received = 0;
    for (int count = 0; count < S_MESSAGES; count++) {
        int index = (int) s_below (S_SENDERS);
        bool req = index >= S_DEALERS;
        s_generate (message, req);
        s_send (senders[index], message);
        sent[index]++;
        if (count % 64 == 0)
            for (int other = 0; other < S_SENDERS; other++)
                received += s_drain (senders[other]);
    }
    free (message);

    //  A PUSH socket cannot talk to a ROUTER: the handshake fails; and raw
    //  TCP garbage is not ZMTP at all
    void *push = mesh_test_sockets_open (s_sockets, ZMQ_PUSH, s_broker.endpoint);
    int dont_wait = zmq_send (push, "garbage", 7, ZMQ_DONTWAIT);
    (void) dont_wait;
    s_raw_tcp_garbage (20);

    //  One frame over the broker's limit: libzmq drops that connection
    void *big_sender = mesh_test_sockets_open (s_sockets, ZMQ_DEALER, NULL);
    void *monitor = s_monitor (big_sender, "big");     //  Before connecting: see it all
    cr_assert_eq (zmq_connect (big_sender, s_broker.endpoint), 0);
    cr_assert (s_monitor_wait (monitor, ZMQ_EVENT_CONNECTED, S_WAIT_MS),
               "big sender not connected");
    size_t big_size = S_BROKER_MAX_FRAME + 1;
    char *big = calloc (1, big_size);
    cr_assert_eq (zmq_send (big_sender, "", 0, ZMQ_SNDMORE), 0);
    cr_assert_eq (zmq_send (big_sender, "MDPC01", 6, ZMQ_SNDMORE), 6);
    cr_assert_eq (zmq_send (big_sender, "echo", 4, ZMQ_SNDMORE), 4);
    cr_assert_eq (zmq_send (big_sender, big, big_size, 0), (int) big_size);
    free (big);
    cr_assert (s_monitor_wait (monitor, ZMQ_EVENT_DISCONNECTED, S_WAIT_MS),
               "the broker kept a connection that sent a %zu-byte frame", big_size);

    //  Every sender's messages have been handled once its sync returns
    for (int index = 0; index < S_SENDERS; index++)
        s_sync (senders[index], index >= S_DEALERS, index + 1);
    cr_log_info ("sent per socket: %d %d %d %d %d %d; %d messages came back", sent[0], sent[1],
                 sent[2], sent[3], sent[4], sent[5], received);

    //  Still alive, still serving
    s_assert_broker_alive ();
    s_expect_echo_works ("still here after the storm");
    char answer[16];
    cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.service", "echo", answer, sizeof answer,
                              S_WAIT_MS));
    cr_assert_str_eq (answer, "200");

    //  It counted what it dropped, for every reason
    char *metrics = mesh_test_broker_metrics (&s_broker);
    cr_assert_not_null (metrics, "GET /metrics failed");
    double malformed = mesh_test_metric (metrics, "mesh_broker_malformed_total", NULL);
    cr_log_info ("mesh_broker_malformed_total %.0f of %d messages", malformed, S_MESSAGES);
    cr_assert_gt (malformed, 0);
    static const char *const reasons[] = { "frames", "header", "command", "service", "credit",
                                           "unknown_worker", "reply" };
    for (size_t index = 0; index < sizeof reasons / sizeof reasons[0]; index++) {
        char label[64];
        snprintf (label, sizeof label, "reason=\"%s\"", reasons[index]);
        double value = mesh_test_metric (metrics, "mesh_broker_malformed_total", label);
        cr_assert_gt (value, 0, "no malformed message counted for %s", label);
    }
    cr_assert_gt (mesh_test_metric (metrics, "mesh_broker_opaque_bodies_total", NULL), 0);
    free (metrics);

    int64_t took_ms = mesh_mono_ms () - started_ms;
    cr_log_info ("fuzzing took %lld ms", (long long) took_ms);
    cr_assert_lt (took_ms, 60000, "the fuzz run took %lld ms", (long long) took_ms);
}
