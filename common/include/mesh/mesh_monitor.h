/*  =========================================================================
    mesh_monitor - tells when a connection of a socket closes after its
    handshake

    A ZeroMQ socket that connects reconnects by itself and says nothing: a
    broker that died took the requests it held, and a worker registered
    with it is unknown to the next one. mesh_monitor reads the socket's
    monitor events (zmq_socket_monitor: handshake succeeded, disconnected)
    on an inproc PAIR and counts the closes of connections that had
    finished their handshake. A connection that never did carried nothing:
    what waits in the socket's queue goes out on the next one.
    One monitor belongs to the thread that polls it.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_MONITOR_H_INCLUDED
#define MESH_MONITOR_H_INCLUDED

typedef struct mesh_monitor_s mesh_monitor_t;

//  Watch `socket` (borrowed) of `context` (borrowed). Call it before the
//  socket connects, so that the first handshake is seen. Returns NULL with
//  *err MESH_EIO when the monitor cannot be made.
mesh_monitor_t *mesh_monitor_new (void *context, void *socket, int *err);

//  Stop reading the events; nulls the caller's pointer. The socket may be
//  open or closed already.
void mesh_monitor_destroy (mesh_monitor_t **self_p);

//  The PAIR the events arrive on, for zmq_poll (POLLIN: call
//  mesh_monitor_closes). Borrowed.
void *mesh_monitor_socket (mesh_monitor_t *self);

//  Read every event waiting, without blocking. Returns how many
//  connections that had finished their handshake closed among them.
int mesh_monitor_closes (mesh_monitor_t *self);

#endif
