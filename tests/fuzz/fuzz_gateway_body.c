/*  =========================================================================
    fuzz_gateway_body - libFuzzer harness for the JSON bodies of POST
    /v1/users and PATCH /v1/users/{id} (gateway_body_pack): the first byte
    picks the route (odd: PATCH, with a path id that must win over any "id"
    in the body), the rest is the body as MHD hands it over, not
    NUL-terminated. A success must pack exactly one map that reads back
    (mesh_msgpack_to_json) as the body parsed by jansson with the path id
    set; a refusal packs nothing and gives a 400 or 422 kind and a UTF-8
    detail that reaches the problem body whole.
    Build (clang only): CC=clang cmake -S . -B build/fuzz -DMESH_FUZZ=ON
    Run: build/fuzz/bin/fuzz_gateway_body -max_len=4096 [corpus-dir]
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "fuzz_msgpack.h"
#include "gateway_body.h"

#include "mesh/mesh_json.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const char s_id[] = "00000000-0000-4000-8000-000000000001";

//  The packed map must be the body with the path id: same members, same values.
static void
s_check_packed (const msgpack_sbuffer *packed, const char *body, size_t len, const char *id)
{
    assert (fuzz_msgpack_one_object (packed));
    msgpack_unpacked object;
    msgpack_unpacked_init (&object);
    size_t offset = 0;
    assert (msgpack_unpack_next (&object, packed->data, packed->size, &offset) ==
            MSGPACK_UNPACK_SUCCESS);
    assert (object.data.type == MSGPACK_OBJECT_MAP);
    //  Keys unique, strings UTF-8, numbers exact: what the user service reads
    json_t *back = mesh_msgpack_to_json (&object.data, MESH_JSON_MAX_DEPTH);
    assert (back);
    msgpack_unpacked_destroy (&object);

    json_t *expected = json_loadb (body, len, JSON_REJECT_DUPLICATES, NULL);
    assert (json_is_object (expected));
    if (id) {
        json_object_set_new (expected, "id", json_string (id));
        assert (strcmp (json_string_value (json_object_get (back, "id")), id) == 0);
    }
    assert (json_equal (back, expected));
    json_decref (expected);
    json_decref (back);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *id = data[0] & 1 ? s_id : NULL;
    //  An exact-size copy, so ASan sees any read past the body's end
    size_t len = size - 1;
    char *body = len ? malloc (len) : NULL;
    if (len)
        memcpy (body, data + 1, len);

    msgpack_sbuffer packed;
    msgpack_sbuffer_init (&packed);
    gateway_problem_t kind = GATEWAY_PROBLEM_COUNT_;
    char detail[GATEWAY_BODY_DETAIL_SIZE] = "";
    if (gateway_body_pack (body, len, id, &packed, &kind, detail)) {
        assert (kind == GATEWAY_PROBLEM_COUNT_ && detail[0] == '\0');
        s_check_packed (&packed, body, len, id);
    }
    else {
        assert (packed.size == 0);
        assert (kind == GATEWAY_PROBLEM_MALFORMED_JSON || kind == GATEWAY_PROBLEM_INVALID_ARGUMENT);
        unsigned int status = gateway_problem_status (kind);
        assert (status == 400 || status == 422);
        assert (detail[0] && strlen (detail) < sizeof detail);
        //  The detail must survive into the answer, not become "(not UTF-8)"
        json_t *problem = gateway_problem_new (kind, detail, NULL);
        const char *said = json_string_value (json_object_get (problem, "detail"));
        assert (said && strcmp (said, detail) == 0);
        json_decref (problem);
    }
    msgpack_sbuffer_destroy (&packed);
    free (body);
    return 0;
}
