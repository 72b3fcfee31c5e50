/*  =========================================================================
    bench_forwarder - a bare MDP forwarder: the "bare forwarder"
    reference point, measured on the same machine as mesh-broker.
    It speaks just enough MDP/0.1 to carry the benchmark: READY (with the
    credit frame), REQUEST out, REPLY back, HEARTBEAT answered with a
    HEARTBEAT (so workers stay connected), DISCONNECT, and mmi.services for
    mesh-bench wait-service. No deadlines, no expiry, no metrics, no
    envelope parsing, no malformed-input accounting: whatever mesh-broker
    costs beyond this is the price of its features. Frames move (zero
    copy); queued requests live in a fixed ring. Not for production use.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "bench.h"
#include "mesh/mdp.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define S_MAX_WORKERS 64
#define S_QUEUE_SIZE 4096       //  Requests waiting for credit, at most

typedef struct {
    uint8_t id[256];            //  Routing id
    size_t id_len;
    int credit;                 //  Requests it may hold
    int in_flight;              //  Requests it holds
    bool used;                  //  Slot holds a worker
} s_worker_t;

typedef struct {
    void *router;
    char service[MDP_MAX_SERVICE_NAME + 1];    //  Service of the first READY
    s_worker_t workers[S_MAX_WORKERS];
    int worker_count;           //  Slots in use or freed, highest + 1
    int next;                   //  Round-robin position
    mdp_frames_t *queue;        //  [S_QUEUE_SIZE] client requests waiting
    size_t queue_head, queue_size;
} s_forwarder_t;

//  A worker with spare credit, round robin; NULL when none.
static s_worker_t *
s_pick (s_forwarder_t *self)
{
    for (int tries = 0; tries < self->worker_count; tries++) {
        s_worker_t *worker = &self->workers[self->next];
        self->next = (self->next + 1) % self->worker_count;
        if (worker->used && worker->in_flight < worker->credit)
            return worker;
    }
    return NULL;
}

static s_worker_t *
s_find (s_forwarder_t *self, zmq_msg_t *id)
{
    for (int index = 0; index < self->worker_count; index++) {
        s_worker_t *worker = &self->workers[index];
        if (worker->used && worker->id_len == zmq_msg_size (id)
            && memcmp (worker->id, zmq_msg_data (id), worker->id_len) == 0)
            return worker;
    }
    return NULL;
}

//  Send a client request (client, "", MDPC01, service, body...) to
//  `worker` as REQUEST: worker, "", MDPW01, 0x02, client, "", body...
static void
s_send_request (s_forwarder_t *self, s_worker_t *worker, mdp_frames_t *frames)
{
    unsigned char command = MDP_REQUEST;
    zmq_send (self->router, worker->id, worker->id_len, ZMQ_SNDMORE);
    zmq_send (self->router, "", 0, ZMQ_SNDMORE);
    zmq_send (self->router, MDP_WORKER, 6, ZMQ_SNDMORE);
    zmq_send (self->router, &command, 1, ZMQ_SNDMORE);
    zmq_msg_send (&frames->frame[0], self->router, ZMQ_SNDMORE);
    zmq_send (self->router, "", 0, ZMQ_SNDMORE);
    for (int index = 4; index < frames->count; index++)
        zmq_msg_send (&frames->frame[index], self->router,
                      index + 1 < frames->count? ZMQ_SNDMORE: 0);
    worker->in_flight++;        //  The caller closes the frames (sent ones are empty)
}

//  Hand queued requests to workers with spare credit.
static void
s_drain (s_forwarder_t *self)
{
    while (self->queue_size) {
        s_worker_t *worker = s_pick (self);
        if (!worker)
            return;
        mdp_frames_t *frames = &self->queue[self->queue_head];
        s_send_request (self, worker, frames);
        mdp_frames_close (frames);
        self->queue_head = (self->queue_head + 1) % S_QUEUE_SIZE;
        self->queue_size--;
    }
}

//  mmi.services: {"services": [{"name", "workers"}]}
static void
s_mmi_services (s_forwarder_t *self, zmq_msg_t *client)
{
    int workers = 0;
    for (int index = 0; index < self->worker_count; index++)
        workers += self->workers[index].used;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 1);
    msgpack_pack_str_with_body (&packer, "services", 8);
    msgpack_pack_array (&packer, *self->service? 1: 0);
    if (*self->service) {
        msgpack_pack_map (&packer, 2);
        msgpack_pack_str_with_body (&packer, "name", 4);
        msgpack_pack_str_with_body (&packer, self->service, strlen (self->service));
        msgpack_pack_str_with_body (&packer, "workers", 7);
        msgpack_pack_int (&packer, workers);
    }
    zmq_msg_send (client, self->router, ZMQ_SNDMORE);
    zmq_send (self->router, "", 0, ZMQ_SNDMORE);
    zmq_send (self->router, MDP_CLIENT, 6, ZMQ_SNDMORE);
    zmq_send (self->router, "mmi.services", 12, ZMQ_SNDMORE);
    zmq_send (self->router, buffer.data, buffer.size, 0);
    msgpack_sbuffer_destroy (&buffer);
}

static void
s_on_client (s_forwarder_t *self, mdp_frames_t *frames)
{
    if (frames->count < 5)
        return;
    if (mdp_frame_eq (&frames->frame[3], "mmi.services")) {
        s_mmi_services (self, &frames->frame[0]);
        return;
    }
    s_worker_t *worker = self->queue_size? NULL: s_pick (self);
    if (worker)
        s_send_request (self, worker, frames);
    else
    if (self->queue_size < S_QUEUE_SIZE) {
        //  Move the whole frame set into the ring
        mdp_frames_t *slot = &self->queue[(self->queue_head + self->queue_size) % S_QUEUE_SIZE];
        slot->count = frames->count;
        slot->overflow = false;
        for (int index = 0; index < frames->count; index++) {
            zmq_msg_init (&slot->frame[index]);
            zmq_msg_move (&slot->frame[index], &frames->frame[index]);
        }
        self->queue_size++;
    }
}

static void
s_on_worker (s_forwarder_t *self, mdp_frames_t *frames)
{
    int command = frames->count >= 4? mdp_frame_command (&frames->frame[3]): 0;
    s_worker_t *worker = s_find (self, &frames->frame[0]);
    if (command == MDP_READY && !worker && frames->count >= 5) {
        int index = 0;
        while (index < self->worker_count && self->workers[index].used)
            index++;
        if (index == S_MAX_WORKERS)
            return;
        worker = &self->workers[index];
        if (index == self->worker_count)
            self->worker_count++;
        worker->used = true;
        worker->id_len = zmq_msg_size (&frames->frame[0]);
        memcpy (worker->id, zmq_msg_data (&frames->frame[0]), worker->id_len);
        worker->credit = frames->count == 6? mdp_frame_credit (&frames->frame[5]): 1;
        if (worker->credit < 1)
            worker->credit = 1;
        worker->in_flight = 0;
        size_t len = zmq_msg_size (&frames->frame[4]);
        if (!*self->service && len <= MDP_MAX_SERVICE_NAME) {
            memcpy (self->service, zmq_msg_data (&frames->frame[4]), len);
            self->service[len] = '\0';
        }
        s_drain (self);
    }
    else
    if (command == MDP_REPLY && worker && frames->count >= 7) {
        //  Client, "", MDPC01, service, body...
        zmq_msg_send (&frames->frame[4], self->router, ZMQ_SNDMORE);
        zmq_send (self->router, "", 0, ZMQ_SNDMORE);
        zmq_send (self->router, MDP_CLIENT, 6, ZMQ_SNDMORE);
        zmq_send (self->router, self->service, strlen (self->service), ZMQ_SNDMORE);
        for (int index = 6; index < frames->count; index++)
            zmq_msg_send (&frames->frame[index], self->router,
                          index + 1 < frames->count? ZMQ_SNDMORE: 0);
        worker->in_flight--;
        s_drain (self);
    }
    else
    if (command == MDP_HEARTBEAT && worker) {
        unsigned char heartbeat = MDP_HEARTBEAT;
        zmq_send (self->router, worker->id, worker->id_len, ZMQ_SNDMORE);
        zmq_send (self->router, "", 0, ZMQ_SNDMORE);
        zmq_send (self->router, MDP_WORKER, 6, ZMQ_SNDMORE);
        zmq_send (self->router, &heartbeat, 1, 0);
    }
    else
    if (command == MDP_DISCONNECT && worker)
        worker->used = false;
}

//  --------------------------------------------------------------------------
//  Run the forwarder on `bind` until killed. Prints "ready ENDPOINT".
int
bench_forwarder_run (const char *bind)
{
    static s_forwarder_t self;  //  Large (the ring): not on the stack
    static mdp_frames_t queue[S_QUEUE_SIZE];
    self.queue = queue;
    void *context = zmq_ctx_new ();
    self.router = zmq_socket (context, ZMQ_ROUTER);
    int linger = 0, hwm = 100000;
    zmq_setsockopt (self.router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self.router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self.router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind (self.router, bind) != 0) {
        fprintf (stderr, "mesh-bench: cannot bind %s: %s\n", bind, zmq_strerror (errno));
        zmq_close (self.router);
        zmq_ctx_term (context);
        return 1;
    }
    char endpoint[256];
    size_t endpoint_size = sizeof endpoint;
    zmq_getsockopt (self.router, ZMQ_LAST_ENDPOINT, endpoint, &endpoint_size);
    printf ("ready %s\n", endpoint);
    fflush (stdout);
    while (true) {
        zmq_pollitem_t item = { self.router, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int batch = 0; batch < 256; batch++) {
            mdp_frames_t frames;
            if (mdp_frames_recv (&frames, self.router, ZMQ_DONTWAIT))
                break;
            if (frames.count >= 4 && !frames.overflow && mdp_frame_empty (&frames.frame[1])) {
                if (mdp_frame_eq (&frames.frame[2], MDP_CLIENT))
                    s_on_client (&self, &frames);
                else
                if (mdp_frame_eq (&frames.frame[2], MDP_WORKER))
                    s_on_worker (&self, &frames);
            }
            mdp_frames_close (&frames);
        }
    }
    zmq_close (self.router);
    zmq_ctx_term (context);
    return 1;
}
