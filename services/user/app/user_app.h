/*  =========================================================================
    user_app - the use cases of mesh-user: create, get, update, delete, list
    Takes request values as sent (bytes with lengths, not yet trusted), runs
    them through the domain rules, and changes storage through the
    repository port, each change with its event in one transaction. Pure C:
    no ZeroMQ, no libpq, no msgpack; the MDP worker (infra) decodes requests,
    calls these functions and encodes the result. Ids and the clock come
    from an injected environment, so tests are deterministic.
    Validation failures return MESH_EINVAL and name the request field
    ("name", "email", "id", "actor", "after", "limit") with a static sentence saying
    why; every other code comes from the repository unchanged
    (MESH_ENOTFOUND, MESH_ECONFLICT, MESH_EUNAVAIL, MESH_EIO).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_APP_H_INCLUDED
#define USER_APP_H_INCLUDED

#include "user.h"
#include "user_repo.h"

#include <stddef.h>
#include <stdint.h>

#define USER_APP_LIST_DEFAULT 50    //  Page size when the request has no limit
#define USER_APP_LIST_MAX 500       //  Largest page a request may ask for
#define USER_APP_EVENTS_DEFAULT 100 //  Events per events.list reply without a limit
#define USER_APP_EVENTS_MAX 1000    //  Largest events.list limit

//  Where ids and times come from. Both functions are called with `arg`.
typedef struct {
    //  Write a fresh canonical UUID (user_id_valid), NUL-terminated.
    void (*make_id) (void *arg, char out[USER_ID_SIZE]);
    //  Current wall-clock time, unix microseconds.
    int64_t (*now_us) (void *arg);
    void *arg;                  //  Passed to both
} user_app_env_t;

typedef struct user_app_s user_app_t;
typedef struct user_page_s user_page_t;

//  Create the use cases over `repo`, which is borrowed: it must outlive the
//  app, and the caller destroys it. `env` is copied (its `arg` is borrowed).
//  The app holds no state of its own, so its thread safety is that of the
//  repository and the environment (with the PostgreSQL adapter: one app per
//  worker thread).
user_app_t *
    user_app_new (user_repo_t *repo, const user_app_env_t *env);

//  Destroy the app (not the repository). Tolerates NULL; nulls the pointer.
void
    user_app_destroy (user_app_t **self_p);

//  Every use case below takes `field` and `why`, either of which may be
//  NULL. Both are set to NULL on entry; on MESH_EINVAL *field names the
//  offending request field and *why is a static sentence. On 0 a use case
//  that returns a user sets *user_p to a fresh user the caller destroys.
//  The changes (create, update, delete) also take the request's actor, who
//  asked (`actor_len` bytes, not NUL-terminated; NULL or length 0 = none):
//  checked with user_actor_normalize (else MESH_EINVAL, field "actor") and
//  written with the change's event, so the outbox says who did it.

//  Create a user from a name and an email (`name_len`, `email_len` bytes;
//  not NUL-terminated). Writes the user and a user.created event. Returns
//  0, MESH_EINVAL ("name" or "email"), MESH_ECONFLICT when the email is
//  taken, or a store error.
int user_app_create (user_app_t *self, const char *actor, size_t actor_len, const char *name,
                     size_t name_len, const char *email, size_t email_len, user_t **user_p,
                     const char **field, const char **why);

//  One create of a user_app_create_many call: what user_app_create takes,
//  plus the request's W3C traceparent (NULL = none), stored with its event.
typedef struct {
    const char *actor;
    size_t actor_len;
    const char *name;
    size_t name_len;
    const char *email;
    size_t email_len;
    const char *trace;
} user_app_create_t;

//  Most creates one user_app_create_many call takes.
#define USER_APP_CREATE_MANY_MAX 64

//  user_app_create for `count` creates (at most USER_APP_CREATE_MANY_MAX),
//  stored together (user_repo_insert_many: one transaction, one commit).
//  For each i: rcs[i] is 0 with users[i] a fresh user the caller destroys,
//  or what user_app_create would return with users[i] NULL (MESH_EINVAL
//  with fields[i] and whys[i] set as user_app_create sets them;
//  MESH_ECONFLICT for this create only; a store error).
void
    user_app_create_many (user_app_t *self, const user_app_create_t *creates, size_t count,
                          user_t **users, int *rcs, const char **fields, const char **whys);

//  Fetch a user by id (a UUID, either case). Returns 0, MESH_EINVAL
//  ("id"), MESH_ENOTFOUND, or a store error.
int
    user_app_get (user_app_t *self, const char *id, size_t id_len, user_t **user_p,
                  const char **field, const char **why);

//  A request id as sent: bytes and length (not NUL-terminated), and the
//  traceparent of its request for the repository's spans (NULL: none).
typedef struct {
    const char *ptr;
    size_t len;
    const char *trace;
} user_app_id_t;

//  Most ids one user_app_get_many call takes.
#define USER_APP_GET_MANY_MAX 64

//  user_app_get for `count` ids (at most USER_APP_GET_MANY_MAX) at once, so
//  the repository can fetch them together. For each i: rcs[i] is 0 with
//  users[i] a fresh user the caller destroys, or MESH_EINVAL (fields[i],
//  whys[i] as user_app_get sets them) or MESH_ENOTFOUND with users[i] NULL.
//  Returns 0, or a store error that holds for every request (then every
//  users[i] is NULL and rcs[i] is 0 for the ids that were valid).
int
    user_app_get_many (user_app_t *self, const user_app_id_t *ids, size_t count,
                       user_t **users, int *rcs, const char **fields, const char **whys);

//  Change the name and/or the email of a user; NULL leaves a field as it
//  is, and at least one must be given (else MESH_EINVAL, field "name").
//  updated_at becomes now; writes a user.updated event with the new state.
//  Returns 0, MESH_EINVAL ("id", "name" or "email"), MESH_ENOTFOUND,
//  MESH_ECONFLICT when another user has the email, or a store error.
int user_app_update (user_app_t *self, const char *actor, size_t actor_len, const char *id,
                     size_t id_len, const char *name, size_t name_len, const char *email,
                     size_t email_len, user_t **user_p, const char **field, const char **why);

//  Delete a user; writes a user.deleted event carrying its last state.
//  Returns 0, MESH_EINVAL ("id"), MESH_ENOTFOUND, or a store error.
int user_app_delete (user_app_t *self, const char *actor, size_t actor_len, const char *id,
                     size_t id_len, const char **field, const char **why);

//  One page of users in ascending id order, after the user id `after`
//  (NULL: from the first; else a UUID of `after_len` bytes, either case,
//  field "after"). `limit` NULL means USER_APP_LIST_DEFAULT; else it must
//  be 1..USER_APP_LIST_MAX (field "limit"). On 0 *page_p is a fresh page
//  the caller destroys. Returns 0, MESH_EINVAL, or a store error.
int
    user_app_list (user_app_t *self, const char *after, size_t after_len, const int64_t *limit,
                   user_page_t **page_p, const char **field, const char **why);

//  Events numbered by the relay with seq above `after_seq` (required:
//  NULL or negative is MESH_EINVAL, field "after_seq"), in seq order, at
//  most `limit` (NULL: USER_APP_EVENTS_DEFAULT; else 1..USER_APP_EVENTS_MAX,
//  field "limit"). On 0 *events_p is a fresh array of *count_p events (NULL
//  when none), freed with user_stored_events_free. Subscribers use it to
//  catch up after a gap in the published stream.
int
    user_app_events (user_app_t *self, const int64_t *after_seq, const int64_t *limit,
                     user_stored_event_t **events_p, size_t *count_p, const char **field,
                     const char **why);

//  Number of users on the page.
size_t
    user_page_count (const user_page_t *self);

//  User `index` (below user_page_count) of the page; borrowed: valid until
//  the page is destroyed.
const user_t *
    user_page_item (const user_page_t *self, size_t index);

//  Cursor for the next page (the `after` of the next request), or NULL
//  when this is the last page. Borrowed: valid until the page is destroyed.
const char *
    user_page_next (const user_page_t *self);

//  Destroy the page and its users. Tolerates NULL; nulls the pointer.
void
    user_page_destroy (user_page_t **self_p);

#endif
