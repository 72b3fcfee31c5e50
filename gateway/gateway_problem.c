/*  =========================================================================
    gateway_problem - application/problem+json (RFC 9457) answers
    One table holds status, type slug and title per kind, so the OpenAPI
    description, the code and the tests read the same list.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_problem.h"

#include <assert.h>
#include <string.h>

typedef struct {
    unsigned int status;
    const char *type;           //  RFC 9457 type URI: stable, documented in openapi.yaml
    const char *title;          //  Same for every occurrence of the kind
} s_kind_t;

static const s_kind_t s_kinds[GATEWAY_PROBLEM_COUNT_] = {
    [GATEWAY_PROBLEM_MALFORMED_JSON] = { 400, "urn:zmesh:problem:malformed-json",
                                         "The request body is not acceptable JSON" },
    [GATEWAY_PROBLEM_BAD_PARAMETER] = { 400, "urn:zmesh:problem:bad-parameter",
                                        "A parameter of the request is invalid" },
    [GATEWAY_PROBLEM_NOT_FOUND] = { 404, "urn:zmesh:problem:no-route",
                                    "No resource at this path" },
    [GATEWAY_PROBLEM_METHOD_NOT_ALLOWED] = { 405, "urn:zmesh:problem:method-not-allowed",
                                             "The method is not allowed on this resource" },
    [GATEWAY_PROBLEM_BODY_TOO_LARGE] = { 413, "urn:zmesh:problem:body-too-large",
                                         "The request body is too large" },
    [GATEWAY_PROBLEM_UNSUPPORTED_MEDIA_TYPE] = { 415, "urn:zmesh:problem:unsupported-media-type",
                                                 "The request body must be application/json" },
    [GATEWAY_PROBLEM_BAD_GATEWAY] = { 502, "urn:zmesh:problem:bad-gateway",
                                      "The service gave a reply the gateway cannot use" },
    [GATEWAY_PROBLEM_RATE_LIMITED] = { 429, "urn:zmesh:problem:rate-limited",
                                       "Too many requests from this caller; slow down" },
    [GATEWAY_PROBLEM_ORIGIN_NOT_ALLOWED] = { 403, "urn:zmesh:problem:origin-not-allowed",
                                             "This origin may not call the API" },
    [GATEWAY_PROBLEM_INVALID_ARGUMENT] = { 422, "urn:zmesh:problem:invalid-argument",
                                           "The request breaks a rule of the service" },
    [GATEWAY_PROBLEM_RESOURCE_NOT_FOUND] = { 404, "urn:zmesh:problem:not-found",
                                             "The resource does not exist" },
    [GATEWAY_PROBLEM_ALREADY_EXISTS] = { 409, "urn:zmesh:problem:already-exists",
                                         "The resource already exists" },
    [GATEWAY_PROBLEM_FAILED_PRECONDITION] = { 422, "urn:zmesh:problem:failed-precondition",
                                              "The request conflicts with the current state" },
    [GATEWAY_PROBLEM_UNAUTHENTICATED] = { 401, "urn:zmesh:problem:unauthenticated",
                                          "Authentication is required" },
    [GATEWAY_PROBLEM_PERMISSION_DENIED] = { 403, "urn:zmesh:problem:permission-denied",
                                            "The request is not permitted" },
    [GATEWAY_PROBLEM_RESOURCE_EXHAUSTED] = { 429, "urn:zmesh:problem:resource-exhausted",
                                             "Too many requests; try again later" },
    [GATEWAY_PROBLEM_UNAVAILABLE] = { 503, "urn:zmesh:problem:unavailable",
                                      "The service is unavailable; try again later" },
    [GATEWAY_PROBLEM_DEADLINE_EXCEEDED] = { 504, "urn:zmesh:problem:deadline-exceeded",
                                            "The service did not answer before the deadline" },
    [GATEWAY_PROBLEM_UNIMPLEMENTED] = { 501, "urn:zmesh:problem:unimplemented",
                                        "The service does not implement this operation" },
    [GATEWAY_PROBLEM_INTERNAL] = { 500, "urn:zmesh:problem:internal",
                                   "The service failed internally" },
};

//  --------------------------------------------------------------------------
//  The kind for a mesh error code.
gateway_problem_t
gateway_problem_for_code (mesh_code_t code)
{
    if (code <= MESH_CODE_OK || code >= MESH_CODE_COUNT_)
        return GATEWAY_PROBLEM_INTERNAL;
    //  The mesh kinds are declared in mesh_code_t order
    return (gateway_problem_t) (GATEWAY_PROBLEM_INVALID_ARGUMENT
                                + (code - MESH_CODE_INVALID_ARGUMENT));
}

//  --------------------------------------------------------------------------
//  HTTP status of a kind.
unsigned int
gateway_problem_status (gateway_problem_t kind)
{
    assert (kind < GATEWAY_PROBLEM_COUNT_);
    return s_kinds[kind].status;
}

//  --------------------------------------------------------------------------
//  The type URI of a kind.
const char *
gateway_problem_type (gateway_problem_t kind)
{
    assert (kind < GATEWAY_PROBLEM_COUNT_);
    return s_kinds[kind].type;
}

//  The field a service's message names ("field 'email': ..."), as a new
//  jansson string, or NULL.
static json_t *
s_field_of (const char *detail)
{
    static const char prefix[] = "field '";
    if (strncmp (detail, prefix, sizeof prefix - 1) != 0)
        return NULL;
    const char *start = detail + sizeof prefix - 1;
    const char *end = strchr (start, '\'');
    if (!end || end == start)
        return NULL;
    return json_stringn (start, (size_t) (end - start));
}

//  --------------------------------------------------------------------------
//  A new problem object.
json_t *
gateway_problem_new (gateway_problem_t kind, const char *detail, const char *request_id)
{
    assert (kind < GATEWAY_PROBLEM_COUNT_);
    const s_kind_t *entry = &s_kinds[kind];
    json_t *problem = json_object ();
    json_object_set_new (problem, "type", json_string (entry->type));
    json_object_set_new (problem, "title", json_string (entry->title));
    json_object_set_new (problem, "status", json_integer (entry->status));
    if (detail) {
        //  Service messages are UTF-8 by contract; a broken one must not
        //  lose the whole answer
        json_t *text = json_string (detail);
        json_object_set_new (problem, "detail", text? text: json_string ("(not UTF-8)"));
        json_t *field = s_field_of (detail);
        if (field)
            json_object_set_new (problem, "field", field);
    }
    if (request_id)
        json_object_set_new (problem, "request_id", json_string (request_id));
    return problem;
}
