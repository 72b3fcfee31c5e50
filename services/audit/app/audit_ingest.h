/*  =========================================================================
    audit_ingest - every user event into the audit log, exactly once
    The Clone pattern: the caller subscribes to the live stream first, then
    calls audit_ingest_catch_up (events.list from the stored cursor), then
    offers live events as they come. A live event at or below the cursor is
    a duplicate (counted, dropped); the next seq is stored; a seq beyond
    the next is a gap: what was gathered is stored, the source is asked
    for everything after the cursor, and only then is the live stream
    trusted again. Store and source are ports (audit_store.h), so this is
    pure logic, unit-tested against an in-memory store.
    One ingest per thread.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_INGEST_H_INCLUDED
#define AUDIT_INGEST_H_INCLUDED

#include "audit_store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_INGEST_PAGE 1000      //  Events asked for per events.list call

//  What happened so far; monotonic counts.
typedef struct {
    uint64_t stored;            //  Events stored (new rows)
    uint64_t duplicates;        //  Events dropped or not stored: already there
    uint64_t gaps;              //  Gaps seen in the live stream
    uint64_t fetched;           //  Events received from the source (catch-up)
    uint64_t malformed;         //  Events the source gave that failed the check
} audit_ingest_stats_t;

typedef struct audit_ingest_s audit_ingest_t;

//  Over `store` and `source` (borrowed; they must outlive the ingest).
audit_ingest_t *
    audit_ingest_new (audit_store_t *store, audit_source_t *source);

void
    audit_ingest_destroy (audit_ingest_t **self_p);

//  Read the cursor from the store, then fetch and store everything after
//  it, page by page, until a page comes back short. Returns 0, or the
//  store's or source's error (then audit_ingest_behind is true: call
//  again later).
int
    audit_ingest_catch_up (audit_ingest_t *self);

//  Take `count` live events in arrival order (their data is taken: each
//  event is left cleared). Returns 0, or an error from the store or from
//  the catch-up a gap started; events not stored are then found again by
//  the next catch-up (audit_ingest_behind is true).
int
    audit_ingest_offer (audit_ingest_t *self, audit_event_t *events, size_t count);

//  True when a catch-up is due (start, a failure, a gap that the source
//  could not fill yet).
bool
    audit_ingest_behind (const audit_ingest_t *self);

//  The cursor as last known; the highest seq seen anywhere.
uint64_t
    audit_ingest_cursor (const audit_ingest_t *self);
uint64_t
    audit_ingest_latest_seen (const audit_ingest_t *self);

//  The counts so far (borrowed).
const audit_ingest_stats_t *
    audit_ingest_stats (const audit_ingest_t *self);

#endif
