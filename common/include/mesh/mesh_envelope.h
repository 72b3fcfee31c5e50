/*  =========================================================================
    mesh_envelope - the MessagePack envelope of mesh requests and replies
    Request: {"v":1, "id", "method", "body", "deadline"?, "trace"?, "idem"?,
              "actor"?}
    Reply:   {"v":1, "id", "body"} or {"v":1, "id", "error":{"code","message"}}
    Decoding is strict: wrong types, an unknown version, a missing field, a
    frame over the size limit (1 MiB by default), nesting deeper than 32 or
    trailing bytes are rejected with a message that names the problem. It
    never reads past the buffer. Unknown keys are ignored (newer peers may
    add fields). Decoded strings and the body are views into the input
    buffer and the decoder's zone: valid until the next decode on the same
    decoder or until the input buffer is freed, whichever comes first.
    Encoding writes with a msgpack_packer: the "head" functions write every
    field and the "body" key last; the caller then packs exactly one object.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_ENVELOPE_H_INCLUDED
#define MESH_ENVELOPE_H_INCLUDED

#include "mesh/mesh_err.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_ENVELOPE_VERSION 1
#define MESH_ENVELOPE_MAX_SIZE (1024 * 1024)
#define MESH_ENVELOPE_MAX_DEPTH 32  //  msgpack-c's parser stack; deeper is rejected
#define MESH_ENVELOPE_MAX_ID 128    //  Bytes in "id"; ids are request ids, not payloads
#define MESH_ENVELOPE_MAX_ACTOR 256 //  Bytes in "actor": a key's name or a token's subject

//  A borrowed byte string (not NUL-terminated).
typedef struct {
    const char *ptr;
    size_t len;
} mesh_slice_t;

typedef enum {
    MESH_ENVELOPE_REQUEST,      //  Needs method; body optional (nil)
    MESH_ENVELOPE_REPLY,        //  Needs exactly one of body or error
    MESH_ENVELOPE_ANY,          //  Either shape; only v and id are checked
} mesh_envelope_kind_t;

typedef struct {
    mesh_slice_t id;            //  Request id (may be empty)
    mesh_slice_t method;        //  Requests: "user.get"
    mesh_slice_t trace;         //  W3C traceparent, or empty
    mesh_slice_t idem;          //  Idempotency key, or empty
    mesh_slice_t actor;         //  Who asks (vouched for by the broker), or empty
    uint64_t deadline_ms;       //  Unix ms; 0 when absent
    const msgpack_object *body; //  Body object, NULL when absent
    bool is_error;              //  Replies: error instead of body
    mesh_code_t code;           //  Error code (MESH_CODE_OK for success)
    mesh_slice_t message;       //  Error message, or empty
} mesh_envelope_t;

typedef struct mesh_envelope_decoder_s mesh_envelope_decoder_t;

//  Create a decoder with a reusable memory zone (no allocation per decode
//  for envelopes that fit in its first chunk). `max_size` 0 = the default.
//  Not thread-safe: one decoder per thread.
mesh_envelope_decoder_t *
    mesh_envelope_decoder_new (size_t max_size);

//  Destroy; nulls the caller's pointer.
void
    mesh_envelope_decoder_destroy (mesh_envelope_decoder_t **self_p);

//  Decode `size` bytes as an envelope of `kind` into *envelope. Returns 0,
//  or MESH_ETOOBIG, MESH_ETOODEEP, MESH_EVERSION, MESH_ETYPE or MESH_EINVAL
//  with mesh_envelope_decoder_error telling which field and why.
int
    mesh_envelope_decode (mesh_envelope_decoder_t *self, const void *data, size_t size,
                          mesh_envelope_kind_t kind, mesh_envelope_t *envelope);

//  Why the last decode failed. Borrowed; valid until the next decode.
const char *
    mesh_envelope_decoder_error (const mesh_envelope_decoder_t *self);

//  Read only "id", "deadline" and "actor" of an envelope (request or
//  reply), for routers such as the broker that must not pay for a full
//  decode: walks the top-level map once, allocates nothing, never reads
//  past `size`. Requires v = 1 and a string id; an actor, when present,
//  must be a string of at most MESH_ENVELOPE_MAX_ACTOR bytes; other values
//  are skipped after a structural check (not type-checked). *id and *actor
//  view `data`; `actor` may be NULL (not wanted), else it is set empty
//  when absent. Returns 0, or MESH_EINVAL / MESH_ETYPE / MESH_EVERSION when
//  it is not an envelope.
int
    mesh_envelope_peek (const void *data, size_t size, mesh_slice_t *id,
                        uint64_t *deadline_ms, mesh_slice_t *actor);

//  What a request carries besides its body.
typedef struct {
    const char *id;             //  Required, at most MESH_ENVELOPE_MAX_ID bytes
    const char *method;         //  Required
    uint64_t deadline_ms;       //  0 = none
    const char *trace;          //  NULL = none
    const char *idem;           //  NULL = none
    const char *actor;          //  NULL = none; at most MESH_ENVELOPE_MAX_ACTOR bytes
} mesh_request_head_t;

//  Pack a request's map header and every field; the caller then packs the
//  body (one object; msgpack_pack_nil for none).
void
    mesh_envelope_pack_request_head (msgpack_packer *packer, const mesh_request_head_t *head);

//  Pack a success reply's map header, v and id; the caller then packs the
//  body object.
void
    mesh_envelope_pack_reply_head (msgpack_packer *packer, const char *id, size_t id_len);

//  Pack a whole error reply.
void
    mesh_envelope_pack_error (msgpack_packer *packer, const char *id, size_t id_len,
                              mesh_code_t code, const char *message);

//  Pack a NUL-terminated string (helper for bodies).
void
    mesh_pack_cstr (msgpack_packer *packer, const char *text);

//  True when `slice` equals NUL-terminated `text`.
bool
    mesh_slice_eq (mesh_slice_t slice, const char *text);

//  Check that `data` (`size` bytes) is exactly one well-formed MessagePack
//  object nested at most MESH_ENVELOPE_MAX_DEPTH deep, without building it.
//  Call it before msgpack_unpack_next on bytes from outside: msgpack-c
//  trusts container counts and would allocate for billions of items that a
//  few bytes claim. Returns 0, MESH_EINVAL or MESH_ETOODEEP.
int
    mesh_msgpack_check (const void *data, size_t size);

#endif
