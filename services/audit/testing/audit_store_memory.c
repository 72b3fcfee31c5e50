/*  =========================================================================
    audit_store_memory - an in-memory audit store and event source
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_store_memory.h"

#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

struct audit_store_memory_s {
    audit_store_t base;         //  First member: casts work
    audit_event_t *events;      //  Owned, in the order stored
    size_t count;
    size_t capacity;
    uint64_t cursor;
    bool down;
};

struct audit_source_memory_s {
    audit_source_t base;        //  First member: casts work
    audit_event_t *events;      //  events[i] has seq i + 1
    size_t count;
    size_t capacity;
    size_t fetches;
    bool down;
};

//  A deep copy (data duplicated).
static void
s_copy (audit_event_t *to, const audit_event_t *from)
{
    *to = *from;
    to->data = from->data ? mesh_strndup (from->data, strlen (from->data)) : NULL;
}

static void
s_push (audit_event_t **events, size_t *count, size_t *capacity, const audit_event_t *event)
{
    if (*count == *capacity) {
        *capacity = *capacity ? *capacity * 2 : 64;
        *events = mesh_realloc (*events, *capacity * sizeof **events);
    }
    s_copy (&(*events)[(*count)++], event);
}

void
audit_event_fake (audit_event_t *event, uint64_t seq)
{
    *event = (audit_event_t) { .seq = seq, .time_us = 1764000000000000 };
    snprintf (event->id, sizeof event->id, "00000000-0000-4000-8000-%012llu",
              (unsigned long long) seq);
    snprintf (event->subject, sizeof event->subject, "00000000-0000-4000-9000-%012llu",
              (unsigned long long) (seq % 7));
    snprintf (event->type, sizeof event->type, "%s", seq % 3 ? "user.updated" : "user.created");
    snprintf (event->time, sizeof event->time, "2025-11-24T16:00:00.000Z");
    event->data = mesh_strndup ("{\"name\":\"x\"}", 12);
}

//  --- store ------------------------------------------------------------------

static audit_store_memory_t *
s_store (audit_store_t *base)
{
    return (audit_store_memory_t *) base;
}

static int
s_cursor (audit_store_t *base, uint64_t *seq)
{
    audit_store_memory_t *self = s_store (base);
    if (self->down)
        return MESH_EUNAVAIL;
    *seq = self->cursor;
    return 0;
}

size_t
audit_store_memory_count_seq (const audit_store_memory_t *self, uint64_t seq)
{
    size_t found = 0;
    for (size_t index = 0; index < self->count; index++)
        found += self->events[index].seq == seq;
    return found;
}

static int
s_append (audit_store_t *base, uint64_t from_cursor, const audit_event_t *events, size_t count,
          size_t *stored)
{
    audit_store_memory_t *self = s_store (base);
    *stored = 0;
    if (self->down)
        return MESH_EUNAVAIL;
    if (self->cursor != from_cursor)
        return MESH_ECONFLICT;
    for (size_t index = 0; index < count; index++) {
        assert (events[index].seq == from_cursor + index + 1);
        bool known = false;
        for (size_t at = 0; at < self->count && !known; at++)
            known = strcmp (self->events[at].id, events[index].id) == 0;
        if (!known) {
            s_push (&self->events, &self->count, &self->capacity, &events[index]);
            (*stored)++;
        }
    }
    if (count)
        self->cursor = events[count - 1].seq;
    return 0;
}

static int
s_list (audit_store_t *base, const audit_query_t *query, audit_event_t **events_p,
        size_t *count_p)
{
    audit_store_memory_t *self = s_store (base);
    *events_p = NULL;
    *count_p = 0;
    if (self->down)
        return MESH_EUNAVAIL;
    size_t capacity = 0;
    //  Stored in seq order by construction (appends follow the cursor)
    for (size_t index = 0; index < self->count && *count_p < query->limit; index++) {
        const audit_event_t *event = &self->events[index];
        if (event->seq <= query->after ||
            (query->user_id && strcmp (event->subject, query->user_id)) ||
            (query->type && strcmp (event->type, query->type)) ||
            (query->actor && strcmp (event->actor, query->actor)))
            continue;
        s_push (events_p, count_p, &capacity, event);
    }
    return 0;
}

static void
s_store_destroy (audit_store_t **base_p)
{
    audit_store_memory_t *self = s_store (*base_p);
    audit_store_memory_destroy (&self);
    *base_p = NULL;
}

static const audit_store_ops_t s_store_ops = {
    .cursor = s_cursor, .append = s_append, .list = s_list, .destroy = s_store_destroy,
};

audit_store_memory_t *
audit_store_memory_new (void)
{
    audit_store_memory_t *self = mesh_alloc (sizeof *self);
    self->base.ops = &s_store_ops;
    return self;
}

void
audit_store_memory_destroy (audit_store_memory_t **self_p)
{
    if (self_p && *self_p) {
        audit_events_free ((*self_p)->events, (*self_p)->count);
        free (*self_p);
        *self_p = NULL;
    }
}

audit_store_t *
audit_store_memory_store (audit_store_memory_t *self)
{
    return &self->base;
}

void
audit_store_memory_set_down (audit_store_memory_t *self, bool down)
{
    self->down = down;
}

void
audit_store_memory_set_cursor (audit_store_memory_t *self, uint64_t seq)
{
    self->cursor = seq;
}

size_t
audit_store_memory_count (const audit_store_memory_t *self)
{
    return self->count;
}

//  --- source -----------------------------------------------------------------

static int
s_fetch (audit_source_t *base, uint64_t after_seq, size_t limit, audit_event_t **events_p,
         size_t *count_p, size_t *malformed)
{
    audit_source_memory_t *self = (audit_source_memory_t *) base;
    *events_p = NULL;
    *count_p = 0;
    *malformed = 0;
    self->fetches++;
    if (self->down)
        return MESH_EUNAVAIL;
    size_t capacity = 0;
    for (size_t index = (size_t) after_seq; index < self->count && *count_p < limit; index++)
        s_push (events_p, count_p, &capacity, &self->events[index]);
    return 0;
}

static const audit_source_ops_t s_source_ops = { .fetch = s_fetch };

audit_source_memory_t *
audit_source_memory_new (void)
{
    audit_source_memory_t *self = mesh_alloc (sizeof *self);
    self->base.ops = &s_source_ops;
    return self;
}

void
audit_source_memory_destroy (audit_source_memory_t **self_p)
{
    if (self_p && *self_p) {
        audit_events_free ((*self_p)->events, (*self_p)->count);
        free (*self_p);
        *self_p = NULL;
    }
}

audit_source_t *
audit_source_memory_source (audit_source_memory_t *self)
{
    return &self->base;
}

void
audit_source_memory_publish (audit_source_memory_t *self, audit_event_t *event)
{
    audit_event_t made;
    audit_event_fake (&made, self->count + 1);
    s_push (&self->events, &self->count, &self->capacity, &made);
    if (event)
        audit_event_move (event, &made);
    else
        audit_event_clear (&made);
}

void
audit_source_memory_set_down (audit_source_memory_t *self, bool down)
{
    self->down = down;
}

size_t
audit_source_memory_fetches (const audit_source_memory_t *self)
{
    return self->fetches;
}
