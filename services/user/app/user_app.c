/*  =========================================================================
    user_app - the use cases of mesh-user
    Each use case checks its request values with the domain's normalisers
    (so the repository sees only values in normal form), builds the new
    state and its event, and hands both to one repository call: the
    adapter's transaction is the unit of atomicity, never this layer.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_app.h"
#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct user_app_s {
    user_repo_t *repo;          //  Borrowed storage port
    user_app_env_t env;         //  Id generator and clock
};

struct user_page_s {
    user_t **items;             //  Owned users, ascending id
    size_t count;               //  Users in items
    char next[USER_ID_SIZE];    //  Cursor of the next page; "" on the last page
};

//  --------------------------------------------------------------------------
//  Create the use cases over a borrowed repository.
user_app_t *
user_app_new (user_repo_t *repo, const user_app_env_t *env)
{
    assert (repo);
    assert (env);
    assert (env->make_id);
    assert (env->now_us);
    user_app_t *self = (user_app_t *) mesh_alloc (sizeof (user_app_t));
    self->repo = repo;
    self->env = *env;
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the app; the repository stays with its owner.
void
user_app_destroy (user_app_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Clear the caller's field and why, which are set only on MESH_EINVAL.
static void
s_clear (const char **field, const char **why)
{
    if (field)
        *field = NULL;
    if (why)
        *why = NULL;
}

//  --------------------------------------------------------------------------
//  Report `field` as the offending one when rc is MESH_EINVAL; pass rc on.
static int
s_invalid (int rc, const char *name, const char **field)
{
    if (rc == MESH_EINVAL && field)
        *field = name;
    return rc;
}

//  --------------------------------------------------------------------------
//  A fresh id from the environment. The generator is our own code, so an
//  id that is not canonical is a programmer error.
static void
s_make_id (user_app_t *self, char out[USER_ID_SIZE])
{
    self->env.make_id (self->env.arg, out);
    assert (user_id_valid (out, strlen (out)));
}

//  --------------------------------------------------------------------------
//  Check the request's actor into `out` ("" when none); MESH_EINVAL names
//  the field "actor".
static int
s_actor (const char *actor, size_t actor_len, char out[USER_ACTOR_SIZE], const char **field,
         const char **why)
{
    int rc =
        user_actor_normalize (actor ? actor : "", actor ? actor_len : 0, out, USER_ACTOR_SIZE, why);
    return s_invalid (rc, "actor", field);
}

//  --------------------------------------------------------------------------
//  Fill an event about `user` asked for by `actor` ("" = none), with a
//  fresh id.
static void
s_event (user_app_t *self, user_event_t *event, char event_id[USER_ID_SIZE], const char *type,
         const user_t *user, int64_t time_us, const char *actor)
{
    s_make_id (self, event_id);
    event->type = type;
    event->id = event_id;
    event->subject = user_id (user);
    event->user = user;
    event->time_us = time_us;
    event->actor = actor;
    event->trace = NULL;
}

//  --------------------------------------------------------------------------
//  A create checked and ready for the store: the new user and its event
//  (which borrows the user and the buffers below).
typedef struct {
    user_t *user;                       //  Owned until stored or dropped
    user_event_t event;
    char event_id[USER_ID_SIZE];
    char actor[USER_ACTOR_SIZE];
} s_create_t;

//  Check a create's actor, name and email and build its user and event
//  into `create`. Returns 0, MESH_EINVAL (*field, *why), or MESH_EIO.
static int
s_create_prepare (user_app_t *self, const char *actor, size_t actor_len, const char *name,
                  size_t name_len, const char *email, size_t email_len, s_create_t *create,
                  const char **field, const char **why)
{
    assert (name || name_len == 0);
    assert (email || email_len == 0);
    s_clear (field, why);
    create->user = NULL;
    int rc = s_actor (actor, actor_len, create->actor, field, why);
    if (rc)
        return rc;
    char name_norm[USER_NAME_SIZE];
    char email_norm[USER_EMAIL_SIZE];
    rc = user_name_normalize (name ? name : "", name_len, name_norm, sizeof name_norm, why);
    if (rc)
        return s_invalid (rc, "name", field);
    rc = user_email_normalize (email? email: "", email_len, email_norm, sizeof email_norm, why);
    if (rc)
        return s_invalid (rc, "email", field);

    char id[USER_ID_SIZE];
    s_make_id (self, id);
    int64_t now_us = self->env.now_us (self->env.arg);
    create->user = user_new (id, name_norm, email_norm, now_us, now_us);
    if (!create->user)
        return MESH_EIO;        //  Only a clock outside years 0000..9999 gets here
    s_event (self, &create->event, create->event_id, USER_EVENT_CREATED, create->user, now_us,
             create->actor);
    return 0;
}

//  --------------------------------------------------------------------------
//  Create a user and its user.created event.
int
user_app_create (user_app_t *self, const char *actor, size_t actor_len, const char *name,
                 size_t name_len, const char *email, size_t email_len, user_t **user_p,
                 const char **field, const char **why)
{
    assert (self);
    assert (user_p);
    s_create_t create;
    int rc = s_create_prepare (self, actor, actor_len, name, name_len, email, email_len, &create,
                               field, why);
    if (rc == 0)
        rc = user_repo_insert (self->repo, create.user, &create.event);
    if (rc) {
        user_destroy (&create.user);
        return rc;
    }
    *user_p = create.user;
    return 0;
}

//  --------------------------------------------------------------------------
//  Create several users, stored together.
void
user_app_create_many (user_app_t *self, const user_app_create_t *creates, size_t count,
                      user_t **users, int *rcs, const char **fields, const char **whys)
{
    assert (self);
    assert (count <= USER_APP_CREATE_MANY_MAX);
    s_create_t prepared[USER_APP_CREATE_MANY_MAX];
    const user_t *store_users[USER_APP_CREATE_MANY_MAX];
    user_event_t store_events[USER_APP_CREATE_MANY_MAX];
    int store_rcs[USER_APP_CREATE_MANY_MAX];
    size_t slot_of[USER_APP_CREATE_MANY_MAX] = {0};
    size_t stored = 0;
    for (size_t index = 0; index < count; index++) {
        const user_app_create_t *create = &creates[index];
        users[index] = NULL;
        rcs[index] = s_create_prepare (self, create->actor, create->actor_len, create->name,
                                       create->name_len, create->email, create->email_len,
                                       &prepared[index], &fields[index], &whys[index]);
        if (rcs[index] == 0) {
            store_users[stored] = prepared[index].user;
            store_events[stored] = prepared[index].event;
            store_events[stored].trace = create->trace;
            slot_of[stored++] = index;
        }
        else
            user_destroy (&prepared[index].user);
    }
    if (stored)
        user_repo_insert_many (self->repo, store_users, store_events, stored, store_rcs);
    for (size_t index = 0; index < stored; index++) {
        size_t slot = slot_of[index];
        rcs[slot] = store_rcs[index];
        if (rcs[slot] == 0)
            users[slot] = prepared[slot].user;
        else
            user_destroy (&prepared[slot].user);
    }
}

//  --------------------------------------------------------------------------
//  Normalise a request id into `out`; MESH_EINVAL names `name` as the field.
static int
s_id (const char *id, size_t id_len, const char *name, char out[USER_ID_SIZE],
      const char **field, const char **why)
{
    int rc = user_id_normalize (id? id: "", id_len, out, USER_ID_SIZE, why);
    return s_invalid (rc, name, field);
}

//  --------------------------------------------------------------------------
//  Fetch a user by id.
int
user_app_get (user_app_t *self, const char *id, size_t id_len, user_t **user_p,
              const char **field, const char **why)
{
    assert (self);
    assert (id || id_len == 0);
    assert (user_p);
    s_clear (field, why);

    char id_norm[USER_ID_SIZE];
    int rc = s_id (id, id_len, "id", id_norm, field, why);
    if (rc)
        return rc;
    return user_repo_find (self->repo, id_norm, user_p);
}

//  --------------------------------------------------------------------------
//  Several gets; the valid ids go to the repository together.
int
user_app_get_many (user_app_t *self, const user_app_id_t *ids, size_t count, user_t **users,
                   int *rcs, const char **fields, const char **whys)
{
    assert (self);
    assert (count <= USER_APP_GET_MANY_MAX);
    char norm[USER_APP_GET_MANY_MAX][USER_ID_SIZE];
    const char *valid[USER_APP_GET_MANY_MAX];
    const char *traces[USER_APP_GET_MANY_MAX];
    size_t slot_of[USER_APP_GET_MANY_MAX];
    user_t *found[USER_APP_GET_MANY_MAX];
    int found_rcs[USER_APP_GET_MANY_MAX];
    size_t valid_count = 0;
    for (size_t index = 0; index < count; index++) {
        users[index] = NULL;
        fields[index] = whys[index] = NULL;
        assert (ids[index].ptr || ids[index].len == 0);
        rcs[index] = s_id (ids[index].ptr, ids[index].len, "id", norm[index], &fields[index],
                           &whys[index]);
        if (rcs[index] == 0) {
            traces[valid_count] = ids[index].trace;
            valid[valid_count] = norm[index];
            slot_of[valid_count++] = index;
        }
    }
    if (valid_count == 0)
        return 0;
    int rc = user_repo_find_many (self->repo, valid, traces, valid_count, found, found_rcs);
    if (rc)
        return rc;
    for (size_t index = 0; index < valid_count; index++) {
        users[slot_of[index]] = found[index];
        rcs[slot_of[index]] = found_rcs[index];
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Change name and/or email; writes user.updated with the new state.
int
user_app_update (user_app_t *self, const char *actor, size_t actor_len, const char *id,
                 size_t id_len, const char *name, size_t name_len, const char *email,
                 size_t email_len, user_t **user_p, const char **field, const char **why)
{
    assert (self);
    assert (id || id_len == 0);
    assert (user_p);
    s_clear (field, why);

    //  Every request value is checked before the store is asked anything,
    //  so a bad request is MESH_EINVAL even while the store is down.
    char actor_norm[USER_ACTOR_SIZE];
    int rc = s_actor (actor, actor_len, actor_norm, field, why);
    if (rc)
        return rc;
    char id_norm[USER_ID_SIZE];
    rc = s_id (id, id_len, "id", id_norm, field, why);
    if (rc)
        return rc;
    if (!name && !email) {
        if (field)
            *field = "name";
        if (why)
            *why = "update must change the name or the email";
        return MESH_EINVAL;
    }
    char name_norm[USER_NAME_SIZE];
    char email_norm[USER_EMAIL_SIZE];
    if (name) {
        rc = user_name_normalize (name, name_len, name_norm, sizeof name_norm, why);
        if (rc)
            return s_invalid (rc, "name", field);
    }
    if (email) {
        rc = user_email_normalize (email, email_len, email_norm, sizeof email_norm, why);
        if (rc)
            return s_invalid (rc, "email", field);
    }

    //  Read, then write by id: two concurrent updates of one user both
    //  succeed and the later commit wins, each with its own event, so the
    //  event stream still ends in the stored state.
    user_t *current = NULL;
    rc = user_repo_find (self->repo, id_norm, &current);
    if (rc)
        return rc;
    int64_t now_us = self->env.now_us (self->env.arg);
    user_t *user = user_new (id_norm, name? name_norm: user_name (current),
                             email? email_norm: user_email (current),
                             user_created_at_us (current), now_us);
    user_destroy (&current);
    if (!user)
        return MESH_EIO;        //  Clock out of range

    user_event_t event;
    char event_id[USER_ID_SIZE];
    s_event (self, &event, event_id, USER_EVENT_UPDATED, user, now_us, actor_norm);
    rc = user_repo_update (self->repo, user, &event);
    if (rc) {
        user_destroy (&user);
        return rc;
    }
    *user_p = user;
    return 0;
}

//  --------------------------------------------------------------------------
//  Delete a user; writes user.deleted with its last state.
int
user_app_delete (user_app_t *self, const char *actor, size_t actor_len, const char *id,
                 size_t id_len, const char **field, const char **why)
{
    assert (self);
    assert (id || id_len == 0);
    s_clear (field, why);

    char actor_norm[USER_ACTOR_SIZE];
    int rc = s_actor (actor, actor_len, actor_norm, field, why);
    if (rc)
        return rc;
    char id_norm[USER_ID_SIZE];
    rc = s_id (id, id_len, "id", id_norm, field, why);
    if (rc)
        return rc;
    //  The event carries the last state, so read it first; the remove is
    //  by id and says MESH_ENOTFOUND if the user went in between.
    user_t *last = NULL;
    rc = user_repo_find (self->repo, id_norm, &last);
    if (rc)
        return rc;
    user_event_t event;
    char event_id[USER_ID_SIZE];
    s_event (self, &event, event_id, USER_EVENT_DELETED, last, self->env.now_us (self->env.arg),
             actor_norm);
    rc = user_repo_remove (self->repo, id_norm, &event);
    user_destroy (&last);
    return rc;
}

//  --------------------------------------------------------------------------
//  One page of users after a cursor.
int
user_app_list (user_app_t *self, const char *after, size_t after_len, const int64_t *limit,
               user_page_t **page_p, const char **field, const char **why)
{
    assert (self);
    assert (page_p);
    s_clear (field, why);

    char after_norm[USER_ID_SIZE];
    if (after) {
        int rc = s_id (after, after_len, "after", after_norm, field, why);
        if (rc)
            return rc;
    }
    size_t size = USER_APP_LIST_DEFAULT;
    if (limit) {
        if (*limit < 1 || *limit > USER_APP_LIST_MAX) {
            if (field)
                *field = "limit";
            if (why)
                *why = "limit must be between 1 and 500";
            return MESH_EINVAL;
        }
        size = (size_t) *limit;
    }
    //  Ask for one more than the page holds: whether it comes back says if
    //  there is a next page, so the last page has no cursor (no empty page
    //  to fetch when the count divides evenly).
    user_t **users = NULL;
    size_t count = 0;
    int rc = user_repo_list (self->repo, after? after_norm: NULL, size + 1, &users, &count);
    if (rc)
        return rc;
    assert (count <= size + 1);

    user_page_t *page = (user_page_t *) mesh_alloc (sizeof (user_page_t));
    page->items = users;
    page->count = count;
    if (count > size) {
        user_destroy (&users[size]);
        page->count = size;
        memcpy (page->next, user_id (users[size - 1]), USER_ID_SIZE);
    }
    *page_p = page;
    return 0;
}

//  --------------------------------------------------------------------------
//  Page accessors.
int
user_app_events (user_app_t *self, const int64_t *after_seq, const int64_t *limit,
                 user_stored_event_t **events_p, size_t *count_p, const char **field,
                 const char **why)
{
    assert (self);
    assert (events_p && count_p);
    s_clear (field, why);
    *events_p = NULL;
    *count_p = 0;
    const char *bad_field = NULL, *bad_why = NULL;
    if (!after_seq || *after_seq < 0) {
        bad_field = "after_seq";
        bad_why = "after_seq is required: the last seq seen (0 before the first event)";
    }
    else if (limit && (*limit < 1 || *limit > USER_APP_EVENTS_MAX)) {
        bad_field = "limit";
        bad_why = "limit must be between 1 and 1000";
    }
    if (bad_field) {
        if (field)
            *field = bad_field;
        if (why)
            *why = bad_why;
        return MESH_EINVAL;
    }
    size_t size = limit? (size_t) *limit: USER_APP_EVENTS_DEFAULT;
    return user_repo_events (self->repo, (uint64_t) *after_seq, size, events_p, count_p);
}

size_t
user_page_count (const user_page_t *self)
{
    assert (self);
    return self->count;
}

const user_t *
user_page_item (const user_page_t *self, size_t index)
{
    assert (self);
    assert (index < self->count);
    return self->items[index];
}

const char *
user_page_next (const user_page_t *self)
{
    assert (self);
    return self->next[0]? self->next: NULL;
}

//  --------------------------------------------------------------------------
//  Destroy the page and its users.
void
user_page_destroy (user_page_t **self_p)
{
    assert (self_p);
    user_page_t *self = *self_p;
    if (self) {
        for (size_t index = 0; index < self->count; index++)
            user_destroy (&self->items[index]);
        free (self->items);
        free (self);
        *self_p = NULL;
    }
}
