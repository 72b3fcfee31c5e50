/*  =========================================================================
    mesh_poll - zmq_poll for event loops that drain their sockets, in fewer
    system calls

    zmq_poll asks every ZeroMQ socket for ZMQ_EVENTS before it sleeps and
    again after; each ask that finds nothing costs libzmq a getpid and a
    poll(2), and a zmq_poll that sleeps makes two poll(2) calls besides. On
    the 2-core VMs the mesh is measured on, a system call costs more than
    most of a request's own work (docs/performance.md). mesh_poll makes one
    poll(2) over every item's descriptor (a socket's ZMQ_FD) and asks
    ZMQ_EVENTS only of the sockets whose ZMQ_FD fired and of those the caller
    does not mark as settled.

    A socket is settled when the caller's last receive on it returned EAGAIN
    (or mesh_poll reported no ZMQ_POLLIN for it) and the caller has neither
    sent nor received on it since. Such a socket has nothing to read until
    libzmq posts a command to it, and posting a command makes its ZMQ_FD
    readable: a pipe that was read empty announces its next message that
    way. A send, though, may consume that announcement, which is why a
    socket that was sent on is not settled.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_POLL_H_INCLUDED
#define MESH_POLL_H_INCLUDED

#include <stdint.h>
#include <zmq.h>

//  Items mesh_poll takes at most (one bit each in `settled`).
#define MESH_POLL_MAX 32

//  Like zmq_poll (items, count, timeout_ms) for ZMQ_POLLIN on sockets and
//  any events on descriptors; bit i of `settled` set: items[i] is a settled
//  socket (above). Returns the number of items with revents, which may be 0
//  before the timeout when a socket's command brought no message (callers
//  loop); -1 with errno (EINTR: a signal) on failure.
int mesh_poll (zmq_pollitem_t *items, int count, long timeout_ms, uint32_t settled);

//  The `settled` mask for the next mesh_poll of a loop that, for every item
//  reported readable, receives until EAGAIN or takes a bounded batch: the
//  items that reported no ZMQ_POLLIN this turn and are not in `sent` (bit i:
//  the loop sent on items[i] since). Bits of descriptor items are ignored
//  by mesh_poll.
uint32_t mesh_poll_untouched (const zmq_pollitem_t *items, int count, uint32_t sent);

#endif
