/*  =========================================================================
    broker_worker - workers of the broker: identity, ready list, slots
    A worker is found by its raw routing id (no formatting on the hot path),
    sits in its service's ready list while it has spare credit, and keeps a
    slot per request it holds so the broker can answer for them if it dies.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "broker_internal.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


//  Hash and compare routing ids (worker hash keys).
size_t
broker__peer_id_hash (const void *key)
{
    const broker_peer_id_t *id = key;
    size_t hash = 2166136261u;  //  FNV-1a
    for (int index = 0; index < id->len; index++)
        hash = (hash ^ id->bytes[index]) * 16777619u;
    return hash;
}

int
broker__peer_id_compare (const void *a, const void *b)
{
    const broker_peer_id_t *left = a, *right = b;
    if (left->len != right->len)
        return left->len < right->len? -1: 1;
    return memcmp (left->bytes, right->bytes, left->len);
}

//  Copy a routing-id frame into *id. Returns false when it cannot be one.
bool
broker__peer_id_from (broker_peer_id_t *id, zmq_msg_t *frame)
{
    size_t size = zmq_msg_size (frame);
    if (size == 0 || size > BROKER_PEER_ID_MAX)
        return false;
    id->len = (uint8_t) size;
    memcpy (id->bytes, zmq_msg_data (frame), size);
    return true;
}

//  Hex of a routing id for logs.
void
broker__peer_id_hex (const broker_peer_id_t *id, char *hex, size_t size)
{
    size_t out = 0;
    for (int index = 0; index < id->len && out + 3 <= size; index++)
        out += (size_t) snprintf (hex + out, size - out, "%02x", id->bytes[index]);
    hex[out] = '\0';
}

void
broker__worker_destroy (void **item_p)
{
    broker_worker_t *worker = *item_p;
    if (worker) {
        free (worker->slots);
        free (worker->slot_used);
        free (worker);
        *item_p = NULL;
    }
}

//  Ready list: append at the tail (most recently used).
void
broker__ready_append (broker_service_t *service, broker_worker_t *worker)
{
    assert (!worker->listed);
    worker->prev = service->ready_tail;
    worker->next = NULL;
    if (service->ready_tail)
        service->ready_tail->next = worker;
    else
        service->ready_head = worker;
    service->ready_tail = worker;
    worker->listed = true;
}

void
broker__ready_remove (broker_service_t *service, broker_worker_t *worker)
{
    if (!worker->listed)
        return;
    if (worker->prev)
        worker->prev->next = worker->next;
    else
        service->ready_head = worker->next;
    if (worker->next)
        worker->next->prev = worker->prev;
    else
        service->ready_tail = worker->prev;
    worker->prev = worker->next = NULL;
    worker->listed = false;
}

//  Forget a worker: every request it held is answered unavailable.
void
broker__worker_delete (broker_t *self, broker_worker_t *worker, const char *why)
{
    broker_service_t *service = worker->service;
    char hex[2 * BROKER_PEER_ID_MAX + 1];
    broker__peer_id_hex (&worker->identity, hex, sizeof hex);
    char held[16];
    snprintf (held, sizeof held, "%d", worker->in_flight);
    mesh_log_kv (MESH_LOG_INFO, "worker removed", "service", service->name, "worker", hex,
                 "reason", why, "requests_held", held, NULL);
    for (int slot = 0; slot < worker->credit; slot++)
        if (worker->slot_used[slot]) {
            broker__answer_error (self, service, &worker->slots[slot], MESH_CODE_UNAVAILABLE,
                                  "the worker handling this request died");
            mesh_counter_inc (service->metrics->worker_lost);
        }
    broker__ready_remove (service, worker);
    service->workers--;
    service->credit_total -= (size_t) worker->credit;
    service->in_flight -= (size_t) worker->in_flight;
    mesh_gauge_set (service->metrics->workers, (double) service->workers);
    zhashx_delete (self->workers, &worker->identity);   //  Frees worker
}

//  Send REQUEST to `worker`: identity, "", MDPW01, 0x02, client, "", body.
//  Body frames move (zero copy) and are consumed on success; on failure
//  they are left with the caller. Returns 0, MESH_EUNAVAIL (worker gone)
//  or MESH_EBUSY (its queue is full).
int
broker__send_request (broker_t *self, broker_worker_t *worker, const broker_ticket_t *ticket,
                      zmq_msg_t *body, int body_count)
{
    unsigned char command = MDP_REQUEST;
    const void *parts[] = { worker->identity.bytes, "", MDP_WORKER, &command,
                            ticket->client.bytes, "" };
    size_t sizes[] = { worker->identity.len, 0, strlen (MDP_WORKER), 1, ticket->client.len, 0 };
    for (int index = 0; index < 6; index++)
        //  Only the first frame can be refused; then the message is committed
        if (zmq_send (self->router, parts[index], sizes[index], ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0)
            return errno == EHOSTUNREACH? MESH_EUNAVAIL: MESH_EBUSY;
    for (int index = 0; index < body_count; index++)
        zmq_msg_send (&body[index], self->router, index + 1 < body_count? ZMQ_SNDMORE: 0);
    return 0;
}

//  Send a bare worker command (HEARTBEAT, DISCONNECT) to `identity`.
int
broker__send_command (broker_t *self, const broker_peer_id_t *identity, mdp_command_t command)
{
    unsigned char byte = (unsigned char) command;
    const void *parts[] = { identity->bytes, "", MDP_WORKER, &byte };
    size_t sizes[] = { identity->len, 0, strlen (MDP_WORKER), 1 };
    return mdp_send_parts (self->router, ZMQ_DONTWAIT, 4, parts, sizes);
}

//  Find the slot of `worker` holding the request this REPLY answers: the
//  client must match; when the client has several requests at this worker
//  the envelope id decides. Returns the slot or -1.
int
broker__find_slot (broker_t *self, broker_worker_t *worker, const broker_peer_id_t *client,
                   zmq_msg_t *body, int body_count)
{
    int first = -1, matches = 0;
    for (int slot = 0; slot < worker->credit; slot++)
        if (worker->slot_used[slot] && worker->slots[slot].client.len == client->len
            && memcmp (worker->slots[slot].client.bytes, client->bytes, client->len) == 0) {
            if (first < 0)
                first = slot;
            matches++;
        }
    if (matches <= 1)
        return first;
    mesh_slice_t id;
    uint64_t deadline_ms;
    if (body_count != 1
        || mesh_envelope_peek (zmq_msg_data (body), zmq_msg_size (body), &id, &deadline_ms,
                              NULL)
               != 0)
        return first;
    for (int slot = first; slot < worker->credit; slot++) {
        broker_ticket_t *ticket = &worker->slots[slot];
        if (worker->slot_used[slot] && ticket->client.len == client->len
            && memcmp (ticket->client.bytes, client->bytes, client->len) == 0
            && ticket->enveloped && ticket->id_len == id.len
            && memcmp (ticket->id, id.ptr, id.len) == 0)
            return slot;
    }
    return first;
}
