/*  =========================================================================
    gateway_trace - request ids and W3C trace context for HTTP requests
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_trace.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

//  --------------------------------------------------------------------------
//  True when `text` is a usable request id.
bool
gateway_request_id_valid (const char *text)
{
    assert (text);
    size_t len = strlen (text);
    if (len == 0 || len > GATEWAY_REQUEST_ID_MAX)
        return false;
    for (size_t index = 0; index < len; index++) {
        unsigned char c = (unsigned char) text[index];
        if (c <= ' ' || c >= 0x7F || c == '"' || c == '\\')
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
void
gateway_random_init (gateway_random_t *self)
{
    assert (self);
    self->used = sizeof self->bytes;
}

//  --------------------------------------------------------------------------
void
gateway_random_fill (gateway_random_t *self, void *out, size_t size)
{
    assert (self && out && size <= sizeof self->bytes);
    if (sizeof self->bytes - self->used < size) {
        size_t have = 0;
        while (have < sizeof self->bytes) {
            ssize_t got = getrandom (self->bytes + have, sizeof self->bytes - have, 0);
            if (got > 0)
                have += (size_t) got;
            else if (!(got < 0 && errno == EINTR))
                abort ();
        }
        self->used = 0;
    }
    memcpy (out, self->bytes + self->used, size);
    //  Bytes handed out are not kept around in memory
    memset (self->bytes + self->used, 0, size);
    self->used += size;
}

//  Lower-case hex of `size` bytes into `out` (2 * size + 1 bytes).
static void
s_hex (const unsigned char *bytes, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t index = 0; index < size; index++) {
        out[2 * index] = digits[bytes[index] >> 4];
        out[2 * index + 1] = digits[bytes[index] & 0xF];
    }
    out[2 * size] = '\0';
}

//  --------------------------------------------------------------------------
//  A random version 4 UUID.
void
gateway_uuid_make (gateway_random_t *random, char *out)
{
    assert (out);
    unsigned char bytes[16];
    gateway_random_fill (random, bytes, sizeof bytes);
    bytes[6] = (unsigned char) ((bytes[6] & 0x0F) | 0x40);
    bytes[8] = (unsigned char) ((bytes[8] & 0x3F) | 0x80);
    char hex[33];
    s_hex (bytes, sizeof bytes, hex);
    snprintf (out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
              hex + 20);
}

//  True when `text` holds `len` lower-case hex digits, not all zero.
static bool
s_hex_valid (const char *text, size_t len)
{
    bool nonzero = false;
    for (size_t index = 0; index < len; index++) {
        char c = text[index];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        nonzero |= c != '0';
    }
    return nonzero;
}

//  --------------------------------------------------------------------------
//  The traceparent to send on.
void
gateway_traceparent_next (gateway_random_t *random, const char *incoming, char *out,
                          char *trace_id)
{
    assert (out);
    assert (trace_id);
    char flags[3] = "01";       //  A trace we start is sampled
    //  00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>
    if (incoming && strlen (incoming) == 55 && strncmp (incoming, "00-", 3) == 0
        && incoming[35] == '-' && incoming[52] == '-' && s_hex_valid (incoming + 3, 32)
        && s_hex_valid (incoming + 36, 16)
        && (s_hex_valid (incoming + 53, 2) || strcmp (incoming + 53, "00") == 0)) {
        memcpy (trace_id, incoming + 3, 32);
        trace_id[32] = '\0';
        memcpy (flags, incoming + 53, 2);
    }
    else {
        unsigned char bytes[16];
        gateway_random_fill (random, bytes, sizeof bytes);
        s_hex (bytes, sizeof bytes, trace_id);
    }
    unsigned char span[8];
    gateway_random_fill (random, span, sizeof span);
    char span_hex[17];
    s_hex (span, sizeof span, span_hex);
    snprintf (out, GATEWAY_TRACEPARENT_SIZE, "00-%s-%s-%s", trace_id, span_hex, flags);
}
