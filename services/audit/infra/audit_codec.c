/*  =========================================================================
    audit_codec - MessagePack <-> audit events, and the audit.list bodies
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_codec.h"

#include "audit_list.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  Value of key `name` in map `map`, or NULL (absent or nil).
static const msgpack_object *
s_lookup (const msgpack_object *map, const char *name)
{
    size_t len = strlen (name);
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object_kv *pair = &map->via.map.ptr[index];
        if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == len
            && memcmp (pair->key.via.str.ptr, name, len) == 0)
            return pair->val.type == MSGPACK_OBJECT_NIL ? NULL : &pair->val;
    }
    return NULL;
}

//  Copy string field `name` into out[size]; false when absent, not a
//  string or too long.
static bool
s_string (const msgpack_object *map, const char *name, char *out, size_t size)
{
    const msgpack_object *value = s_lookup (map, name);
    if (!value || value->type != MSGPACK_OBJECT_STR || value->via.str.size >= size)
        return false;
    memcpy (out, value->via.str.ptr, value->via.str.size);
    out[value->via.str.size] = '\0';
    return true;
}

const char *
audit_codec_event (const msgpack_object *map, audit_event_t *event)
{
    audit_event_clear (event);
    if (map->type != MSGPACK_OBJECT_MAP)
        return "an event is a map";
    const msgpack_object *seq = s_lookup (map, "seq");
    const msgpack_object *data = s_lookup (map, "data");
    const char *why = NULL;
    if (!seq || seq->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        why = "seq must be a positive integer";
    else if (!s_string (map, "id", event->id, sizeof event->id))
        why = "id must be a string";
    else if (!s_string (map, "type", event->type, sizeof event->type))
        why = "type must be a known event type";
    else if (!s_string (map, "subject", event->subject, sizeof event->subject))
        why = "subject must be a string";
    else if (!s_string (map, "time", event->time, sizeof event->time)
             || audit_time_parse (event->time, strlen (event->time), &event->time_us))
        why = "time must be an RFC 3339 UTC time";
    else if (!data || data->type != MSGPACK_OBJECT_MAP)
        why = "data must be a map";
    else if (s_lookup (map, "trace")
             && !s_string (map, "trace", event->trace, sizeof event->trace))
        why = "trace must be a string";
    //  The extension attribute of events written with an actor; absent on
    //  the others (and on every event of a user service before it)
    else if (s_lookup (map, "actor") && !s_string (map, "actor", event->actor, sizeof event->actor))
        why = "actor must be a string of at most 256 bytes";
    if (!why) {
        event->seq = seq->via.u64;
        json_t *json = mesh_msgpack_to_json (data, 0);
        event->data = json ? json_dumps (json, JSON_COMPACT) : NULL;
        json_decref (json);
        why = event->data ? audit_event_check (event) : "data cannot be expressed as JSON";
    }
    if (why)
        audit_event_clear (event);
    return why;
}

void
audit_codec_pack_entry (msgpack_packer *packer, const audit_event_t *event)
{
    bool traced = event->trace[0] != '\0';
    msgpack_pack_map (packer, traced ? 9 : 8);
    mesh_pack_cstr (packer, "id");
    mesh_pack_cstr (packer, event->id);
    mesh_pack_cstr (packer, "seq");
    msgpack_pack_uint64 (packer, event->seq);
    mesh_pack_cstr (packer, "type");
    mesh_pack_cstr (packer, event->type);
    mesh_pack_cstr (packer, "subject");
    mesh_pack_cstr (packer, event->subject);
    mesh_pack_cstr (packer, "time");
    mesh_pack_cstr (packer, event->time);
    mesh_pack_cstr (packer, "data");
    json_t *data = event->data ? json_loads (event->data, JSON_DECODE_ANY, NULL) : NULL;
    if (!data || mesh_json_to_msgpack (data, packer, 0))
        msgpack_pack_nil (packer);  //  Stored by us as valid JSON: cannot happen
    json_decref (data);
    if (traced) {
        mesh_pack_cstr (packer, "trace");
        mesh_pack_cstr (packer, event->trace);
    }
    //  Always there, nil when nobody was named: "who did it" is a question
    //  every entry answers, if only with "not known"
    mesh_pack_cstr (packer, "actor");
    if (event->actor[0])
        mesh_pack_cstr (packer, event->actor);
    else
        msgpack_pack_nil (packer);
    mesh_pack_cstr (packer, "received_at");
    char received[64];
    time_t seconds = (time_t) (event->received_us / 1000000);
    struct tm utc;
    gmtime_r (&seconds, &utc);
    snprintf (received, sizeof received, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
              utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
              utc.tm_sec, (int) (event->received_us % 1000000 / 1000));
    mesh_pack_cstr (packer, received);
}

//  An integer field, or its decimal string. Returns 0, 1 when absent, or
//  MESH_EINVAL.
static int
s_integer (const msgpack_object *body, const char *name, int64_t *value)
{
    const msgpack_object *object = s_lookup (body, name);
    if (!object)
        return 1;
    if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *value = object->via.u64 > INT64_MAX ? INT64_MAX : (int64_t) object->via.u64;
        return 0;
    }
    if (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *value = object->via.i64;
        return 0;
    }
    if (object->type == MSGPACK_OBJECT_STR && object->via.str.size > 0
        && object->via.str.size < 24) {
        char text[24];
        memcpy (text, object->via.str.ptr, object->via.str.size);
        text[object->via.str.size] = '\0';
        char *end = NULL;
        errno = 0;
        long long parsed = strtoll (text, &end, 10);
        if (errno == 0 && end && *end == '\0') {
            *value = parsed;
            return 0;
        }
    }
    return MESH_EINVAL;
}

int
audit_codec_list (audit_store_t *store, const msgpack_object *body, msgpack_packer *reply,
                  char *message, size_t message_size)
{
    message[0] = '\0';
    static const msgpack_object s_empty = { .type = MSGPACK_OBJECT_MAP };
    if (!body || body->type == MSGPACK_OBJECT_NIL)
        body = &s_empty;
    if (body->type != MSGPACK_OBJECT_MAP) {
        snprintf (message, message_size, "field 'body' must be a map");
        return MESH_EINVAL;
    }
    audit_list_request_t request = {0};
    const char *const strings[] = {"user_id", "type", "actor"};
    const char **string_ptrs[] = {&request.user_id, &request.type, &request.actor};
    size_t *string_lens[] = {&request.user_id_len, &request.type_len, &request.actor_len};
    for (int index = 0; index < 3; index++) {
        const msgpack_object *value = s_lookup (body, strings[index]);
        if (!value)
            continue;
        if (value->type != MSGPACK_OBJECT_STR) {
            snprintf (message, message_size, "field '%s' must be a string", strings[index]);
            return MESH_EINVAL;
        }
        *string_ptrs[index] = value->via.str.ptr;
        *string_lens[index] = value->via.str.size;
    }
    int64_t after = 0, limit = 0;
    const char *const integers[] = {"after", "limit"};
    int64_t *targets[] = {&after, &limit};
    for (int index = 0; index < 2; index++) {
        int rc = s_integer (body, integers[index], targets[index]);
        if (rc < 0) {
            snprintf (message, message_size, "field '%s' must be an integer", integers[index]);
            return MESH_EINVAL;
        }
        if (rc == 0) {
            if (index == 0)
                request.after = &after;
            else
                request.limit = &limit;
        }
    }
    audit_page_t page;
    const char *field = NULL, *why = NULL;
    int rc = audit_list (store, &request, &page, &field, &why);
    if (rc == MESH_EINVAL) {
        snprintf (message, message_size, "field '%s': %s", field, why);
        return rc;
    }
    if (rc) {
        snprintf (message, message_size, "%s",
                  rc == MESH_EUNAVAIL ? "database unavailable" : mesh_strerror (rc));
        return rc;
    }
    msgpack_pack_map (reply, 2);
    mesh_pack_cstr (reply, "items");
    msgpack_pack_array (reply, page.count);
    for (size_t index = 0; index < page.count; index++)
        audit_codec_pack_entry (reply, &page.events[index]);
    mesh_pack_cstr (reply, "next");
    if (page.next)
        msgpack_pack_uint64 (reply, page.next);
    else
        msgpack_pack_nil (reply);
    audit_events_free (page.events, page.count);
    return 0;
}
