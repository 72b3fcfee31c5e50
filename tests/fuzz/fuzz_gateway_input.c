/*  =========================================================================
    fuzz_gateway_input - libFuzzer harness for what the gateway reads from
    HTTP clients before the mesh sees it: request paths (route matching and
    the {id} UUID), X-Request-ID, traceparent, query integers, and problem
    bodies built from any detail text. Each input, as a C string (up to its
    first NUL, as MHD hands strings over), goes to every one of them.
    Nothing may crash, read out of bounds or leak, and every output must
    keep its documented shape.
    Build (clang only): CC=clang cmake -S . -B build/fuzz -DMESH_FUZZ=ON
    Run: build/fuzz/bin/fuzz_gateway_input -max_len=256 [corpus-dir]
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_problem.h"
#include "gateway_routes.h"
#include "gateway_trace.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  A NUL-terminated copy: every field below is a C string, as MHD gives them
    char *text = malloc (size + 1);
    memcpy (text, data, size);
    text[size] = '\0';

    char param[40];
    const gateway_route_t *route = gateway_route_match (text, param, sizeof param);
    assert (route && route->template);
    assert (strlen (param) < sizeof param);
    char uuid[37];
    if (gateway_uuid_parse (param, uuid))
        assert (strlen (uuid) == 36);
    (void) gateway_method_parse (text);

    if (gateway_request_id_valid (text))
        assert (strlen (text) <= GATEWAY_REQUEST_ID_MAX);
    char traceparent[GATEWAY_TRACEPARENT_SIZE], trace_id[GATEWAY_TRACE_ID_SIZE];
    mesh_random_t random;
    mesh_random_init (&random);
    gateway_traceparent_next (&random, text, traceparent, trace_id);
    assert (strlen (traceparent) == 55 && strlen (trace_id) == 32);

    long value = 0;
    if (gateway_parse_long (text, 1, 500, &value))
        assert (value >= 1 && value <= 500);

    json_t *problem = gateway_problem_new (
        gateway_problem_for_code ((mesh_code_t) (size % 16)), text, text);
    assert (json_object_get (problem, "type") && json_object_get (problem, "status"));
    json_decref (problem);
    free (text);
    return 0;
}
