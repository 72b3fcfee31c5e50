/*  =========================================================================
    audit_event - one user event as the audit log keeps it, and its rules
    The domain layer of mesh-audit: pure C on libc. An event arrives from the
    broker's XPUB or from events.list as a CloudEvents-shaped map; infra
    decodes it into an audit_event_t, and only events that pass
    audit_event_check are stored. The payload (`data`, the user) is kept as
    JSON text, the form the audit table stores it in (jsonb).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_EVENT_H_INCLUDED
#define AUDIT_EVENT_H_INCLUDED

#include "mesh/mesh_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_UUID_LEN 36           //  Canonical text form, lower-case hex
#define AUDIT_UUID_SIZE (AUDIT_UUID_LEN + 1)
#define AUDIT_TYPE_SIZE 16          //  Longest known type + NUL, rounded up
#define AUDIT_TIME_SIZE 40          //  RFC 3339 with fractions, + NUL
#define AUDIT_TRACE_SIZE 64         //  A W3C traceparent is 55 characters
#define AUDIT_ACTOR_MAX 256         //  Bytes of an actor (the envelope's limit)
#define AUDIT_ACTOR_SIZE (AUDIT_ACTOR_MAX + 1)

typedef struct {
    uint64_t seq;                       //  Given by the user service's relay, from 1
    char id[AUDIT_UUID_SIZE];           //  Event id (CloudEvents id): the primary key
    char type[AUDIT_TYPE_SIZE];         //  user.created, user.updated, user.deleted
    char subject[AUDIT_UUID_SIZE];      //  User id
    char time[AUDIT_TIME_SIZE];         //  When the change happened (RFC 3339)
    char trace[AUDIT_TRACE_SIZE];       //  traceparent, or ""
    char actor[AUDIT_ACTOR_SIZE];       //  Who asked for the change, or "" when none
    char *data;                         //  The user as JSON text; owned
    int64_t time_us;                    //  `time` in unix microseconds
    int64_t received_us;                //  When the audit log stored it; 0 = not yet
} audit_event_t;

//  Free what the event owns (data) and clear it. Tolerates an event that
//  owns nothing.
void
    audit_event_clear (audit_event_t *self);

//  Move `from` into `to` (to's data is freed first); `from` is left empty.
void
    audit_event_move (audit_event_t *to, audit_event_t *from);

//  True when `type` is one of the user service's event types.
bool
    audit_event_type_known (const char *type, size_t len);

//  True when `text` (`len` bytes) is a UUID in canonical form: 8-4-4-4-12
//  lower-case hexadecimal digits.
bool
    audit_uuid_valid (const char *text, size_t len);

//  True when `text` (`len` bytes) can be an actor: 1 to AUDIT_ACTOR_MAX
//  bytes of well-formed UTF-8 without control characters (the user
//  service writes no other kind).
bool audit_actor_valid (const char *text, size_t len);

//  Check an event's fields: seq > 0, id and subject canonical UUIDs, a
//  known type, a time that parsed (time_us set by the decoder), data
//  present, and an actor that is empty or audit_actor_valid. Returns NULL when valid, else a static
//  sentence naming the first field that is not.
const char *
    audit_event_check (const audit_event_t *self);

//  Parse an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS[.fraction]Z" into unix
//  microseconds (fraction truncated to microseconds). Returns 0 or
//  MESH_EINVAL.
int
    audit_time_parse (const char *text, size_t len, int64_t *us);

#endif
