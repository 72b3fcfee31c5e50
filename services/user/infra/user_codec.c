/*  =========================================================================
    user_codec - MessagePack bodies of the user service <-> user_app calls
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_codec.h"

#include "mesh/mesh_envelope.h"
#include "mesh/mesh_err.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

//  A string field of a request body: present or not, bytes and length.
typedef struct {
    bool present;
    const char *ptr;
    size_t len;
} s_str_t;

//  The value of key `name` in map `body`, or NULL when absent or nil.
static const msgpack_object *
s_lookup (const msgpack_object *body, const char *name)
{
    size_t name_len = strlen (name);
    for (uint32_t index = 0; index < body->via.map.size; index++) {
        const msgpack_object_kv *pair = &body->via.map.ptr[index];
        if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == name_len
            && memcmp (pair->key.via.str.ptr, name, name_len) == 0)
            return pair->val.type == MSGPACK_OBJECT_NIL ? NULL : &pair->val;
    }
    return NULL;
}

//  Check that the body is a map (nil is an empty map when `nil_ok`).
static int
s_need_map (const msgpack_object *body, bool nil_ok, char *message, size_t message_size)
{
    if (body && body->type == MSGPACK_OBJECT_MAP)
        return 0;
    if (nil_ok && (!body || body->type == MSGPACK_OBJECT_NIL))
        return 0;
    snprintf (message, message_size, "field 'body' must be a map");
    return MESH_EINVAL;
}

//  Read string field `name` into *value. Returns 0 or MESH_EINVAL when it
//  is missing (and `required`) or not a string.
static int
s_field_str (const msgpack_object *body, const char *name, bool required, s_str_t *value,
             char *message, size_t message_size)
{
    memset (value, 0, sizeof *value);
    const msgpack_object *object = body && body->type == MSGPACK_OBJECT_MAP
                                       ? s_lookup (body, name) : NULL;
    if (!object) {
        if (!required)
            return 0;
        snprintf (message, message_size, "field '%s' is required", name);
        return MESH_EINVAL;
    }
    if (object->type != MSGPACK_OBJECT_STR) {
        snprintf (message, message_size, "field '%s' must be a string", name);
        return MESH_EINVAL;
    }
    value->present = true;
    value->ptr = object->via.str.ptr;
    value->len = object->via.str.size;
    return 0;
}

//  Read optional integer field `name` of map-or-nil `body` into *value
//  (*present says whether it was there). Integers beyond int64 become
//  INT64_MAX: still out of range for every use case. Returns 0 or
//  MESH_EINVAL when the field is not an integer.
static int
s_field_int (const msgpack_object *body, const char *name, bool *present, int64_t *value,
             char *message, size_t message_size)
{
    *present = false;
    const msgpack_object *object = body && body->type == MSGPACK_OBJECT_MAP
                                       ? s_lookup (body, name) : NULL;
    if (!object)
        return 0;
    if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *value = object->via.u64 > (uint64_t) INT64_MAX ? INT64_MAX : (int64_t) object->via.u64;
    else if (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *value = object->via.i64;
    else {
        snprintf (message, message_size, "field '%s' must be an integer", name);
        return MESH_EINVAL;
    }
    *present = true;
    return 0;
}

//  The body must be a map with string field "id": the first step of every
//  method that names one user. Returns 0 or MESH_EINVAL with the message.
static int
s_need_id (const msgpack_object *body, s_str_t *id, char *message, size_t message_size)
{
    int rc = s_need_map (body, false, message, message_size);
    return rc ? rc : s_field_str (body, "id", true, id, message, message_size);
}

//  A use case's result code as the codec's, with the message it deserves.
static int
s_app_error (int rc, const char *field, const char *why, char *message, size_t message_size)
{
    switch (rc) {
    case MESH_EINVAL:
        snprintf (message, message_size, "field '%s': %s", field ? field : "body",
                  why ? why : "is not valid");
        return rc;
    case MESH_ENOTFOUND:
        snprintf (message, message_size, "user not found");
        return rc;
    case MESH_ECONFLICT:
        snprintf (message, message_size, "a user with this email already exists");
        return rc;
    case MESH_EUNAVAIL:
        snprintf (message, message_size, "database unavailable");
        return rc;
    case MESH_ETIMEDOUT:
        snprintf (message, message_size, "the request's deadline passed in the database");
        return rc;
    default:
        snprintf (message, message_size, "internal error: %s", mesh_strerror (rc));
        return rc;
    }
}

void
user_codec_pack_user (msgpack_packer *packer, const user_t *user)
{
    char created[USER_TIME_SIZE] = "";
    char updated[USER_TIME_SIZE] = "";
    //  A user_t holds only times in range (user_new checks), so these succeed
    user_format_time (user_created_at_us (user), created, sizeof created);
    user_format_time (user_updated_at_us (user), updated, sizeof updated);
    msgpack_pack_map (packer, 5);
    mesh_pack_cstr (packer, "id");
    mesh_pack_cstr (packer, user_id (user));
    mesh_pack_cstr (packer, "name");
    mesh_pack_cstr (packer, user_name (user));
    mesh_pack_cstr (packer, "email");
    mesh_pack_cstr (packer, user_email (user));
    mesh_pack_cstr (packer, "created_at");
    mesh_pack_cstr (packer, created);
    mesh_pack_cstr (packer, "updated_at");
    mesh_pack_cstr (packer, updated);
}

//  Pack *user_p and destroy it; or report rc.
static int
s_reply_user (int rc, user_t **user_p, const char *field, const char *why,
              msgpack_packer *reply, char *message, size_t message_size)
{
    if (rc)
        return s_app_error (rc, field, why, message, message_size);
    user_codec_pack_user (reply, *user_p);
    user_destroy (user_p);
    return 0;
}

//  The name and email of a user.create body. Returns 0 or MESH_EINVAL with
//  the message.
static int
s_need_create (const msgpack_object *body, s_str_t *name, s_str_t *email, char *message,
               size_t message_size)
{
    int rc = s_need_map (body, false, message, message_size);
    if (!rc)
        rc = s_field_str (body, "name", true, name, message, message_size);
    if (!rc)
        rc = s_field_str (body, "email", true, email, message, message_size);
    return rc;
}

int
user_codec_create (user_app_t *app, mesh_slice_t actor, const msgpack_object *body,
                   msgpack_packer *reply, char *message, size_t message_size)
{
    message[0] = '\0';
    s_str_t name, email;
    int rc = s_need_create (body, &name, &email, message, message_size);
    if (rc)
        return rc;
    user_t *user = NULL;
    const char *field = NULL, *why = NULL;
    rc = user_app_create (app, actor.ptr, actor.len, name.ptr, name.len, email.ptr, email.len,
                          &user, &field, &why);
    return s_reply_user (rc, &user, field, why, reply, message, message_size);
}

void
user_codec_create_many (user_app_t *app, const user_codec_request_t *requests, size_t count,
                        msgpack_packer *const *replies, char *const *messages,
                        size_t message_size, int *rcs)
{
    assert (count <= USER_APP_CREATE_MANY_MAX);
    user_app_create_t creates[USER_APP_CREATE_MANY_MAX];
    size_t slot_of[USER_APP_CREATE_MANY_MAX] = {0};
    size_t asked = 0;
    for (size_t index = 0; index < count; index++) {
        messages[index][0] = '\0';
        s_str_t name, email;
        rcs[index] =
            s_need_create (requests[index].body, &name, &email, messages[index], message_size);
        if (!rcs[index]) {
            creates[asked] = (user_app_create_t) {
                .actor = requests[index].actor.ptr,
                .actor_len = requests[index].actor.len,
                .name = name.ptr,
                .name_len = name.len,
                .email = email.ptr,
                .email_len = email.len,
                .trace = requests[index].trace,
            };
            slot_of[asked++] = index;
        }
    }
    user_t *users[USER_APP_CREATE_MANY_MAX];
    int app_rcs[USER_APP_CREATE_MANY_MAX];
    const char *fields[USER_APP_CREATE_MANY_MAX], *whys[USER_APP_CREATE_MANY_MAX];
    if (asked)
        user_app_create_many (app, creates, asked, users, app_rcs, fields, whys);
    for (size_t index = 0; index < asked; index++) {
        size_t slot = slot_of[index];
        rcs[slot] = s_reply_user (app_rcs[index], &users[index], fields[index], whys[index],
                                  replies[slot], messages[slot], message_size);
    }
}

int
user_codec_get (user_app_t *app, mesh_slice_t actor, const msgpack_object *body,
                msgpack_packer *reply, char *message, size_t message_size)
{
    message[0] = '\0';
    s_str_t id;
    int rc = s_need_id (body, &id, message, message_size);
    if (rc)
        return rc;
    user_t *user = NULL;
    const char *field = NULL, *why = NULL;
    rc = user_app_get (app, id.ptr, id.len, &user, &field, &why);
    return s_reply_user (rc, &user, field, why, reply, message, message_size);
}

void
user_codec_get_many (user_app_t *app, const msgpack_object *const *bodies,
                     const char *const *traces, size_t count, msgpack_packer *const *replies,
                     char *const *messages, size_t message_size, int *rcs)
{
    assert (count <= USER_APP_GET_MANY_MAX);
    user_app_id_t ids[USER_APP_GET_MANY_MAX];
    size_t slot_of[USER_APP_GET_MANY_MAX] = {0};
    size_t asked = 0;
    for (size_t index = 0; index < count; index++) {
        messages[index][0] = '\0';
        s_str_t id;
        rcs[index] = s_need_id (bodies[index], &id, messages[index], message_size);
        if (!rcs[index]) {
            ids[asked] = (user_app_id_t) { id.ptr, id.len, traces? traces[index]: NULL };
            slot_of[asked++] = index;
        }
    }
    user_t *users[USER_APP_GET_MANY_MAX];
    int app_rcs[USER_APP_GET_MANY_MAX];
    const char *fields[USER_APP_GET_MANY_MAX], *whys[USER_APP_GET_MANY_MAX];
    int rc = asked ? user_app_get_many (app, ids, asked, users, app_rcs, fields, whys) : 0;
    for (size_t index = 0; index < asked; index++) {
        size_t slot = slot_of[index];
        int app_rc = rc && app_rcs[index] == 0 ? rc : app_rcs[index];
        rcs[slot] = s_reply_user (app_rc, &users[index], fields[index], whys[index],
                                  replies[slot], messages[slot], message_size);
    }
}

int
user_codec_list (user_app_t *app, mesh_slice_t actor, const msgpack_object *body,
                 msgpack_packer *reply, char *message, size_t message_size)
{
    message[0] = '\0';
    s_str_t after;
    int rc = s_need_map (body, true, message, message_size);
    if (!rc)
        rc = s_field_str (body, "after", false, &after, message, message_size);
    if (rc)
        return rc;
    int64_t limit = 0;
    bool has_limit = false;
    rc = s_field_int (body, "limit", &has_limit, &limit, message, message_size);
    if (rc)
        return rc;
    user_page_t *page = NULL;
    const char *field = NULL, *why = NULL;
    rc = user_app_list (app, after.present ? after.ptr : NULL, after.len,
                        has_limit ? &limit : NULL, &page, &field, &why);
    if (rc)
        return s_app_error (rc, field, why, message, message_size);
    size_t count = user_page_count (page);
    msgpack_pack_map (reply, 2);
    mesh_pack_cstr (reply, "items");
    msgpack_pack_array (reply, count);
    for (size_t index = 0; index < count; index++)
        user_codec_pack_user (reply, user_page_item (page, index));
    mesh_pack_cstr (reply, "next");
    const char *next = user_page_next (page);
    if (next)
        mesh_pack_cstr (reply, next);
    else
        msgpack_pack_nil (reply);
    user_page_destroy (&page);
    return 0;
}

int
user_codec_update (user_app_t *app, mesh_slice_t actor, const msgpack_object *body,
                   msgpack_packer *reply, char *message, size_t message_size)
{
    message[0] = '\0';
    s_str_t id, name, email;
    int rc = s_need_id (body, &id, message, message_size);
    if (!rc)
        rc = s_field_str (body, "name", false, &name, message, message_size);
    if (!rc)
        rc = s_field_str (body, "email", false, &email, message, message_size);
    if (rc)
        return rc;
    user_t *user = NULL;
    const char *field = NULL, *why = NULL;
    rc = user_app_update (app, actor.ptr, actor.len, id.ptr, id.len, name.present ? name.ptr : NULL,
                          name.len, email.present ? email.ptr : NULL, email.len, &user, &field,
                          &why);
    return s_reply_user (rc, &user, field, why, reply, message, message_size);
}

int
user_codec_delete (user_app_t *app, mesh_slice_t actor, const msgpack_object *body,
                   msgpack_packer *reply, char *message, size_t message_size)
{
    message[0] = '\0';
    s_str_t id;
    int rc = s_need_id (body, &id, message, message_size);
    if (rc)
        return rc;
    const char *field = NULL, *why = NULL;
    rc = user_app_delete (app, actor.ptr, actor.len, id.ptr, id.len, &field, &why);
    if (rc)
        return s_app_error (rc, field, why, message, message_size);
    msgpack_pack_map (reply, 0);
    return 0;
}

void
user_codec_pack_event (msgpack_packer *packer, const user_stored_event_t *event)
{
    char time[USER_TIME_SIZE] = "";
    //  Times stored come from user_new-checked users: in range
    user_format_time (event->time_us, time, sizeof time);
    bool traced = event->trace[0] != '\0';
    bool acted = event->actor[0] != '\0';
    msgpack_pack_map (packer, 9 + (traced ? 1 : 0) + (acted ? 1 : 0));
    mesh_pack_cstr (packer, "specversion");
    mesh_pack_cstr (packer, "1.0");
    mesh_pack_cstr (packer, "id");
    mesh_pack_cstr (packer, event->id);
    mesh_pack_cstr (packer, "source");
    mesh_pack_cstr (packer, USER_EVENT_SOURCE);
    mesh_pack_cstr (packer, "type");
    mesh_pack_cstr (packer, event->type);
    mesh_pack_cstr (packer, "time");
    mesh_pack_cstr (packer, time);
    mesh_pack_cstr (packer, "subject");
    mesh_pack_cstr (packer, event->subject);
    mesh_pack_cstr (packer, "datacontenttype");
    mesh_pack_cstr (packer, "application/msgpack");
    mesh_pack_cstr (packer, "data");
    //  The payload as stored with the change, byte for byte (one packed
    //  object); nil from a store that keeps no encoding
    if (event->data_len)
        packer->callback (packer->data, event->data, event->data_len);
    else
        msgpack_pack_nil (packer);
    mesh_pack_cstr (packer, "seq");
    msgpack_pack_uint64 (packer, event->seq);
    if (traced) {
        mesh_pack_cstr (packer, "trace");
        mesh_pack_cstr (packer, event->trace);
    }
    //  A CloudEvents extension attribute (lower-case alphanumeric name):
    //  who asked for the change; absent, not empty, when nobody said
    if (acted) {
        mesh_pack_cstr (packer, "actor");
        mesh_pack_cstr (packer, event->actor);
    }
}

int
user_codec_events (user_app_t *app, mesh_slice_t actor, const msgpack_object *body,
                   msgpack_packer *reply, char *message, size_t message_size)
{
    message[0] = '\0';
    int rc = s_need_map (body, false, message, message_size);
    bool has_after = false, has_limit = false;
    int64_t after_seq = 0, limit = 0;
    if (!rc)
        rc = s_field_int (body, "after_seq", &has_after, &after_seq, message, message_size);
    if (!rc)
        rc = s_field_int (body, "limit", &has_limit, &limit, message, message_size);
    if (rc)
        return rc;
    user_stored_event_t *events = NULL;
    size_t count = 0;
    const char *field = NULL, *why = NULL;
    rc = user_app_events (app, has_after ? &after_seq : NULL, has_limit ? &limit : NULL, &events,
                          &count, &field, &why);
    if (rc)
        return s_app_error (rc, field, why, message, message_size);
    msgpack_pack_map (reply, 1);
    mesh_pack_cstr (reply, "items");
    msgpack_pack_array (reply, count);
    for (size_t index = 0; index < count; index++)
        user_codec_pack_event (reply, &events[index]);
    user_stored_events_free (events, count);
    return 0;
}
