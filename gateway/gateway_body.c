/*  =========================================================================
    gateway_body - the JSON body of POST and PATCH as the mesh call's body
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_body.h"

#include "mesh/mesh_json.h"
#include "mesh/mesh_text.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>

//  Refuse with `kind` and `text`; false, for the caller to return.
static bool
s_refuse (gateway_problem_t *kind, char *detail, gateway_problem_t problem, const char *text)
{
    *kind = problem;
    snprintf (detail, GATEWAY_BODY_DETAIL_SIZE, "%s", text);
    return false;
}

//  Replace each byte of `text` that does not start a valid UTF-8 sequence
//  with '?'. jansson quotes the token it stopped at ("invalid escape near
//  '"Zo\xc3'"), which can end inside a multibyte character; the problem
//  body would then drop the whole detail as not UTF-8.
static void
s_utf8_repair (char *text)
{
    unsigned char *cursor = (unsigned char *)text;
    while (*cursor) {
        size_t length = mesh_utf8_length (cursor);
        if (length == 0) {
            *cursor = '?';
            length = 1;
        }
        cursor += length;
    }
}

//  --------------------------------------------------------------------------
//  The body as one packed map, or a refusal.
bool
gateway_body_pack (const char *body, size_t len, const char *id, msgpack_sbuffer *packed,
                   gateway_problem_t *kind, char *detail)
{
    assert (packed);
    assert (kind);
    assert (detail);
    if (len == 0)
        return s_refuse (kind, detail, GATEWAY_PROBLEM_MALFORMED_JSON, "the request body is empty");
    assert (body);
    json_error_t error;
    json_t *json = json_loadb (body, len, JSON_REJECT_DUPLICATES, &error);
    if (!json) {
        *kind = GATEWAY_PROBLEM_MALFORMED_JSON;
        snprintf (detail, GATEWAY_BODY_DETAIL_SIZE, "invalid JSON at line %d, column %d: %s",
                  error.line, error.column, error.text);
        s_utf8_repair (detail);
        return false;
    }
    if (!json_is_object (json)) {
        json_decref (json);
        return s_refuse (kind, detail, GATEWAY_PROBLEM_INVALID_ARGUMENT,
                         "field 'body' must be a JSON object");
    }
    if (id)
        json_object_set_new (json, "id", json_string (id));
    size_t start = packed->size;
    msgpack_packer packer;
    msgpack_packer_init (&packer, packed, msgpack_sbuffer_write);
    int rc = mesh_json_to_msgpack (json, &packer, MESH_JSON_MAX_DEPTH);
    json_decref (json);
    if (rc) {
        packed->size = start; //  Drop what was packed before the too-deep member
        return s_refuse (kind, detail, GATEWAY_PROBLEM_MALFORMED_JSON,
                         "the JSON is nested deeper than 32 levels");
    }
    return true;
}
