/*  =========================================================================
    test_mesh_json - JSON <-> MessagePack conversion
    Round trips of every type, the depth limit at and one past the edge in
    both directions, and every rejection the header promises (invalid UTF-8,
    non-string or repeated keys, ext, uint above INT64_MAX, NaN).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_err.h"
#include "mesh/mesh_json.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

//  One packed buffer and its decoded object, per test.
static msgpack_sbuffer s_buffer;
static msgpack_packer s_packer;
static msgpack_unpacked s_unpacked;

static void
s_setup (void)
{
    msgpack_sbuffer_init (&s_buffer);
    msgpack_packer_init (&s_packer, &s_buffer, msgpack_sbuffer_write);
    msgpack_unpacked_init (&s_unpacked);
}

static void
s_teardown (void)
{
    msgpack_unpacked_destroy (&s_unpacked);
    msgpack_sbuffer_destroy (&s_buffer);
}

//  cppcheck does not read Criterion's headers: its macros look unknown
// cppcheck-suppress unknownMacro
TestSuite (mesh_json, .init = s_setup, .fini = s_teardown, .timeout = 10.);

//  Empty the buffer for the next value (msgpack_unpack_next reuses the zone).
static void
s_reset (void)
{
    msgpack_sbuffer_clear (&s_buffer);
}

//  Unpack what s_packer wrote; fails the test unless it is one whole object.
static const msgpack_object *
s_unpack (void)
{
    size_t offset = 0;
    msgpack_unpack_return result =
        msgpack_unpack_next (&s_unpacked, s_buffer.data, s_buffer.size, &offset);
    cr_assert_eq (result, MSGPACK_UNPACK_SUCCESS, "unpack returned %d", (int) result);
    cr_assert_eq (offset, s_buffer.size, "trailing bytes after the object");
    return &s_unpacked.data;
}

//  Parse `text`, pack it, unpack it and convert back; the result must equal
//  the parsed value. Returns the msgpack object for type checks.
static const msgpack_object *
s_round_trip (const char *text)
{
    json_error_t error;
    json_t *value = json_loads (text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    cr_assert_not_null (value, "bad test JSON %s: %s", text, error.text);
    cr_assert_eq (mesh_json_to_msgpack (value, &s_packer, 0), 0, "packing %s", text);
    const msgpack_object *object = s_unpack ();
    json_t *back = mesh_msgpack_to_json (object, 0);
    cr_assert_not_null (back, "converting %s back", text);
    char *dumped = json_dumps (back, JSON_ENCODE_ANY | JSON_COMPACT);
    cr_assert (json_equal (value, back), "%s came back as %s", text, dumped);
    free (dumped);
    json_decref (back);
    json_decref (value);
    return object;
}

//  Pack raw msgpack with `fill` and convert it; returns the JSON (or NULL).
static json_t *
s_from_msgpack (void (*fill) (msgpack_packer *packer))
{
    fill (&s_packer);
    return mesh_msgpack_to_json (s_unpack (), 0);
}

//  A `depth`-deep chain of one-element JSON arrays around 1 (or objects
//  {"k": ...} when `objects`). Caller decrefs.
static json_t *
s_nested_json (int depth, bool objects)
{
    json_t *value = json_integer (1);
    for (int level = 0; level < depth; level++) {
        json_t *outer = objects? json_object (): json_array ();
        if (objects)
            json_object_set_new (outer, "k", value);
        else
            json_array_append_new (outer, value);
        value = outer;
    }
    return value;
}

//  Build a `depth`-deep chain of one-element msgpack arrays in `objects`
//  (at least depth + 1 entries) ending in nil, without the unpacker, whose
//  own stack stops at 32. Returns the outermost object.
static const msgpack_object *
s_nested_msgpack (msgpack_object *objects, int depth)
{
    for (int level = 0; level < depth; level++) {
        objects[level].type = MSGPACK_OBJECT_ARRAY;
        objects[level].via.array.size = 1;
        objects[level].via.array.ptr = &objects[level + 1];
    }
    objects[depth].type = MSGPACK_OBJECT_NIL;
    return &objects[0];
}

Test (mesh_json, scalars_round_trip)
{
    cr_assert_eq (s_round_trip ("null")->type, MSGPACK_OBJECT_NIL);
    s_reset ();
    const char *const texts[] = { "true", "false", "\"\"", "\"plain\"",
                                  "\"h\\u00e9 \\u20ac \\ud83d\\ude00\"", "\"nul\\u0000inside\"",
                                  "0.5", "-1.25e-7", "1e300" };
    for (size_t index = 0; index < sizeof texts / sizeof texts[0]; index++) {
        s_round_trip (texts[index]);
        s_reset ();
    }
}

Test (mesh_json, integers_keep_sign_and_width)
{
    const struct {
        const char *text;
        msgpack_object_type type;
    } cases[] = {
        { "0", MSGPACK_OBJECT_POSITIVE_INTEGER },
        { "127", MSGPACK_OBJECT_POSITIVE_INTEGER },
        { "4294967296", MSGPACK_OBJECT_POSITIVE_INTEGER },
        { "9223372036854775807", MSGPACK_OBJECT_POSITIVE_INTEGER },
        { "-1", MSGPACK_OBJECT_NEGATIVE_INTEGER },
        { "-4294967297", MSGPACK_OBJECT_NEGATIVE_INTEGER },
        { "-9223372036854775808", MSGPACK_OBJECT_NEGATIVE_INTEGER },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        const msgpack_object *object = s_round_trip (cases[index].text);
        cr_assert_eq (object->type, cases[index].type, "%s has type %d", cases[index].text,
                      (int) object->type);
        s_reset ();
    }
}

Test (mesh_json, reals_pack_as_float64)
{
    const msgpack_object *object = s_round_trip ("3.0");
    cr_assert_eq (object->type, MSGPACK_OBJECT_FLOAT64);
    cr_assert (object->via.f64 == 3.0);
}

Test (mesh_json, containers_round_trip_in_order)
{
    s_round_trip ("[]");
    s_reset ();
    s_round_trip ("{}");
    s_reset ();
    const msgpack_object *object = s_round_trip (
        "{\"z\":1,\"a\":[null,true,false,-2,2.5,\"s\",{\"deep\":[[]]}],\"m\":{},"
        "\"\\u00fc\":\"utf-8 key\"}");
    cr_assert_eq (object->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq (object->via.map.size, 4);
    //  Insertion order survives: "z" first, "a" second
    const msgpack_object *first = &object->via.map.ptr[0].key;
    cr_assert_eq (first->type, MSGPACK_OBJECT_STR);
    cr_assert_eq (first->via.str.size, 1);
    cr_assert_eq (first->via.str.ptr[0], 'z');
}

Test (mesh_json, key_with_nul_keeps_its_length)
{
    //  jansson's parser refuses NUL in keys, but its API (and msgpack) allow them
    json_t *value = json_object ();
    json_object_setn_new (value, "k\0ey", 4, json_true ());
    cr_assert_eq (mesh_json_to_msgpack (value, &s_packer, 0), 0);
    const msgpack_object *object = s_unpack ();
    cr_assert_eq (object->via.map.ptr[0].key.via.str.size, 4);
    json_t *back = mesh_msgpack_to_json (object, 0);
    //  Not json_equal: it looks keys up as C strings, so it cannot see past NUL
    cr_assert_eq (json_object_size (back), 1);
    cr_assert (json_is_true (json_object_getn (back, "k\0ey", 4)));
    json_decref (back);
    json_decref (value);
}

static void
s_fill_float32 (msgpack_packer *packer)
{
    msgpack_pack_float (packer, 1.5f);
}

Test (mesh_json, float32_becomes_real)
{
    json_t *value = s_from_msgpack (s_fill_float32);
    cr_assert (json_is_real (value));
    cr_assert (json_real_value (value) == 1.5);
    json_decref (value);
}

Test (mesh_json, bin_becomes_padded_base64)
{
    //  RFC 4648 section 10 test vectors, plus bytes that use '+' and '/'
    const struct {
        const char *data;
        size_t size;
        const char *base64;
    } cases[] = {
        { "", 0, "" },
        { "f", 1, "Zg==" },
        { "fo", 2, "Zm8=" },
        { "foo", 3, "Zm9v" },
        { "foob", 4, "Zm9vYg==" },
        { "fooba", 5, "Zm9vYmE=" },
        { "foobar", 6, "Zm9vYmFy" },
        { "\xff\xfe", 2, "//4=" },
        { "\xfb\xef\xbe\x00", 4, "++++AA==" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        s_reset ();
        msgpack_pack_bin (&s_packer, cases[index].size);
        msgpack_pack_bin_body (&s_packer, cases[index].data, cases[index].size);
        json_t *value = mesh_msgpack_to_json (s_unpack (), 0);
        cr_assert (json_is_string (value), "bin of %zu bytes", cases[index].size);
        cr_assert_str_eq (json_string_value (value), cases[index].base64);
        json_decref (value);
    }
}

static void
s_fill_ext (msgpack_packer *packer)
{
    msgpack_pack_ext (packer, 1, 1);
    msgpack_pack_ext_body (packer, "x", 1);
}

Test (mesh_json, ext_is_rejected)
{
    cr_assert_null (s_from_msgpack (s_fill_ext));
}

static void
s_fill_bad_utf8 (msgpack_packer *packer)
{
    msgpack_pack_array (packer, 2);
    msgpack_pack_str_with_body (packer, "ok", 2);
    msgpack_pack_str_with_body (packer, "\xc3\x28", 2);  //  Truncated sequence
}

static void
s_fill_overlong_utf8 (msgpack_packer *packer)
{
    msgpack_pack_str_with_body (packer, "\xc0\xaf", 2);  //  Overlong '/'
}

static void
s_fill_bad_utf8_key (msgpack_packer *packer)
{
    msgpack_pack_map (packer, 1);
    msgpack_pack_str_with_body (packer, "\xff", 1);
    msgpack_pack_nil (packer);
}

Test (mesh_json, invalid_utf8_is_rejected)
{
    cr_assert_null (s_from_msgpack (s_fill_bad_utf8));
    s_reset ();
    cr_assert_null (s_from_msgpack (s_fill_overlong_utf8));
    s_reset ();
    cr_assert_null (s_from_msgpack (s_fill_bad_utf8_key));
}

static void
s_fill_int_key (msgpack_packer *packer)
{
    msgpack_pack_map (packer, 2);
    msgpack_pack_str_with_body (packer, "a", 1);
    msgpack_pack_nil (packer);
    msgpack_pack_int (packer, 7);
    msgpack_pack_nil (packer);
}

static void
s_fill_nil_key (msgpack_packer *packer)
{
    msgpack_pack_map (packer, 1);
    msgpack_pack_nil (packer);
    msgpack_pack_true (packer);
}

static void
s_fill_bin_key (msgpack_packer *packer)
{
    msgpack_pack_map (packer, 1);
    msgpack_pack_bin_with_body (packer, "a", 1);
    msgpack_pack_true (packer);
}

Test (mesh_json, non_string_key_is_rejected)
{
    cr_assert_null (s_from_msgpack (s_fill_int_key));
    s_reset ();
    cr_assert_null (s_from_msgpack (s_fill_nil_key));
    s_reset ();
    cr_assert_null (s_from_msgpack (s_fill_bin_key));
}

static void
s_fill_repeated_key (msgpack_packer *packer)
{
    msgpack_pack_map (packer, 2);
    msgpack_pack_str_with_body (packer, "role", 4);
    msgpack_pack_str_with_body (packer, "user", 4);
    msgpack_pack_str_with_body (packer, "role", 4);
    msgpack_pack_str_with_body (packer, "admin", 5);
}

Test (mesh_json, repeated_key_is_rejected)
{
    cr_assert_null (s_from_msgpack (s_fill_repeated_key));
}

static void
s_fill_int64_max (msgpack_packer *packer)
{
    msgpack_pack_uint64 (packer, (uint64_t) INT64_MAX);
}

static void
s_fill_int64_max_plus_one (msgpack_packer *packer)
{
    msgpack_pack_uint64 (packer, (uint64_t) INT64_MAX + 1);
}

static void
s_fill_uint64_max (msgpack_packer *packer)
{
    msgpack_pack_uint64 (packer, UINT64_MAX);
}

Test (mesh_json, uint_above_int64_max_is_rejected)
{
    json_t *value = s_from_msgpack (s_fill_int64_max);
    cr_assert (json_is_integer (value));
    cr_assert_eq (json_integer_value (value), INT64_MAX);
    json_decref (value);
    s_reset ();
    cr_assert_null (s_from_msgpack (s_fill_int64_max_plus_one));
    s_reset ();
    cr_assert_null (s_from_msgpack (s_fill_uint64_max));
}

static void
s_fill_nan (msgpack_packer *packer)
{
    msgpack_pack_double (packer, NAN);
}

static void
s_fill_infinity (msgpack_packer *packer)
{
    msgpack_pack_float (packer, INFINITY);
}

Test (mesh_json, non_finite_float_is_rejected)
{
    cr_assert_null (s_from_msgpack (s_fill_nan));
    s_reset ();
    cr_assert_null (s_from_msgpack (s_fill_infinity));
}

Test (mesh_json, json_depth_at_limit_is_accepted_one_deeper_rejected)
{
    for (int objects = 0; objects < 2; objects++) {
        json_t *at_limit = s_nested_json (MESH_JSON_MAX_DEPTH, objects);
        s_reset ();
        cr_assert_eq (mesh_json_to_msgpack (at_limit, &s_packer, 0), 0);
        //  msgpack-c's unpacker also takes exactly this depth, so it reads back
        json_t *back = mesh_msgpack_to_json (s_unpack (), 0);
        cr_assert (json_equal (at_limit, back));
        json_decref (back);
        json_t *too_deep = s_nested_json (MESH_JSON_MAX_DEPTH + 1, objects);
        cr_assert_eq (mesh_json_to_msgpack (too_deep, &s_packer, 0), MESH_ETOODEEP);
        json_decref (too_deep);
        json_decref (at_limit);
    }
}

Test (mesh_json, json_depth_honours_a_smaller_limit)
{
    json_t *scalar = json_string ("depth 0");
    cr_assert_eq (mesh_json_to_msgpack (scalar, &s_packer, 1), 0);
    json_decref (scalar);
    json_t *three = s_nested_json (3, false);
    cr_assert_eq (mesh_json_to_msgpack (three, &s_packer, 3), 0);
    cr_assert_eq (mesh_json_to_msgpack (three, &s_packer, 2), MESH_ETOODEEP);
    json_decref (three);
}

Test (mesh_json, msgpack_depth_at_limit_is_accepted_one_deeper_rejected)
{
    msgpack_object objects[MESH_JSON_MAX_DEPTH + 2];
    json_t *value = mesh_msgpack_to_json (s_nested_msgpack (objects, MESH_JSON_MAX_DEPTH), 0);
    cr_assert_not_null (value);
    int depth = 0;
    for (const json_t *cursor = value; json_is_array (cursor); cursor = json_array_get (cursor, 0))
        depth++;
    cr_assert_eq (depth, MESH_JSON_MAX_DEPTH);
    json_decref (value);
    cr_assert_null (mesh_msgpack_to_json (s_nested_msgpack (objects, MESH_JSON_MAX_DEPTH + 1), 0));
    //  A smaller explicit limit works the same way
    value = mesh_msgpack_to_json (s_nested_msgpack (objects, 4), 4);
    cr_assert_not_null (value);
    json_decref (value);
    cr_assert_null (mesh_msgpack_to_json (s_nested_msgpack (objects, 5), 4));
}

Test (mesh_json, bad_member_deep_inside_rejects_the_whole_value)
{
    //  The error must surface from any position, not only the top
    msgpack_object objects[4];
    s_nested_msgpack (objects, 3);
    objects[3].type = MSGPACK_OBJECT_EXT;
    objects[3].via.ext.type = 1;
    objects[3].via.ext.size = 0;
    objects[3].via.ext.ptr = "";
    cr_assert_null (mesh_msgpack_to_json (&objects[0], 0));
}
