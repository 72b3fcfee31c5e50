/*  =========================================================================
    test_mesh_monitor - a connection that closes after its handshake is
    counted once; one that never finished a handshake is not
    Sockets talk over TCP on loopback; every wait is bounded.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_monitor.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

static mesh_test_sockets_t *s_sockets;
static mesh_monitor_t *s_monitor;

static void
s_teardown (void)
{
    mesh_monitor_destroy (&s_monitor);
    mesh_test_sockets_destroy (&s_sockets);
}

TestSuite (mesh_monitor, .fini = s_teardown);

//  Closes the monitor counts within `timeout_ms`, reading as events come.
static int
s_closes_within (int want, int timeout_ms)
{
    int closes = 0;
    int64_t until_ms = mesh_mono_ms () + timeout_ms;
    while (closes < want && mesh_mono_ms () < until_ms) {
        zmq_pollitem_t item = {mesh_monitor_socket (s_monitor), 0, ZMQ_POLLIN, 0};
        zmq_poll (&item, 1, 50);
        closes += mesh_monitor_closes (s_monitor);
    }
    return closes;
}

Test (mesh_monitor, a_close_after_the_handshake_counts_once)
{
    s_sockets = mesh_test_sockets_new (5000);
    cr_assert_not_null (s_sockets);
    void *context = mesh_test_sockets_context (s_sockets);
    //  The peer lives in a context of its own, so the test can end it
    void *peer_context = zmq_ctx_new ();
    void *peer = zmq_socket (peer_context, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt (peer, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq (zmq_bind (peer, "tcp://127.0.0.1:*"), 0);
    char endpoint[256];
    size_t size = sizeof endpoint;
    zmq_getsockopt (peer, ZMQ_LAST_ENDPOINT, endpoint, &size);

    void *dealer = mesh_test_sockets_open (s_sockets, ZMQ_DEALER, NULL);
    s_monitor = mesh_monitor_new (context, dealer, NULL);
    cr_assert_not_null (s_monitor);
    cr_assert_eq (zmq_connect (dealer, endpoint), 0);
    //  One message through: the handshake is done
    cr_assert_eq (zmq_send (dealer, "up", 2, 0), 2);
    zmq_pollitem_t item = {peer, 0, ZMQ_POLLIN, 0};
    cr_assert_eq (zmq_poll (&item, 1, 5000), 1, "the peer got nothing");
    cr_assert_eq (s_closes_within (1, 200), 0, "a close before any");

    zmq_close (peer);
    zmq_ctx_term (peer_context);
    cr_assert_eq (s_closes_within (1, 10000), 1, "the close was not seen");
    //  The DEALER keeps trying to reconnect; refusals are not closes
    cr_assert_eq (s_closes_within (1, 500), 0, "a second close counted");
}

Test (mesh_monitor, a_connection_that_never_shook_hands_is_not_a_close)
{
    s_sockets = mesh_test_sockets_new (5000);
    cr_assert_not_null (s_sockets);
    //  A plain TCP listener that reads the greeting and closes: TCP
    //  connects, ZMTP never completes (libzmq reports it disconnected)
    int listener = socket (AF_INET, SOCK_STREAM, 0);
    cr_assert_geq (listener, 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    cr_assert_eq (bind (listener, (struct sockaddr *)&address, sizeof address), 0);
    cr_assert_eq (listen (listener, 4), 0);
    cr_assert_eq (getsockname (listener, (struct sockaddr *)&address, &length), 0);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", ntohs (address.sin_port));
    void *dealer = mesh_test_sockets_open (s_sockets, ZMQ_DEALER, NULL);
    s_monitor = mesh_monitor_new (mesh_test_sockets_context (s_sockets), dealer, NULL);
    cr_assert_not_null (s_monitor);
    cr_assert_eq (zmq_connect (dealer, endpoint), 0);
    struct pollfd waiting = {.fd = listener, .events = POLLIN};
    cr_assert_eq (poll (&waiting, 1, 5000), 1, "no connection arrived");
    int peer = accept (listener, NULL, NULL);
    cr_assert_geq (peer, 0);
    waiting.fd = peer;
    char greeting[16];
    cr_assert_eq (poll (&waiting, 1, 5000), 1, "no greeting arrived");
    cr_assert_gt (read (peer, greeting, sizeof greeting), 0);
    close (peer);
    close (listener);
    cr_assert_eq (s_closes_within (1, 1000), 0, "a connection without a handshake counted");
}
