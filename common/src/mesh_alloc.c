/*  =========================================================================
    mesh_alloc - allocation that aborts on out-of-memory
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Out of memory is not recoverable for a mesh process: say so and abort.
static void
s_out_of_memory (size_t size)
{
    fprintf (stderr, "{\"level\":\"error\",\"msg\":\"out of memory\",\"size\":%zu}\n", size);
    abort ();
}

void *
mesh_alloc (size_t size)
{
    void *block = calloc (1, size? size: 1);
    if (!block)
        s_out_of_memory (size);
    return block;
}

void *
mesh_realloc (void *block, size_t size)
{
    void *resized = realloc (block, size? size: 1);
    if (!resized)
        s_out_of_memory (size);
    return resized;
}

char *
mesh_strndup (const char *text, size_t len)
{
    char *copy = mesh_alloc (len + 1);
    memcpy (copy, text, len);
    return copy;
}
