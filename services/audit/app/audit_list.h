/*  =========================================================================
    audit_list - the audit.list use case: pages of the audit log
    Checks a request's filters and bounds, asks the store for one more event
    than the page holds (so the last page has no cursor), and gives back the
    page with the cursor of the next one. Pure C over the store port.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_LIST_H_INCLUDED
#define AUDIT_LIST_H_INCLUDED

#include "audit_store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_LIST_DEFAULT 50       //  Page size without a limit
#define AUDIT_LIST_MAX 500          //  Largest page

//  A request as sent (strings not NUL-terminated; NULL = absent).
typedef struct {
    const char *user_id;            //  Filter: one user's events
    size_t user_id_len;
    const char *type;               //  Filter: one event type
    size_t type_len;
    const char *actor; //  Filter: the changes one actor asked for
    size_t actor_len;
    const int64_t *after;           //  Seq to start after (cursor of the last page)
    const int64_t *limit;           //  1..AUDIT_LIST_MAX
} audit_list_request_t;

//  One page: events[count] (fresh; audit_events_free) and the next page's
//  cursor (0 when this is the last page).
typedef struct {
    audit_event_t *events;
    size_t count;
    uint64_t next;
} audit_page_t;

//  Fill *page. Returns 0; MESH_EINVAL with *field ("user_id", "type",
//  "actor", "after", "limit") and *why (a static sentence); or the store's error.
int
    audit_list (audit_store_t *store, const audit_list_request_t *request, audit_page_t *page,
                const char **field, const char **why);

#endif
