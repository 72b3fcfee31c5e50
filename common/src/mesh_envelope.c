/*  =========================================================================
    mesh_envelope - the MessagePack envelope of mesh requests and replies
    Parsing is msgpack-c's (msgpack_unpack into a reusable zone: strings
    point into the input, so a decode allocates nothing once the zone's
    first chunk is warm). This file only checks shapes and types.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mesh_envelope_decoder_s {
    msgpack_zone zone;          //  Objects of the last decode; cleared per decode
    size_t max_size;            //  Largest accepted frame in bytes
    char error[160];            //  Why the last decode failed
};

//  --------------------------------------------------------------------------
//  Create a decoder with a reusable zone.
mesh_envelope_decoder_t *
mesh_envelope_decoder_new (size_t max_size)
{
    mesh_envelope_decoder_t *self = mesh_alloc (sizeof (mesh_envelope_decoder_t));
    if (!msgpack_zone_init (&self->zone, 8192))
        abort ();               //  Only fails when out of memory
    self->max_size = max_size? max_size: MESH_ENVELOPE_MAX_SIZE;
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
mesh_envelope_decoder_destroy (mesh_envelope_decoder_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mesh_envelope_decoder_t *self = *self_p;
        msgpack_zone_destroy (&self->zone);
        free (self);
        *self_p = NULL;
    }
}

//  Record why decoding failed and return `rc`.
static int
s_fail (mesh_envelope_decoder_t *self, int rc, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (mesh_envelope_decoder_t *self, int rc, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->error, sizeof self->error, format, args);
    va_end (args);
    return rc;
}

//  True when the msgpack key object equals `name`.
static bool
s_key_is (const msgpack_object *key, const char *name)
{
    size_t len = strlen (name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len
        && memcmp (key->via.str.ptr, name, len) == 0;
}

//  Take a string field into *slice, or fail with MESH_ETYPE.
static int
s_take_str (mesh_envelope_decoder_t *self, const msgpack_object *value, const char *field,
            mesh_slice_t *slice)
{
    if (value->type != MSGPACK_OBJECT_STR)
        return s_fail (self, MESH_ETYPE, "envelope field '%s' must be a string", field);
    slice->ptr = value->via.str.ptr;
    slice->len = value->via.str.size;
    return 0;
}

//  Decode the "error" map of a reply.
static int
s_take_error (mesh_envelope_decoder_t *self, const msgpack_object *value,
              mesh_envelope_t *envelope)
{
    if (value->type != MSGPACK_OBJECT_MAP)
        return s_fail (self, MESH_ETYPE, "envelope field 'error' must be a map");
    bool has_code = false;
    for (uint32_t index = 0; index < value->via.map.size; index++) {
        const msgpack_object_kv *pair = &value->via.map.ptr[index];
        int rc = 0;
        if (s_key_is (&pair->key, "code")) {
            mesh_slice_t code;
            rc = s_take_str (self, &pair->val, "error.code", &code);
            if (rc == 0) {
                envelope->code = mesh_code_from_name (code.ptr, code.len);
                has_code = true;
            }
        }
        else
        if (s_key_is (&pair->key, "message"))
            rc = s_take_str (self, &pair->val, "error.message", &envelope->message);
        if (rc)
            return rc;
    }
    if (!has_code)
        return s_fail (self, MESH_EINVAL, "envelope field 'error.code' is missing");
    envelope->is_error = true;
    return 0;
}

//  --------------------------------------------------------------------------
//  Decode `size` bytes as an envelope of `kind`.
int
mesh_envelope_decode (mesh_envelope_decoder_t *self, const void *data, size_t size,
                      mesh_envelope_kind_t kind, mesh_envelope_t *envelope)
{
    assert (self);
    assert (envelope);
    assert (data || size == 0);
    memset (envelope, 0, sizeof *envelope);
    self->error[0] = '\0';
    if (size > self->max_size)
        return s_fail (self, MESH_ETOOBIG, "envelope of %zu bytes is over the limit of %zu",
                       size, self->max_size);
    if (size == 0)
        return s_fail (self, MESH_EINVAL, "envelope is empty");

    msgpack_zone_clear (&self->zone);
    msgpack_object root;
    size_t offset = 0;
    msgpack_unpack_return result =
        msgpack_unpack ((const char *) data, size, &offset, &self->zone, &root);
    switch (result) {
        case MSGPACK_UNPACK_SUCCESS: break;
        case MSGPACK_UNPACK_EXTRA_BYTES:
            return s_fail (self, MESH_EINVAL, "envelope has %zu trailing bytes", size - offset);
        case MSGPACK_UNPACK_CONTINUE:
            return s_fail (self, MESH_EINVAL, "envelope is truncated MessagePack");
        case MSGPACK_UNPACK_NOMEM_ERROR:
            //  msgpack-c reports its 32-level parser stack overflowing as
            //  NOMEM; a real allocation failure would have aborted earlier
            //  or shows up here for absurd container sizes: both are input
            //  we refuse.
            return s_fail (self, MESH_ETOODEEP,
                           "envelope is nested deeper than %d levels or claims absurd sizes",
                           MESH_ENVELOPE_MAX_DEPTH);
        default:
            return s_fail (self, MESH_EINVAL, "envelope is not valid MessagePack");
    }
    if (root.type != MSGPACK_OBJECT_MAP)
        return s_fail (self, MESH_ETYPE, "envelope must be a map");

    bool has_version = false, has_id = false, has_method = false;
    for (uint32_t index = 0; index < root.via.map.size; index++) {
        const msgpack_object_kv *pair = &root.via.map.ptr[index];
        const msgpack_object *key = &pair->key;
        const msgpack_object *value = &pair->val;
        int rc = 0;
        if (s_key_is (key, "v")) {
            if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return s_fail (self, MESH_ETYPE, "envelope field 'v' must be an integer");
            if (value->via.u64 != MESH_ENVELOPE_VERSION)
                return s_fail (self, MESH_EVERSION, "envelope version %llu is not supported",
                               (unsigned long long) value->via.u64);
            has_version = true;
        }
        else
        if (s_key_is (key, "id")) {
            rc = s_take_str (self, value, "id", &envelope->id);
            if (rc == 0 && envelope->id.len > MESH_ENVELOPE_MAX_ID)
                return s_fail (self, MESH_ETOOBIG, "envelope field 'id' is over %d bytes",
                               MESH_ENVELOPE_MAX_ID);
            has_id = true;
        }
        else
        if (s_key_is (key, "method")) {
            rc = s_take_str (self, value, "method", &envelope->method);
            has_method = true;
        }
        else
        if (s_key_is (key, "body"))
            envelope->body = value;
        else
        if (s_key_is (key, "deadline")) {
            if (value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return s_fail (self, MESH_ETYPE,
                               "envelope field 'deadline' must be unix milliseconds (uint)");
            envelope->deadline_ms = value->via.u64;
        }
        else
        if (s_key_is (key, "trace"))
            rc = s_take_str (self, value, "trace", &envelope->trace);
        else
        if (s_key_is (key, "idem"))
            rc = s_take_str (self, value, "idem", &envelope->idem);
        else
        if (s_key_is (key, "error"))
            rc = s_take_error (self, value, envelope);
        if (rc)
            return rc;
    }
    if (!has_version)
        return s_fail (self, MESH_EINVAL, "envelope field 'v' is missing");
    if (!has_id)
        return s_fail (self, MESH_EINVAL, "envelope field 'id' is missing");
    if (kind == MESH_ENVELOPE_REQUEST) {
        if (!has_method)
            return s_fail (self, MESH_EINVAL, "envelope field 'method' is missing");
        if (envelope->is_error)
            return s_fail (self, MESH_EINVAL, "a request cannot carry 'error'");
    }
    else
    if (kind == MESH_ENVELOPE_REPLY) {
        if (envelope->is_error && envelope->body)
            return s_fail (self, MESH_EINVAL, "a reply carries both 'body' and 'error'");
        if (!envelope->is_error && !envelope->body)
            return s_fail (self, MESH_EINVAL, "a reply needs 'body' or 'error'");
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Why the last decode failed.
const char *
mesh_envelope_decoder_error (const mesh_envelope_decoder_t *self)
{
    assert (self);
    return self->error;
}

//  --------------------------------------------------------------------------
//  Pack a NUL-terminated string.
void
mesh_pack_cstr (msgpack_packer *packer, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (packer, len);
    msgpack_pack_str_body (packer, text, len);
}

//  Pack a string of `len` bytes.
static void
s_pack_bytes (msgpack_packer *packer, const char *text, size_t len)
{
    msgpack_pack_str (packer, len);
    msgpack_pack_str_body (packer, text, len);
}

//  --------------------------------------------------------------------------
//  Pack a request's map header and every field but the body's value.
void
mesh_envelope_pack_request_head (msgpack_packer *packer, const mesh_request_head_t *head)
{
    assert (packer);
    assert (head && head->id && head->method);
    size_t fields = 4 + (head->deadline_ms? 1: 0) + (head->trace? 1: 0) + (head->idem? 1: 0);
    msgpack_pack_map (packer, fields);
    mesh_pack_cstr (packer, "v");
    msgpack_pack_uint8 (packer, MESH_ENVELOPE_VERSION);
    mesh_pack_cstr (packer, "id");
    mesh_pack_cstr (packer, head->id);
    mesh_pack_cstr (packer, "method");
    mesh_pack_cstr (packer, head->method);
    if (head->deadline_ms) {
        mesh_pack_cstr (packer, "deadline");
        msgpack_pack_uint64 (packer, head->deadline_ms);
    }
    if (head->trace) {
        mesh_pack_cstr (packer, "trace");
        mesh_pack_cstr (packer, head->trace);
    }
    if (head->idem) {
        mesh_pack_cstr (packer, "idem");
        mesh_pack_cstr (packer, head->idem);
    }
    mesh_pack_cstr (packer, "body");
}

//  --------------------------------------------------------------------------
//  Pack a success reply's header; the caller packs the body next.
void
mesh_envelope_pack_reply_head (msgpack_packer *packer, const char *id, size_t id_len)
{
    assert (packer);
    assert (id || id_len == 0);
    msgpack_pack_map (packer, 3);
    mesh_pack_cstr (packer, "v");
    msgpack_pack_uint8 (packer, MESH_ENVELOPE_VERSION);
    mesh_pack_cstr (packer, "id");
    s_pack_bytes (packer, id? id: "", id_len);
    mesh_pack_cstr (packer, "body");
}

//  --------------------------------------------------------------------------
//  Pack a whole error reply.
void
mesh_envelope_pack_error (msgpack_packer *packer, const char *id, size_t id_len,
                          mesh_code_t code, const char *message)
{
    assert (packer);
    assert (id || id_len == 0);
    msgpack_pack_map (packer, 3);
    mesh_pack_cstr (packer, "v");
    msgpack_pack_uint8 (packer, MESH_ENVELOPE_VERSION);
    mesh_pack_cstr (packer, "id");
    s_pack_bytes (packer, id? id: "", id_len);
    mesh_pack_cstr (packer, "error");
    msgpack_pack_map (packer, 2);
    mesh_pack_cstr (packer, "code");
    mesh_pack_cstr (packer, mesh_code_name (code));
    mesh_pack_cstr (packer, "message");
    mesh_pack_cstr (packer, message? message: "");
}

//  --------------------------------------------------------------------------
//  True when `slice` equals `text`.
bool
mesh_slice_eq (mesh_slice_t slice, const char *text)
{
    size_t len = strlen (text);
    return slice.len == len && (len == 0 || memcmp (slice.ptr, text, len) == 0);
}
