/*  =========================================================================
    mesh_random - random bytes for ids, from the kernel, 4 KiB at a time
    Request ids, trace ids and span ids need unpredictable bytes on every
    request; reading getrandom in 4 KiB blocks makes them cost no system
    call per id (three getrandom calls were 3 of a request's 5 system calls
    on the gateway's GET /healthz). A buffer serves one thread, or callers
    that hold a lock around it.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_RANDOM_H_INCLUDED
#define MESH_RANDOM_H_INCLUDED

#include <stddef.h>

typedef struct {
    unsigned char bytes[4096];
    size_t used; //  Bytes of `bytes` handed out already
} mesh_random_t;

//  An empty buffer (the first use fills it).
void mesh_random_init (mesh_random_t *self);

//  `size` random bytes (at most sizeof self->bytes) into `out`. Aborts when
//  the kernel has no randomness to give: ids that could collide are worse
//  than stopping.
void mesh_random_fill (mesh_random_t *self, void *out, size_t size);

#endif
