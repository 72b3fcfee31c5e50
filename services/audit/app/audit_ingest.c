/*  =========================================================================
    audit_ingest - every user event into the audit log, exactly once
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_ingest.h"

#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <stdlib.h>

#define S_MAX_PAGES 100000          //  Bound on one catch-up (10^8 events)

struct audit_ingest_s {
    audit_store_t *store;           //  Borrowed
    audit_source_t *source;         //  Borrowed
    uint64_t cursor;                //  Highest contiguous seq stored
    uint64_t latest_seen;           //  Highest seq seen live or fetched
    bool behind;                    //  A catch-up is due
    audit_ingest_stats_t stats;
    audit_event_t *batch;           //  Live events gathered for one append
    size_t batch_count;
    size_t batch_capacity;
};

audit_ingest_t *
audit_ingest_new (audit_store_t *store, audit_source_t *source)
{
    assert (store && source);
    audit_ingest_t *self = mesh_alloc (sizeof *self);
    self->store = store;
    self->source = source;
    self->behind = true;            //  Nothing known until the first catch-up
    return self;
}

void
audit_ingest_destroy (audit_ingest_t **self_p)
{
    if (self_p && *self_p) {
        audit_ingest_t *self = *self_p;
        audit_events_free (self->batch, self->batch_count);
        free (self);
        *self_p = NULL;
    }
}

//  Store `count` events that follow the cursor; move the cursor. Returns 0
//  or the store's error; on MESH_ECONFLICT the cursor is reloaded.
static int
s_append (audit_ingest_t *self, const audit_event_t *events, size_t count)
{
    if (count == 0)
        return 0;
    size_t stored = 0;
    int rc = audit_store_append (self->store, self->cursor, events, count, &stored);
    if (rc == MESH_ECONFLICT) {
        //  Another writer moved the cursor: start again from the store's
        self->behind = true;
        int reload = audit_store_cursor (self->store, &self->cursor);
        return reload ? reload : 0;
    }
    if (rc) {
        self->behind = true;
        return rc;
    }
    self->stats.stored += stored;
    self->stats.duplicates += count - stored;
    self->cursor = events[count - 1].seq;
    return 0;
}

//  Store the gathered live events and forget them.
static int
s_flush (audit_ingest_t *self)
{
    int rc = s_append (self, self->batch, self->batch_count);
    for (size_t index = 0; index < self->batch_count; index++)
        audit_event_clear (&self->batch[index]);
    self->batch_count = 0;
    return rc;
}

int
audit_ingest_catch_up (audit_ingest_t *self)
{
    int rc = audit_store_cursor (self->store, &self->cursor);
    if (rc) {
        self->behind = true;
        return rc;
    }
    for (int page = 0; page < S_MAX_PAGES; page++) {
        audit_event_t *events = NULL;
        size_t count = 0, malformed = 0;
        rc = audit_source_fetch (self->source, self->cursor, AUDIT_INGEST_PAGE, &events, &count,
                                 &malformed);
        if (rc) {
            self->behind = true;
            return rc;
        }
        self->stats.fetched += count;
        self->stats.malformed += malformed;
        //  events.list answers in seq order from cursor + 1; keep the run
        //  that follows the cursor without a hole (a malformed event stops
        //  it: the cursor cannot pass an event it could not store)
        size_t run = 0;
        while (run < count && events[run].seq == self->cursor + run + 1)
            run++;
        if (count && events[count - 1].seq > self->latest_seen)
            self->latest_seen = events[count - 1].seq;
        rc = s_append (self, events, run);
        audit_events_free (events, count);
        if (rc)
            return rc;
        if (count < AUDIT_INGEST_PAGE || run < count || malformed)
            break;
    }
    self->behind = false;
    return 0;
}

//  Gather one live event that is the next seq after cursor and batch.
static void
s_gather (audit_ingest_t *self, audit_event_t *event)
{
    if (self->batch_count == self->batch_capacity) {
        self->batch_capacity = self->batch_capacity ? self->batch_capacity * 2 : 64;
        self->batch = mesh_realloc (self->batch, self->batch_capacity * sizeof *self->batch);
    }
    audit_event_t *slot = &self->batch[self->batch_count++];
    *slot = (audit_event_t) {0};
    audit_event_move (slot, event);
}

int
audit_ingest_offer (audit_ingest_t *self, audit_event_t *events, size_t count)
{
    int rc = 0;
    for (size_t index = 0; index < count; index++) {
        audit_event_t *event = &events[index];
        if (event->seq > self->latest_seen)
            self->latest_seen = event->seq;
        if (rc || self->behind) {
            audit_event_clear (event);      //  The next catch-up brings it
            continue;
        }
        uint64_t expected = self->cursor + self->batch_count + 1;
        if (event->seq < expected) {
            self->stats.duplicates++;
            audit_event_clear (event);
            continue;
        }
        if (event->seq == expected) {
            s_gather (self, event);
            continue;
        }
        //  A gap: store what came before it, fetch what is missing, and
        //  only then look at this event again
        self->stats.gaps++;
        rc = s_flush (self);
        if (!rc)
            rc = audit_ingest_catch_up (self);
        if (rc) {
            audit_event_clear (event);
            continue;
        }
        if (event->seq <= self->cursor) {
            self->stats.duplicates++;
            audit_event_clear (event);
        }
        else if (event->seq == self->cursor + 1)
            s_gather (self, event);
        else {
            //  The source has not numbered it yet: it comes with a later
            //  catch-up
            self->behind = true;
            audit_event_clear (event);
        }
    }
    int flushed = s_flush (self);
    return rc ? rc : flushed;
}

bool
audit_ingest_behind (const audit_ingest_t *self)
{
    return self->behind;
}

uint64_t
audit_ingest_cursor (const audit_ingest_t *self)
{
    return self->cursor;
}

uint64_t
audit_ingest_latest_seen (const audit_ingest_t *self)
{
    return self->latest_seen;
}

const audit_ingest_stats_t *
audit_ingest_stats (const audit_ingest_t *self)
{
    return &self->stats;
}
