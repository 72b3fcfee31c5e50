/*  =========================================================================
    test_mdp - MDP/0.1 framing helpers: frame checks, credit, receive, send
    Socket tests use an inproc PAIR (and a ROUTER for unroutable sends);
    every receive is bounded by ZMQ_RCVTIMEO or ZMQ_DONTWAIT.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mdp.h"
#include "mesh/mesh_err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

static void *s_context;
static void *s_sender;          //  PAIR, connected to s_receiver
static void *s_receiver;        //  PAIR, bound; receives time out after 2 s

static void *
s_socket (int type)
{
    void *socket = zmq_socket (s_context, type);
    cr_assert_not_null (socket);
    int linger = 0, timeout_ms = 2000;
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (socket, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt (socket, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    return socket;
}

static void
s_setup (void)
{
    s_context = zmq_ctx_new ();
    cr_assert_not_null (s_context);
    s_receiver = s_socket (ZMQ_PAIR);
    s_sender = s_socket (ZMQ_PAIR);
    cr_assert_eq (zmq_bind (s_receiver, "inproc://test-mdp"), 0);
    cr_assert_eq (zmq_connect (s_sender, "inproc://test-mdp"), 0);
}

static void
s_teardown (void)
{
    zmq_close (s_sender);
    zmq_close (s_receiver);
    zmq_ctx_term (s_context);
}

TestSuite (mdp, .init = s_setup, .fini = s_teardown, .timeout = 30.);

//  A frame holding `size` bytes of `data`; caller closes it.
static void
s_frame (zmq_msg_t *frame, const void *data, size_t size)
{
    cr_assert_eq (zmq_msg_init_size (frame, size), 0);
    if (size)
        memcpy (zmq_msg_data (frame), data, size);
}

//  Credit parsed from a frame holding `text` (NUL-terminated, not included).
static int
s_credit (const char *text)
{
    zmq_msg_t frame;
    s_frame (&frame, text, strlen (text));
    int credit = mdp_frame_credit (&frame);
    zmq_msg_close (&frame);
    return credit;
}

//  Command parsed from a frame of `size` bytes.
static int
s_command (const void *data, size_t size)
{
    zmq_msg_t frame;
    s_frame (&frame, data, size);
    int command = mdp_frame_command (&frame);
    zmq_msg_close (&frame);
    return command;
}

//  Send `count` frames "frame-0", "frame-1", ... as one message.
static void
s_send_numbered (int count)
{
    for (int index = 0; index < count; index++) {
        char text[32];
        int len = snprintf (text, sizeof text, "frame-%d", index);
        cr_assert_eq (zmq_send (s_sender, text, (size_t) len, index + 1 < count? ZMQ_SNDMORE: 0),
                      len);
    }
}

//  ------------------------------------------------------------------ credit

Test (mdp, credit_accepts_1_to_1000)
{
    cr_assert_eq (s_credit ("1"), 1);
    cr_assert_eq (s_credit ("8"), 8);
    cr_assert_eq (s_credit ("32"), 32);
    cr_assert_eq (s_credit ("999"), 999);
    cr_assert_eq (s_credit ("1000"), 1000);
    //  Leading zeros within four digits are still decimal digits
    cr_assert_eq (s_credit ("0001"), 1);
    cr_assert_eq (s_credit ("0999"), 999);
}

Test (mdp, credit_rejects_everything_else)
{
    const char *bad[] = { "0", "0000", "1001", "9999", "", "12a", "a", "00001", "10000",
                          "-1", "+1", " 1", "1 ", "1.0", "0x10", "\xef\xbc\x91" };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        cr_assert_eq (s_credit (bad[index]), 0, "credit \"%s\" was accepted", bad[index]);
    //  A NUL terminator is not part of the credit
    zmq_msg_t frame;
    s_frame (&frame, "8\0", 2);
    cr_assert_eq (mdp_frame_credit (&frame), 0);
    zmq_msg_close (&frame);
}

//  ---------------------------------------------------------- service names

Test (mdp, service_names)
{
    cr_assert (mdp_service_name_valid ("user", 4));
    cr_assert (mdp_service_name_valid ("mmi.service", 11));
    cr_assert (mdp_service_name_valid ("a", 1));
    cr_assert (mdp_service_name_valid ("user.v2-beta_1:x/y", 18));
    const char *punctuation = "!#$%&'()*+,-./:;<=>?@[]^_`{|}~";
    cr_assert (mdp_service_name_valid (punctuation, strlen (punctuation)));

    char name[MDP_MAX_SERVICE_NAME + 1];
    memset (name, 's', sizeof name);
    cr_assert (mdp_service_name_valid (name, MDP_MAX_SERVICE_NAME));
    cr_assert_not (mdp_service_name_valid (name, MDP_MAX_SERVICE_NAME + 1));

    cr_assert_not (mdp_service_name_valid ("", 0));
    cr_assert_not (mdp_service_name_valid ("a b", 3));
    cr_assert_not (mdp_service_name_valid ("tab\there", 8));
    cr_assert_not (mdp_service_name_valid ("new\nline", 8));
    cr_assert_not (mdp_service_name_valid ("quo\"te", 6));
    cr_assert_not (mdp_service_name_valid ("back\\slash", 10));
    cr_assert_not (mdp_service_name_valid ("del\x7f", 4));
    cr_assert_not (mdp_service_name_valid ("caf\xc3\xa9", 5));
    cr_assert_not (mdp_service_name_valid ("nul\0x", 5));
    //  The length, not a NUL, bounds the name
    cr_assert (mdp_service_name_valid ("user and more", 4));
}

//  ------------------------------------------------------- frames, commands

Test (mdp, frame_command)
{
    for (int command = MDP_READY; command <= MDP_DISCONNECT; command++) {
        unsigned char byte = (unsigned char) command;
        cr_assert_eq (s_command (&byte, 1), command);
    }
    cr_assert_eq (s_command ("\x00", 1), 0);
    cr_assert_eq (s_command ("\x06", 1), 0);
    cr_assert_eq (s_command ("\xff", 1), 0);
    cr_assert_eq (s_command ("", 0), 0);
    cr_assert_eq (s_command ("\x01\x01", 2), 0);
    cr_assert_eq (s_command ("1", 1), 0, "ASCII '1' is not the READY byte");
}

Test (mdp, command_names)
{
    cr_assert_str_eq (mdp_command_name (MDP_READY), "READY");
    cr_assert_str_eq (mdp_command_name (MDP_REQUEST), "REQUEST");
    cr_assert_str_eq (mdp_command_name (MDP_REPLY), "REPLY");
    cr_assert_str_eq (mdp_command_name (MDP_HEARTBEAT), "HEARTBEAT");
    cr_assert_str_eq (mdp_command_name (MDP_DISCONNECT), "DISCONNECT");
    cr_assert_str_eq (mdp_command_name (0), "UNKNOWN");
    cr_assert_str_eq (mdp_command_name (6), "UNKNOWN");
    cr_assert_str_eq (mdp_command_name (-1), "UNKNOWN");
}

Test (mdp, frame_eq_and_empty)
{
    zmq_msg_t frame;
    s_frame (&frame, MDP_CLIENT, strlen (MDP_CLIENT));
    cr_assert (mdp_frame_eq (&frame, "MDPC01"));
    cr_assert_not (mdp_frame_eq (&frame, "MDPC0"));
    cr_assert_not (mdp_frame_eq (&frame, "MDPC012"));
    cr_assert_not (mdp_frame_eq (&frame, "MDPW01"));
    cr_assert_not (mdp_frame_empty (&frame));
    zmq_msg_close (&frame);
    s_frame (&frame, "", 0);
    cr_assert (mdp_frame_empty (&frame));
    cr_assert (mdp_frame_eq (&frame, ""));
    cr_assert_not (mdp_frame_eq (&frame, "M"));
    zmq_msg_close (&frame);
}

//  ----------------------------------------------------------------- sockets

Test (mdp, send_parts_and_recv_round_trip)
{
    const unsigned char command = MDP_REPLY;
    const void *parts[] = { "", MDP_WORKER, &command, "client-7", "", "body\0bytes" };
    size_t sizes[] = { 0, 6, 1, 8, 0, 10 };
    cr_assert_eq (mdp_send_parts (s_sender, 0, 6, parts, sizes), 0);

    mdp_frames_t frames;
    cr_assert_eq (mdp_frames_recv (&frames, s_receiver, 0), 0);
    cr_assert_eq (frames.count, 6);
    cr_assert_not (frames.overflow);
    for (int index = 0; index < 6; index++) {
        cr_assert_eq (zmq_msg_size (&frames.frame[index]), sizes[index], "frame %d", index);
        if (sizes[index])
            cr_assert (memcmp (zmq_msg_data (&frames.frame[index]), parts[index], sizes[index])
                       == 0, "frame %d", index);
    }
    cr_assert (mdp_frame_empty (&frames.frame[0]));
    cr_assert (mdp_frame_eq (&frames.frame[1], MDP_WORKER));
    cr_assert_eq (mdp_frame_command (&frames.frame[2]), MDP_REPLY);
    mdp_frames_close (&frames);
    cr_assert_eq (frames.count, 0);
    mdp_frames_close (&frames);     //  Idempotent

    //  One part, and an empty one
    const void *one[] = { "" };
    size_t one_size[] = { 0 };
    cr_assert_eq (mdp_send_parts (s_sender, ZMQ_DONTWAIT, 1, one, one_size), 0);
    cr_assert_eq (mdp_frames_recv (&frames, s_receiver, 0), 0);
    cr_assert_eq (frames.count, 1);
    cr_assert (mdp_frame_empty (&frames.frame[0]));
    mdp_frames_close (&frames);
}

Test (mdp, recv_reports_timeout_when_nothing_waits)
{
    mdp_frames_t frames;
    cr_assert_eq (mdp_frames_recv (&frames, s_receiver, ZMQ_DONTWAIT), MESH_ETIMEDOUT);
    cr_assert_eq (frames.count, 0);
    //  Blocking receive is bounded by ZMQ_RCVTIMEO (set to 2 s here); use a
    //  short one so the test stays quick
    int timeout_ms = 50;
    zmq_setsockopt (s_receiver, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    cr_assert_eq (mdp_frames_recv (&frames, s_receiver, 0), MESH_ETIMEDOUT);
    cr_assert_eq (frames.count, 0);
    mdp_frames_close (&frames);
}

Test (mdp, recv_on_a_socket_that_cannot_receive_is_an_io_error)
{
    void *publisher = s_socket (ZMQ_PUB);
    mdp_frames_t frames;
    cr_assert_eq (mdp_frames_recv (&frames, publisher, ZMQ_DONTWAIT), MESH_EIO);
    cr_assert_eq (frames.count, 0);
    zmq_close (publisher);
}

Test (mdp, recv_keeps_exactly_16_frames_without_overflow)
{
    s_send_numbered (MDP_MAX_FRAMES);
    mdp_frames_t frames;
    cr_assert_eq (mdp_frames_recv (&frames, s_receiver, 0), 0);
    cr_assert_eq (frames.count, MDP_MAX_FRAMES);
    cr_assert_not (frames.overflow);
    mdp_frames_close (&frames);
}

Test (mdp, recv_over_16_frames_sets_overflow_and_stays_in_step)
{
    //  17 and 40 frames: both overflow; the socket must then deliver the
    //  next message whole, not the tail of the long one
    int lengths[] = { MDP_MAX_FRAMES + 1, 40 };
    for (size_t round = 0; round < 2; round++) {
        s_send_numbered (lengths[round]);
        s_send_numbered (3);

        mdp_frames_t frames;
        cr_assert_eq (mdp_frames_recv (&frames, s_receiver, 0), 0);
        cr_assert (frames.overflow, "%d frames did not overflow", lengths[round]);
        cr_assert_eq (frames.count, MDP_MAX_FRAMES);
        for (int index = 0; index < MDP_MAX_FRAMES; index++) {
            char text[32];
            snprintf (text, sizeof text, "frame-%d", index);
            cr_assert (mdp_frame_eq (&frames.frame[index], text), "frame %d", index);
        }
        mdp_frames_close (&frames);

        cr_assert_eq (mdp_frames_recv (&frames, s_receiver, 0), 0);
        cr_assert_not (frames.overflow, "the overflow flag carried over");
        cr_assert_eq (frames.count, 3);
        cr_assert (mdp_frame_eq (&frames.frame[0], "frame-0"));
        cr_assert (mdp_frame_eq (&frames.frame[2], "frame-2"));
        mdp_frames_close (&frames);
    }
    mdp_frames_t frames;
    cr_assert_eq (mdp_frames_recv (&frames, s_receiver, ZMQ_DONTWAIT), MESH_ETIMEDOUT);
}

Test (mdp, send_parts_reports_busy_when_the_peer_cannot_take_it)
{
    //  A PAIR with no peer has nowhere to queue: EAGAIN
    void *lonely = s_socket (ZMQ_PAIR);
    const void *parts[] = { "a", "b" };
    size_t sizes[] = { 1, 1 };
    cr_assert_eq (mdp_send_parts (lonely, ZMQ_DONTWAIT, 2, parts, sizes), MESH_EBUSY);
    zmq_close (lonely);
}

Test (mdp, send_parts_reports_unavailable_for_an_unknown_router_peer)
{
    void *router = s_socket (ZMQ_ROUTER);
    int on = 1;
    zmq_setsockopt (router, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    const void *parts[] = { "nobody", "", MDP_WORKER };
    size_t sizes[] = { 6, 0, 6 };
    cr_assert_eq (mdp_send_parts (router, ZMQ_DONTWAIT, 3, parts, sizes), MESH_EUNAVAIL);
    zmq_close (router);
}

Test (mdp, send_parts_reaches_a_router_peer_by_identity)
{
    void *router = s_socket (ZMQ_ROUTER);
    void *dealer = s_socket (ZMQ_DEALER);
    int on = 1;
    zmq_setsockopt (router, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    zmq_setsockopt (dealer, ZMQ_ROUTING_ID, "worker-1", 8);
    cr_assert_eq (zmq_bind (router, "inproc://test-mdp-router"), 0);
    cr_assert_eq (zmq_connect (dealer, "inproc://test-mdp-router"), 0);
    //  The dealer speaks first so the router knows its identity
    unsigned char ready = MDP_READY;
    const void *hello[] = { "", MDP_WORKER, &ready, "echo" };
    size_t hello_sizes[] = { 0, 6, 1, 4 };
    cr_assert_eq (mdp_send_parts (dealer, 0, 4, hello, hello_sizes), 0);
    mdp_frames_t frames;
    cr_assert_eq (mdp_frames_recv (&frames, router, 0), 0);
    cr_assert_eq (frames.count, 5);
    cr_assert (mdp_frame_eq (&frames.frame[0], "worker-1"));
    cr_assert_eq (mdp_frame_command (&frames.frame[3]), MDP_READY);
    mdp_frames_close (&frames);

    unsigned char heartbeat = MDP_HEARTBEAT;
    const void *parts[] = { "worker-1", "", MDP_WORKER, &heartbeat };
    size_t sizes[] = { 8, 0, 6, 1 };
    cr_assert_eq (mdp_send_parts (router, ZMQ_DONTWAIT, 4, parts, sizes), 0);
    cr_assert_eq (mdp_frames_recv (&frames, dealer, 0), 0);
    cr_assert_eq (frames.count, 3);
    cr_assert_eq (mdp_frame_command (&frames.frame[2]), MDP_HEARTBEAT);
    mdp_frames_close (&frames);
    zmq_close (dealer);
    zmq_close (router);
}
