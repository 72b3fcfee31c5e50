/*  =========================================================================
    test_gateway - the gateway's pure modules: routes, problem+json, ids
    The route table (templates are the metrics labels), the mesh code to
    HTTP status mapping of DESIGN.md, problem bodies, request ids, W3C
    traceparent handling and JSON request bodies. No sockets, no processes.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_body.h"
#include "gateway_problem.h"
#include "gateway_routes.h"
#include "gateway_trace.h"

#include "mesh/mesh_json.h"

#include <criterion/criterion.h>
#include <string.h>

Test (gateway_routes, match_templates_and_parameters)
{
    char param[40];
    const gateway_route_t *route = gateway_route_match ("/v1/users", param, sizeof param);
    cr_assert_eq (route->id, GATEWAY_ROUTE_USERS);
    route = gateway_route_match ("/v1/users/abc", param, sizeof param);
    cr_assert_eq (route->id, GATEWAY_ROUTE_USER);
    cr_assert_str_eq (route->template, "/v1/users/{id}");
    cr_assert_str_eq (param, "abc");
    cr_assert_eq (gateway_route_match ("/v1/users/", param, sizeof param)->id,
                  GATEWAY_ROUTE_UNMATCHED);
    cr_assert_eq (gateway_route_match ("/v1/users/a/b", param, sizeof param)->id,
                  GATEWAY_ROUTE_UNMATCHED);
    cr_assert_eq (gateway_route_match ("/v1/userss", param, sizeof param)->id,
                  GATEWAY_ROUTE_UNMATCHED);
    cr_assert_eq (gateway_route_match ("/metrics", param, sizeof param)->id,
                  GATEWAY_ROUTE_METRICS);
    cr_assert_eq (gateway_route_match ("/openapi.yaml", param, sizeof param)->id,
                  GATEWAY_ROUTE_OPENAPI);
    cr_assert_str_eq (gateway_route_match ("/nope", param, sizeof param)->template, "unmatched");
    //  A segment too long for the buffer never matches a real id
    char path[200] = "/v1/users/";
    memset (path + strlen (path), 'a', 100);
    route = gateway_route_match (path, param, sizeof param);
    cr_assert_eq (route->id, GATEWAY_ROUTE_USER);
    cr_assert_str_eq (param, "");
}

Test (gateway_routes, methods_and_allow)
{
    cr_assert_eq (gateway_method_parse ("GET"), GATEWAY_METHOD_GET);
    cr_assert_eq (gateway_method_parse ("get"), GATEWAY_METHOD_OTHER);
    cr_assert_eq (gateway_method_parse ("PUT"), GATEWAY_METHOD_OTHER);
    cr_assert_str_eq (gateway_method_label (GATEWAY_METHOD_OTHER), "OTHER");
    const gateway_route_t *users = gateway_route_get (GATEWAY_ROUTE_USERS);
    cr_assert (users->methods & GATEWAY_METHOD_POST);
    cr_assert_not (users->methods & GATEWAY_METHOD_DELETE);
    cr_assert_str_eq (users->allow, "GET, HEAD, POST");
    cr_assert_str_eq (gateway_route_get (GATEWAY_ROUTE_USER)->allow, "GET, HEAD, PATCH, DELETE");
}

Test (gateway_routes, uuid_and_integers)
{
    char out[37];
    cr_assert (gateway_uuid_parse ("0A1B2C3D-0000-4000-8000-00000000000F", out));
    cr_assert_str_eq (out, "0a1b2c3d-0000-4000-8000-00000000000f");
    cr_assert_not (gateway_uuid_parse ("0a1b2c3d00004000800000000000000f", NULL));
    cr_assert_not (gateway_uuid_parse ("0a1b2c3d-0000-4000-8000-00000000000g", NULL));
    cr_assert_not (gateway_uuid_parse ("0a1b2c3d-0000-4000-8000-00000000000", NULL));
    long value = 0;
    cr_assert (gateway_parse_long ("500", 1, 500, &value));
    cr_assert_eq (value, 500);
    cr_assert_not (gateway_parse_long ("501", 1, 500, &value));
    cr_assert_not (gateway_parse_long ("0", 1, 500, &value));
    cr_assert_not (gateway_parse_long ("1x", 1, 500, &value));
    cr_assert_not (gateway_parse_long (" 1", 1, 500, &value));
    cr_assert_not (gateway_parse_long ("", 1, 500, &value));
    cr_assert_not (gateway_parse_long ("99999999999999999999999", 1, 500, &value));
}

Test (gateway_problem, mesh_codes_map_as_design_says)
{
    static const struct {
        mesh_code_t code;
        unsigned int status;
    } table[] = {
        { MESH_CODE_INVALID_ARGUMENT, 422 },  { MESH_CODE_NOT_FOUND, 404 },
        { MESH_CODE_ALREADY_EXISTS, 409 },    { MESH_CODE_FAILED_PRECONDITION, 422 },
        { MESH_CODE_UNAUTHENTICATED, 401 },   { MESH_CODE_PERMISSION_DENIED, 403 },
        { MESH_CODE_RESOURCE_EXHAUSTED, 429 }, { MESH_CODE_UNAVAILABLE, 503 },
        { MESH_CODE_DEADLINE_EXCEEDED, 504 }, { MESH_CODE_UNIMPLEMENTED, 501 },
        { MESH_CODE_INTERNAL, 500 },
    };
    for (size_t index = 0; index < sizeof table / sizeof table[0]; index++)
        cr_assert_eq (gateway_problem_status (gateway_problem_for_code (table[index].code)),
                      table[index].status, "%s", mesh_code_name (table[index].code));
    cr_assert_eq (gateway_problem_for_code ((mesh_code_t) 99), GATEWAY_PROBLEM_INTERNAL);
    cr_assert_eq (gateway_problem_for_code (MESH_CODE_OK), GATEWAY_PROBLEM_INTERNAL);
}

Test (gateway_problem, body_has_every_field_and_names_the_field)
{
    json_t *problem = gateway_problem_new (GATEWAY_PROBLEM_INVALID_ARGUMENT,
                                           "field 'email': must contain an '@'", "rid-1");
    cr_assert_str_eq (json_string_value (json_object_get (problem, "type")),
                      "urn:zmesh:problem:invalid-argument");
    cr_assert_not_null (json_string_value (json_object_get (problem, "title")));
    cr_assert_eq (json_integer_value (json_object_get (problem, "status")), 422);
    cr_assert_str_eq (json_string_value (json_object_get (problem, "detail")),
                      "field 'email': must contain an '@'");
    cr_assert_str_eq (json_string_value (json_object_get (problem, "field")), "email");
    cr_assert_str_eq (json_string_value (json_object_get (problem, "request_id")), "rid-1");
    json_decref (problem);
    problem = gateway_problem_new (GATEWAY_PROBLEM_NOT_FOUND, "no route", NULL);
    cr_assert_null (json_object_get (problem, "field"));
    cr_assert_null (json_object_get (problem, "request_id"));
    json_decref (problem);
    //  Every kind has a distinct type URI
    for (int a = 0; a < GATEWAY_PROBLEM_COUNT_; a++)
        for (int b = a + 1; b < GATEWAY_PROBLEM_COUNT_; b++)
            cr_assert_str_neq (gateway_problem_type ((gateway_problem_t) a),
                               gateway_problem_type ((gateway_problem_t) b));
}

Test (gateway_trace, request_ids)
{
    cr_assert (gateway_request_id_valid ("abc-123_x.y"));
    cr_assert_not (gateway_request_id_valid (""));
    cr_assert_not (gateway_request_id_valid ("a b"));
    cr_assert_not (gateway_request_id_valid ("a\"b"));
    char long_id[GATEWAY_REQUEST_ID_MAX + 2];
    memset (long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    cr_assert_not (gateway_request_id_valid (long_id));
    char first[37], second[37];
    mesh_random_t random;
    mesh_random_init (&random);
    gateway_uuid_make (&random, first);
    gateway_uuid_make (&random, second);
    cr_assert (gateway_uuid_parse (first, NULL));
    cr_assert_eq (first[14], '4');
    cr_assert_str_neq (first, second);
}

Test (gateway_trace, traceparent_keeps_a_valid_trace_and_starts_one_otherwise)
{
    char out[GATEWAY_TRACEPARENT_SIZE], trace_id[GATEWAY_TRACE_ID_SIZE];
    mesh_random_t random;
    mesh_random_init (&random);
    const char *incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    gateway_traceparent_next (&random, incoming, out, trace_id);
    cr_assert_str_eq (trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    cr_assert_eq (strncmp (out, incoming, 36), 0);
    cr_assert_neq (strncmp (out + 36, incoming + 36, 16), 0, "the gateway's hop has its own span");
    cr_assert_str_eq (out + 52, "-00");
    static const char *const bad[] = {
        NULL,
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        gateway_traceparent_next (&random, bad[index], out, trace_id);
        cr_assert_str_neq (trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        cr_assert_eq (strlen (out), 55);
        cr_assert_eq (strncmp (out, "00-", 3), 0);
        cr_assert_str_eq (out + 52, "-01");
    }
}

//  The body packed by gateway_body_pack, read back as JSON text.
static char *
s_packed_text (const msgpack_sbuffer *packed)
{
    msgpack_unpacked object;
    msgpack_unpacked_init (&object);
    size_t offset = 0;
    cr_assert_eq (msgpack_unpack_next (&object, packed->data, packed->size, &offset),
                  MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (offset, packed->size, "one object, nothing after it");
    json_t *json = mesh_msgpack_to_json (&object.data, MESH_JSON_MAX_DEPTH);
    msgpack_unpacked_destroy (&object);
    cr_assert_not_null (json);
    char *text = json_dumps (json, JSON_COMPACT);
    json_decref (json);
    return text;
}

Test (gateway_body, packs_the_object_and_the_path_id_wins)
{
    msgpack_sbuffer packed;
    msgpack_sbuffer_init (&packed);
    gateway_problem_t kind;
    char detail[GATEWAY_BODY_DETAIL_SIZE];
    static const char body[] = "{\"id\": \"x\", \"name\": \"Ada\"}";
    cr_assert (gateway_body_pack (body, strlen (body), "00000000-0000-4000-8000-000000000001",
                                  &packed, &kind, detail));
    char *text = s_packed_text (&packed);
    cr_assert_str_eq (text, "{\"id\":\"00000000-0000-4000-8000-000000000001\",\"name\":\"Ada\"}");
    free (text);
    msgpack_sbuffer_destroy (&packed);
}

Test (gateway_body, refusals_pack_nothing_and_say_why)
{
    struct {
        const char *body;
        gateway_problem_t kind;
        const char *detail;
    } cases[] = {
        {"", GATEWAY_PROBLEM_MALFORMED_JSON, "the request body is empty"},
        {"[1]", GATEWAY_PROBLEM_INVALID_ARGUMENT, "field 'body' must be a JSON object"},
        {"{\"a\": 1, \"a\": 2}", GATEWAY_PROBLEM_MALFORMED_JSON,
         "invalid JSON at line 1, column 12: duplicate object key near '\"a\"'"},
        //  33 levels: one over MESH_JSON_MAX_DEPTH, after some members packed
        {"{\"b\": 1, \"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
         GATEWAY_PROBLEM_MALFORMED_JSON, "the JSON is nested deeper than 32 levels"},
        //  Found by fuzz_gateway_body: jansson's context ends inside "\xc3\xa9"
        {"{\"name\": \"Zo\xc3\xab \\u\xc3\xa9\\n\"}", GATEWAY_PROBLEM_MALFORMED_JSON,
         "invalid JSON at line 1, column 17: invalid escape near '\"Zo\xc3\xab \\u?'"},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        msgpack_sbuffer packed;
        msgpack_sbuffer_init (&packed);
        gateway_problem_t kind = GATEWAY_PROBLEM_COUNT_;
        char detail[GATEWAY_BODY_DETAIL_SIZE];
        cr_assert_not (gateway_body_pack (cases[index].body, strlen (cases[index].body), NULL,
                                          &packed, &kind, detail), "case %zu", index);
        cr_assert_eq (packed.size, 0, "case %zu", index);
        cr_assert_eq (kind, cases[index].kind, "case %zu", index);
        cr_assert_str_eq (detail, cases[index].detail, "case %zu", index);
        //  The whole detail reaches the problem body (it is UTF-8)
        json_t *problem = gateway_problem_new (kind, detail, NULL);
        cr_assert_str_eq (json_string_value (json_object_get (problem, "detail")), detail);
        json_decref (problem);
        msgpack_sbuffer_destroy (&packed);
    }
}
