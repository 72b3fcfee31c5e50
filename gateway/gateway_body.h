/*  =========================================================================
    gateway_body - the JSON body of POST /v1/users and PATCH /v1/users/{id}
    as the MessagePack body of the mesh call (user.create, user.update).
    The body is the one part of a request the gateway parses whole, so it
    lives here, apart from the connection state, where a fuzzer and unit
    tests can reach it. Pure: no I/O.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_BODY_H_INCLUDED
#define GATEWAY_BODY_H_INCLUDED

#include "gateway_problem.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

//  Bytes of the detail a refusal writes at most (with the NUL).
#define GATEWAY_BODY_DETAIL_SIZE 256

//  Parse the `len` bytes at `body` (NULL when len is 0) as a JSON object
//  (duplicate keys refused) and append it to `packed` as one MessagePack
//  map, with member "id" set to `id` when `id` is not NULL (the path wins
//  over the body). Returns true when the map was packed. Otherwise leaves
//  `packed` as it was and sets *kind and `detail` (GATEWAY_BODY_DETAIL_SIZE
//  bytes, UTF-8): GATEWAY_PROBLEM_MALFORMED_JSON for an empty body, text
//  that is not JSON, or nesting deeper than MESH_JSON_MAX_DEPTH;
//  GATEWAY_PROBLEM_INVALID_ARGUMENT for JSON that is not an object.
bool gateway_body_pack (const char *body, size_t len, const char *id, msgpack_sbuffer *packed,
                        gateway_problem_t *kind, char *detail);

#endif
