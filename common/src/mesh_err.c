/*  =========================================================================
    mesh_err - status codes shared by every module of libmesh
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_err.h"

#include <string.h>

//  --------------------------------------------------------------------------
//  Short English description of a MESH_E* code.
const char *
mesh_strerror (int rc)
{
    switch (rc) {
        case MESH_OK: return "success";
        case MESH_EINVAL: return "invalid argument";
        case MESH_EPROTO: return "protocol error";
        case MESH_ENOTFOUND: return "not found";
        case MESH_ECONFLICT: return "already exists";
        case MESH_EIO: return "input/output error";
        case MESH_ETIMEDOUT: return "timed out";
        case MESH_EINTR: return "interrupted";
        case MESH_ETOOBIG: return "too big";
        case MESH_ETOODEEP: return "nested too deep";
        case MESH_EVERSION: return "unknown version";
        case MESH_EUNAVAIL: return "unavailable";
        case MESH_EBUSY: return "resource exhausted";
        case MESH_ETYPE: return "wrong type";
        default: return "unknown error";
    }
}

static const char *const s_code_names[MESH_CODE_COUNT_] = {
    [MESH_CODE_OK] = "ok",
    [MESH_CODE_INVALID_ARGUMENT] = "invalid_argument",
    [MESH_CODE_NOT_FOUND] = "not_found",
    [MESH_CODE_ALREADY_EXISTS] = "already_exists",
    [MESH_CODE_FAILED_PRECONDITION] = "failed_precondition",
    [MESH_CODE_UNAUTHENTICATED] = "unauthenticated",
    [MESH_CODE_PERMISSION_DENIED] = "permission_denied",
    [MESH_CODE_RESOURCE_EXHAUSTED] = "resource_exhausted",
    [MESH_CODE_UNAVAILABLE] = "unavailable",
    [MESH_CODE_DEADLINE_EXCEEDED] = "deadline_exceeded",
    [MESH_CODE_UNIMPLEMENTED] = "unimplemented",
    [MESH_CODE_INTERNAL] = "internal",
};

//  --------------------------------------------------------------------------
//  Wire name of a code.
const char *
mesh_code_name (mesh_code_t code)
{
    if ((int) code < 0 || code >= MESH_CODE_COUNT_)
        return "internal";
    return s_code_names[code];
}

//  --------------------------------------------------------------------------
//  Code for a wire name; unknown names are internal errors.
mesh_code_t
mesh_code_from_name (const char *name, size_t len)
{
    for (int code = MESH_CODE_INVALID_ARGUMENT; code < MESH_CODE_COUNT_; code++)
        if (strlen (s_code_names[code]) == len && memcmp (s_code_names[code], name, len) == 0)
            return (mesh_code_t) code;
    return MESH_CODE_INTERNAL;
}
