/*  =========================================================================
    audit_store_memory - an in-memory audit store and event source, for the
    unit tests of the audit use cases
    The store keeps events in an array (each once by id) and a cursor; the
    source serves a test-filled list of events by seq, as events.list does.
    Both can be made to fail.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_STORE_MEMORY_H_INCLUDED
#define AUDIT_STORE_MEMORY_H_INCLUDED

#include "audit_store.h"

#include <stdbool.h>

typedef struct audit_store_memory_s audit_store_memory_t;

audit_store_memory_t *
    audit_store_memory_new (void);
//  Destroy (also through audit_store_destroy on its port).
void
    audit_store_memory_destroy (audit_store_memory_t **self_p);
//  The store port (borrowed).
audit_store_t *
    audit_store_memory_store (audit_store_memory_t *self);
//  Every operation fails with MESH_EUNAVAIL while down.
void
    audit_store_memory_set_down (audit_store_memory_t *self, bool down);
//  Move the cursor as another writer would.
void
    audit_store_memory_set_cursor (audit_store_memory_t *self, uint64_t seq);
//  Events stored, and how many times the event with `seq` is stored (0/1).
size_t
    audit_store_memory_count (const audit_store_memory_t *self);
size_t
    audit_store_memory_count_seq (const audit_store_memory_t *self, uint64_t seq);

typedef struct audit_source_memory_s audit_source_memory_t;

//  A source holding events 1..count, made by audit_source_memory_event.
audit_source_memory_t *
    audit_source_memory_new (void);
void
    audit_source_memory_destroy (audit_source_memory_t **self_p);
audit_source_t *
    audit_source_memory_source (audit_source_memory_t *self);
//  Number the next event (seq = count + 1) and keep it; a copy is written
//  to *event when `event` is not NULL (the caller clears it).
void
    audit_source_memory_publish (audit_source_memory_t *self, audit_event_t *event);
//  Fetches fail with MESH_EUNAVAIL while down.
void
    audit_source_memory_set_down (audit_source_memory_t *self, bool down);
//  Fetches made so far.
size_t
    audit_source_memory_fetches (const audit_source_memory_t *self);

//  A valid event with `seq` (ids derived from it), for tests.
void
    audit_event_fake (audit_event_t *event, uint64_t seq);

#endif
