/*  =========================================================================
    user_repo_memory - an in-memory user repository, for unit tests
    A write first checks, then applies the change and appends its event,
    then (when a failure is armed) undoes both: the rollback path is real
    code, so a test that sees neither user nor event after a failed write
    proves the adapter is atomic, not merely that it checked early.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_repo_memory.h"
#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  An event as stored: the public view plus the storage it points into.
typedef struct {
    user_event_t view;          //  Points into the fields below
    char *type;                 //  Owned copy
    char id[USER_ID_SIZE];      //  Event id
    char subject[USER_ID_SIZE]; //  User id
    user_t *user;               //  Owned copy
    char actor[USER_ACTOR_SIZE]; //  Who asked; "" when none
} s_event_t;

//  A completed idempotency key: the request it was used with and its reply.
typedef struct s_idem_s {
    char *key;
    void *request;
    size_t request_len;
    void *reply;
    size_t reply_len;
    struct s_idem_s *next;
} s_idem_t;

//  An open unit of work (idem_claim): the key and request, and a snapshot
//  of the users and the event count to restore on release.
typedef struct {
    s_idem_t *claim;            //  Becomes a completed key on idem_complete
    user_t **users;             //  Deep copy of the users at claim time
    size_t user_count;
    size_t event_count;
} s_unit_t;

struct user_repo_memory_s {
    user_repo_t base;           //  The port; first member, so casts work
    user_t **users;             //  Owned, sorted by id ascending
    size_t user_count;          //  Users in use
    size_t user_capacity;       //  Slots allocated
    s_event_t **events;         //  Owned, in the order written
    size_t event_count;         //  Events in use
    size_t event_capacity;      //  Slots allocated
    bool down;                  //  Store unreachable: MESH_EUNAVAIL
    int fail_next;              //  0, or the code the next write fails with
    s_idem_t *keys;             //  Completed idempotency keys, newest first
    s_unit_t *unit;             //  The open unit of work, or NULL
};

//  --------------------------------------------------------------------------
//  The adapter behind a port pointer (base is the first member).
static user_repo_memory_t *
s_self (user_repo_t *repo)
{
    assert (repo);
    return (user_repo_memory_t *) repo;
}

//  --------------------------------------------------------------------------
//  Index of the first user whose id is not below `id` (binary search);
//  *found says whether that user has exactly this id.
static size_t
s_lower_bound (const user_repo_memory_t *self, const char *id, bool *found)
{
    size_t low = 0;
    size_t high = self->user_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (strcmp (user_id (self->users[middle]), id) < 0)
            low = middle + 1;
        else
            high = middle;
    }
    *found = low < self->user_count && strcmp (user_id (self->users[low]), id) == 0;
    return low;
}

//  --------------------------------------------------------------------------
//  True when a user other than `except_id` has `email` (already normalised,
//  so an exact comparison is the case-insensitive one).
static bool
s_email_taken (const user_repo_memory_t *self, const char *email, const char *except_id)
{
    for (size_t index = 0; index < self->user_count; index++)
        if (strcmp (user_email (self->users[index]), email) == 0
            && (!except_id || strcmp (user_id (self->users[index]), except_id) != 0))
            return true;
    return false;
}

//  --------------------------------------------------------------------------
//  Insert `user` (owned from here) at `index`, keeping the order.
static void
s_user_insert_at (user_repo_memory_t *self, size_t index, user_t *user)
{
    if (self->user_count == self->user_capacity) {
        self->user_capacity = self->user_capacity? self->user_capacity * 2: 8;
        self->users = (user_t **) mesh_realloc (self->users,
                                                self->user_capacity * sizeof (user_t *));
    }
    memmove (&self->users[index + 1], &self->users[index],
             (self->user_count - index) * sizeof (user_t *));
    self->users[index] = user;
    self->user_count++;
}

//  --------------------------------------------------------------------------
//  Take the user at `index` out of the array; returns it, owned.
static user_t *
s_user_take_at (user_repo_memory_t *self, size_t index)
{
    assert (index < self->user_count);
    user_t *user = self->users[index];
    memmove (&self->users[index], &self->users[index + 1],
             (self->user_count - index - 1) * sizeof (user_t *));
    self->user_count--;
    return user;
}

//  --------------------------------------------------------------------------
//  Destroy a stored event.
static void
s_event_destroy (s_event_t **event_p)
{
    s_event_t *event = *event_p;
    if (event) {
        free (event->type);
        user_destroy (&event->user);
        free (event);
        *event_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Append a copy of `event` to the outbox.
static void
s_event_append (user_repo_memory_t *self, const user_event_t *event)
{
    assert (event->type && event->id && event->subject && event->user);
    s_event_t *copy = (s_event_t *) mesh_alloc (sizeof (s_event_t));
    copy->type = mesh_strndup (event->type, strlen (event->type));
    memcpy (copy->id, event->id, USER_ID_SIZE);
    memcpy (copy->subject, event->subject, USER_ID_SIZE);
    copy->user = user_dup (event->user);
    copy->view.type = copy->type;
    copy->view.id = copy->id;
    copy->view.subject = copy->subject;
    copy->view.user = copy->user;
    copy->view.time_us = event->time_us;
    //  As the PostgreSQL adapter: NULL and "" both mean none; longer than
    //  the domain allows cannot come from the use cases
    assert (!event->actor || strlen (event->actor) <= USER_ACTOR_MAX);
    snprintf (copy->actor, sizeof copy->actor, "%s", event->actor ? event->actor : "");
    copy->view.actor = copy->actor;
    if (self->event_count == self->event_capacity) {
        self->event_capacity = self->event_capacity? self->event_capacity * 2: 8;
        self->events = (s_event_t **) mesh_realloc (self->events,
                                                    self->event_capacity * sizeof (s_event_t *));
    }
    self->events[self->event_count++] = copy;
}

//  --------------------------------------------------------------------------
//  Roll back the newest event (the one the failing write appended).
static void
s_event_drop_last (user_repo_memory_t *self)
{
    assert (self->event_count > 0);
    s_event_destroy (&self->events[--self->event_count]);
}

//  --------------------------------------------------------------------------
//  The code an armed failure returns, disarming it; 0 when none is armed.
static int
s_take_failure (user_repo_memory_t *self)
{
    int rc = self->fail_next;
    self->fail_next = 0;
    return rc;
}

//  --------------------------------------------------------------------------
//  Insert a user and its event.
static int
s_insert (user_repo_t *repo, const user_t *user, const user_event_t *event)
{
    user_repo_memory_t *self = s_self (repo);
    assert (user);
    assert (event);
    if (self->down)
        return MESH_EUNAVAIL;
    bool found;
    size_t index = s_lower_bound (self, user_id (user), &found);
    if (found || s_email_taken (self, user_email (user), NULL))
        return MESH_ECONFLICT;

    s_user_insert_at (self, index, user_dup (user));
    s_event_append (self, event);
    int rc = s_take_failure (self);
    if (rc) {
        user_t *written = s_user_take_at (self, index);
        user_destroy (&written);
        s_event_drop_last (self);
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Fetch a copy of a user.
static int
s_find (user_repo_t *repo, const char *id, user_t **user_p)
{
    user_repo_memory_t *self = s_self (repo);
    assert (id);
    assert (user_p);
    if (self->down)
        return MESH_EUNAVAIL;
    bool found;
    size_t index = s_lower_bound (self, id, &found);
    if (!found)
        return MESH_ENOTFOUND;
    *user_p = user_dup (self->users[index]);
    return 0;
}

//  --------------------------------------------------------------------------
//  Replace a user (same id) and store its event.
static int
s_update (user_repo_t *repo, const user_t *user, const user_event_t *event)
{
    user_repo_memory_t *self = s_self (repo);
    assert (user);
    assert (event);
    if (self->down)
        return MESH_EUNAVAIL;
    bool found;
    size_t index = s_lower_bound (self, user_id (user), &found);
    if (!found)
        return MESH_ENOTFOUND;
    if (s_email_taken (self, user_email (user), user_id (user)))
        return MESH_ECONFLICT;

    user_t *previous = self->users[index];
    self->users[index] = user_dup (user);
    s_event_append (self, event);
    int rc = s_take_failure (self);
    if (rc) {
        user_destroy (&self->users[index]);
        self->users[index] = previous;
        s_event_drop_last (self);
    }
    else
        user_destroy (&previous);
    return rc;
}

//  --------------------------------------------------------------------------
//  Delete a user and store its event.
static int
s_remove (user_repo_t *repo, const char *id, const user_event_t *event)
{
    user_repo_memory_t *self = s_self (repo);
    assert (id);
    assert (event);
    if (self->down)
        return MESH_EUNAVAIL;
    bool found;
    size_t index = s_lower_bound (self, id, &found);
    if (!found)
        return MESH_ENOTFOUND;

    user_t *removed = s_user_take_at (self, index);
    s_event_append (self, event);
    int rc = s_take_failure (self);
    if (rc) {
        s_user_insert_at (self, index, removed);
        s_event_drop_last (self);
    }
    else
        user_destroy (&removed);
    return rc;
}

//  --------------------------------------------------------------------------
//  Up to `limit` users after `after_id`, ascending.
static int
s_list (user_repo_t *repo, const char *after_id, size_t limit, user_t ***users_p,
        size_t *count_p)
{
    user_repo_memory_t *self = s_self (repo);
    assert (users_p);
    assert (count_p);
    if (self->down)
        return MESH_EUNAVAIL;
    size_t start = 0;
    if (after_id) {
        bool found;
        start = s_lower_bound (self, after_id, &found);
        if (found)
            start++;            //  Strictly after the cursor
    }
    size_t count = self->user_count - start;
    if (count > limit)
        count = limit;
    user_t **users = NULL;
    if (count) {
        users = (user_t **) mesh_alloc (count * sizeof (user_t *));
        for (size_t index = 0; index < count; index++)
            users[index] = user_dup (self->users[start + index]);
    }
    *users_p = users;
    *count_p = count;
    return 0;
}

//  --------------------------------------------------------------------------
//  Several finds: one at a time (nothing to save in memory, no spans).
static int
s_find_many (user_repo_t *repo, const char *const *ids, const char *const *traces, size_t count,
             user_t **users, int *rcs)
{
    (void) traces;
    user_repo_memory_t *self = s_self (repo);
    for (size_t index = 0; index < count; index++)
        users[index] = NULL;
    if (self->down)
        return MESH_EUNAVAIL;
    for (size_t index = 0; index < count; index++)
        rcs[index] = s_find (repo, ids[index], &users[index]);
    return 0;
}

//  --------------------------------------------------------------------------
//  Events after `after_seq`. This store has no relay: an event's seq is its
//  position in the outbox (1, 2, 3, ...), given when it is written. Its data
//  is not encoded (no wire format here): data is NULL.
static int
s_events (user_repo_t *repo, uint64_t after_seq, size_t limit, user_stored_event_t **events_p,
          size_t *count_p)
{
    user_repo_memory_t *self = s_self (repo);
    *events_p = NULL;
    *count_p = 0;
    if (self->down)
        return MESH_EUNAVAIL;
    if (after_seq >= self->event_count || limit == 0)
        return 0;
    size_t first = (size_t) after_seq;
    size_t count = self->event_count - first < limit? self->event_count - first: limit;
    user_stored_event_t *events =
        (user_stored_event_t *) mesh_alloc (count * sizeof (user_stored_event_t));
    for (size_t index = 0; index < count; index++) {
        const s_event_t *stored = self->events[first + index];
        user_stored_event_t *event = &events[index];
        event->seq = first + index + 1;
        memcpy (event->id, stored->id, USER_ID_SIZE);
        memcpy (event->subject, stored->subject, USER_ID_SIZE);
        snprintf (event->type, sizeof event->type, "%s", stored->type);
        memcpy (event->actor, stored->actor, sizeof event->actor);
        event->time_us = stored->view.time_us;
    }
    *events_p = events;
    *count_p = count;
    return 0;
}

//  --------------------------------------------------------------------------
//  Free a completed or claimed key.
static void
s_idem_destroy (s_idem_t **idem_p)
{
    s_idem_t *idem = *idem_p;
    if (idem) {
        free (idem->key);
        free (idem->request);
        free (idem->reply);
        free (idem);
        *idem_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  End the open unit, restoring the snapshot when `undo` is set.
static void
s_unit_end (user_repo_memory_t *self, bool undo)
{
    s_unit_t *unit = self->unit;
    if (!unit)
        return;
    user_t **keep = undo? unit->users: self->users;
    size_t keep_count = undo? unit->user_count: self->user_count;
    user_t **drop = undo? self->users: unit->users;
    size_t drop_count = undo? self->user_count: unit->user_count;
    for (size_t index = 0; index < drop_count; index++)
        user_destroy (&drop[index]);
    free (drop);
    if (undo)
        self->user_capacity = unit->user_count? unit->user_count: 1;
    self->users = keep;
    self->user_count = keep_count;
    while (undo && self->event_count > unit->event_count)
        s_event_drop_last (self);
    s_idem_destroy (&unit->claim);
    free (unit);
    self->unit = NULL;
}

//  --------------------------------------------------------------------------
//  Claim a key, or answer from a completed one.
static int
s_idem_claim (user_repo_t *repo, const char *key, const void *request, size_t request_len,
              void **reply_p, size_t *reply_len_p)
{
    user_repo_memory_t *self = s_self (repo);
    assert (key && reply_p && reply_len_p);
    assert (!self->unit);       //  One unit at a time: the caller ends each
    *reply_p = NULL;
    *reply_len_p = 0;
    if (strlen (key) > USER_IDEM_KEY_MAX)
        return MESH_EINVAL;
    if (self->down)
        return MESH_EUNAVAIL;
    for (const s_idem_t *idem = self->keys; idem; idem = idem->next)
        if (strcmp (idem->key, key) == 0) {
            if (idem->request_len != request_len
                || (request_len && memcmp (idem->request, request, request_len) != 0))
                return MESH_ECONFLICT;
            *reply_p = mesh_alloc (idem->reply_len? idem->reply_len: 1);
            if (idem->reply_len)
                memcpy (*reply_p, idem->reply, idem->reply_len);
            *reply_len_p = idem->reply_len;
            return 0;
        }
    s_unit_t *unit = (s_unit_t *) mesh_alloc (sizeof (s_unit_t));
    unit->claim = (s_idem_t *) mesh_alloc (sizeof (s_idem_t));
    unit->claim->key = mesh_strndup (key, strlen (key));
    unit->claim->request = mesh_alloc (request_len? request_len: 1);
    if (request_len)
        memcpy (unit->claim->request, request, request_len);
    unit->claim->request_len = request_len;
    unit->users = (user_t **) mesh_alloc ((self->user_count? self->user_count: 1)
                                          * sizeof (user_t *));
    for (size_t index = 0; index < self->user_count; index++)
        unit->users[index] = user_dup (self->users[index]);
    unit->user_count = self->user_count;
    unit->event_count = self->event_count;
    self->unit = unit;
    return 0;
}

//  --------------------------------------------------------------------------
//  Keep the unit's change and store the reply under its key.
static int
s_idem_complete (user_repo_t *repo, const void *reply, size_t reply_len)
{
    user_repo_memory_t *self = s_self (repo);
    assert (self->unit);
    if (self->down) {
        s_unit_end (self, true);
        return MESH_EUNAVAIL;
    }
    s_idem_t *idem = self->unit->claim;
    self->unit->claim = NULL;
    idem->reply = mesh_alloc (reply_len? reply_len: 1);
    if (reply_len)
        memcpy (idem->reply, reply, reply_len);
    idem->reply_len = reply_len;
    idem->next = self->keys;
    self->keys = idem;
    s_unit_end (self, false);
    return 0;
}

//  --------------------------------------------------------------------------
//  Undo the unit's change.
static void
s_idem_release (user_repo_t *repo)
{
    s_unit_end (s_self (repo), true);
}

//  --------------------------------------------------------------------------
//  No statement runs long here, and events keep no trace: nothing to do.
static void
s_set_request (user_repo_t *repo, uint64_t deadline_ms, const char *trace)
{
    (void) repo;
    (void) deadline_ms;
    (void) trace;
}

//  --------------------------------------------------------------------------
//  Destroy through the port.
static void
s_destroy (user_repo_t **self_p)
{
    assert (self_p);
    user_repo_memory_t *self = (user_repo_memory_t *) *self_p;
    user_repo_memory_destroy (&self);
    *self_p = NULL;
}

static const user_repo_ops_t s_ops = {
    .insert = s_insert,
    .find = s_find,
    .find_many = s_find_many,
    .update = s_update,
    .remove = s_remove,
    .list = s_list,
    .events = s_events,
    .idem_claim = s_idem_claim,
    .idem_complete = s_idem_complete,
    .idem_release = s_idem_release,
    .set_request = s_set_request,
    .destroy = s_destroy,
};

//  --------------------------------------------------------------------------
//  Create an empty repository.
user_repo_memory_t *
user_repo_memory_new (void)
{
    user_repo_memory_t *self = (user_repo_memory_t *) mesh_alloc (sizeof (user_repo_memory_t));
    self->base.ops = &s_ops;
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the repository, its users and its events.
void
user_repo_memory_destroy (user_repo_memory_t **self_p)
{
    assert (self_p);
    user_repo_memory_t *self = *self_p;
    if (self) {
        for (size_t index = 0; index < self->user_count; index++)
            user_destroy (&self->users[index]);
        free (self->users);
        s_unit_end (self, true);
        for (size_t index = 0; index < self->event_count; index++)
            s_event_destroy (&self->events[index]);
        free (self->events);
        while (self->keys) {
            s_idem_t *next = self->keys->next;
            s_idem_destroy (&self->keys);
            self->keys = next;
        }
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Accessors and switches.
user_repo_t *
user_repo_memory_repo (user_repo_memory_t *self)
{
    assert (self);
    return &self->base;
}

void
user_repo_memory_set_down (user_repo_memory_t *self, bool down)
{
    assert (self);
    self->down = down;
}

void
user_repo_memory_fail_next (user_repo_memory_t *self, int rc)
{
    assert (self);
    assert (rc < 0);
    self->fail_next = rc;
}

size_t
user_repo_memory_user_count (const user_repo_memory_t *self)
{
    assert (self);
    return self->user_count;
}

size_t
user_repo_memory_event_count (const user_repo_memory_t *self)
{
    assert (self);
    return self->event_count;
}

const user_event_t *
user_repo_memory_event (const user_repo_memory_t *self, size_t index)
{
    assert (self);
    assert (index < self->event_count);
    return &self->events[index]->view;
}
