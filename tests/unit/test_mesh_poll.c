/*  =========================================================================
    test_mesh_poll - mesh_poll: settled sockets wake on new messages,
    unsettled ones report what already waits, descriptors and timeouts
    Sockets talk over TCP on loopback, so messages arrive through libzmq's
    I/O thread as in the mesh; every wait is bounded.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_poll.h"
#include "mesh_test.h"

#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static mesh_test_sockets_t *s_sockets;
static void *s_receiver; //  DEALER, bound
static void *s_sender;   //  DEALER, connected

static void
s_setup (void)
{
    s_sockets = mesh_test_sockets_new (5000);
    cr_assert_not_null (s_sockets);
    s_receiver = mesh_test_sockets_open (s_sockets, ZMQ_DEALER, NULL);
    cr_assert_eq (zmq_bind (s_receiver, "tcp://127.0.0.1:*"), 0);
    char endpoint[256];
    size_t size = sizeof endpoint;
    zmq_getsockopt (s_receiver, ZMQ_LAST_ENDPOINT, endpoint, &size);
    s_sender = mesh_test_sockets_open (s_sockets, ZMQ_DEALER, endpoint);
    //  One message through (bounded), so the connection is up before a test
    int timeout_ms = 5000;
    zmq_setsockopt (s_receiver, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    char buffer[8];
    cr_assert_eq (zmq_send (s_sender, "up", 2, 0), 2);
    cr_assert_eq (zmq_recv (s_receiver, buffer, sizeof buffer, 0), 2);
}

static void
s_teardown (void)
{
    mesh_test_sockets_destroy (&s_sockets);
}

//  Receive until EAGAIN: the receiver is settled afterwards.
static void
s_settle (void)
{
    char buffer[8];
    while (zmq_recv (s_receiver, buffer, sizeof buffer, ZMQ_DONTWAIT) >= 0)
        ;
    cr_assert_eq (zmq_errno (), EAGAIN);
}

TestSuite (mesh_poll, .init = s_setup, .fini = s_teardown);

Test (mesh_poll, settled_socket_wakes_when_a_message_arrives)
{
    s_settle ();
    cr_assert_eq (zmq_send (s_sender, "next", 4, 0), 4);
    zmq_pollitem_t items[] = {{s_receiver, 0, ZMQ_POLLIN, 0}};
    //  The message comes through the I/O thread while mesh_poll sleeps on
    //  the socket's ZMQ_FD; a lost wake-up would end in the timeout (rc 0)
    int rc = mesh_poll (items, 1, 5000, 1);
    for (int turn = 0; rc == 0 && turn < 3; turn++) //  A command without a message
        rc = mesh_poll (items, 1, 5000, 1);
    cr_assert_eq (rc, 1);
    cr_assert (items[0].revents & ZMQ_POLLIN);
    char buffer[8] = "";
    cr_assert_eq (zmq_recv (s_receiver, buffer, sizeof buffer, ZMQ_DONTWAIT), 4);
    cr_assert_eq (memcmp (buffer, "next", 4), 0);
}

Test (mesh_poll, unsettled_socket_reports_a_message_already_waiting)
{
    s_settle ();
    cr_assert_eq (zmq_send (s_sender, "one", 3, 0), 3);
    cr_assert_eq (zmq_send (s_sender, "two", 3, 0), 3);
    char buffer[8] = "";
    cr_assert_eq (zmq_recv (s_receiver, buffer, sizeof buffer, 0), 3);
    //  "two" may sit in the pipe with no command left to announce it:
    //  unsettled, mesh_poll asks ZMQ_EVENTS and finds it
    zmq_pollitem_t items[] = {{s_receiver, 0, ZMQ_POLLIN, 0}};
    int rc = 0;
    for (int turn = 0; rc == 0 && turn < 3; turn++)
        rc = mesh_poll (items, 1, 5000, 0);
    cr_assert_eq (rc, 1);
    cr_assert (items[0].revents & ZMQ_POLLIN);
    cr_assert_eq (zmq_recv (s_receiver, buffer, sizeof buffer, ZMQ_DONTWAIT), 3);
    cr_assert_eq (memcmp (buffer, "two", 3), 0);
}

Test (mesh_poll, settled_socket_without_messages_times_out)
{
    s_settle ();
    zmq_pollitem_t items[] = {{s_receiver, 0, ZMQ_POLLIN, 0}};
    cr_assert_eq (mesh_poll (items, 1, 20, 1), 0);
    cr_assert_eq (items[0].revents, 0);
    cr_assert_eq (mesh_poll (items, 1, 0, 0), 0);
}

Test (mesh_poll, descriptors_report_their_events_next_to_sockets)
{
    s_settle ();
    int fds[2];
    cr_assert_eq (pipe (fds), 0);
    zmq_pollitem_t items[] = {
        {s_receiver, 0, ZMQ_POLLIN, 0},
        {NULL, fds[0], ZMQ_POLLIN, 0},
        {NULL, -1, ZMQ_POLLIN, 0}, //  Skipped, as poll(2) skips it
    };
    cr_assert_eq (mesh_poll (items, 3, 0, 1), 0);
    cr_assert_eq (write (fds[1], "x", 1), 1);
    cr_assert_eq (mesh_poll (items, 3, 5000, 1), 1);
    cr_assert_eq (items[0].revents, 0);
    cr_assert_eq (items[1].revents, ZMQ_POLLIN);
    cr_assert_eq (items[2].revents, 0);
    close (fds[1]);
    close (fds[0]);
}

//  The next turn's mask: what reported nothing and was not sent on.
Test (mesh_poll, untouched_items_are_those_not_readable_and_not_sent_on)
{
    zmq_pollitem_t items[] = {
        {s_receiver, 0, ZMQ_POLLIN, ZMQ_POLLIN},
        {s_sender, 0, ZMQ_POLLIN, 0},
        {s_receiver, 0, ZMQ_POLLIN, 0},
        {NULL, 0, ZMQ_POLLIN, 0},
    };
    cr_assert_eq (mesh_poll_untouched (items, 4, 0), UINT32_C (0xe));
    cr_assert_eq (mesh_poll_untouched (items, 4, UINT32_C (1) << 1), UINT32_C (0xc));
    cr_assert_eq (mesh_poll_untouched (items, 4, UINT32_C (0xf)), 0);
    cr_assert_eq (mesh_poll_untouched (items, 0, 0), 0);
}
