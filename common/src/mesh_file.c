/*  =========================================================================
    mesh_file - small files read whole: keys, secrets, certificates
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_file.h"
#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  A whole file of at most `max` bytes as a fresh NUL-terminated string.
char *
mesh_file_read (const char *path, size_t max, size_t *len, char *error, size_t size)
{
    assert (path);
    assert (len);
    FILE *file = fopen (path, "rb");
    if (!file) {
        snprintf (error, size, "cannot read '%s': %s", path, strerror (errno));
        return NULL;
    }
    char *data = mesh_alloc (max + 1);
    size_t got = fread (data, 1, max + 1, file);
    bool failed = ferror (file);
    fclose (file);
    if (failed || got > max) {
        snprintf (error, size, "cannot read '%s': %s", path,
                  failed ? "read error" : "the file is too large");
        free (data);
        return NULL;
    }
    data[got] = '\0';
    *len = got;
    return data;
}

//  --------------------------------------------------------------------------
//  Drop one trailing line end from a secret.
void
mesh_secret_trim (char *text, size_t *len)
{
    assert (text);
    assert (len);
    if (*len && text[*len - 1] == '\n')
        text[--*len] = '\0';
    if (*len && text[*len - 1] == '\r')
        text[--*len] = '\0';
}
