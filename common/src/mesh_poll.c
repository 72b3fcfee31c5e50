/*  =========================================================================
    mesh_poll - zmq_poll for event loops that drain their sockets, in fewer
    system calls
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_poll.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>

//  ZMQ_POLLIN when the socket has a message to read (processing the
//  commands that wait for it), 0 when not, -1 on failure.
static int
s_socket_readable (void *socket)
{
    uint32_t events = 0;
    size_t size = sizeof events;
    if (zmq_getsockopt (socket, ZMQ_EVENTS, &events, &size) != 0)
        return -1;
    return (events & ZMQ_POLLIN) ? ZMQ_POLLIN : 0;
}

//  zmq_poll's mapping of a descriptor's poll(2) events.
static short
s_fd_revents (short revents)
{
    short mapped = 0;
    if (revents & POLLIN)
        mapped |= ZMQ_POLLIN;
    if (revents & POLLOUT)
        mapped |= ZMQ_POLLOUT;
    if (revents & POLLPRI)
        mapped |= ZMQ_POLLPRI;
    if (revents & ~(POLLIN | POLLOUT | POLLPRI))
        mapped |= ZMQ_POLLERR;
    return mapped;
}

//  --------------------------------------------------------------------------
//  One poll(2) over every item; ZMQ_EVENTS only where it can have changed.
int
mesh_poll (zmq_pollitem_t *items, int count, long timeout_ms, uint32_t settled)
{
    assert (items || count == 0);
    assert (count >= 0 && count <= MESH_POLL_MAX);
    struct pollfd fds[MESH_POLL_MAX];
    bool ready = false;
    for (int index = 0; index < count; index++) {
        zmq_pollitem_t *item = &items[index];
        item->revents = 0;
        fds[index].revents = 0;
        if (!item->socket) {
            fds[index].fd = item->fd;
            fds[index].events = (short)(((item->events & ZMQ_POLLIN) ? POLLIN : 0) |
                                        ((item->events & ZMQ_POLLOUT) ? POLLOUT : 0) |
                                        ((item->events & ZMQ_POLLPRI) ? POLLPRI : 0));
            continue;
        }
        //  Only ZMQ_POLLIN: no loop of the mesh waits to send
        assert ((item->events & ~ZMQ_POLLIN) == 0);
        size_t size = sizeof fds[index].fd;
        if (zmq_getsockopt (item->socket, ZMQ_FD, &fds[index].fd, &size) != 0)
            return -1;
        fds[index].events = POLLIN;
        if (!(settled & (UINT32_C (1) << index)) && (item->events & ZMQ_POLLIN)) {
            int readable = s_socket_readable (item->socket);
            if (readable < 0)
                return -1;
            item->revents = (short)readable;
            ready = ready || readable;
        }
    }
    //  A socket with a message already: only look at the descriptors
    int wait_ms = ready                  ? 0
                  : timeout_ms < 0       ? -1
                  : timeout_ms > INT_MAX ? INT_MAX
                                         : (int)timeout_ms;
    if (poll (fds, (nfds_t)count, wait_ms) < 0)
        return -1;
    int with_events = 0;
    for (int index = 0; index < count; index++) {
        zmq_pollitem_t *item = &items[index];
        if (!item->socket)
            item->revents =
                (short)(s_fd_revents (fds[index].revents) & (item->events | ZMQ_POLLERR));
        else if ((fds[index].revents & POLLIN) && !item->revents && (item->events & ZMQ_POLLIN)) {
            int readable = s_socket_readable (item->socket);
            if (readable < 0)
                return -1;
            item->revents = (short)readable;
        }
        if (item->revents)
            with_events++;
    }
    return with_events;
}

//  --------------------------------------------------------------------------
//  Items neither readable last turn nor sent on: settled for the next.
uint32_t
mesh_poll_untouched (const zmq_pollitem_t *items, int count, uint32_t sent)
{
    assert (items || count == 0);
    assert (count >= 0 && count <= MESH_POLL_MAX);
    uint32_t settled = 0;
    for (int index = 0; index < count; index++)
        if (!(items[index].revents & ZMQ_POLLIN))
            settled |= UINT32_C (1) << index;
    return settled & ~sent;
}
