/*  =========================================================================
    audit_list - the audit.list use case: pages of the audit log
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_list.h"

#include <assert.h>
#include <string.h>

int
audit_list (audit_store_t *store, const audit_list_request_t *request, audit_page_t *page,
            const char **field, const char **why)
{
    assert (store && request && page && field && why);
    *page = (audit_page_t) {0};
    *field = *why = NULL;
    char user_id[AUDIT_UUID_SIZE];
    char type[AUDIT_TYPE_SIZE];
    char actor[AUDIT_ACTOR_SIZE];
    audit_query_t query = { .limit = AUDIT_LIST_DEFAULT };
    if (request->user_id) {
        if (!audit_uuid_valid (request->user_id, request->user_id_len)) {
            *field = "user_id";
            *why = "must be a UUID in canonical lower-case form";
            return MESH_EINVAL;
        }
        memcpy (user_id, request->user_id, AUDIT_UUID_LEN);
        user_id[AUDIT_UUID_LEN] = '\0';
        query.user_id = user_id;
    }
    if (request->type) {
        if (!audit_event_type_known (request->type, request->type_len)) {
            *field = "type";
            *why = "must be user.created, user.updated or user.deleted";
            return MESH_EINVAL;
        }
        memcpy (type, request->type, request->type_len);
        type[request->type_len] = '\0';
        query.type = type;
    }
    if (request->actor) {
        if (!audit_actor_valid (request->actor, request->actor_len)) {
            *field = "actor";
            *why = "must be 1 to 256 bytes of UTF-8 text without control characters";
            return MESH_EINVAL;
        }
        memcpy (actor, request->actor, request->actor_len);
        actor[request->actor_len] = '\0';
        query.actor = actor;
    }
    if (request->after) {
        if (*request->after < 0) {
            *field = "after";
            *why = "must be a seq (0 or more)";
            return MESH_EINVAL;
        }
        query.after = (uint64_t) *request->after;
    }
    if (request->limit) {
        if (*request->limit < 1 || *request->limit > AUDIT_LIST_MAX) {
            *field = "limit";
            *why = "must be between 1 and 500";
            return MESH_EINVAL;
        }
        query.limit = (size_t) *request->limit;
    }
    size_t size = query.limit;
    query.limit = size + 1;
    int rc = audit_store_list (store, &query, &page->events, &page->count);
    if (rc)
        return rc;
    if (page->count > size) {
        audit_event_clear (&page->events[size]);
        page->count = size;
        page->next = page->events[size - 1].seq;
    }
    return 0;
}
