/*  =========================================================================
    user - the user value object and the rules its fields obey
    Every check works on (pointer, length) and reads each byte a bounded
    number of times; the *_normalize functions check first and write only
    on success, which is what lets `out` alias `input`. user_new re-runs
    the same checks, so "normal form" has exactly one definition.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user.h"
#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct user_s {
    char id[USER_ID_SIZE];      //  Canonical lower-case UUID text
    char *name;                 //  Normal form, owned
    char *email;                //  Normal form, owned
    int64_t created_at_us;      //  Unix microseconds
    int64_t updated_at_us;      //  Unix microseconds
};

//  --------------------------------------------------------------------------
//  Decode one UTF-8 sequence at `bytes` (`len` > 0 bytes available) into
//  *code_point. Returns its length, 1 to 4, or 0 when the bytes are not
//  well-formed UTF-8 (Unicode 15, table 3-7): overlong forms, surrogates
//  (U+D800..U+DFFF), values above U+10FFFF, stray continuation bytes and
//  truncated sequences are all refused at the first byte that proves it.
static size_t
s_utf8_decode (const unsigned char *bytes, size_t len, uint32_t *code_point)
{
    unsigned int lead = bytes[0];
    if (lead < 0x80) {
        *code_point = lead;
        return 1;
    }
    size_t size;
    unsigned int low = 0x80;    //  Bounds of the second byte, which alone
    unsigned int high = 0xbf;   //  rules out overlongs and surrogates
    if (lead >= 0xc2 && lead <= 0xdf)
        size = 2;
    else
    if (lead >= 0xe0 && lead <= 0xef) {
        size = 3;
        if (lead == 0xe0)
            low = 0xa0;         //  Below: overlong
        else
        if (lead == 0xed)
            high = 0x9f;        //  Above: surrogates
    }
    else
    if (lead >= 0xf0 && lead <= 0xf4) {
        size = 4;
        if (lead == 0xf0)
            low = 0x90;         //  Below: overlong
        else
        if (lead == 0xf4)
            high = 0x8f;        //  Above: beyond U+10FFFF
    }
    else
        return 0;               //  0x80..0xc1 (continuation, overlong), 0xf5..0xff
    if (len < size || bytes[1] < low || bytes[1] > high)
        return 0;
    uint32_t value = lead & (0xffu >> (size + 1));
    value = (value << 6) | (bytes[1] & 0x3fu);
    for (size_t index = 2; index < size; index++) {
        if ((bytes[index] & 0xc0u) != 0x80)
            return 0;
        value = (value << 6) | (bytes[index] & 0x3fu);
    }
    *code_point = value;
    return size;
}

//  True for the code points of Unicode's White_Space property.
static bool
s_is_space (uint32_t code_point)
{
    return (code_point >= 0x09 && code_point <= 0x0d) || code_point == 0x20
        || code_point == 0x85 || code_point == 0xa0 || code_point == 0x1680
        || (code_point >= 0x2000 && code_point <= 0x200a) || code_point == 0x2028
        || code_point == 0x2029 || code_point == 0x202f || code_point == 0x205f
        || code_point == 0x3000;
}

//  True for C0 controls (with NUL), DEL and C1 controls.
static bool
s_is_control (uint32_t code_point)
{
    return code_point < 0x20 || (code_point >= 0x7f && code_point <= 0x9f);
}

//  --------------------------------------------------------------------------
//  Find the bytes [*start, *end) left after trimming white space from both
//  ends; *start == *end when nothing is left. Returns false when the input
//  is not well-formed UTF-8 (then *start and *end mean nothing).
static bool
s_trim (const unsigned char *bytes, size_t len, size_t *start, size_t *end)
{
    bool found = false;
    *start = 0;
    *end = 0;
    size_t at = 0;
    while (at < len) {
        uint32_t code_point = 0;
        size_t size = s_utf8_decode (bytes + at, len - at, &code_point);
        if (size == 0)
            return false;
        if (!s_is_space (code_point)) {
            if (!found)
                *start = at;
            found = true;
            *end = at + size;
        }
        at += size;
    }
    if (!found)
        *start = *end;
    return true;
}

//  --------------------------------------------------------------------------
//  Check a name; on success set [*start, *end) to its trimmed bytes and
//  return NULL, else return why it is invalid.
static const char *
s_name_check (const unsigned char *bytes, size_t len, size_t *start, size_t *end)
{
    if (!s_trim (bytes, len, start, end))
        return "name must be valid UTF-8";
    if (*start == *end)
        return "name must not be empty";
    size_t chars = 0;
    size_t at = *start;
    while (at < *end) {
        uint32_t code_point = 0;
        //  Already validated by s_trim: size is never 0 here
        size_t size = s_utf8_decode (bytes + at, *end - at, &code_point);
        if (s_is_control (code_point))
            return "name must not contain control characters";
        if (code_point == 0x2028 || code_point == 0x2029)
            return "name must not contain line or paragraph separators";
        chars++;
        at += size;
    }
    if (chars > USER_NAME_MAX)
        return "name must be at most 200 characters";
    return NULL;
}

//  True for the characters RFC 5322 allows in an atom (atext).
static bool
s_is_atext (unsigned char byte)
{
    if ((byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z')
        || (byte >= '0' && byte <= '9'))
        return true;
    return byte != '\0' && strchr ("!#$%&'*+-/=?^_`{|}~", byte) != NULL;
}

//  Check the local part of an address (dot-atom form only).
static const char *
s_email_local_check (const unsigned char *local, size_t len)
{
    if (len == 0)
        return "email must have a local part before the '@'";
    if (len > USER_EMAIL_LOCAL_MAX)
        return "email local part must be at most 64 characters";
    for (size_t at = 0; at < len; at++) {
        if (local[at] == '.') {
            if (at == 0 || at == len - 1 || local[at - 1] == '.')
                return "email local part must not start or end with a dot or have two in a row";
        }
        else
        if (!s_is_atext (local[at]))
            return "email local part may contain only letters, digits, dots and "
                   "!#$%&'*+/=?^_`{|}~-";
    }
    return NULL;
}

//  True for a letter, a digit or a hyphen.
static bool
s_is_ldh (unsigned char byte)
{
    return (byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z')
        || (byte >= '0' && byte <= '9') || byte == '-';
}

//  Check the domain of an address: a host name of two or more labels.
static const char *
s_email_domain_check (const unsigned char *domain, size_t len)
{
    if (len == 0)
        return "email must have a domain after the '@'";
    if (domain[0] == '[')
        return "email domain must be a host name (IP literals are not supported)";
    //  The whole address is at most 254 characters, so the domain is at most
    //  252: its own limit of 253 can never be the one that fails.
    assert (len <= USER_EMAIL_DOMAIN_MAX);
    size_t labels = 0;
    size_t label_start = 0;
    bool all_digits = true;     //  Of the label being read
    for (size_t at = 0; at <= len; at++) {
        if (at == len || domain[at] == '.') {
            size_t label_len = at - label_start;
            if (label_len == 0)
                return "email domain must not have empty labels (two dots in a row, or a dot "
                       "first or last)";
            if (label_len > USER_EMAIL_LABEL_MAX)
                return "email domain labels must be at most 63 characters";
            if (domain[label_start] == '-' || domain[at - 1] == '-')
                return "email domain labels must not start or end with a hyphen";
            labels++;
            if (at == len && all_digits)
                return labels == 1? "email domain must have at least two labels"
                                  : "email top-level domain must not be all digits";
            label_start = at + 1;
            all_digits = true;
        }
        else
        if (s_is_ldh (domain[at])) {
            if (domain[at] < '0' || domain[at] > '9')
                all_digits = false;
        }
        else
            return "email domain may contain only letters, digits, hyphens and dots";
    }
    if (labels < 2)
        return "email domain must have at least two labels";
    return NULL;
}

//  --------------------------------------------------------------------------
//  Check an email address; on success set [*start, *end) to its trimmed
//  bytes and return NULL, else return why it is invalid. Does not look at
//  letter case: the caller lower-cases.
static const char *
s_email_check (const unsigned char *bytes, size_t len, size_t *start, size_t *end)
{
    //  Not UTF-8 is certainly not ASCII: same answer as for other non-ASCII
    if (!s_trim (bytes, len, start, end))
        return "email must contain only ASCII characters";
    if (*start == *end)
        return "email must not be empty";
    const unsigned char *address = bytes + *start;
    size_t size = *end - *start;
    const unsigned char *at_sign = NULL;
    size_t at_signs = 0;
    for (size_t at = 0; at < size; at++) {
        if (address[at] >= 0x80)
            return "email must contain only ASCII characters";
        if (address[at] == '@') {
            at_sign = address + at;
            at_signs++;
        }
    }
    if (size > USER_EMAIL_MAX)
        return "email must be at most 254 characters";
    if (at_signs == 0)
        return "email must contain an '@'";
    if (at_signs > 1)
        return "email must contain exactly one '@' (quoted local parts are not supported)";
    const char *why = s_email_local_check (address, (size_t) (at_sign - address));
    if (!why)
        why = s_email_domain_check (at_sign + 1, size - (size_t) (at_sign - address) - 1);
    return why;
}

//  --------------------------------------------------------------------------
//  Normalise a name.
int
user_name_normalize (const char *input, size_t len, char *out, size_t out_size,
                     const char **why)
{
    assert (input || len == 0);
    assert (out);
    assert (out_size >= USER_NAME_SIZE);
    size_t start, end;
    const char *reason = s_name_check ((const unsigned char *) input, len, &start, &end);
    if (reason) {
        if (why)
            *why = reason;
        return MESH_EINVAL;
    }
    memmove (out, input + start, end - start);  //  May overlap: out == input
    out[end - start] = '\0';
    return 0;
}

//  --------------------------------------------------------------------------
//  Normalise an email address.
int
user_email_normalize (const char *input, size_t len, char *out, size_t out_size,
                      const char **why)
{
    assert (input || len == 0);
    assert (out);
    assert (out_size >= USER_EMAIL_SIZE);
    size_t start, end;
    const char *reason = s_email_check ((const unsigned char *) input, len, &start, &end);
    if (reason) {
        if (why)
            *why = reason;
        return MESH_EINVAL;
    }
    //  Forward copy is safe for out == input: out + i <= input + start + i
    for (size_t at = start; at < end; at++) {
        char byte = input[at];
        out[at - start] = byte >= 'A' && byte <= 'Z'? (char) (byte - 'A' + 'a'): byte;
    }
    out[end - start] = '\0';
    return 0;
}

//  --------------------------------------------------------------------------
//  True when `text` has the 8-4-4-4-12 shape with hex digits; lower case
//  only unless `any_case`.
static bool
s_id_check (const char *text, size_t len, bool any_case)
{
    if (len != USER_ID_LEN)
        return false;
    for (size_t at = 0; at < len; at++) {
        char byte = text[at];
        if (at == 8 || at == 13 || at == 18 || at == 23) {
            if (byte != '-')
                return false;
        }
        else
        if (!((byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'f')
              || (any_case && byte >= 'A' && byte <= 'F')))
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  True for a canonical user id.
bool
user_id_valid (const char *text, size_t len)
{
    assert (text || len == 0);
    return s_id_check (text, len, false);
}

//  --------------------------------------------------------------------------
//  Normalise an id from outside to lower case.
int
user_id_normalize (const char *input, size_t len, char *out, size_t out_size,
                   const char **why)
{
    assert (input || len == 0);
    assert (out);
    assert (out_size >= USER_ID_SIZE);
    if (!s_id_check (input, len, true)) {
        if (why)
            *why = "id must be a UUID (8-4-4-4-12 hexadecimal digits)";
        return MESH_EINVAL;
    }
    for (size_t at = 0; at < len; at++) {
        char byte = input[at];
        out[at] = byte >= 'A' && byte <= 'F'? (char) (byte - 'A' + 'a'): byte;
    }
    out[len] = '\0';
    return 0;
}

//  --------------------------------------------------------------------------
//  Check an actor and copy it as it is.
int
user_actor_normalize (const char *input, size_t len, char *out, size_t out_size, const char **why)
{
    assert (input || len == 0);
    assert (out);
    assert (out_size >= USER_ACTOR_SIZE);
    const char *wrong = NULL;
    if (len > USER_ACTOR_MAX)
        wrong = "actor must be at most 256 bytes";
    //  Text only: the actor lands in logs, events and the audit log, where a
    //  newline or an escape sequence could forge or hide a line
    for (size_t at = 0; at < len && !wrong;) {
        uint32_t code_point = 0;
        size_t size = s_utf8_decode ((const unsigned char *)input + at, len - at, &code_point);
        if (size == 0)
            wrong = "actor must be valid UTF-8";
        else if (s_is_control (code_point) || code_point == 0x2028 || code_point == 0x2029)
            wrong = "actor must not contain control characters or line separators";
        at += size;
    }
    if (wrong) {
        if (why)
            *why = wrong;
        return MESH_EINVAL;
    }
    if (len)
        memmove (out, input, len);
    out[len] = '\0';
    return 0;
}

//  --------------------------------------------------------------------------
//  Create a user from values in normal form, or return NULL.
user_t *
user_new (const char *id, const char *name, const char *email, int64_t created_at_us,
          int64_t updated_at_us)
{
    assert (id);
    assert (name);
    assert (email);
    if (!user_id_valid (id, strlen (id)))
        return NULL;
    size_t start, end;
    size_t name_len = strlen (name);
    if (s_name_check ((const unsigned char *) name, name_len, &start, &end)
        || start != 0 || end != name_len)
        return NULL;            //  Invalid, or valid only once trimmed
    size_t email_len = strlen (email);
    if (s_email_check ((const unsigned char *) email, email_len, &start, &end)
        || start != 0 || end != email_len)
        return NULL;
    for (size_t at = 0; at < email_len; at++)
        if (email[at] >= 'A' && email[at] <= 'Z')
            return NULL;        //  Valid, but not lower-cased
    if (created_at_us < USER_TIME_MIN_US || created_at_us > USER_TIME_MAX_US
        || updated_at_us < USER_TIME_MIN_US || updated_at_us > USER_TIME_MAX_US)
        return NULL;

    user_t *self = (user_t *) mesh_alloc (sizeof (user_t));
    memcpy (self->id, id, USER_ID_SIZE);
    self->name = mesh_strndup (name, name_len);
    self->email = mesh_strndup (email, email_len);
    self->created_at_us = created_at_us;
    self->updated_at_us = updated_at_us;
    return self;
}

//  --------------------------------------------------------------------------
//  Copy of a user.
user_t *
user_dup (const user_t *self)
{
    assert (self);
    user_t *copy = (user_t *) mesh_alloc (sizeof (user_t));
    memcpy (copy->id, self->id, USER_ID_SIZE);
    copy->name = mesh_strndup (self->name, strlen (self->name));
    copy->email = mesh_strndup (self->email, strlen (self->email));
    copy->created_at_us = self->created_at_us;
    copy->updated_at_us = self->updated_at_us;
    return copy;
}

//  --------------------------------------------------------------------------
//  Destroy the user; nulls the caller's pointer.
void
user_destroy (user_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        user_t *self = *self_p;
        free (self->name);
        free (self->email);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Accessors.
const char *
user_id (const user_t *self)
{
    assert (self);
    return self->id;
}

const char *
user_name (const user_t *self)
{
    assert (self);
    return self->name;
}

const char *
user_email (const user_t *self)
{
    assert (self);
    return self->email;
}

int64_t
user_created_at_us (const user_t *self)
{
    assert (self);
    return self->created_at_us;
}

int64_t
user_updated_at_us (const user_t *self)
{
    assert (self);
    return self->updated_at_us;
}

//  --------------------------------------------------------------------------
//  Quotient rounded toward minus infinity (C's / rounds toward zero, which
//  would put times before 1970 into the wrong second and day).
static int64_t
s_floor_div (int64_t value, int64_t divisor)
{
    int64_t quotient = value / divisor;
    if (value % divisor < 0)
        quotient--;
    return quotient;
}

//  Write `value` as exactly `width` decimal digits, zero-padded.
static char *
s_put_digits (char *cursor, int64_t value, int width)
{
    for (int index = width - 1; index >= 0; index--) {
        cursor[index] = (char) ('0' + value % 10);
        value /= 10;
    }
    return cursor + width;
}

//  --------------------------------------------------------------------------
//  Format unix microseconds as RFC 3339 UTC with milliseconds. The civil
//  date comes from Howard Hinnant's days-to-date algorithm (proleptic
//  Gregorian, exact for any day count), not gmtime: no time zone, no locale,
//  no POSIX-only calls, and the same answer for negative times.
int
user_format_time (int64_t us, char *buffer, size_t size)
{
    assert (buffer);
    assert (size >= USER_TIME_SIZE);
    if (us < USER_TIME_MIN_US || us > USER_TIME_MAX_US)
        return MESH_EINVAL;
    int64_t ms = s_floor_div (us, 1000);
    int64_t seconds = s_floor_div (ms, 1000);
    int64_t millis = ms - seconds * 1000;
    int64_t days = s_floor_div (seconds, 86400);
    int64_t second_of_day = seconds - days * 86400;

    //  Shift the epoch to 0000-03-01 so that a leap day ends each 400-year
    //  era and every year ends with February
    int64_t shifted = days + 719468;
    int64_t era = s_floor_div (shifted, 146097);
    int64_t day_of_era = shifted - era * 146097;                    //  [0, 146096]
    int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524
                           - day_of_era / 146096) / 365;            //  [0, 399]
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4
                                        - year_of_era / 100);      //  [0, 365]
    int64_t month_index = (5 * day_of_year + 2) / 153;              //  0 = March
    int64_t day = day_of_year - (153 * month_index + 2) / 5 + 1;    //  [1, 31]
    int64_t month = month_index < 10? month_index + 3: month_index - 9;
    int64_t year = year_of_era + era * 400 + (month <= 2);

    char *cursor = buffer;
    cursor = s_put_digits (cursor, year, 4);
    *cursor++ = '-';
    cursor = s_put_digits (cursor, month, 2);
    *cursor++ = '-';
    cursor = s_put_digits (cursor, day, 2);
    *cursor++ = 'T';
    cursor = s_put_digits (cursor, second_of_day / 3600, 2);
    *cursor++ = ':';
    cursor = s_put_digits (cursor, second_of_day / 60 % 60, 2);
    *cursor++ = ':';
    cursor = s_put_digits (cursor, second_of_day % 60, 2);
    *cursor++ = '.';
    cursor = s_put_digits (cursor, millis, 3);
    *cursor++ = 'Z';
    *cursor = '\0';
    return 0;
}
