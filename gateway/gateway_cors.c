/*  =========================================================================
    gateway_cors - which browser origins may call the API (CORS)
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_cors.h"

#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct gateway_cors_s {
    char **origins; //  Owned strings
    size_t count;
    bool any; //  `*` was listed
};

//  --------------------------------------------------------------------------
//  Origins from a comma list.
gateway_cors_t *
gateway_cors_new (const char *origins)
{
    gateway_cors_t *self = mesh_alloc (sizeof (gateway_cors_t));
    for (const char *item = origins; item && *item;) {
        item += strspn (item, " \t");
        size_t len = strcspn (item, ",");
        size_t trimmed = len;
        while (trimmed && (item[trimmed - 1] == ' ' || item[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed == 1 && item[0] == '*')
            self->any = true;
        else if (trimmed) {
            self->origins = mesh_realloc (self->origins, (self->count + 1) * sizeof (char *));
            self->origins[self->count++] = mesh_strndup (item, trimmed);
        }
        item += len + (item[len] ? 1 : 0);
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
gateway_cors_destroy (gateway_cors_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_cors_t *self = *self_p;
        for (size_t index = 0; index < self->count; index++)
            free (self->origins[index]);
        free (self->origins);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  True when any origin is allowed at all.
bool
gateway_cors_enabled (const gateway_cors_t *self)
{
    assert (self);
    return self->any || self->count > 0;
}

//  --------------------------------------------------------------------------
//  True when `origin` may read responses.
bool
gateway_cors_allowed (const gateway_cors_t *self, const char *origin)
{
    assert (self);
    //  "null" is what sandboxed frames and file: pages send: never trusted
    if (!origin || !*origin || strcmp (origin, "null") == 0)
        return false;
    if (self->any)
        return true;
    for (size_t index = 0; index < self->count; index++)
        if (strcmp (self->origins[index], origin) == 0)
            return true;
    return false;
}
