/*  =========================================================================
    user_outbox - reading outbox rows on PostgreSQL, shared by events.list
    (user_repo_pg) and the relay (user_relay)
    Both select the same columns and turn each row into a
    user_stored_event_t, so an event read by events.list and the same event
    published by the relay are packed from identical values. Results are
    requested in binary format: `data` (bytea, the MessagePack payload)
    arrives as raw bytes, with no hex decoding and no extra copy.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_OUTBOX_H_INCLUDED
#define USER_OUTBOX_H_INCLUDED

#include "user_repo.h"

#include <libpq-fe.h>

//  int8 unix microseconds in parameter $n as a timestamptz. Whole seconds
//  and the remaining microseconds are scaled separately: interval * number
//  goes through float8, exact only below 2^53, which whole seconds (and
//  microseconds under a million) always are, but microseconds since the
//  epoch are not for years far from now.
#define USER_SQL_TIME(n)                                                                           \
    "(timestamptz 'epoch' + ($" n "::int8 / 1000000) * interval '1 second'"                        \
    " + ($" n "::int8 % 1000000) * interval '1 microsecond')"

//  A timestamptz column as int8 unix microseconds (extract returns numeric
//  since PostgreSQL 14: exact).
#define USER_SQL_MICROS(column) "(extract(epoch FROM " column ") * 1000000)::int8"

//  The columns user_outbox_event_from_row reads, in its order, qualified by
//  table alias `t` (use "outbox" when there is no alias).
#define USER_OUTBOX_EVENT_COLUMNS(t)                                                               \
    t ".seq, " t ".event_id::text, " t ".type, " t ".subject::text, coalesce(" t                   \
      ".trace, ''), " USER_SQL_MICROS (t ".created_at") ", " t ".data, coalesce(" t ".actor, '')"

//  Fill *event from row `row` of a binary-format result whose first columns
//  are USER_OUTBOX_EVENT_COLUMNS. event->data is a fresh copy of the
//  payload (the caller frees it, e.g. with user_stored_events_free).
//  Returns 0, or MESH_EIO when a value does not fit (a row not written by
//  this service: NULL seq, over-long type, trace or actor).
int
    user_outbox_event_from_row (const PGresult *result, int row, user_stored_event_t *event);

#endif
