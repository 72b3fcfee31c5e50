/*  =========================================================================
    mesh_random - random bytes for ids, from the kernel, 4 KiB at a time
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_random.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

//  --------------------------------------------------------------------------
void
mesh_random_init (mesh_random_t *self)
{
    assert (self);
    self->used = sizeof self->bytes;
}

//  --------------------------------------------------------------------------
void
mesh_random_fill (mesh_random_t *self, void *out, size_t size)
{
    assert (self && out && size <= sizeof self->bytes);
    if (sizeof self->bytes - self->used < size) {
        size_t have = 0;
        while (have < sizeof self->bytes) {
            ssize_t got = getrandom (self->bytes + have, sizeof self->bytes - have, 0);
            if (got > 0)
                have += (size_t)got;
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
