/*  =========================================================================
    mesh_json - JSON (jansson) to MessagePack and back
    Both directions walk the value with recursion whose depth is checked
    before each descent, so the C stack holds at most max_depth frames
    whatever the input. Depth counts containers: a scalar is depth 0, []
    and {} are depth 1, [[1]] is depth 2. Parsing is jansson's and
    msgpack-c's; this file only maps types (and encodes base64 for bin,
    which JSON has no type for).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_json.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

//  Integers cross unchanged only if jansson's integer is 64-bit (it is
//  long long wherever the platform has it, as on every target we build).
_Static_assert (sizeof (json_int_t) == sizeof (int64_t), "json_int_t must be 64-bit");

//  Pack `value` with at most `depth_left` container levels below it.
static int
s_pack (const json_t *value, msgpack_packer *packer, int depth_left);

//  Map a msgpack_pack_* result (0, or -1 when the packer's writer failed).
static int
s_written (int rc)
{
    return rc? MESH_EIO: 0;
}

//  Pack the members of an array or object (depth already checked).
static int
s_pack_container (const json_t *value, msgpack_packer *packer, int depth_left)
{
    if (json_is_array (value)) {
        size_t size = json_array_size (value);
        if (size > UINT32_MAX)
            return MESH_ETOOBIG;    //  MessagePack counts are 32-bit
        if (msgpack_pack_array (packer, size))
            return MESH_EIO;
        for (size_t index = 0; index < size; index++) {
            int rc = s_pack (json_array_get (value, index), packer, depth_left);
            if (rc)
                return rc;
        }
        return 0;
    }
    size_t size = json_object_size (value);
    if (size > UINT32_MAX)
        return MESH_ETOOBIG;
    if (msgpack_pack_map (packer, size))
        return MESH_EIO;
    //  jansson keeps insertion order, so the map comes out in the order the
    //  JSON text had; key_len keeps keys with embedded NULs whole.
    const char *key;
    size_t key_len;
    json_t *member;
    json_object_keylen_foreach ((json_t *) value, key, key_len, member) {
        if (msgpack_pack_str (packer, key_len) || msgpack_pack_str_body (packer, key, key_len))
            return MESH_EIO;
        int rc = s_pack (member, packer, depth_left);
        if (rc)
            return rc;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Pack one jansson value; containers recurse only while depth remains.
static int
s_pack (const json_t *value, msgpack_packer *packer, int depth_left)
{
    switch (json_typeof (value)) {
        case JSON_NULL:
            return s_written (msgpack_pack_nil (packer));
        case JSON_TRUE:
            return s_written (msgpack_pack_true (packer));
        case JSON_FALSE:
            return s_written (msgpack_pack_false (packer));
        case JSON_INTEGER: {
            json_int_t number = json_integer_value (value);
            if (number >= 0)
                return s_written (msgpack_pack_uint64 (packer, (uint64_t) number));
            return s_written (msgpack_pack_int64 (packer, (int64_t) number));
        }
        case JSON_REAL:
            return s_written (msgpack_pack_double (packer, json_real_value (value)));
        case JSON_STRING: {
            size_t len = json_string_length (value);
            return s_written (msgpack_pack_str (packer, len)
                              || msgpack_pack_str_body (packer, json_string_value (value), len));
        }
        case JSON_ARRAY:
        case JSON_OBJECT:
            if (depth_left <= 0)
                return MESH_ETOODEEP;
            return s_pack_container (value, packer, depth_left - 1);
    }
    return MESH_EINVAL;         //  Not reached: jansson has no other type
}

//  --------------------------------------------------------------------------
//  Pack a jansson value into a msgpack packer.
int
mesh_json_to_msgpack (const json_t *value, msgpack_packer *packer, int max_depth)
{
    assert (value);
    assert (packer);
    assert (max_depth >= 0);
    return s_pack (value, packer, max_depth? max_depth: MESH_JSON_MAX_DEPTH);
}

//  --------------------------------------------------------------------------
//  Standard base64 (RFC 4648 section 4, padded) of `size` bytes as a jansson
//  string. An encoder, not a parser: nothing here reads outside input.
static json_t *
s_base64 (const unsigned char *data, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out_len = (size + 2) / 3 * 4;
    char *out = mesh_alloc (out_len + 1);
    char *cursor = out;
    size_t index = 0;
    for (; index + 3 <= size; index += 3) {
        uint32_t group = (uint32_t) data[index] << 16 | (uint32_t) data[index + 1] << 8
                       | data[index + 2];
        *cursor++ = alphabet[group >> 18 & 0x3F];
        *cursor++ = alphabet[group >> 12 & 0x3F];
        *cursor++ = alphabet[group >> 6 & 0x3F];
        *cursor++ = alphabet[group & 0x3F];
    }
    if (index < size) {
        //  One or two bytes left: pad the last quantum with '='
        uint32_t group = (uint32_t) data[index] << 16;
        if (index + 1 < size)
            group |= (uint32_t) data[index + 1] << 8;
        *cursor++ = alphabet[group >> 18 & 0x3F];
        *cursor++ = alphabet[group >> 12 & 0x3F];
        *cursor++ = index + 1 < size? alphabet[group >> 6 & 0x3F]: '=';
        *cursor++ = '=';
    }
    json_t *string = json_stringn_nocheck (out, out_len);  //  ASCII by construction
    free (out);
    return string;
}

//  Bytes of a str object. msgpack-c may leave ptr NULL for an empty
//  string, which jansson treats as an error, not as "".
static const char *
s_str_ptr (const msgpack_object_str *str)
{
    return str->size? str->ptr: "";
}

//  Convert one msgpack object; see mesh_msgpack_to_json.
static json_t *
s_to_json (const msgpack_object *object, int depth_left);

//  --------------------------------------------------------------------------
//  Convert an array or map (depth already checked). NULL on any bad member.
static json_t *
s_container_to_json (const msgpack_object *object, int depth_left)
{
    if (object->type == MSGPACK_OBJECT_ARRAY) {
        json_t *array = json_array ();
        for (uint32_t index = 0; index < object->via.array.size; index++) {
            json_t *member = s_to_json (&object->via.array.ptr[index], depth_left);
            if (!member || json_array_append_new (array, member)) {
                json_decref (array);    //  append_new has released member
                return NULL;
            }
        }
        return array;
    }
    json_t *map = json_object ();
    for (uint32_t index = 0; index < object->via.map.size; index++) {
        const msgpack_object_kv *pair = &object->via.map.ptr[index];
        if (pair->key.type != MSGPACK_OBJECT_STR)
            goto fail;
        const char *key = s_str_ptr (&pair->key.via.str);
        size_t key_len = pair->key.via.str.size;
        //  A repeated key would make the result depend on which copy wins,
        //  and readers disagree on that: reject rather than guess.
        if (json_object_getn (map, key, key_len))
            goto fail;
        json_t *member = s_to_json (&pair->val, depth_left);
        //  setn_new checks the key is UTF-8 and releases member on failure
        if (!member || json_object_setn_new (map, key, key_len, member))
            goto fail;
    }
    return map;
fail:
    json_decref (map);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Convert one msgpack object; containers recurse only while depth remains.
static json_t *
s_to_json (const msgpack_object *object, int depth_left)
{
    switch (object->type) {
        case MSGPACK_OBJECT_NIL:
            return json_null ();
        case MSGPACK_OBJECT_BOOLEAN:
            return json_boolean (object->via.boolean);
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            //  json_int_t is 64-bit signed: larger values have no exact JSON
            //  integer, and a real would silently round them
            if (object->via.u64 > (uint64_t) INT64_MAX)
                return NULL;
            return json_integer ((json_int_t) object->via.u64);
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return json_integer ((json_int_t) object->via.i64);
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            return json_real (object->via.f64); //  NULL for NaN and infinities
        case MSGPACK_OBJECT_STR:
            //  json_stringn checks UTF-8 (NULL if invalid); NULs inside are kept
            return json_stringn (s_str_ptr (&object->via.str), object->via.str.size);
        case MSGPACK_OBJECT_BIN:
            return s_base64 ((const unsigned char *) object->via.bin.ptr, object->via.bin.size);
        case MSGPACK_OBJECT_ARRAY:
        case MSGPACK_OBJECT_MAP:
            if (depth_left <= 0)
                return NULL;
            return s_container_to_json (object, depth_left - 1);
        case MSGPACK_OBJECT_EXT:
            return NULL;
    }
    return NULL;                //  Unknown type tag: refuse, never guess
}

//  --------------------------------------------------------------------------
//  Convert a msgpack object to a new jansson value, or NULL.
json_t *
mesh_msgpack_to_json (const msgpack_object *object, int max_depth)
{
    assert (object);
    assert (max_depth >= 0);
    return s_to_json (object, max_depth? max_depth: MESH_JSON_MAX_DEPTH);
}
