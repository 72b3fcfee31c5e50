/*  =========================================================================
    user_codec - MessagePack bodies of the user service <-> user_app calls
    One function per method of DESIGN.md's `user` service: it reads the
    request body (a map; unknown keys are ignored, nil counts as absent for
    optional fields), calls the use case, and packs the reply body. A user
    goes out as {id, name, email, created_at, updated_at} with RFC 3339 UTC
    strings (user_format_time); a page as {items: [user...], next: str|nil}.
    Returns 0 with exactly one object packed, or a MESH_E* code with a
    message for the caller and nothing packed: MESH_EINVAL names the field
    ("field 'email' must be a string"), MESH_ENOTFOUND, MESH_ECONFLICT,
    MESH_EUNAVAIL and MESH_EIO come from the use case. The worker maps the
    codes to envelope error codes. Thread: as the app (one per thread).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_CODEC_H_INCLUDED
#define USER_CODEC_H_INCLUDED

#include "user.h"
#include "user_app.h"

#include "mesh/mesh_envelope.h"

#include <msgpack.h>
#include <stddef.h>

//  Signature shared by the method functions below. `actor` is the
//  envelope's (empty: none; the changes write it with their event, the
//  reads ignore it). `body` may be NULL (request without a body).
//  `message` (message_size bytes, at least 1) is always NUL-terminated;
//  empty on success.
typedef int (user_codec_fn) (user_app_t *app, mesh_slice_t actor, const msgpack_object *body,
                             msgpack_packer *reply, char *message, size_t message_size);

//  user.create {name, email} -> the user
user_codec_fn user_codec_create;
//  One request of user_codec_create_many: the envelope's actor, the body
//  (may be NULL) and the traceparent (NULL = none) stored with its event.
typedef struct {
    mesh_slice_t actor;
    const msgpack_object *body;
    const char *trace;
} user_codec_request_t;

//  user.create for `count` requests at once (at most
//  USER_APP_CREATE_MANY_MAX), stored in one transaction: request i's reply
//  goes to replies[i] and its message (message_size bytes) to messages[i];
//  rcs[i] is what user_codec_create would return for it.
void
    user_codec_create_many (user_app_t *app, const user_codec_request_t *requests,
                            size_t count, msgpack_packer *const *replies,
                            char *const *messages, size_t message_size, int *rcs);
//  user.get {id} -> the user
user_codec_fn user_codec_get;
//  user.get for `count` requests at once (at most USER_APP_GET_MANY_MAX):
//  request i's body is bodies[i], its traceparent traces[i] (traces or
//  traces[i] NULL: none), its reply goes to replies[i] and its message
//  (message_size bytes) to messages[i]; rcs[i] is what user_codec_get
//  would return for it.
void
    user_codec_get_many (user_app_t *app, const msgpack_object *const *bodies,
                         const char *const *traces, size_t count,
                         msgpack_packer *const *replies, char *const *messages,
                         size_t message_size, int *rcs);
//  user.list {limit?, after?} (body may be nil) -> {items, next}
user_codec_fn user_codec_list;
//  user.update {id, name?, email?} -> the user
user_codec_fn user_codec_update;
//  user.delete {id} -> {}
user_codec_fn user_codec_delete;

//  events.list {after_seq, limit?} -> {items: [event...]} in seq order
user_codec_fn user_codec_events;

//  CloudEvents `source` of the user service's events.
#define USER_EVENT_SOURCE "/services/user"

//  Pack one event as published and as events.list returns it: a map of
//  CloudEvents 1.0 attributes (specversion, id, source, type, time,
//  subject, datacontenttype "application/msgpack", data = the stored
//  payload as is) plus seq, trace when known, and the extension attribute
//  actor (who asked for the change) when there was one.
void
    user_codec_pack_event (msgpack_packer *packer, const user_stored_event_t *event);

//  Pack one user as a 5-entry map.
void
    user_codec_pack_user (msgpack_packer *packer, const user_t *user);

#endif
