/*  =========================================================================
    mesh_alloc - allocation that aborts on out-of-memory
    One OOM policy for the project (as CZMQ zmalloc, redis zmalloc): pure
    memory allocation never returns NULL, so callers carry no dead checks.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_ALLOC_H_INCLUDED
#define MESH_ALLOC_H_INCLUDED

#include <stddef.h>

//  Zeroed block of `size` bytes; aborts when memory is exhausted.
void *
    mesh_alloc (size_t size);
//  Resize like realloc; aborts when memory is exhausted.
void *
    mesh_realloc (void *block, size_t size);
//  Copy of `len` bytes plus a terminating NUL; aborts when memory is exhausted.
char *
    mesh_strndup (const char *text, size_t len);

#endif
