/*  =========================================================================
    mesh_err - status codes shared by every module of libmesh
    Functions that can fail at run time return 0 or a negative MESH_E* code
    and never print. Codes travel unchanged up the stack (libuv style); the
    mesh error names of DESIGN.md (invalid_argument, ...) map to them with
    mesh_err_code_name and mesh_err_from_code_name.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_ERR_H_INCLUDED
#define MESH_ERR_H_INCLUDED

#include <stddef.h>

enum {
    MESH_OK = 0,
    MESH_EINVAL = -1,       //  Bad argument or malformed input
    MESH_EPROTO = -2,       //  Peer broke the wire protocol
    MESH_ENOTFOUND = -3,    //  No such thing
    MESH_ECONFLICT = -4,    //  Already exists
    MESH_EIO = -5,          //  Socket, file or database failure
    MESH_ETIMEDOUT = -6,    //  Deadline or timeout passed
    MESH_EINTR = -7,        //  Interrupted (shutdown requested)
    MESH_ETOOBIG = -8,      //  Over a size limit
    MESH_ETOODEEP = -9,     //  Nesting over the limit
    MESH_EVERSION = -10,    //  Unknown protocol or envelope version
    MESH_EUNAVAIL = -11,    //  Peer or service unavailable
    MESH_EBUSY = -12,       //  Resource exhausted (queue full, id in use)
    MESH_ETYPE = -13,       //  A field has the wrong type
};

//  Short English description of a MESH_E* code. Never NULL; static storage.
const char *
    mesh_strerror (int rc);

//  Mesh error codes of the envelope (DESIGN.md), gRPC names in lower case.
typedef enum {
    MESH_CODE_OK = 0,
    MESH_CODE_INVALID_ARGUMENT,
    MESH_CODE_NOT_FOUND,
    MESH_CODE_ALREADY_EXISTS,
    MESH_CODE_FAILED_PRECONDITION,
    MESH_CODE_UNAUTHENTICATED,
    MESH_CODE_PERMISSION_DENIED,
    MESH_CODE_RESOURCE_EXHAUSTED,
    MESH_CODE_UNAVAILABLE,
    MESH_CODE_DEADLINE_EXCEEDED,
    MESH_CODE_UNIMPLEMENTED,
    MESH_CODE_INTERNAL,
    MESH_CODE_COUNT_
} mesh_code_t;

//  Wire name of a code ("not_found"); "internal" for values out of range.
const char *
    mesh_code_name (mesh_code_t code);
//  Code for a wire name of `len` bytes; MESH_CODE_INTERNAL when unknown
//  (an unknown code from a newer peer is still an error, never success).
mesh_code_t
    mesh_code_from_name (const char *name, size_t len);

#endif
