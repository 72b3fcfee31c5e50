/*  =========================================================================
    gateway_trace - request ids and W3C trace context for HTTP requests
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_trace.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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
//  A random version 4 UUID.
void
gateway_uuid_make (mesh_random_t *random, char *out)
{
    assert (out);
    unsigned char bytes[16];
    mesh_random_fill (random, bytes, sizeof bytes);
    bytes[6] = (unsigned char) ((bytes[6] & 0x0F) | 0x40);
    bytes[8] = (unsigned char) ((bytes[8] & 0x3F) | 0x80);
    char hex[33];
    mesh_trace_hex (bytes, sizeof bytes, hex);
    snprintf (out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
              hex + 20);
}

//  --------------------------------------------------------------------------
//  The traceparent to send on.
void
gateway_traceparent_next (mesh_random_t *random, const char *incoming, char *out,
                          char *trace_id)
{
    assert (out);
    assert (trace_id);
    mesh_trace_ctx_t ctx;
    if (mesh_traceparent_parse (incoming, &ctx) != 0) {
        mesh_random_fill (random, ctx.trace_id, sizeof ctx.trace_id);
        ctx.flags = MESH_TRACE_FLAG_SAMPLED;    //  A trace we start is sampled
    }
    mesh_random_fill (random, ctx.span_id, sizeof ctx.span_id);
    mesh_trace_hex (ctx.trace_id, sizeof ctx.trace_id, trace_id);
    mesh_traceparent_format (&ctx, out);
}
