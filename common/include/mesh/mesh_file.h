/*  =========================================================================
    mesh_file - small files read whole: keys, secrets, certificates
    The gateway (JWT keys, API keys, TLS files) and meshctl (token signing
    keys) read the same kinds of files; one reader and one rule for what a
    secret file holds keep them agreeing on the bytes of a secret.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_FILE_H_INCLUDED
#define MESH_FILE_H_INCLUDED

#include <stddef.h>

//  A whole file of at most `max` bytes as a fresh NUL-terminated string
//  (caller frees), *len its length; NULL with `error` (size bytes) set when
//  it cannot be read or is larger.
char *mesh_file_read (const char *path, size_t max, size_t *len, char *error, size_t size);

//  The secret a file holds: its bytes without one trailing line end ("\n",
//  "\r\n"), which `echo secret > file` and editors add. Shortens `text`
//  in place and updates *len.
void mesh_secret_trim (char *text, size_t *len);

#endif
