/*  =========================================================================
    mesh_monitor - tells when a connection of a socket closes after its
    handshake
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_monitor.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"

#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <zmq.h>

struct mesh_monitor_s {
    void *pair;     //  Receives the socket's events, owned
    bool connected; //  A connection finished its handshake and is open
};

//  --------------------------------------------------------------------------
//  Watch a socket.
mesh_monitor_t *
mesh_monitor_new (void *context, void *socket, int *err)
{
    assert (context);
    assert (socket);
    int unused;
    if (!err)
        err = &unused;
    //  A random name: a closed socket's monitor endpoint stays bound until
    //  libzmq's reaper has finished with it, so a reused address could clash
    uint64_t name = 0;
    if (getrandom (&name, sizeof name, 0) != (ssize_t)sizeof name)
        name = (uint64_t)(uintptr_t)socket;
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://mesh-monitor-%016" PRIx64, name);
    if (zmq_socket_monitor (socket, endpoint,
                            ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0) {
        *err = MESH_EIO;
        return NULL;
    }
    mesh_monitor_t *self = mesh_alloc (sizeof (mesh_monitor_t));
    self->pair = zmq_socket (context, ZMQ_PAIR);
    int linger = 0;
    if (!self->pair || zmq_setsockopt (self->pair, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect (self->pair, endpoint) != 0) {
        mesh_monitor_destroy (&self);
        *err = MESH_EIO;
        return NULL;
    }
    *err = 0;
    return self;
}

//  --------------------------------------------------------------------------
//  Stop reading the events.
void
mesh_monitor_destroy (mesh_monitor_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mesh_monitor_t *self = *self_p;
        if (self->pair)
            zmq_close (self->pair);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  The PAIR, for zmq_poll.
void *
mesh_monitor_socket (mesh_monitor_t *self)
{
    assert (self);
    return self->pair;
}

//  --------------------------------------------------------------------------
//  Read the waiting events; count the closes after a handshake.
int
mesh_monitor_closes (mesh_monitor_t *self)
{
    assert (self);
    int closed = 0;
    mdp_frames_t frames;
    while (mdp_frames_recv (&frames, self->pair, ZMQ_DONTWAIT) == 0) {
        //  Frame 1: the event (16 bits) and its value (32 bits); 2: endpoint
        uint16_t event = 0;
        if (frames.count >= 1 && zmq_msg_size (&frames.frame[0]) >= sizeof event)
            memcpy (&event, zmq_msg_data (&frames.frame[0]), sizeof event);
        mdp_frames_close (&frames);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            self->connected = true;
        else if (event == ZMQ_EVENT_DISCONNECTED && self->connected) {
            self->connected = false;
            closed++;
        }
    }
    return closed;
}
