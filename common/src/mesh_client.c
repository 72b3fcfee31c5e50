/*  =========================================================================
    mesh_client - asynchronous MDP client on a DEALER socket
    Pending requests live in a hash by id (for replies) and in a binary
    min-heap by local deadline (for expiry), so both a reply and the
    earliest deadline are found without scanning. Local deadlines use the
    monotonic clock; the envelope carries the same deadline in unix ms.
    A monitor on the DEALER tells when a connection that finished its
    handshake closes: a broker that died took every request sent before
    with it, so those come due at once as unavailable (after the replies
    that did arrive are taken) instead of at their deadlines.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_monitor.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

//  The deadline of a request whose connection closed under it: due at once
//  (a real deadline is now + a positive timeout, never this)
#define S_LOST 0

//  One request in flight.
typedef struct {
    char id[MESH_ENVELOPE_MAX_ID + 1];  //  Hash key (the hash borrows it)
    void *tag;                  //  Caller's pointer
    int64_t deadline_mono_ms;   //  Local expiry; S_LOST once its connection closed
    size_t heap_index;          //  Position in self->heap, or the free-list link
    uint64_t seq;               //  Order of sending, against lost_before
} s_pending_t;

struct mesh_client_s {
    void *context;              //  ZeroMQ context, owned when own_context
    bool own_context;           //  We made the context
    void *dealer;               //  DEALER to the broker, owned
    mesh_monitor_t *monitor;    //  Closes of the DEALER's connections, owned
    bool lost;                  //  One closed since: requests sent before it are lost
    uint64_t lost_before;       //  ... those with a seq below this
    uint64_t send_seq;          //  Next request's seq
    zhashx_t *pending;          //  id -> s_pending_t (entries owned by the client)
    s_pending_t **spare;        //  Finished entries kept for reuse
    size_t spare_size;          //  Entries in spare
    size_t spare_capacity;      //  Slots in spare
    s_pending_t **heap;         //  Min-heap by deadline, borrowed entries
    size_t heap_size;           //  Entries in heap
    size_t heap_capacity;       //  Slots in heap
    zmq_msg_t **stash;          //  Replies for other ids seen during call()
    size_t stash_size;          //  Entries in stash
    zmq_msg_t current;          //  Frame the last reply's views point into
    bool has_current;           //  current holds a message
    mesh_envelope_decoder_t *decoder;   //  Decodes replies
    msgpack_sbuffer buffer;     //  Encodes requests, reused
    char id_prefix[17];         //  Random per client: ids stay unique across clients
    uint64_t id_counter;        //  Next generated id
    uint64_t dropped;           //  Late or malformed replies dropped
    bool settled;               //  Last use of the DEALER: a receive that found nothing
};

//  --------------------------------------------------------------------------
//  Heap helpers: order by deadline, keep heap_index in step.
static void
s_heap_swap (mesh_client_t *self, size_t a, size_t b)
{
    s_pending_t *entry = self->heap[a];
    self->heap[a] = self->heap[b];
    self->heap[b] = entry;
    self->heap[a]->heap_index = a;
    self->heap[b]->heap_index = b;
}

static void
s_heap_up (mesh_client_t *self, size_t index)
{
    while (index > 0) {
        size_t parent = (index - 1) / 2;
        if (self->heap[parent]->deadline_mono_ms <= self->heap[index]->deadline_mono_ms)
            break;
        s_heap_swap (self, parent, index);
        index = parent;
    }
}

static void
s_heap_down (mesh_client_t *self, size_t index)
{
    while (true) {
        size_t smallest = index;
        size_t left = 2 * index + 1, right = left + 1;
        if (left < self->heap_size
            && self->heap[left]->deadline_mono_ms < self->heap[smallest]->deadline_mono_ms)
            smallest = left;
        if (right < self->heap_size
            && self->heap[right]->deadline_mono_ms < self->heap[smallest]->deadline_mono_ms)
            smallest = right;
        if (smallest == index)
            break;
        s_heap_swap (self, index, smallest);
        index = smallest;
    }
}

static void
s_heap_push (mesh_client_t *self, s_pending_t *entry)
{
    if (self->heap_size == self->heap_capacity) {
        self->heap_capacity = self->heap_capacity? self->heap_capacity * 2: 64;
        self->heap = mesh_realloc (self->heap, self->heap_capacity * sizeof (s_pending_t *));
    }
    entry->heap_index = self->heap_size;
    self->heap[self->heap_size++] = entry;
    s_heap_up (self, entry->heap_index);
}

static void
s_heap_remove (mesh_client_t *self, s_pending_t *entry)
{
    size_t index = entry->heap_index;
    assert (index < self->heap_size && self->heap[index] == entry);
    self->heap_size--;
    if (index != self->heap_size) {
        self->heap[index] = self->heap[self->heap_size];
        self->heap[index]->heap_index = index;
        s_heap_down (self, index);
        s_heap_up (self, index);
    }
}

//  --------------------------------------------------------------------------
//  Connect to the broker.
mesh_client_t *
mesh_client_new (void *zmq_context, const char *endpoint, int *err)
{
    return mesh_client_new_curve (zmq_context, endpoint, NULL, err);
}

//  --------------------------------------------------------------------------
//  Connect to the broker, as a CURVE client when keys are given.
mesh_client_t *
mesh_client_new_curve (void *zmq_context, const char *endpoint, const mesh_curve_t *curve, int *err)
{
    assert (endpoint);
    int unused;
    if (!err)
        err = &unused;
    mesh_client_t *self = mesh_alloc (sizeof (mesh_client_t));
    self->own_context = zmq_context == NULL;
    self->context = zmq_context? zmq_context: zmq_ctx_new ();
    self->pending = zhashx_new ();
    //  Keys point into the entries themselves: no copy per request
    zhashx_set_key_duplicator (self->pending, NULL);
    zhashx_set_key_destructor (self->pending, NULL);
    self->decoder = mesh_envelope_decoder_new (0);
    msgpack_sbuffer_init (&self->buffer);
    uint64_t random_bits = 0;
    if (getrandom (&random_bits, sizeof random_bits, 0) != (ssize_t) sizeof random_bits)
        random_bits = (uint64_t) mesh_mono_us () ^ ((uint64_t) getpid () << 32);
    snprintf (self->id_prefix, sizeof self->id_prefix, "%016" PRIx64, random_bits);

    if (!self->context) {
        *err = MESH_EIO;
        goto fail;
    }
    self->dealer = zmq_socket (self->context, ZMQ_DEALER);
    if (!self->dealer) {
        *err = MESH_EIO;
        goto fail;
    }
    int linger = 0, hwm = 100000;
    zmq_setsockopt (self->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    //  Watch before connecting, so the first handshake is seen
    self->monitor = mesh_monitor_new (self->context, self->dealer, err);
    if (!self->monitor)
        goto fail;
    if (mesh_curve_connect (curve, self->dealer, endpoint) != 0) {
        *err = MESH_EINVAL;
        goto fail;
    }
    *err = 0;
    return self;
fail:
    mesh_client_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Close; nulls the caller's pointer.
void
mesh_client_destroy (mesh_client_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mesh_client_t *self = *self_p;
        mesh_monitor_destroy (&self->monitor);
        if (self->dealer)
            zmq_close (self->dealer);
        if (self->own_context && self->context)
            zmq_ctx_term (self->context);
        if (self->pending)
            for (s_pending_t *entry = zhashx_first (self->pending); entry;
                 entry = zhashx_next (self->pending))
                free (entry);
        zhashx_destroy (&self->pending);
        for (size_t index = 0; index < self->spare_size; index++)
            free (self->spare[index]);
        free (self->spare);
        free (self->heap);
        for (size_t index = 0; index < self->stash_size; index++) {
            zmq_msg_close (self->stash[index]);
            free (self->stash[index]);
        }
        free (self->stash);
        if (self->has_current)
            zmq_msg_close (&self->current);
        mesh_envelope_decoder_destroy (&self->decoder);
        msgpack_sbuffer_destroy (&self->buffer);
        free (self);
        *self_p = NULL;
    }
}

//  A pending entry, from the spare list when there is one.
static s_pending_t *
s_entry_new (mesh_client_t *self)
{
    if (self->spare_size)
        return self->spare[--self->spare_size];
    return mesh_alloc (sizeof (s_pending_t));
}

//  Keep a finished entry for reuse (bounded: a burst does not pin memory).
static void
s_entry_free (mesh_client_t *self, s_pending_t *entry)
{
    if (self->spare_size == self->spare_capacity) {
        if (self->spare_capacity >= 4096) {
            free (entry);
            return;
        }
        self->spare_capacity = self->spare_capacity? self->spare_capacity * 2: 64;
        self->spare = mesh_realloc (self->spare, self->spare_capacity * sizeof (s_pending_t *));
    }
    self->spare[self->spare_size++] = entry;
}

//  Next generated id: the client's random prefix, '-', the counter in hex.
static void
s_make_id (mesh_client_t *self, char *id)
{
    static const char digits[] = "0123456789abcdef";
    memcpy (id, self->id_prefix, 16);
    id[16] = '-';
    char reversed[16];
    size_t len = 0;
    uint64_t counter = self->id_counter++;
    do {
        reversed[len++] = digits[counter & 0xf];
        counter >>= 4;
    } while (counter);
    for (size_t index = 0; index < len; index++)
        id[17 + index] = reversed[len - 1 - index];
    id[17 + len] = '\0';
}

//  --------------------------------------------------------------------------
//  Send a request.
int
mesh_client_send (mesh_client_t *self, const mesh_call_t *call, char *id_out)
{
    assert (self);
    assert (call);
    if (!call->service || !call->method
        || !mdp_service_name_valid (call->service, strlen (call->service)))
        return MESH_EINVAL;
    if ((call->id && strlen (call->id) > MESH_ENVELOPE_MAX_ID)
        || (call->actor && strlen (call->actor) > MESH_ENVELOPE_MAX_ACTOR))
        return MESH_EINVAL;
    s_pending_t *entry = s_entry_new (self);
    if (call->id)
        strcpy (entry->id, call->id);
    else
        s_make_id (self, entry->id);
    if (zhashx_lookup (self->pending, entry->id)) {
        s_entry_free (self, entry);
        return MESH_ECONFLICT;
    }
    int timeout_ms = call->timeout_ms > 0? call->timeout_ms: MESH_CLIENT_DEFAULT_TIMEOUT_MS;
    entry->tag = call->tag;
    entry->deadline_mono_ms = mesh_mono_ms () + timeout_ms;
    entry->seq = self->send_seq++;

    msgpack_sbuffer_clear (&self->buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &self->buffer, msgpack_sbuffer_write);
    mesh_request_head_t head = {
        .id = entry->id,
        .method = call->method,
        .deadline_ms = mesh_wall_ms () + (uint64_t) timeout_ms,
        .trace = call->trace,
        .idem = call->idem,
        .actor = call->actor,
    };
    mesh_envelope_pack_request_head (&packer, &head);
    if (call->body && call->body_len)
        msgpack_sbuffer_write (&self->buffer, call->body, call->body_len);
    else
        msgpack_pack_nil (&packer);

    const void *parts[] = { "", MDP_CLIENT, call->service, self->buffer.data };
    size_t sizes[] = { 0, strlen (MDP_CLIENT), strlen (call->service), self->buffer.size };
    int rc = mdp_send_parts (self->dealer, ZMQ_DONTWAIT, 4, parts, sizes);
    self->settled = false;
    if (rc) {
        s_entry_free (self, entry);
        return rc == MESH_EBUSY? MESH_EBUSY: MESH_EIO;
    }
    zhashx_insert (self->pending, entry->id, entry);
    s_heap_push (self, entry);
    if (id_out)
        strcpy (id_out, entry->id);
    return 0;
}

//  Forget `entry` and fill the reply's id and tag from it.
static void
s_complete (mesh_client_t *self, s_pending_t *entry, mesh_reply_t *reply)
{
    strcpy (reply->id, entry->id);
    reply->tag = entry->tag;
    s_heap_remove (self, entry);
    zhashx_delete (self->pending, entry->id);
    s_entry_free (self, entry);
}

//  Report `entry`, which came due without a reply: deadline_exceeded, or
//  unavailable when its connection closed under it.
static void
s_report_due (mesh_client_t *self, s_pending_t *entry, mesh_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    bool lost = entry->deadline_mono_ms == S_LOST;
    s_complete (self, entry, reply);
    reply->code = lost? MESH_CODE_UNAVAILABLE: MESH_CODE_DEADLINE_EXCEEDED;
    reply->message.ptr = lost? "the connection to the broker closed with the request in flight"
                             : "no reply before the deadline";
    reply->message.len = strlen (reply->message.ptr);
}

//  Report the earliest pending request if its time has come. Returns true
//  when it did.
static bool
s_expire_one (mesh_client_t *self, mesh_reply_t *reply, int64_t now_ms)
{
    if (self->heap_size == 0 || self->heap[0]->deadline_mono_ms > now_ms)
        return false;
    s_report_due (self, self->heap[0], reply);
    return true;
}

//  The DEALER is drained after a connection closed: every request sent
//  before it comes due now. Replies that made it were taken first.
static void
s_mark_lost (mesh_client_t *self)
{
    self->lost = false;
    for (s_pending_t *entry = zhashx_first (self->pending); entry;
         entry = zhashx_next (self->pending)) {
        if (entry->seq >= self->lost_before || entry->deadline_mono_ms == S_LOST)
            continue;
        s_heap_remove (self, entry);
        entry->deadline_mono_ms = S_LOST;
        s_heap_push (self, entry);
    }
}

//  Take ownership of `frame` as the current reply and decode it. If it
//  answers a pending request other than `only_id` (NULL = any), stash a
//  copy and return MESH_EBUSY. Returns 0 with *reply filled, or MESH_EPROTO
//  for a reply to drop.
static int
s_accept_reply (mesh_client_t *self, zmq_msg_t *frame, mesh_reply_t *reply, const char *only_id)
{
    //  Move before decoding: a small message lives inside its zmq_msg_t, so
    //  views taken before a move would point at the old copy.
    if (self->has_current)
        zmq_msg_close (&self->current);
    zmq_msg_init (&self->current);
    zmq_msg_move (&self->current, frame);
    self->has_current = true;
    mesh_envelope_t envelope;
    if (mesh_envelope_decode (self->decoder, zmq_msg_data (&self->current),
                              zmq_msg_size (&self->current), MESH_ENVELOPE_REPLY, &envelope)
        != 0)
        return MESH_EPROTO;
    char id[MESH_ENVELOPE_MAX_ID + 1];
    memcpy (id, envelope.id.ptr, envelope.id.len);
    id[envelope.id.len] = '\0';
    s_pending_t *entry = zhashx_lookup (self->pending, id);
    if (!entry)
        return MESH_EPROTO;     //  Late reply after its deadline, or not ours
    if (only_id && strcmp (only_id, id) != 0) {
        zmq_msg_t *kept = mesh_alloc (sizeof (zmq_msg_t));
        zmq_msg_init (kept);
        zmq_msg_copy (kept, &self->current);
        self->stash = mesh_realloc (self->stash, (self->stash_size + 1) * sizeof (zmq_msg_t *));
        self->stash[self->stash_size++] = kept;
        return MESH_EBUSY;
    }
    memset (reply, 0, sizeof *reply);
    s_complete (self, entry, reply);
    if (envelope.is_error) {
        reply->code = envelope.code == MESH_CODE_OK? MESH_CODE_INTERNAL: envelope.code;
        reply->message = envelope.message;
    }
    else {
        reply->code = MESH_CODE_OK;
        reply->body = envelope.body;
    }
    return 0;
}

//  Receive one message from the DEALER without waiting. Returns 0 and
//  moves its body frame into *body, MESH_ETIMEDOUT when none is waiting,
//  MESH_EPROTO for a message to drop, or another error.
static int
s_recv_body (mesh_client_t *self, zmq_msg_t *body)
{
    mdp_frames_t frames;
    int rc = mdp_frames_recv (&frames, self->dealer, ZMQ_DONTWAIT);
    self->settled = rc == MESH_ETIMEDOUT;
    if (rc)
        return rc;
    //  "", MDPC01, service, body: exactly one body frame for envelopes
    if (frames.overflow || frames.count != 4 || !mdp_frame_empty (&frames.frame[0])
        || !mdp_frame_eq (&frames.frame[1], MDP_CLIENT))
        rc = MESH_EPROTO;
    else {
        zmq_msg_init (body);
        zmq_msg_move (body, &frames.frame[3]);
    }
    mdp_frames_close (&frames);
    return rc;
}

//  Wait for the next outcome, for `only_id` or for any request.
static int
s_next_outcome (mesh_client_t *self, mesh_reply_t *reply, int timeout_ms, const char *only_id)
{
    //  Replies stashed by an earlier call () come first
    if (!only_id && self->stash_size) {
        zmq_msg_t *kept = self->stash[0];
        memmove (self->stash, self->stash + 1, --self->stash_size * sizeof (zmq_msg_t *));
        int rc = s_accept_reply (self, kept, reply, NULL);
        zmq_msg_close (kept);
        free (kept);
        if (rc == 0)
            return 0;
    }
    int64_t start_ms = mesh_mono_ms ();
    while (true) {
        int64_t now_ms = mesh_mono_ms ();
        if (only_id) {
            s_pending_t *entry = zhashx_lookup (self->pending, only_id);
            if (entry && entry->deadline_mono_ms <= now_ms) {
                s_report_due (self, entry, reply);
                return 0;
            }
        }
        else
        if (s_expire_one (self, reply, now_ms))
            return 0;

        zmq_msg_t body;
        int rc = s_recv_body (self, &body);
        if (rc == 0) {
            rc = s_accept_reply (self, &body, reply, only_id);
            if (rc == 0)
                return 0;
            if (rc == MESH_EPROTO)
                self->dropped++;
            continue;
        }
        if (rc == MESH_EPROTO) {
            self->dropped++;
            continue;
        }
        if (rc != MESH_ETIMEDOUT)
            return rc;
        if (self->lost) {
            s_mark_lost (self);
            continue;
        }

        //  Nothing waiting: sleep on the socket until a reply, the earliest
        //  deadline, or the caller's timeout.
        if (self->heap_size == 0 && timeout_ms < 0)
            return MESH_ETIMEDOUT;
        int64_t wait_ms = -1;
        if (self->heap_size)
            wait_ms = self->heap[0]->deadline_mono_ms - now_ms;
        if (timeout_ms >= 0) {
            int64_t left_ms = start_ms + timeout_ms - now_ms;
            if (left_ms <= 0)
                return MESH_ETIMEDOUT;
            if (wait_ms < 0 || left_ms < wait_ms)
                wait_ms = left_ms;
        }
        zmq_pollitem_t items[] = {
            { self->dealer, 0, ZMQ_POLLIN, 0 },
            { mesh_monitor_socket (self->monitor), 0, ZMQ_POLLIN, 0 },
        };
        if (zmq_poll (items, 2, (long) (wait_ms < 0? 0: wait_ms)) < 0)
            return errno == EINTR? MESH_EINTR: MESH_EIO;
        if (items[1].revents & ZMQ_POLLIN)
            mesh_client_watch (self);
    }
}

//  --------------------------------------------------------------------------
//  Wait for one outcome.
int
mesh_client_recv (mesh_client_t *self, mesh_reply_t *reply, int timeout_ms)
{
    assert (self);
    assert (reply);
    return s_next_outcome (self, reply, timeout_ms, NULL);
}

//  --------------------------------------------------------------------------
//  Send one request and wait for its outcome.
int
mesh_client_call (mesh_client_t *self, const mesh_call_t *call, mesh_reply_t *reply)
{
    assert (self);
    assert (reply);
    //  A close seen since the last wait is older than this request, which
    //  then waits in the queue for the next connection
    mesh_client_watch (self);
    char id[MESH_ENVELOPE_MAX_ID + 1];
    int rc = mesh_client_send (self, call, id);
    if (rc)
        return rc;
    //  Bounded by the request's own deadline
    return s_next_outcome (self, reply, -1, id);
}

//  --------------------------------------------------------------------------
//  Requests sent and not yet reported.
size_t
mesh_client_pending (const mesh_client_t *self)
{
    assert (self);
    return zhashx_size (self->pending);
}

//  --------------------------------------------------------------------------
//  The DEALER socket, for zmq_poll.
void *
mesh_client_socket (mesh_client_t *self)
{
    assert (self);
    return self->dealer;
}

//  --------------------------------------------------------------------------
//  Whether the DEALER is settled for mesh_poll.
bool
mesh_client_settled (const mesh_client_t *self)
{
    assert (self);
    return self->settled;
}

//  --------------------------------------------------------------------------
//  The PAIR with the DEALER's connection events, for zmq_poll.
void *
mesh_client_monitor_socket (mesh_client_t *self)
{
    assert (self);
    return mesh_monitor_socket (self->monitor);
}

//  --------------------------------------------------------------------------
//  Read the connection events waiting on the monitor.
int
mesh_client_watch (mesh_client_t *self)
{
    assert (self);
    int closed = mesh_monitor_closes (self->monitor);
    if (closed) {
        self->lost = true;
        self->lost_before = self->send_seq;
        self->settled = false;
    }
    return closed;
}

//  --------------------------------------------------------------------------
//  Milliseconds until the earliest pending deadline, or -1.
int
mesh_client_next_deadline_ms (const mesh_client_t *self)
{
    assert (self);
    if (self->lost && self->heap_size)
        return 0;
    if (self->heap_size == 0)
        return -1;
    int64_t left = self->heap[0]->deadline_mono_ms - mesh_mono_ms ();
    return left < 0? 0: (int) left;
}
