/*  =========================================================================
    audit_store - the ports of the audit use cases: where events are kept
    (audit_store_t) and where missed ones are fetched from (audit_source_t)
    Adapters embed the port struct as their FIRST member. The store keeps
    each event once (by event id) and a cursor: the highest seq up to which
    every event is stored, moved in the same transaction as the events.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_STORE_H_INCLUDED
#define AUDIT_STORE_H_INCLUDED

#include "audit_event.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

//  Free an array of `count` events. Tolerates NULL.
static inline void
audit_events_free (audit_event_t *events, size_t count)
{
    if (events)
        for (size_t index = 0; index < count; index++)
            audit_event_clear (&events[index]);
    free (events);
}

//  A page request of audit.list: events in seq order after `after`,
//  optionally only those of one user, one type and/or one actor.
typedef struct {
    const char *user_id;        //  NULL, or a canonical UUID
    const char *type;           //  NULL, or a known type
    const char *actor;          //  NULL, or an actor (audit_actor_valid), matched exactly
    uint64_t after;             //  Seq to start after; 0 = from the first
    size_t limit;               //  Events at most
} audit_query_t;

typedef struct audit_store_s audit_store_t;

//  Return codes: 0, MESH_EUNAVAIL (store unreachable; later may work),
//  MESH_EIO (other failure), plus those listed.
typedef struct {
    //  The cursor (0 before the first event).
    int (*cursor) (audit_store_t *self, uint64_t *seq);
    //  Store `count` events whose seqs are from_cursor + 1, + 2, ... in
    //  order, each once by event id (*stored counts the new ones; the rest
    //  were there already), and move the cursor to the last seq, atomically.
    //  MESH_ECONFLICT when the cursor is no longer from_cursor (another
    //  writer moved it): nothing is counted; reload the cursor.
    int (*append) (audit_store_t *self, uint64_t from_cursor, const audit_event_t *events,
                   size_t count, size_t *stored);
    //  Events matching `query`, seq ascending. On 0 *events_p is a fresh
    //  array of *count_p events (NULL when none): audit_events_free.
    int (*list) (audit_store_t *self, const audit_query_t *query, audit_event_t **events_p,
                 size_t *count_p);
    void (*destroy) (audit_store_t **self_p);
} audit_store_ops_t;

struct audit_store_s {
    const audit_store_ops_t *ops;
};

typedef struct audit_source_s audit_source_t;

typedef struct {
    //  Up to `limit` events with seq > after_seq, in seq order (the user
    //  service's events.list). On 0 *events_p is a fresh array of *count_p
    //  events that passed audit_event_check; *malformed counts those that
    //  did not (skipped). MESH_EUNAVAIL when the source cannot answer now.
    int (*fetch) (audit_source_t *self, uint64_t after_seq, size_t limit,
                  audit_event_t **events_p, size_t *count_p, size_t *malformed);
} audit_source_ops_t;

struct audit_source_s {
    const audit_source_ops_t *ops;
};

static inline int
audit_store_cursor (audit_store_t *self, uint64_t *seq)
{
    return self->ops->cursor (self, seq);
}

static inline int
audit_store_append (audit_store_t *self, uint64_t from_cursor, const audit_event_t *events,
                    size_t count, size_t *stored)
{
    return self->ops->append (self, from_cursor, events, count, stored);
}

static inline int
audit_store_list (audit_store_t *self, const audit_query_t *query, audit_event_t **events_p,
                  size_t *count_p)
{
    return self->ops->list (self, query, events_p, count_p);
}

static inline void
audit_store_destroy (audit_store_t **self_p)
{
    if (self_p && *self_p)
        (*self_p)->ops->destroy (self_p);
}

static inline int
audit_source_fetch (audit_source_t *self, uint64_t after_seq, size_t limit,
                    audit_event_t **events_p, size_t *count_p, size_t *malformed)
{
    return self->ops->fetch (self, after_seq, limit, events_p, count_p, malformed);
}

#endif
