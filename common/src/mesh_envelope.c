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
            mesh_slice_t code = { NULL, 0 };
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

//  What s_scan found.
typedef enum {
    S_SCAN_OK,                  //  One whole object; *end is where it ends
    S_SCAN_TRUNCATED,           //  The input ends inside the object
    S_SCAN_INVALID,             //  A byte that starts no MessagePack object
    S_SCAN_TOO_DEEP,            //  More than MESH_ENVELOPE_MAX_DEPTH open containers
} s_scan_t;

//  Big-endian unsigned integer of `width` bytes (1, 2 or 4).
static uint64_t
s_read_be (const unsigned char *bytes, size_t width)
{
    uint64_t value = 0;
    for (size_t index = 0; index < width; index++)
        value = (value << 8) | bytes[index];
    return value;
}

//  Walk one MessagePack object without building anything. msgpack-c
//  allocates a container's items as soon as it reads the header, trusting
//  the count: five bytes can claim four billion items (about 100 GB, which
//  kills a sanitized or fuzzing build outright and reserves absurd memory
//  elsewhere). Every item takes at least one byte, so a count larger than
//  the bytes left is truncation; and once this walk has seen the whole
//  object, msgpack-c allocates at most one msgpack_object per input byte.
//  Depth is counted as msgpack-c does: an open container is a level, and a
//  container header (even an empty one) at the limit is too deep.
static s_scan_t
s_scan (const unsigned char *data, size_t size, size_t *end)
{
    uint64_t pending[MESH_ENVELOPE_MAX_DEPTH];  //  Items left in each open container
    int depth = 0;
    size_t at = 0;
    while (true) {
        if (at >= size)
            return S_SCAN_TRUNCATED;
        unsigned int byte = data[at++];
        size_t width = 0;       //  Bytes of the length or count that follow
        uint64_t skip = 0;      //  Scalars: payload bytes; containers: their count
        int items = 0;          //  0: scalar; 1: array (count items); 2: map (pairs)
        if (byte <= 0x7f || byte >= 0xe0 || byte == 0xc0 || byte == 0xc2 || byte == 0xc3) {
            //  fixint, nil, bool: the byte is the whole object
        }
        else
        if (byte <= 0x8f) {
            items = 2;
            skip = byte & 0x0f;
        }
        else
        if (byte <= 0x9f) {
            items = 1;
            skip = byte & 0x0f;
        }
        else
        if (byte <= 0xbf)
            skip = byte & 0x1f;
        else
            switch (byte) {
                case 0xc4: case 0xd9: width = 1; break;             //  bin8, str8
                case 0xc5: case 0xda: width = 2; break;             //  bin16, str16
                case 0xc6: case 0xdb: width = 4; break;             //  bin32, str32
                case 0xc7: width = 1; skip = 1; break;              //  ext8: + type
                case 0xc8: width = 2; skip = 1; break;
                case 0xc9: width = 4; skip = 1; break;
                case 0xca: skip = 4; break;                         //  float32
                case 0xcb: skip = 8; break;                         //  float64
                case 0xcc: case 0xd0: skip = 1; break;              //  (u)int8
                case 0xcd: case 0xd1: skip = 2; break;
                case 0xce: case 0xd2: skip = 4; break;
                case 0xcf: case 0xd3: skip = 8; break;
                case 0xd4: skip = 2; break;                         //  fixext1: type + 1
                case 0xd5: skip = 3; break;
                case 0xd6: skip = 5; break;
                case 0xd7: skip = 9; break;
                case 0xd8: skip = 17; break;
                case 0xdc: width = 2; items = 1; break;             //  array16
                case 0xdd: width = 4; items = 1; break;             //  array32
                case 0xde: width = 2; items = 2; break;             //  map16
                case 0xdf: width = 4; items = 2; break;             //  map32
                default: return S_SCAN_INVALID;                     //  0xc1
            }
        if (width) {
            if (width > size - at)
                return S_SCAN_TRUNCATED;
            skip += s_read_be (data + at, width);
            at += width;
        }
        if (items) {
            if (depth == MESH_ENVELOPE_MAX_DEPTH)
                return S_SCAN_TOO_DEEP;
            uint64_t count = skip * (uint64_t) items;
            if (count > size - at)
                return S_SCAN_TRUNCATED;
            if (count) {
                pending[depth++] = count;
                continue;
            }
        }
        else {
            if (skip > size - at)
                return S_SCAN_TRUNCATED;
            at += (size_t) skip;
        }
        //  One object is complete: so are the containers it filled up
        while (depth > 0 && --pending[depth - 1] == 0)
            depth--;
        if (depth == 0) {
            *end = at;
            return S_SCAN_OK;
        }
    }
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

    size_t end = 0;
    switch (s_scan ((const unsigned char *) data, size, &end)) {
        case S_SCAN_OK: break;
        case S_SCAN_TRUNCATED:
            return s_fail (self, MESH_EINVAL, "envelope is truncated MessagePack");
        case S_SCAN_TOO_DEEP:
            return s_fail (self, MESH_ETOODEEP, "envelope is nested deeper than %d levels",
                           MESH_ENVELOPE_MAX_DEPTH);
        default:
            return s_fail (self, MESH_EINVAL, "envelope is not valid MessagePack");
    }
    if (end < size)
        return s_fail (self, MESH_EINVAL, "envelope has %zu trailing bytes", size - end);

    //  s_scan has checked shape, depth and length: what msgpack-c can still
    //  report is running out of memory, which is refused input too.
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
            return s_fail (self, MESH_ETOOBIG, "envelope needs more memory than is available");
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
        if (s_key_is (key, "actor")) {
            rc = s_take_str (self, value, "actor", &envelope->actor);
            if (rc == 0 && envelope->actor.len > MESH_ENVELOPE_MAX_ACTOR)
                return s_fail (self, MESH_ETOOBIG, "envelope field 'actor' is over %d bytes",
                               MESH_ENVELOPE_MAX_ACTOR);
        }
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

//  Read a str header at data[*at]; on success *at is past the header and
//  *len is the string's length (checked against the bytes left).
static bool
s_peek_str (const unsigned char *data, size_t size, size_t *at, size_t *len)
{
    if (*at >= size)
        return false;
    unsigned int byte = data[(*at)++];
    size_t width = byte == 0xd9? 1: byte == 0xda? 2: byte == 0xdb? 4: 0;
    if (byte >= 0xa0 && byte <= 0xbf)
        *len = byte & 0x1f;
    else
    if (width && width <= size - *at) {
        *len = (size_t) s_read_be (data + *at, width);
        *at += width;
    }
    else
        return false;
    return *len <= size - *at;
}

//  Read an unsigned integer at data[*at] into *value.
static bool
s_peek_uint (const unsigned char *data, size_t size, size_t *at, uint64_t *value)
{
    if (*at >= size)
        return false;
    unsigned int byte = data[(*at)++];
    if (byte <= 0x7f) {
        *value = byte;
        return true;
    }
    //  Signed encodings of non-negative values count too, as in msgpack-c
    bool is_signed = byte >= 0xd0 && byte <= 0xd3;
    size_t width = is_signed? (size_t) 1 << (byte - 0xd0)
                 : byte == 0xcc? 1: byte == 0xcd? 2: byte == 0xce? 4: byte == 0xcf? 8: 0;
    if (!width || width > size - *at || (is_signed && (data[*at] & 0x80)))
        return false;
    *value = 0;
    for (size_t index = 0; index < width; index++)
        *value = (*value << 8) | data[*at + index];
    *at += width;
    return true;
}

//  --------------------------------------------------------------------------
//  Read id and deadline of an envelope without decoding the rest.
int
mesh_envelope_peek (const void *data, size_t size, mesh_slice_t *id, uint64_t *deadline_ms,
                    mesh_slice_t *actor)
{
    assert (id);
    assert (deadline_ms);
    assert (data || size == 0);
    const unsigned char *bytes = data;
    size_t at = 0;
    uint64_t pairs = 0;
    if (size == 0)
        return MESH_EINVAL;
    unsigned int byte = bytes[at++];
    if (byte >= 0x80 && byte <= 0x8f)
        pairs = byte & 0x0f;
    else
    if ((byte == 0xde || byte == 0xdf) && (byte == 0xde? 2u: 4u) <= size - at) {
        size_t width = byte == 0xde? 2: 4;
        pairs = s_read_be (bytes + at, width);
        at += width;
    }
    else
        return MESH_ETYPE;
    bool has_version = false, has_id = false;
    *deadline_ms = 0;
    if (actor)
        *actor = (mesh_slice_t) { "", 0 };
    for (uint64_t pair = 0; pair < pairs; pair++) {
        size_t key_len, end;
        size_t key_at = at;
        if (!s_peek_str (bytes, size, &at, &key_len)) {
            //  A key that is not a string names no field of ours: skip the pair
            at = key_at;
            for (int part = 0; part < 2; part++) {
                if (s_scan (bytes + at, size - at, &end) != S_SCAN_OK)
                    return MESH_EINVAL;
                at += end;
            }
            continue;
        }
        const char *key = (const char *) bytes + at;
        at += key_len;
        if (key_len == 2 && memcmp (key, "id", 2) == 0) {
            size_t len;
            if (!s_peek_str (bytes, size, &at, &len) || len > MESH_ENVELOPE_MAX_ID)
                return MESH_EINVAL;
            id->ptr = (const char *) bytes + at;
            id->len = len;
            at += len;
            has_id = true;
            continue;
        }
        if (key_len == 1 && key[0] == 'v') {
            uint64_t version;
            if (!s_peek_uint (bytes, size, &at, &version))
                return MESH_ETYPE;
            if (version != MESH_ENVELOPE_VERSION)
                return MESH_EVERSION;
            has_version = true;
            continue;
        }
        if (key_len == 8 && memcmp (key, "deadline", 8) == 0) {
            if (!s_peek_uint (bytes, size, &at, deadline_ms))
                return MESH_ETYPE;
            continue;
        }
        if (actor && key_len == 5 && memcmp (key, "actor", 5) == 0) {
            size_t len;
            if (!s_peek_str (bytes, size, &at, &len) || len > MESH_ENVELOPE_MAX_ACTOR)
                return MESH_EINVAL;
            actor->ptr = (const char *) bytes + at;
            actor->len = len;
            at += len;
            continue;
        }
        //  Any other value: walk over it, bounds-checked
        if (s_scan (bytes + at, size - at, &end) != S_SCAN_OK)
            return MESH_EINVAL;
        at += end;
    }
    return has_version && has_id && at == size? 0: MESH_EINVAL;
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
    size_t fields = 4 + (head->deadline_ms? 1: 0) + (head->trace? 1: 0) + (head->idem? 1: 0)
                  + (head->actor? 1: 0);
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
    if (head->actor) {
        mesh_pack_cstr (packer, "actor");
        mesh_pack_cstr (packer, head->actor);
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

//  --------------------------------------------------------------------------
//  One whole MessagePack object, checked without building it.
int
mesh_msgpack_check (const void *data, size_t size)
{
    size_t end = 0;
    switch (s_scan ((const unsigned char *) data, size, &end)) {
        case S_SCAN_OK: return end == size? 0: MESH_EINVAL;
        case S_SCAN_TOO_DEEP: return MESH_ETOODEEP;
        default: return MESH_EINVAL;
    }
}
