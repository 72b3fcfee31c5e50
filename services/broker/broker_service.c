/*  =========================================================================
    broker_service - services of the broker: queues, dispatch, answers
    A service has a ready list of workers and a bounded FIFO of requests
    waiting for one. Dispatch goes to the least recently used worker with
    spare credit; expired requests get the mesh's error envelopes.
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


void
broker__service_destroy (void **item_p)
{
    broker_service_t *service = *item_p;
    if (service) {
        while (service->queue_head) {
            broker_request_t *request = service->queue_head;
            service->queue_head = request->next;
            for (int index = 0; index < request->body_count; index++)
                zmq_msg_close (&request->body[index]);
            free (request);
        }
        free (service);
        *item_p = NULL;
    }
}

//  Send a client reply: client, "", MDPC01, service, body bytes. Returns 0
//  or MESH_EUNAVAIL when the client is gone.
int
broker__send_client (broker_t *self, const broker_peer_id_t *client, const char *service,
                     const void *body, size_t body_size)
{
    const void *parts[] = { client->bytes, "", MDP_CLIENT, service, body };
    size_t sizes[] = { client->len, 0, strlen (MDP_CLIENT), strlen (service), body_size };
    return mdp_send_parts (self->router, ZMQ_DONTWAIT, 5, parts, sizes);
}

//  Answer a request on the mesh's behalf with an error envelope. Plain RFC 7
//  requests (no envelope) get one too, with an empty id: better than silence.
void
broker__answer_error (broker_t *self, broker_service_t *service, const broker_ticket_t *ticket,
                      mesh_code_t code, const char *message)
{
    msgpack_sbuffer_clear (&self->buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &self->buffer, msgpack_sbuffer_write);
    mesh_envelope_pack_error (&packer, ticket->enveloped? ticket->id: NULL,
                              ticket->enveloped? ticket->id_len: 0, code, message);
    if (broker__send_client (self, &ticket->client, service->name, self->buffer.data,
                             self->buffer.size))
        mesh_counter_inc (service->metrics->client_gone);
}

//  Take a queued-request record from the pool.
broker_request_t *
broker__request_new (broker_t *self)
{
    broker_request_t *request = self->request_pool;
    if (request) {
        self->request_pool = request->next;
        self->request_pool_size--;
    }
    else
        request = mesh_alloc (sizeof (broker_request_t));
    request->next = NULL;
    request->body_count = 0;
    return request;
}

//  Return a record to the pool; closes any body frames it still holds.
void
broker__request_free (broker_t *self, broker_request_t *request)
{
    for (int index = 0; index < request->body_count; index++)
        zmq_msg_close (&request->body[index]);
    request->body_count = 0;
    if (self->request_pool_size < BROKER_REQUEST_POOL_MAX) {
        request->next = self->request_pool;
        self->request_pool = request;
        self->request_pool_size++;
    }
    else
        free (request);
}

//  Hand a request to the least recently used worker with spare credit.
//  Returns 0 when dispatched (body consumed), MESH_ENOTFOUND when no worker
//  can take it (body untouched).
int
broker__dispatch (broker_t *self, broker_service_t *service, const broker_ticket_t *ticket,
                  zmq_msg_t *body, int body_count)
{
    while (service->ready_head) {
        broker_worker_t *worker = service->ready_head;
        int rc = broker__send_request (self, worker, ticket, body, body_count);
        if (rc) {
            //  Gone or wedged: it can hold nothing more. Its held requests
            //  are answered; try the next worker.
            broker__worker_delete (self, worker,
                                   rc == MESH_EUNAVAIL? "unreachable": "send queue full");
            continue;
        }
        int slot = 0;
        while (worker->slot_used[slot])
            slot++;
        worker->slot_used[slot] = true;
        worker->slots[slot] = *ticket;
        worker->in_flight++;
        service->in_flight++;
        //  Round robin among workers with spare credit: to the back of the line
        broker__ready_remove (service, worker);
        if (worker->in_flight < worker->credit)
            broker__ready_append (service, worker);
        mesh_histogram_observe (service->metrics->time_in_broker,
                                (double) (self->now_us - ticket->received_us) / 1e6);
        return 0;
    }
    return MESH_ENOTFOUND;
}

//  Move queued requests to ready workers while both exist.
void
broker__drain_queue (broker_t *self, broker_service_t *service)
{
    while (service->queue_head && service->ready_head) {
        broker_request_t *request = service->queue_head;
        if (broker__dispatch (self, service, &request->ticket, request->body, request->body_count))
            break;
        request->body_count = 0;    //  Frames went to the worker
        service->queue_head = request->next;
        if (!service->queue_head)
            service->queue_tail = NULL;
        service->queued--;
        self->queued_total--;
        broker__request_free (self, request);
    }
    mesh_gauge_set (service->metrics->queue_depth, (double) service->queued);
}

//  Look up a service by name; create it when `create` and under the limit.
broker_service_t *
broker__service_require (broker_t *self, const void *name, size_t len, bool create)
{
    //  Traffic comes in runs for one service: skip the hash for those
    broker_service_t *service = self->last_service;
    if (service && service->name_len == len && memcmp (service->name, name, len) == 0)
        return service;
    char key[MDP_MAX_SERVICE_NAME + 1];
    memcpy (key, name, len);
    key[len] = '\0';
    service = zhashx_lookup (self->services, key);
    if (service)
        self->last_service = service;
    if (service || !create || zhashx_size (self->services) >= self->cfg.max_services)
        return service;
    service = mesh_alloc (sizeof (broker_service_t));
    memcpy (service->name, key, len + 1);
    service->name_len = len;
    service->metrics = &self->unregistered_metrics;
    zhashx_insert (self->services, service->name, service);
    mesh_gauge_set (self->metrics.services, (double) zhashx_size (self->services));
    return service;
}

//  Forget a service nobody serves or waits for, unless it ever had a
//  worker (its metric series exist; it is likely to come back).
void
broker__service_reap (broker_t *self, broker_service_t *service)
{
    if (service->workers == 0 && service->queued == 0
        && service->metrics == &self->unregistered_metrics) {
        if (self->last_service == service)
            self->last_service = NULL;
        zhashx_delete (self->services, service->name);
        mesh_gauge_set (self->metrics.services, (double) zhashx_size (self->services));
    }
}

//  Answer every queued request whose deadline has passed.
void
broker__expire_queues (broker_t *self)
{
    uint64_t now_ms = mesh_wall_ms ();
    zlistx_t *idle = NULL;
    for (broker_service_t *service = zhashx_first (self->services); service;
         service = zhashx_next (self->services)) {
        broker_request_t **link = &service->queue_head;
        broker_request_t *previous = NULL;
        while (*link) {
            broker_request_t *request = *link;
            if (request->deadline_ms > now_ms) {
                previous = request;
                link = &request->next;
                continue;
            }
            *link = request->next;
            if (service->queue_tail == request)
                service->queue_tail = previous;
            service->queued--;
            self->queued_total--;
            if (service->workers) {
                broker__answer_error (self, service, &request->ticket, MESH_CODE_DEADLINE_EXCEEDED,
                                      "the request expired waiting for a worker");
                mesh_counter_inc (service->metrics->expired);
            }
            else {
                broker__answer_error (self, service, &request->ticket, MESH_CODE_UNAVAILABLE,
                                      "no worker for this service before the deadline");
                mesh_counter_inc (service->metrics->no_worker);
            }
            broker__request_free (self, request);
        }
        mesh_gauge_set (service->metrics->queue_depth, (double) service->queued);
        if (service->queued == 0 && service->workers == 0) {
            if (!idle)
                idle = zlistx_new ();
            zlistx_add_end (idle, service);
        }
    }
    if (idle) {
        for (broker_service_t *service = zlistx_first (idle); service; service = zlistx_next (idle))
            broker__service_reap (self, service);
        zlistx_destroy (&idle);
    }
}
