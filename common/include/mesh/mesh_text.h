/*  =========================================================================
    mesh_text - a growing text buffer, and UTF-8 checks, for the writers
    The exposition format (mesh_metrics) and the OTLP JSON body (mesh_trace)
    are written straight into one buffer each, rather than built as trees;
    both must never emit invalid UTF-8, which their readers reject whole.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_TEXT_H_INCLUDED
#define MESH_TEXT_H_INCLUDED

#include <stddef.h>

//  A NUL-terminated text that grows; start it as { NULL, 0, 0 }. The
//  owner frees `data` (NULL until the first append).
typedef struct {
    char *data;  //  NUL-terminated text, owned
    size_t len;  //  Bytes used, without the NUL
    size_t size; //  Bytes allocated
} mesh_text_t;

//  Append `len` bytes of `text`, keeping the buffer NUL-terminated; aborts
//  when memory is exhausted (mesh_alloc's policy).
void mesh_text_append (mesh_text_t *self, const char *text, size_t len);

//  Append a NUL-terminated string.
void mesh_text_puts (mesh_text_t *self, const char *text);

//  Length of the valid UTF-8 sequence at `text` (1 for ASCII), or 0 when
//  the bytes there are not one (overlong forms, surrogates, > U+10FFFF, a
//  sequence cut by the end of the string). Reads no further than a NUL.
size_t mesh_utf8_length (const unsigned char *text);

#endif
