/*  =========================================================================
    gateway_problem - application/problem+json (RFC 9457) answers
    Every error the gateway gives is one of the kinds below: a status, a
    stable `type` URI and a title, plus a detail that says exactly what was
    wrong with this request and the request id to quote. Mesh error codes
    map to kinds as DESIGN.md says (invalid_argument 422, not_found 404, ...).
    Pure: no I/O, so unit tests check every mapping.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_PROBLEM_H_INCLUDED
#define GATEWAY_PROBLEM_H_INCLUDED

#include "mesh/mesh_err.h"

#include <jansson.h>

typedef enum {
    GATEWAY_PROBLEM_MALFORMED_JSON,         //  400: not JSON, too deep, duplicate key
    GATEWAY_PROBLEM_BAD_PARAMETER,          //  400: path or query parameter, header
    GATEWAY_PROBLEM_NOT_FOUND,              //  404: no such route
    GATEWAY_PROBLEM_METHOD_NOT_ALLOWED,     //  405 (+ Allow)
    GATEWAY_PROBLEM_BODY_TOO_LARGE,         //  413
    GATEWAY_PROBLEM_UNSUPPORTED_MEDIA_TYPE, //  415
    GATEWAY_PROBLEM_BAD_GATEWAY,            //  502: a reply the gateway cannot use
    GATEWAY_PROBLEM_RATE_LIMITED,           //  429: this caller's rate limit (+ Retry-After)
    GATEWAY_PROBLEM_ORIGIN_NOT_ALLOWED,     //  403: a CORS preflight from another origin
    //  Mesh error codes, in mesh_code_t order from invalid_argument
    GATEWAY_PROBLEM_INVALID_ARGUMENT,       //  422
    GATEWAY_PROBLEM_RESOURCE_NOT_FOUND,     //  404
    GATEWAY_PROBLEM_ALREADY_EXISTS,         //  409
    GATEWAY_PROBLEM_FAILED_PRECONDITION,    //  422
    GATEWAY_PROBLEM_UNAUTHENTICATED,        //  401
    GATEWAY_PROBLEM_PERMISSION_DENIED,      //  403
    GATEWAY_PROBLEM_RESOURCE_EXHAUSTED,     //  429 (+ Retry-After)
    GATEWAY_PROBLEM_UNAVAILABLE,            //  503 (+ Retry-After)
    GATEWAY_PROBLEM_DEADLINE_EXCEEDED,      //  504
    GATEWAY_PROBLEM_UNIMPLEMENTED,          //  501
    GATEWAY_PROBLEM_INTERNAL,               //  500
    GATEWAY_PROBLEM_COUNT_
} gateway_problem_t;

//  The kind for a mesh error code (never MESH_CODE_OK; unknown codes are
//  internal).
gateway_problem_t
    gateway_problem_for_code (mesh_code_t code);

//  HTTP status of a kind.
unsigned int
    gateway_problem_status (gateway_problem_t kind);

//  The `type` URI of a kind ("urn:zmesh:problem:not-found"). Static.
const char *
    gateway_problem_type (gateway_problem_t kind);

//  A new problem object: type, title, status, detail, request_id and, when
//  the detail names a field the way the services do ("field 'email': ..."),
//  "field". `detail` and `request_id` may be NULL (left out). Caller decrefs.
json_t *
    gateway_problem_new (gateway_problem_t kind, const char *detail, const char *request_id);

#endif
