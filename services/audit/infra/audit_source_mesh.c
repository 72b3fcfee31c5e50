/*  =========================================================================
    audit_source_mesh - events.list through the broker
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_source_mesh.h"

#include "audit_codec.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_log.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    audit_source_t base;        //  First member: casts work
    mesh_client_t *client;      //  Borrowed
    int timeout_ms;
} s_source_t;

static int
s_fetch (audit_source_t *base, uint64_t after_seq, size_t limit, audit_event_t **events_p,
         size_t *count_p, size_t *malformed)
{
    s_source_t *self = (s_source_t *) base;
    *events_p = NULL;
    *count_p = 0;
    *malformed = 0;
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 2);
    mesh_pack_cstr (&packer, "after_seq");
    msgpack_pack_uint64 (&packer, after_seq);
    mesh_pack_cstr (&packer, "limit");
    msgpack_pack_uint64 (&packer, limit);
    mesh_call_t call = {
        .service = "user", .method = "events.list", .body = body.data, .body_len = body.size,
        .timeout_ms = self->timeout_ms,
    };
    mesh_reply_t reply;
    int rc = mesh_client_call (self->client, &call, &reply);
    msgpack_sbuffer_destroy (&body);
    if (rc)
        return MESH_EIO;
    if (reply.code != MESH_CODE_OK) {
        mesh_log_kv (MESH_LOG_WARN, "audit: events.list failed", "code",
                     mesh_code_name (reply.code), NULL);
        return reply.code == MESH_CODE_UNAVAILABLE || reply.code == MESH_CODE_DEADLINE_EXCEEDED
                   ? MESH_EUNAVAIL : MESH_EIO;
    }
    const msgpack_object *items = NULL;
    if (reply.body && reply.body->type == MSGPACK_OBJECT_MAP)
        for (uint32_t index = 0; index < reply.body->via.map.size; index++) {
            const msgpack_object_kv *pair = &reply.body->via.map.ptr[index];
            if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == 5
                && memcmp (pair->key.via.str.ptr, "items", 5) == 0)
                items = &pair->val;
        }
    if (!items || items->type != MSGPACK_OBJECT_ARRAY)
        return MESH_EIO;
    uint32_t size = items->via.array.size;
    audit_event_t *events = size ? mesh_alloc (size * sizeof *events) : NULL;
    size_t count = 0;
    for (uint32_t index = 0; index < size; index++) {
        const char *why = audit_codec_event (&items->via.array.ptr[index], &events[count]);
        if (why) {
            (*malformed)++;
            mesh_log_kv (MESH_LOG_WARN, "audit: events.list gave a malformed event", "reason",
                         why, NULL);
        }
        else
            count++;
    }
    *events_p = events;
    *count_p = count;
    return 0;
}

static const audit_source_ops_t s_ops = { .fetch = s_fetch };

audit_source_t *
audit_source_mesh_new (mesh_client_t *client, int timeout_ms)
{
    s_source_t *self = mesh_alloc (sizeof *self);
    self->base.ops = &s_ops;
    self->client = client;
    self->timeout_ms = timeout_ms;
    return &self->base;
}
