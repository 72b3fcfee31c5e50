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
} user_event_t;

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
    //  Fetch a user; on 0 *user_p is a fresh user the caller destroys.
    //  MESH_ENOTFOUND when there is no such user.
    int (*find) (user_repo_t *self, const char *id, user_t **user_p);
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

static inline int
user_repo_find (user_repo_t *self, const char *id, user_t **user_p)
{
    return self->ops->find (self, id, user_p);
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

static inline void
user_repo_destroy (user_repo_t **self_p)
{
    if (self_p && *self_p)
        (*self_p)->ops->destroy (self_p);
}

#endif
