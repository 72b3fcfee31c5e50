/*  =========================================================================
    audit_event - one user event as the audit log keeps it, and its rules
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_event.h"

#include <stdlib.h>
#include <string.h>

void
audit_event_clear (audit_event_t *self)
{
    free (self->data);
    memset (self, 0, sizeof *self);
}

void
audit_event_move (audit_event_t *to, audit_event_t *from)
{
    free (to->data);
    *to = *from;
    memset (from, 0, sizeof *from);
}

bool
audit_event_type_known (const char *type, size_t len)
{
    static const char *const known[] = {"user.created", "user.updated", "user.deleted"};
    for (size_t index = 0; index < sizeof known / sizeof known[0]; index++)
        if (strlen (known[index]) == len && memcmp (known[index], type, len) == 0)
            return true;
    return false;
}

bool
audit_uuid_valid (const char *text, size_t len)
{
    if (len != AUDIT_UUID_LEN)
        return false;
    for (size_t at = 0; at < len; at++) {
        bool dash = at == 8 || at == 13 || at == 18 || at == 23;
        char c = text[at];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

//  Length of the well-formed UTF-8 sequence at `bytes` (`len` > 0 bytes),
//  1 to 4, or 0 (Unicode table 3-7: no overlongs, surrogates, values above
//  U+10FFFF, stray or missing continuation bytes). Control characters (C0,
//  DEL, C1) count as not well-formed here: an actor is printable text.
static size_t
s_utf8_text (const unsigned char *bytes, size_t len)
{
    unsigned int lead = bytes[0];
    if (lead < 0x80)
        return lead >= 0x20 && lead != 0x7f ? 1 : 0;
    //  Each lead byte: the sequence's length and the range of its second byte
    size_t size = lead >= 0xc2 && lead <= 0xdf   ? 2
                  : lead >= 0xe0 && lead <= 0xef ? 3
                  : lead >= 0xf0 && lead <= 0xf4 ? 4
                                                 : 0;
    unsigned int low = lead == 0xe0 ? 0xa0 : lead == 0xf0 ? 0x90 : 0x80;
    unsigned int high = lead == 0xed ? 0x9f : lead == 0xf4 ? 0x8f : 0xbf;
    if (size == 0 || len < size || bytes[1] < low || bytes[1] > high)
        return 0;
    for (size_t index = 2; index < size; index++)
        if ((bytes[index] & 0xc0u) != 0x80)
            return 0;
    if (lead == 0xc2 && bytes[1] <= 0x9f)
        return 0; //  U+0080..U+009F: C1 controls
    return size;
}

bool
audit_actor_valid (const char *text, size_t len)
{
    if (len == 0 || len > AUDIT_ACTOR_MAX)
        return false;
    for (size_t at = 0; at < len;) {
        size_t size = s_utf8_text ((const unsigned char *)text + at, len - at);
        if (size == 0)
            return false;
        at += size;
    }
    return true;
}

const char *
audit_event_check (const audit_event_t *self)
{
    if (self->seq == 0)
        return "seq must be a positive integer";
    if (!audit_uuid_valid (self->id, strlen (self->id)))
        return "id must be a canonical UUID";
    if (!audit_event_type_known (self->type, strlen (self->type)))
        return "type is not a user event type";
    if (!audit_uuid_valid (self->subject, strlen (self->subject)))
        return "subject must be a canonical UUID";
    if (!self->time[0])
        return "time must be an RFC 3339 UTC time";
    if (!self->data)
        return "data must be present";
    if (self->actor[0] && !audit_actor_valid (self->actor, strlen (self->actor)))
        return "actor must be printable UTF-8 text";
    return NULL;
}

//  Read `count` decimal digits at text[*at]; advances *at.
static bool
s_digits (const char *text, size_t len, size_t *at, int count, int64_t *value)
{
    *value = 0;
    for (int index = 0; index < count; index++, (*at)++) {
        if (*at >= len || text[*at] < '0' || text[*at] > '9')
            return false;
        *value = *value * 10 + (text[*at] - '0');
    }
    return true;
}

//  Days from 1970-01-01 to the civil date (proleptic Gregorian).
static int64_t
s_days (int64_t year, int64_t month, int64_t day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

int
audit_time_parse (const char *text, size_t len, int64_t *us)
{
    size_t at = 0;
    int64_t year, month, day, hour, minute, second, fraction = 0;
    if (!s_digits (text, len, &at, 4, &year) || at >= len || text[at++] != '-'
        || !s_digits (text, len, &at, 2, &month) || at >= len || text[at++] != '-'
        || !s_digits (text, len, &at, 2, &day) || at >= len || text[at++] != 'T'
        || !s_digits (text, len, &at, 2, &hour) || at >= len || text[at++] != ':'
        || !s_digits (text, len, &at, 2, &minute) || at >= len || text[at++] != ':'
        || !s_digits (text, len, &at, 2, &second))
        return MESH_EINVAL;
    if (at < len && text[at] == '.') {
        at++;
        int digits = 0;
        while (at < len && text[at] >= '0' && text[at] <= '9') {
            if (digits++ < 6)
                fraction = fraction * 10 + (text[at] - '0');
            at++;
        }
        if (digits == 0)
            return MESH_EINVAL;
        for (; digits < 6; digits++)
            fraction *= 10;
    }
    if (at + 1 != len || text[at] != 'Z' || month < 1 || month > 12 || day < 1 || day > 31
        || hour > 23 || minute > 59 || second > 60)
        return MESH_EINVAL;
    int64_t seconds = s_days (year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    *us = seconds * 1000000 + fraction;
    return 0;
}
