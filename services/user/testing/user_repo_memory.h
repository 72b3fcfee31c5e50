/*  =========================================================================
    user_repo_memory - an in-memory user repository, for unit tests
    An adapter of the user_repo_t port with no I/O: users in an array sorted
    by id, email uniqueness on the normal form, and an outbox that records
    every event written with a change, in order. Two switches let tests
    reach the error paths: the store can be marked down (every operation
    returns MESH_EUNAVAIL), and the next write can be made to fail after it
    has been applied, which rolls back both the change and its event, as a
    database transaction would. Single-threaded. Not linked into mesh-user.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_REPO_MEMORY_H_INCLUDED
#define USER_REPO_MEMORY_H_INCLUDED

#include "user_repo.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct user_repo_memory_s user_repo_memory_t;

//  Create an empty repository.
user_repo_memory_t *
    user_repo_memory_new (void);

//  Destroy the repository, its users and its events. Tolerates NULL; nulls
//  the pointer. (user_repo_destroy on its port does the same.)
void
    user_repo_memory_destroy (user_repo_memory_t **self_p);

//  The port of this repository; borrowed, valid until it is destroyed.
user_repo_t *
    user_repo_memory_repo (user_repo_memory_t *self);

//  Mark the store down (every operation returns MESH_EUNAVAIL and changes
//  nothing) or up again.
void
    user_repo_memory_set_down (user_repo_memory_t *self, bool down);

//  Make the next insert, update or remove apply its change and its event,
//  then fail with `rc` (a negative MESH_E* code) and roll both back. One
//  shot: the write after it succeeds again.
void
    user_repo_memory_fail_next (user_repo_memory_t *self, int rc);

//  Number of users stored.
size_t
    user_repo_memory_user_count (const user_repo_memory_t *self);

//  Number of events in the outbox.
size_t
    user_repo_memory_event_count (const user_repo_memory_t *self);

//  Event `index` (below the event count) in the order written; its actor
//  is never NULL ("" when the change named none). Borrowed:
//  valid until the repository is destroyed (events are never removed
//  except by a rolled-back write, which only removes the newest).
const user_event_t *
    user_repo_memory_event (const user_repo_memory_t *self, size_t index);

#endif
