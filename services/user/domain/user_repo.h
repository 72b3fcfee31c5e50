/*  =========================================================================
    user_repo - the repository port: what the user use cases need from storage
    The app layer (user_app) talks to storage only through this table of
    function pointers; adapters (infra/user_repo_pg, testing/user_repo_memory)
    embed user_repo_t as their FIRST member, so a user_repo_t * can be cast
    back to the adapter. Every change is written together with its event in
    ONE transaction: the adapter guarantees that either both the row and its
    outbox event are stored, or neither is. Events get their `seq` later,
    from the relay; writing them is all a change does.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_REPO_H_INCLUDED
#define USER_REPO_H_INCLUDED

#include "user.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

//  Event types (the topic of the published event, CloudEvents `type`).
#define USER_EVENT_CREATED "user.created"
#define USER_EVENT_UPDATED "user.updated"
#define USER_EVENT_DELETED "user.deleted"

//  One event to write to the outbox with its change. All fields are
//  borrowed for the duration of the call; an adapter copies what it keeps.
typedef struct {
    const char *type;           //  USER_EVENT_*
    const char *id;             //  Event id, canonical UUID (CloudEvents `id`)
    const char *subject;        //  Id of the user the event is about
    const user_t *user;         //  The user after the change; the last state for deleted
    int64_t time_us;            //  When the change happened, unix microseconds
    const char *actor;          //  Who asked (user_actor_normalize'd); NULL or "" = none
    const char *trace;          //  W3C traceparent stored with it; NULL = set_request's
} user_event_t;

//  One event as the outbox holds it once the relay has numbered it: what
//  events.list returns and the relay publishes. `data` is the payload in
//  the adapter's wire encoding (MessagePack for PostgreSQL), opaque here;
//  it is owned by the event (free it with user_stored_events_free).
#define USER_EVENT_TYPE_SIZE 16     //  Longest USER_EVENT_* + NUL, rounded up
#define USER_TRACE_SIZE 64          //  A W3C traceparent is 55 characters
typedef struct {
    uint64_t seq;                       //  Given by the relay: 1, 2, 3, ...
    char id[USER_ID_SIZE];              //  Event id
    char type[USER_EVENT_TYPE_SIZE];    //  USER_EVENT_*
    char subject[USER_ID_SIZE];         //  User id
    char trace[USER_TRACE_SIZE];        //  traceparent, or "" when unknown
    char actor[USER_ACTOR_SIZE];        //  Who asked for the change, or "" when none
    int64_t time_us;                    //  When the change happened
    void *data;                         //  Owned; NULL when data_len is 0
    size_t data_len;
} user_stored_event_t;

//  Free an array of `count` stored events and their data. Tolerates NULL.
static inline void
user_stored_events_free (user_stored_event_t *events, size_t count)
{
    if (events)
        for (size_t index = 0; index < count; index++)
            free (events[index].data);
    free (events);
}

//  Longest idempotency key a repository stores, in bytes.
#define USER_IDEM_KEY_MAX 255

typedef struct user_repo_s user_repo_t;

//  Operations of an adapter. Return codes, for every operation: 0, or
//  MESH_EUNAVAIL when the store cannot be reached (a retry later may
//  succeed), or MESH_EIO for any other store failure (including a
//  transaction that failed and was rolled back); plus those listed below.
//  Ids passed in are canonical (user_id_valid). Thread safety is the
//  adapter's: the PostgreSQL adapter is one per thread.
typedef struct {
    //  Store a new user and its event atomically. MESH_ECONFLICT when the
    //  email (or, improbably, the id) is taken: nothing is written.
    int (*insert) (user_repo_t *self, const user_t *user, const user_event_t *event);
    //  insert for `count` users at once, each with its event; rcs[i] is
    //  what insert would return for user i. Every user whose email (or id)
    //  is free is stored, all in ONE transaction (one commit), and gets 0;
    //  one whose email is taken, by a stored user or by an earlier one of
    //  the same call, gets MESH_ECONFLICT and nothing of it is written.
    //  When the transaction fails, every rcs[i] is that store error and
    //  nothing is written. Optional: when NULL, user_repo_insert_many
    //  calls insert for each (one transaction each).
    void (*insert_many) (user_repo_t *self, const user_t *const *users,
                         const user_event_t *events, size_t count, int *rcs);
    //  Fetch a user; on 0 *user_p is a fresh user the caller destroys.
    //  MESH_ENOTFOUND when there is no such user.
    int (*find) (user_repo_t *self, const char *id, user_t **user_p);
    //  Fetch `count` users at once (an adapter may save round trips), at
    //  most 64. traces[i] is the traceparent of the request asking for
    //  ids[i] (an adapter's statement span goes under it; traces or
    //  traces[i] NULL: none). On 0, for each i: rcs[i] is 0 with users[i]
    //  a fresh user the caller destroys, or MESH_ENOTFOUND with users[i]
    //  NULL. Any other return is a store error for all of them, and every
    //  users[i] is NULL.
    int (*find_many) (user_repo_t *self, const char *const *ids, const char *const *traces,
                      size_t count, user_t **users, int *rcs);
    //  Replace the name, email and updated_at of the user with user's id,
    //  and store the event, atomically. MESH_ENOTFOUND when the user is
    //  gone, MESH_ECONFLICT when another user has the email.
    int (*update) (user_repo_t *self, const user_t *user, const user_event_t *event);
    //  Delete a user and store the event, atomically. MESH_ENOTFOUND when
    //  there is no such user.
    int (*remove) (user_repo_t *self, const char *id, const user_event_t *event);
    //  Up to `limit` users with id greater than `after_id` (NULL: from the
    //  first), in ascending id order (keyset pagination). On 0 *users_p is
    //  a fresh array of *count_p fresh users (NULL when none): the caller
    //  destroys each user and frees the array.
    int (*list) (user_repo_t *self, const char *after_id, size_t limit, user_t ***users_p,
                 size_t *count_p);
    //  Up to `limit` events numbered by the relay with seq > after_seq, in
    //  seq order. On 0 *events_p is a fresh array of *count_p events (NULL
    //  when none), freed with user_stored_events_free.
    int (*events) (user_repo_t *self, uint64_t after_seq, size_t limit,
                   user_stored_event_t **events_p, size_t *count_p);

    //  Idempotency keys (at most USER_IDEM_KEY_MAX bytes; a longer key is
    //  MESH_EINVAL). idem_claim starts a unit of work under `key`:
    //  - 0 with *reply_p NULL: the key is new and now claimed; the next
    //    change (insert, update or remove) belongs to the unit, which ends
    //    with idem_complete (keep the change and the reply, atomically) or
    //    idem_release (undo both). A concurrent claim of the same key waits
    //    until this unit ends.
    //  - 0 with *reply_p set: the key was completed before with the same
    //    `request` bytes; *reply_p (fresh, *reply_len_p bytes; the caller
    //    frees it) is the reply then stored. No unit is open.
    //  - MESH_ECONFLICT: the key was completed with a different request.
    //  Or a store error; no unit is open after any non-zero return.
    int (*idem_claim) (user_repo_t *self, const char *key, const void *request,
                       size_t request_len, void **reply_p, size_t *reply_len_p);
    //  Store `reply` under the claimed key and make the unit durable.
    //  Returns 0 or a store error (then nothing of the unit is kept).
    int (*idem_complete) (user_repo_t *self, const void *reply, size_t reply_len);
    //  Undo the open unit, if any. Never fails.
    void (*idem_release) (user_repo_t *self);

    //  What the adapter should know of the request being served, until the
    //  next call: its deadline (unix ms, 0 = none; an adapter may stop work
    //  past it and return MESH_ETIMEDOUT) and its W3C traceparent (NULL or
    //  "" = none; copied, stored with the events the request writes).
    void (*set_request) (user_repo_t *self, uint64_t deadline_ms, const char *trace);

    //  Destroy the adapter; nulls the caller's pointer, tolerates NULL.
    void (*destroy) (user_repo_t **self_p);
} user_repo_ops_t;

struct user_repo_s {
    const user_repo_ops_t *ops;     //  The adapter's operations
};

//  Thin wrappers, so callers read user_repo_find (repo, id, &user).
static inline int
user_repo_insert (user_repo_t *self, const user_t *user, const user_event_t *event)
{
    return self->ops->insert (self, user, event);
}

static inline void
user_repo_insert_many (user_repo_t *self, const user_t *const *users,
                       const user_event_t *events, size_t count, int *rcs)
{
    if (self->ops->insert_many)
        self->ops->insert_many (self, users, events, count, rcs);
    else
        for (size_t index = 0; index < count; index++)
            rcs[index] = self->ops->insert (self, users[index], &events[index]);
}

static inline int
user_repo_find (user_repo_t *self, const char *id, user_t **user_p)
{
    return self->ops->find (self, id, user_p);
}

static inline int
user_repo_find_many (user_repo_t *self, const char *const *ids, const char *const *traces,
                     size_t count, user_t **users, int *rcs)
{
    return self->ops->find_many (self, ids, traces, count, users, rcs);
}

static inline int
user_repo_update (user_repo_t *self, const user_t *user, const user_event_t *event)
{
    return self->ops->update (self, user, event);
}

static inline int
user_repo_remove (user_repo_t *self, const char *id, const user_event_t *event)
{
    return self->ops->remove (self, id, event);
}

static inline int
user_repo_list (user_repo_t *self, const char *after_id, size_t limit, user_t ***users_p,
                size_t *count_p)
{
    return self->ops->list (self, after_id, limit, users_p, count_p);
}

static inline int
user_repo_events (user_repo_t *self, uint64_t after_seq, size_t limit,
                  user_stored_event_t **events_p, size_t *count_p)
{
    return self->ops->events (self, after_seq, limit, events_p, count_p);
}

static inline int
user_repo_idem_claim (user_repo_t *self, const char *key, const void *request,
                      size_t request_len, void **reply_p, size_t *reply_len_p)
{
    return self->ops->idem_claim (self, key, request, request_len, reply_p, reply_len_p);
}

static inline int
user_repo_idem_complete (user_repo_t *self, const void *reply, size_t reply_len)
{
    return self->ops->idem_complete (self, reply, reply_len);
}

static inline void
user_repo_idem_release (user_repo_t *self)
{
    self->ops->idem_release (self);
}

static inline void
user_repo_set_request (user_repo_t *self, uint64_t deadline_ms, const char *trace)
{
    self->ops->set_request (self, deadline_ms, trace);
}

static inline void
user_repo_destroy (user_repo_t **self_p)
{
    if (self_p && *self_p)
        (*self_p)->ops->destroy (self_p);
}

#endif
