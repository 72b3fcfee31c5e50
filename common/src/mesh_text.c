/*  =========================================================================
    mesh_text - a growing text buffer, and UTF-8 checks, for the writers
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_text.h"
#include "mesh/mesh_alloc.h"

#include <string.h>

//  --------------------------------------------------------------------------
//  Append `len` bytes to the buffer, keeping it NUL-terminated.
void
mesh_text_append (mesh_text_t *buf, const char *text, size_t len)
{
    if (buf->len + len + 1 > buf->size) {
        while (buf->len + len + 1 > buf->size)
            buf->size = buf->size ? buf->size * 2 : 4096;
        buf->data = mesh_realloc (buf->data, buf->size);
    }
    memcpy (buf->data + buf->len, text, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

//  --------------------------------------------------------------------------
//  Append a NUL-terminated string.
void
mesh_text_puts (mesh_text_t *buf, const char *text)
{
    mesh_text_append (buf, text, strlen (text));
}

//  --------------------------------------------------------------------------
//  Length of the valid UTF-8 sequence at `text`, or 0 when the bytes there
//  are not one (overlong forms, surrogates, > U+10FFFF, truncation).
size_t
mesh_utf8_length (const unsigned char *text)
{
    unsigned char lead = text[0];
    if (lead < 0x80)
        return 1;
    size_t length;
    unsigned char low = 0x80; //  Range of the first continuation byte
    unsigned char high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF)
        length = 2;
    else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        low = lead == 0xE0 ? 0xA0 : 0x80;
        high = lead == 0xED ? 0x9F : 0xBF;
    }
    else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        low = lead == 0xF0 ? 0x90 : 0x80;
        high = lead == 0xF4 ? 0x8F : 0xBF;
    }
    else
        return 0;
    if (text[1] < low || text[1] > high)
        return 0;
    for (size_t index = 2; index < length; index++)
        if (text[index] < 0x80 || text[index] > 0xBF)
            return 0; //  Also stops at the NUL of a truncated sequence
    return length;
}
