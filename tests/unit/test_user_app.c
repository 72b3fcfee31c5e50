/*  =========================================================================
    test_user_app - the user use cases against the in-memory repository
    Pure unit tests (no sockets, no database): ids come from a counter and
    time from a fake clock, so every id and time is known in advance. The
    repository's outbox is inspected after each change: an event for every
    change that happened, none for a change that failed.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_app.h"
#include "user_repo_memory.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define CLOCK_START_US INT64_C (1764077611123000)   //  2025-11-25T13:33:31.123Z
#define CLOCK_STEP_US INT64_C (1000)

typedef struct {
    unsigned long next_id;      //  Counter behind the ids
    int64_t now_us;             //  The fake clock
} s_env_state_t;

static s_env_state_t s_state;
static user_repo_memory_t *s_memory;
static user_app_t *s_app;

//  Ids in counter order, so ascending id order is creation order.
static void
s_make_id (void *arg, char out[USER_ID_SIZE])
{
    s_env_state_t *state = (s_env_state_t *) arg;
    snprintf (out, USER_ID_SIZE, "00000000-0000-4000-8000-%012lu", ++state->next_id);
}

//  Each reading of the clock moves it on by one step.
static int64_t
s_now_us (void *arg)
{
    s_env_state_t *state = (s_env_state_t *) arg;
    int64_t now_us = state->now_us;
    state->now_us += CLOCK_STEP_US;
    return now_us;
}

static void
s_setup (void)
{
    s_state.next_id = 0;
    s_state.now_us = CLOCK_START_US;
    s_memory = user_repo_memory_new ();
    user_app_env_t env = { .make_id = s_make_id, .now_us = s_now_us, .arg = &s_state };
    s_app = user_app_new (user_repo_memory_repo (s_memory), &env);
}

static void
s_teardown (void)
{
    user_app_destroy (&s_app);
    user_repo_t *repo = user_repo_memory_repo (s_memory);
    user_repo_destroy (&repo);      //  Through the port, as main.c will
    s_memory = NULL;
}

TestSuite (user_app, .init = s_setup, .fini = s_teardown, .timeout = 30.);

//  The id the counter gives as its `n`th.
static const char *
s_id (unsigned long n)
{
    static char buffer[USER_ID_SIZE];
    snprintf (buffer, sizeof buffer, "00000000-0000-4000-8000-%012lu", n);
    return buffer;
}

//  Create a user, which must succeed; caller destroys it.
static user_t *
s_create (const char *name, const char *email)
{
    user_t *user = NULL;
    const char *field, *why;
    int rc = user_app_create (s_app, NULL, 0, name, strlen (name), email, strlen (email), &user,
                              &field, &why);
    cr_assert_eq (rc, 0, "create %s: %d (%s: %s)", email, rc, field? field: "-",
                  why? why: "-");
    cr_assert_not_null (user);
    return user;
}

static size_t
s_events (void)
{
    return user_repo_memory_event_count (s_memory);
}

static const user_event_t *
s_event (size_t index)
{
    return user_repo_memory_event (s_memory, index);
}

//  --- Create ---------------------------------------------------------------

Test (user_app, create_normalises_and_writes_created_event)
{
    user_t *user = s_create ("  Ada Lovelace ", " Ada@Example.COM ");
    cr_assert_str_eq (user_id (user), s_id (1));
    cr_assert_str_eq (user_name (user), "Ada Lovelace");
    cr_assert_str_eq (user_email (user), "ada@example.com");
    cr_assert_eq (user_created_at_us (user), CLOCK_START_US);
    cr_assert_eq (user_updated_at_us (user), CLOCK_START_US);

    cr_assert_eq (s_events (), 1);
    const user_event_t *event = s_event (0);
    cr_assert_str_eq (event->type, USER_EVENT_CREATED);
    cr_assert_str_eq (event->id, s_id (2));         //  A fresh id, not the user's
    cr_assert_str_eq (event->subject, user_id (user));
    cr_assert_eq (event->time_us, CLOCK_START_US);
    cr_assert_str_eq (user_id (event->user), user_id (user));
    cr_assert_str_eq (user_name (event->user), "Ada Lovelace");
    cr_assert_str_eq (user_email (event->user), "ada@example.com");

    user_t *stored = NULL;
    cr_assert_eq (user_app_get (s_app, user_id (user), USER_ID_LEN, &stored, NULL, NULL), 0);
    cr_assert_str_eq (user_email (stored), "ada@example.com");
    user_destroy (&stored);
    user_destroy (&user);
}

Test (user_app, create_invalid_names_the_field)
{
    static const struct {
        const char *name;
        const char *email;
        const char *field;
    } cases[] = {
        { "", "a@example.com", "name" },
        { "   ", "a@example.com", "name" },
        { "Bad\x01Name", "a@example.com", "name" },
        { "Ada", "", "email" },
        { "Ada", "not-an-email", "email" },
        { "Ada", "a@@example.com", "email" },
        { "", "not-an-email", "name" },             //  The first bad field is named
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        user_t *user = NULL;
        const char *field = NULL, *why = NULL;
        int rc =
            user_app_create (s_app, NULL, 0, cases[index].name, strlen (cases[index].name),
                             cases[index].email, strlen (cases[index].email), &user, &field, &why);
        cr_assert_eq (rc, MESH_EINVAL, "case %zu", index);
        cr_assert_null (user);
        cr_assert_str_eq (field, cases[index].field, "case %zu", index);
        cr_assert_not_null (why);
    }
    //  A name with an embedded NUL, passed by length.
    user_t *user = NULL;
    const char *field = NULL;
    cr_assert_eq (
        user_app_create (s_app, NULL, 0, "A\0B", 3, "a@example.com", 13, &user, &field, NULL),
        MESH_EINVAL);
    cr_assert_str_eq (field, "name");
    cr_assert_eq (s_events (), 0);
    cr_assert_eq (user_repo_memory_user_count (s_memory), 0);
}

Test (user_app, create_duplicate_email_conflicts_without_event)
{
    user_t *first = s_create ("Ada", "ada@example.com");
    user_t *second = NULL;
    const char *field = "unset", *why = "unset";
    int rc = user_app_create (s_app, NULL, 0, "Other Ada", 9, "ADA@example.com ", 16, &second,
                              &field, &why);
    cr_assert_eq (rc, MESH_ECONFLICT);
    cr_assert_null (second);
    cr_assert_null (field);                         //  Cleared: not a validation error
    cr_assert_null (why);
    cr_assert_eq (s_events (), 1);
    cr_assert_eq (user_repo_memory_user_count (s_memory), 1);
    user_destroy (&first);
}

Test (user_app, create_many_answers_each_create_on_its_own)
{
    user_t *taken = s_create ("Ada", "ada@example.com");
    //  A good one, one taken by a stored user, an invalid one, a good one,
    //  and one taken by an earlier create of the same call
    user_app_create_t creates[5] = {
        {.name = "Bob", .name_len = 3, .email = "bob@example.com", .email_len = 15,
         .actor = "alice", .actor_len = 5, .trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {.name = "Ada 2", .name_len = 5, .email = "ADA@example.com", .email_len = 15},
        {.name = "Cy", .name_len = 2, .email = "not-an-email", .email_len = 12},
        {.name = "Dee", .name_len = 3, .email = "dee@example.com", .email_len = 15},
        {.name = "Bob 2", .name_len = 5, .email = "bob@example.com", .email_len = 15},
    };
    user_t *users[5];
    int rcs[5];
    const char *fields[5], *whys[5];
    user_app_create_many (s_app, creates, 5, users, rcs, fields, whys);
    int want[5] = {0, MESH_ECONFLICT, MESH_EINVAL, 0, MESH_ECONFLICT};
    for (size_t index = 0; index < 5; index++) {
        cr_assert_eq (rcs[index], want[index], "create %zu: %d", index, rcs[index]);
        cr_assert ((users[index] != NULL) == (want[index] == 0), "create %zu", index);
    }
    cr_assert_str_eq (fields[2], "email");
    cr_assert_not_null (whys[2]);
    cr_assert_null (fields[1]);
    cr_assert_str_eq (user_name (users[0]), "Bob");
    cr_assert_str_eq (user_email (users[3]), "dee@example.com");
    //  One event per stored user, with the create's actor and trace
    cr_assert_eq (user_repo_memory_user_count (s_memory), 3);
    cr_assert_eq (s_events (), 3);
    cr_assert_str_eq (s_event (1)->subject, user_id (users[0]));
    cr_assert_str_eq (s_event (1)->actor, "alice");
    cr_assert_str_eq (s_event (2)->subject, user_id (users[3]));
    for (size_t index = 0; index < 5; index++)
        user_destroy (&users[index]);
    user_destroy (&taken);
}

//  --- Get ------------------------------------------------------------------

Test (user_app, get_found_not_found_and_bad_id)
{
    user_t *user = s_create ("Ada", "ada@example.com");
    user_t *found = NULL;
    cr_assert_eq (user_app_get (s_app, user_id (user), USER_ID_LEN, &found, NULL, NULL), 0);
    cr_assert_str_eq (user_id (found), user_id (user));
    cr_assert_str_eq (user_name (found), "Ada");
    user_destroy (&found);

    //  Upper-case hex is the same id.
    char upper[USER_ID_SIZE] = "00000000-0000-4000-8000-00000000000A";
    cr_assert_eq (user_app_get (s_app, upper, USER_ID_LEN, &found, NULL, NULL),
                  MESH_ENOTFOUND);
    cr_assert_eq (user_app_get (s_app, s_id (99), USER_ID_LEN, &found, NULL, NULL),
                  MESH_ENOTFOUND);
    cr_assert_null (found);

    const char *field = NULL, *why = NULL;
    cr_assert_eq (user_app_get (s_app, "42", 2, &found, &field, &why), MESH_EINVAL);
    cr_assert_str_eq (field, "id");
    cr_assert_not_null (why);
    cr_assert_eq (user_app_get (s_app, "", 0, &found, &field, &why), MESH_EINVAL);
    cr_assert_str_eq (field, "id");
    cr_assert_null (found);
    user_destroy (&user);
}

//  --- Update ---------------------------------------------------------------

Test (user_app, update_name_only_keeps_email_and_moves_updated_at)
{
    user_t *user = s_create ("Ada", "ada@example.com");
    user_t *updated = NULL;
    const char *field, *why;
    int rc = user_app_update (s_app, NULL, 0, user_id (user), USER_ID_LEN, " Ada King ", 10, NULL,
                              0, &updated, &field, &why);
    cr_assert_eq (rc, 0);
    cr_assert_str_eq (user_id (updated), user_id (user));
    cr_assert_str_eq (user_name (updated), "Ada King");
    cr_assert_str_eq (user_email (updated), "ada@example.com");
    cr_assert_eq (user_created_at_us (updated), CLOCK_START_US);
    cr_assert_eq (user_updated_at_us (updated), CLOCK_START_US + CLOCK_STEP_US);

    cr_assert_eq (s_events (), 2);
    const user_event_t *event = s_event (1);
    cr_assert_str_eq (event->type, USER_EVENT_UPDATED);
    cr_assert_str_eq (event->subject, user_id (user));
    cr_assert_eq (event->time_us, CLOCK_START_US + CLOCK_STEP_US);
    cr_assert_str_eq (user_name (event->user), "Ada King");
    cr_assert_str_eq (user_email (event->user), "ada@example.com");
    cr_assert_str_neq (event->id, s_event (0)->id);

    user_t *stored = NULL;
    cr_assert_eq (user_app_get (s_app, user_id (user), USER_ID_LEN, &stored, NULL, NULL), 0);
    cr_assert_str_eq (user_name (stored), "Ada King");
    cr_assert_eq (user_updated_at_us (stored), CLOCK_START_US + CLOCK_STEP_US);
    user_destroy (&stored);
    user_destroy (&updated);

    //  Email only, normalised; the name stays.
    rc = user_app_update (s_app, NULL, 0, user_id (user), USER_ID_LEN, NULL, 0, "KING@example.com",
                          16, &updated, &field, &why);
    cr_assert_eq (rc, 0);
    cr_assert_str_eq (user_name (updated), "Ada King");
    cr_assert_str_eq (user_email (updated), "king@example.com");
    cr_assert_eq (s_events (), 3);
    user_destroy (&updated);
    user_destroy (&user);
}

Test (user_app, update_validation)
{
    user_t *user = s_create ("Ada", "ada@example.com");
    user_t *updated = NULL;
    const char *field = NULL, *why = NULL;

    cr_assert_eq (user_app_update (s_app, NULL, 0, user_id (user), USER_ID_LEN, NULL, 0, NULL, 0,
                                   &updated, &field, &why),
                  MESH_EINVAL);
    cr_assert_str_eq (field, "name");
    cr_assert_not_null (why);
    cr_assert_eq (user_app_update (s_app, NULL, 0, user_id (user), USER_ID_LEN, "", 0, NULL, 0,
                                   &updated, &field, &why),
                  MESH_EINVAL);
    cr_assert_str_eq (field, "name");
    cr_assert_eq (user_app_update (s_app, NULL, 0, user_id (user), USER_ID_LEN, NULL, 0, "x", 1,
                                   &updated, &field, &why),
                  MESH_EINVAL);
    cr_assert_str_eq (field, "email");
    cr_assert_eq (
        user_app_update (s_app, NULL, 0, "nope", 4, "Bob", 3, NULL, 0, &updated, &field, &why),
        MESH_EINVAL);
    cr_assert_str_eq (field, "id");
    cr_assert_eq (user_app_update (s_app, NULL, 0, s_id (99), USER_ID_LEN, "Bob", 3, NULL, 0,
                                   &updated, &field, &why),
                  MESH_ENOTFOUND);
    cr_assert_null (updated);
    cr_assert_eq (s_events (), 1);
    user_destroy (&user);
}

Test (user_app, update_to_taken_email_conflicts_without_event)
{
    user_t *ada = s_create ("Ada", "ada@example.com");
    user_t *bob = s_create ("Bob", "bob@example.com");
    user_t *updated = NULL;
    cr_assert_eq (user_app_update (s_app, NULL, 0, user_id (bob), USER_ID_LEN, NULL, 0,
                                   "Ada@Example.com", 15, &updated, NULL, NULL),
                  MESH_ECONFLICT);
    cr_assert_null (updated);
    cr_assert_eq (s_events (), 2);
    user_t *stored = NULL;
    cr_assert_eq (user_app_get (s_app, user_id (bob), USER_ID_LEN, &stored, NULL, NULL), 0);
    cr_assert_str_eq (user_email (stored), "bob@example.com");
    user_destroy (&stored);

    //  Keeping one's own email is no conflict.
    cr_assert_eq (user_app_update (s_app, NULL, 0, user_id (bob), USER_ID_LEN, "Bob", 3,
                                   "bob@example.com", 15, &updated, NULL, NULL),
                  0);
    user_destroy (&updated);
    user_destroy (&ada);
    user_destroy (&bob);
}

//  --- Delete ---------------------------------------------------------------

Test (user_app, delete_writes_event_then_get_not_found)
{
    user_t *user = s_create ("Ada", "ada@example.com");
    const char *field = NULL;
    cr_assert_eq (user_app_delete (s_app, NULL, 0, user_id (user), USER_ID_LEN, &field, NULL), 0);
    cr_assert_null (field);
    cr_assert_eq (s_events (), 2);
    const user_event_t *event = s_event (1);
    cr_assert_str_eq (event->type, USER_EVENT_DELETED);
    cr_assert_str_eq (event->subject, user_id (user));
    cr_assert_str_eq (user_email (event->user), "ada@example.com");     //  Last state
    cr_assert_eq (event->time_us, CLOCK_START_US + CLOCK_STEP_US);

    user_t *found = NULL;
    cr_assert_eq (user_app_get (s_app, user_id (user), USER_ID_LEN, &found, NULL, NULL),
                  MESH_ENOTFOUND);
    cr_assert_eq (user_app_delete (s_app, NULL, 0, user_id (user), USER_ID_LEN, NULL, NULL),
                  MESH_ENOTFOUND);
    cr_assert_eq (user_app_delete (s_app, NULL, 0, "x", 1, &field, NULL), MESH_EINVAL);
    cr_assert_str_eq (field, "id");
    cr_assert_eq (s_events (), 2);

    //  The email is free again.
    user_t *again = s_create ("Ada", "ada@example.com");
    user_destroy (&again);
    user_destroy (&user);
}

//  --- List -----------------------------------------------------------------

//  One page, which must succeed; caller destroys it.
static user_page_t *
s_page (const char *after, int64_t limit)
{
    user_page_t *page = NULL;
    int rc = user_app_list (s_app, after, after? strlen (after): 0, &limit, &page, NULL, NULL);
    cr_assert_eq (rc, 0);
    cr_assert_not_null (page);
    return page;
}

Test (user_app, list_pages_by_keyset)
{
    char ids[7][USER_ID_SIZE];
    for (int index = 0; index < 7; index++) {
        char name[16], email[32];
        snprintf (name, sizeof name, "User %d", index);
        snprintf (email, sizeof email, "user%d@example.com", index);
        user_t *user = s_create (name, email);
        memcpy (ids[index], user_id (user), USER_ID_SIZE);
        user_destroy (&user);
    }
    user_page_t *page = s_page (NULL, 3);
    cr_assert_eq (user_page_count (page), 3);
    for (size_t index = 0; index < 3; index++)
        cr_assert_str_eq (user_id (user_page_item (page, index)), ids[index]);
    cr_assert_str_eq (user_page_next (page), ids[2]);   //  Cursor = last id on the page

    char cursor[USER_ID_SIZE];
    memcpy (cursor, user_page_next (page), USER_ID_SIZE);
    user_page_destroy (&page);
    page = s_page (cursor, 3);
    cr_assert_eq (user_page_count (page), 3);
    cr_assert_str_eq (user_id (user_page_item (page, 0)), ids[3]);
    cr_assert_str_eq (user_page_next (page), ids[5]);

    memcpy (cursor, user_page_next (page), USER_ID_SIZE);
    user_page_destroy (&page);
    page = s_page (cursor, 3);
    cr_assert_eq (user_page_count (page), 1);
    cr_assert_str_eq (user_id (user_page_item (page, 0)), ids[6]);
    cr_assert_null (user_page_next (page));            //  Last page: no cursor
    user_page_destroy (&page);

    //  A page that ends exactly at the last user has no cursor either.
    page = s_page (ids[3], 3);
    cr_assert_eq (user_page_count (page), 3);
    cr_assert_null (user_page_next (page));
    user_page_destroy (&page);

    //  A cursor that is no user's id (say, deleted since) still works.
    cr_assert_eq (user_app_delete (s_app, NULL, 0, ids[4], USER_ID_LEN, NULL, NULL), 0);
    page = s_page (ids[4], 3);
    cr_assert_eq (user_page_count (page), 2);
    cr_assert_str_eq (user_id (user_page_item (page, 0)), ids[5]);
    user_page_destroy (&page);

    //  A cursor in upper case is the same cursor ("...0a" sorts after "...09").
    page = s_page ("00000000-0000-4000-8000-00000000000A", 3);
    cr_assert_eq (user_page_count (page), 2);
    cr_assert_str_eq (user_id (user_page_item (page, 0)), ids[5]);
    user_page_destroy (&page);

    //  Default limit: everything fits.
    cr_assert_eq (user_app_list (s_app, NULL, 0, NULL, &page, NULL, NULL), 0);
    cr_assert_eq (user_page_count (page), 6);
    cr_assert_null (user_page_next (page));
    user_page_destroy (&page);
}

Test (user_app, list_empty_and_bounds)
{
    user_page_t *page = s_page (NULL, 1);
    cr_assert_eq (user_page_count (page), 0);
    cr_assert_null (user_page_next (page));
    user_page_destroy (&page);
    page = s_page (NULL, USER_APP_LIST_MAX);
    user_page_destroy (&page);

    static const int64_t bad_limits[] = { 0, -1, USER_APP_LIST_MAX + 1, INT64_MAX, INT64_MIN };
    for (size_t index = 0; index < sizeof bad_limits / sizeof bad_limits[0]; index++) {
        const char *field = NULL, *why = NULL;
        cr_assert_eq (user_app_list (s_app, NULL, 0, &bad_limits[index], &page, &field, &why),
                      MESH_EINVAL);
        cr_assert_str_eq (field, "limit");
        cr_assert_not_null (why);
        cr_assert_null (page);
    }
    const char *field = NULL;
    cr_assert_eq (user_app_list (s_app, "zzz", 3, NULL, &page, &field, NULL), MESH_EINVAL);
    cr_assert_str_eq (field, "after");
    cr_assert_eq (user_app_list (s_app, "", 0, NULL, &page, &field, NULL), MESH_EINVAL);
    cr_assert_str_eq (field, "after");
    cr_assert_null (page);
}

Test (user_app, list_default_limit_is_50)
{
    for (int index = 0; index < 51; index++) {
        char email[32];
        snprintf (email, sizeof email, "u%d@example.com", index);
        user_t *user = s_create ("U", email);
        user_destroy (&user);
    }
    user_page_t *page = NULL;
    cr_assert_eq (user_app_list (s_app, NULL, 0, NULL, &page, NULL, NULL), 0);
    cr_assert_eq (user_page_count (page), USER_APP_LIST_DEFAULT);
    cr_assert_not_null (user_page_next (page));
    user_page_destroy (&page);
}

//  --- Store failures -------------------------------------------------------

Test (user_app, store_down_is_unavailable_for_every_use_case)
{
    user_t *user = s_create ("Ada", "ada@example.com");
    user_repo_memory_set_down (s_memory, true);

    user_t *out = NULL;
    const char *field = "unset";
    cr_assert_eq (
        user_app_create (s_app, NULL, 0, "Bob", 3, "bob@example.com", 15, &out, &field, NULL),
        MESH_EUNAVAIL);
    cr_assert_null (field);
    cr_assert_eq (user_app_get (s_app, user_id (user), USER_ID_LEN, &out, NULL, NULL),
                  MESH_EUNAVAIL);
    cr_assert_eq (user_app_update (s_app, NULL, 0, user_id (user), USER_ID_LEN, "Bob", 3, NULL, 0,
                                   &out, NULL, NULL),
                  MESH_EUNAVAIL);
    cr_assert_eq (user_app_delete (s_app, NULL, 0, user_id (user), USER_ID_LEN, NULL, NULL),
                  MESH_EUNAVAIL);
    user_page_t *page = NULL;
    cr_assert_eq (user_app_list (s_app, NULL, 0, NULL, &page, NULL, NULL), MESH_EUNAVAIL);
    cr_assert_null (out);
    cr_assert_null (page);
    //  A bad request is still a bad request while the store is down.
    cr_assert_eq (user_app_get (s_app, "x", 1, &out, &field, NULL), MESH_EINVAL);
    cr_assert_str_eq (field, "id");
    cr_assert_eq (s_events (), 1);

    user_repo_memory_set_down (s_memory, false);
    cr_assert_eq (user_app_get (s_app, user_id (user), USER_ID_LEN, &out, NULL, NULL), 0);
    user_destroy (&out);
    user_destroy (&user);
}

Test (user_app, failed_transaction_leaves_neither_user_nor_event)
{
    user_t *user = NULL;
    user_repo_memory_fail_next (s_memory, MESH_EIO);
    cr_assert_eq (
        user_app_create (s_app, NULL, 0, "Ada", 3, "ada@example.com", 15, &user, NULL, NULL),
        MESH_EIO);
    cr_assert_null (user);
    cr_assert_eq (user_repo_memory_user_count (s_memory), 0);
    cr_assert_eq (s_events (), 0);
    user_t *found = NULL;
    cr_assert_eq (user_app_get (s_app, s_id (1), USER_ID_LEN, &found, NULL, NULL),
                  MESH_ENOTFOUND);

    //  The failure was one shot; the email was never taken.
    user = s_create ("Ada", "ada@example.com");
    cr_assert_eq (s_events (), 1);

    //  A failed update keeps the old state and writes no event.
    user_t *updated = NULL;
    user_repo_memory_fail_next (s_memory, MESH_EUNAVAIL);
    cr_assert_eq (user_app_update (s_app, NULL, 0, user_id (user), USER_ID_LEN, "Bob", 3, NULL, 0,
                                   &updated, NULL, NULL),
                  MESH_EUNAVAIL);
    cr_assert_null (updated);
    cr_assert_eq (user_app_get (s_app, user_id (user), USER_ID_LEN, &found, NULL, NULL), 0);
    cr_assert_str_eq (user_name (found), "Ada");
    cr_assert_eq (user_updated_at_us (found), user_updated_at_us (user));
    user_destroy (&found);
    cr_assert_eq (s_events (), 1);

    //  A failed delete keeps the user and writes no event.
    user_repo_memory_fail_next (s_memory, MESH_EIO);
    cr_assert_eq (user_app_delete (s_app, NULL, 0, user_id (user), USER_ID_LEN, NULL, NULL),
                  MESH_EIO);
    cr_assert_eq (user_app_get (s_app, user_id (user), USER_ID_LEN, &found, NULL, NULL), 0);
    user_destroy (&found);
    cr_assert_eq (s_events (), 1);
    cr_assert_eq (user_repo_memory_user_count (s_memory), 1);
    user_destroy (&user);
}

//  --- Several gets at once ---------------------------------------------------

Test (user_app, get_many_answers_each_id)
{
    user_t *ada = s_create ("Ada", "ada@example.com");
    user_t *bob = s_create ("Bob", "bob@example.com");
    const char *missing = "00000000-0000-4000-8000-000000000099";
    user_app_id_t ids[] = {
        { user_id (bob), USER_ID_LEN, NULL }, { "nope", 4, NULL }, { missing, USER_ID_LEN, NULL },
        { user_id (ada), USER_ID_LEN, NULL }, { user_id (bob), USER_ID_LEN, NULL },
    };
    enum { COUNT = sizeof ids / sizeof ids[0] };
    user_t *users[COUNT];
    int rcs[COUNT];
    const char *fields[COUNT], *whys[COUNT];
    cr_assert_eq (user_app_get_many (s_app, ids, COUNT, users, rcs, fields, whys), 0);
    cr_assert_eq (rcs[0], 0);
    cr_assert_str_eq (user_name (users[0]), "Bob");
    cr_assert_eq (rcs[1], MESH_EINVAL);
    cr_assert_str_eq (fields[1], "id");
    cr_assert_not_null (whys[1]);
    cr_assert_null (users[1]);
    cr_assert_eq (rcs[2], MESH_ENOTFOUND);
    cr_assert_null (users[2]);
    cr_assert_eq (rcs[3], 0);
    cr_assert_str_eq (user_name (users[3]), "Ada");
    cr_assert_eq (rcs[4], 0);
    cr_assert_str_eq (user_id (users[4]), user_id (bob));
    for (size_t index = 0; index < COUNT; index++)
        user_destroy (&users[index]);

    //  A store error holds for every valid id; a bad id stays a bad id
    user_repo_memory_set_down (s_memory, true);
    cr_assert_eq (user_app_get_many (s_app, ids, COUNT, users, rcs, fields, whys),
                  MESH_EUNAVAIL);
    for (size_t index = 0; index < COUNT; index++)
        cr_assert_null (users[index]);
    cr_assert_eq (rcs[1], MESH_EINVAL);
    user_repo_memory_set_down (s_memory, false);
    user_destroy (&ada);
    user_destroy (&bob);
}

//  --- Events -----------------------------------------------------------------

Test (user_app, events_in_order_with_bounds)
{
    user_t *ada = s_create ("Ada", "ada@example.com");
    user_t *bob = s_create ("Bob", "bob@example.com");
    cr_assert_eq (user_app_delete (s_app, NULL, 0, user_id (ada), USER_ID_LEN, NULL, NULL), 0);
    user_stored_event_t *events = NULL;
    size_t count = 0;
    int64_t after = 0, limit = 2;
    cr_assert_eq (user_app_events (s_app, &after, &limit, &events, &count, NULL, NULL), 0);
    cr_assert_eq (count, 2);
    cr_assert_eq (events[0].seq, 1);
    cr_assert_str_eq (events[0].type, USER_EVENT_CREATED);
    cr_assert_str_eq (events[0].subject, user_id (ada));
    cr_assert_eq (events[1].seq, 2);
    cr_assert_str_eq (events[1].subject, user_id (bob));
    user_stored_events_free (events, count);
    after = 2;
    cr_assert_eq (user_app_events (s_app, &after, NULL, &events, &count, NULL, NULL), 0);
    cr_assert_eq (count, 1);
    cr_assert_eq (events[0].seq, 3);
    cr_assert_str_eq (events[0].type, USER_EVENT_DELETED);
    user_stored_events_free (events, count);
    after = 3;
    cr_assert_eq (user_app_events (s_app, &after, NULL, &events, &count, NULL, NULL), 0);
    cr_assert_eq (count, 0);
    cr_assert_null (events);

    const char *field = NULL, *why = NULL;
    cr_assert_eq (user_app_events (s_app, NULL, NULL, &events, &count, &field, &why),
                  MESH_EINVAL);
    cr_assert_str_eq (field, "after_seq");
    after = -1;
    cr_assert_eq (user_app_events (s_app, &after, NULL, &events, &count, &field, &why),
                  MESH_EINVAL);
    cr_assert_str_eq (field, "after_seq");
    after = 0;
    const int64_t bad_limits[] = { 0, -5, USER_APP_EVENTS_MAX + 1 };
    for (size_t index = 0; index < 3; index++) {
        cr_assert_eq (user_app_events (s_app, &after, &bad_limits[index], &events, &count,
                                       &field, &why), MESH_EINVAL);
        cr_assert_str_eq (field, "limit");
    }
    limit = USER_APP_EVENTS_MAX;
    cr_assert_eq (user_app_events (s_app, &after, &limit, &events, &count, NULL, NULL), 0);
    cr_assert_eq (count, 3);
    user_stored_events_free (events, count);
    user_destroy (&ada);
    user_destroy (&bob);
}

//  --- Idempotency units of the in-memory store ------------------------------
//  (The port's contract, as the worker relies on it; the PostgreSQL adapter
//  is held to it by the integration tests.)

Test (user_app, idempotency_unit_keeps_or_undoes_the_change)
{
    user_repo_t *repo = user_repo_memory_repo (s_memory);
    void *reply = NULL;
    size_t reply_len = 0;
    cr_assert_eq (user_repo_idem_claim (repo, "k1", "req", 3, &reply, &reply_len), 0);
    cr_assert_null (reply);
    user_t *ada = s_create ("Ada", "ada@example.com");
    cr_assert_eq (user_repo_idem_complete (repo, "reply-1", 7), 0);
    //  The same request: the stored reply, nothing runs
    cr_assert_eq (user_repo_idem_claim (repo, "k1", "req", 3, &reply, &reply_len), 0);
    cr_assert_eq (reply_len, 7);
    cr_assert (memcmp (reply, "reply-1", 7) == 0);
    free (reply);
    //  Another request under the key
    cr_assert_eq (user_repo_idem_claim (repo, "k1", "other", 5, &reply, &reply_len),
                  MESH_ECONFLICT);
    //  A released unit undoes its change and keeps no key
    cr_assert_eq (user_repo_idem_claim (repo, "k2", "req", 3, &reply, &reply_len), 0);
    user_t *bob = s_create ("Bob", "bob@example.com");
    cr_assert_eq (user_repo_memory_user_count (s_memory), 2);
    user_repo_idem_release (repo);
    cr_assert_eq (user_repo_memory_user_count (s_memory), 1);
    cr_assert_eq (s_events (), 1);
    cr_assert_eq (user_repo_idem_claim (repo, "k2", "req", 3, &reply, &reply_len), 0);
    cr_assert_null (reply);
    user_repo_idem_release (repo);
    char long_key[USER_IDEM_KEY_MAX + 2];
    memset (long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    cr_assert_eq (user_repo_idem_claim (repo, long_key, "req", 3, &reply, &reply_len),
                  MESH_EINVAL);
    user_destroy (&ada);
    user_destroy (&bob);
}

//  --- Actor ----------------------------------------------------------------

Test (user_app, actor_of_each_change_reaches_its_outbox_event)
{
    static const char actor[] = "ops-alice";
    user_t *user = NULL, *updated = NULL;
    const char *field = "unset";
    cr_assert_eq (user_app_create (s_app, actor, strlen (actor), "Ada", 3, "ada@example.com", 15,
                                   &user, &field, NULL),
                  0);
    cr_assert_null (field);
    cr_assert_eq (user_app_update (s_app, actor, strlen (actor), user_id (user), USER_ID_LEN,
                                   "Ada King", 8, NULL, 0, &updated, NULL, NULL),
                  0);
    cr_assert_eq (
        user_app_delete (s_app, actor, strlen (actor), user_id (user), USER_ID_LEN, NULL, NULL), 0);
    cr_assert_eq (s_events (), 3);
    static const char *const types[] = {USER_EVENT_CREATED, USER_EVENT_UPDATED, USER_EVENT_DELETED};
    for (size_t index = 0; index < 3; index++) {
        cr_assert_str_eq (s_event (index)->type, types[index]);
        cr_assert_str_eq (s_event (index)->actor, actor, "event %zu", index);
    }
    //  And events.list hands it on
    int64_t after = 0;
    user_stored_event_t *events = NULL;
    size_t count = 0;
    cr_assert_eq (user_app_events (s_app, &after, NULL, &events, &count, NULL, NULL), 0);
    cr_assert_eq (count, 3);
    for (size_t index = 0; index < count; index++)
        cr_assert_str_eq (events[index].actor, actor);
    user_stored_events_free (events, count);
    user_destroy (&user);
    user_destroy (&updated);
}

Test (user_app, change_without_actor_has_none)
{
    //  NULL and an empty actor both mean none
    user_t *user = s_create ("Ada", "ada@example.com");
    user_t *updated = NULL;
    cr_assert_eq (user_app_update (s_app, "", 0, user_id (user), USER_ID_LEN, "Bob", 3, NULL, 0,
                                   &updated, NULL, NULL),
                  0);
    cr_assert_eq (s_events (), 2);
    cr_assert_str_eq (s_event (0)->actor, "");
    cr_assert_str_eq (s_event (1)->actor, "");
    user_destroy (&user);
    user_destroy (&updated);
}

Test (user_app, actor_is_kept_verbatim_up_to_256_bytes)
{
    //  Quotes, semicolons, comment dashes, backslashes and non-ASCII: data
    //  like any other, stored exactly as sent
    static const char sql[] = "x'); DROP TABLE users; -- \\ \"ops\" Łódź";
    user_t *user = NULL;
    cr_assert_eq (user_app_create (s_app, sql, strlen (sql), "Ada", 3, "ada@example.com", 15, &user,
                                   NULL, NULL),
                  0);
    cr_assert_str_eq (s_event (0)->actor, sql);
    user_destroy (&user);

    char longest[USER_ACTOR_MAX + 1];
    memset (longest, 'a', USER_ACTOR_MAX);
    longest[USER_ACTOR_MAX] = '\0';
    cr_assert_eq (user_app_create (s_app, longest, USER_ACTOR_MAX, "Bob", 3, "bob@example.com", 15,
                                   &user, NULL, NULL),
                  0);
    cr_assert_str_eq (s_event (1)->actor, longest);
    user_destroy (&user);
}

Test (user_app, bad_actor_is_invalid_and_changes_nothing)
{
    user_t *user = s_create ("Ada", "ada@example.com");
    char too_long[USER_ACTOR_MAX + 1];
    memset (too_long, 'a', sizeof too_long);
    const struct {
        const char *actor;
        size_t len;
    } cases[] = {
        {"ops\nalice", 9},       //  A forged log line
        {"ops\0alice", 9},       //  NUL
        {"ops\x1b[2Jalice", 11}, //  Terminal escape
        {"\xc3\x28", 2},         //  Not UTF-8
        {"ops\xe2\x80\xa8x", 7}, //  U+2028
        {too_long, sizeof too_long},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        user_t *out = NULL;
        const char *field = NULL, *why = NULL;
        cr_assert_eq (user_app_create (s_app, cases[index].actor, cases[index].len, "Bob", 3,
                                       "bob@example.com", 15, &out, &field, &why),
                      MESH_EINVAL, "case %zu", index);
        cr_assert_str_eq (field, "actor");
        cr_assert_not_null (why);
        field = NULL;
        cr_assert_eq (user_app_update (s_app, cases[index].actor, cases[index].len, user_id (user),
                                       USER_ID_LEN, "Bob", 3, NULL, 0, &out, &field, NULL),
                      MESH_EINVAL);
        cr_assert_str_eq (field, "actor");
        field = NULL;
        cr_assert_eq (user_app_delete (s_app, cases[index].actor, cases[index].len, user_id (user),
                                       USER_ID_LEN, &field, NULL),
                      MESH_EINVAL);
        cr_assert_str_eq (field, "actor");
    }
    cr_assert_eq (s_events (), 1);
    cr_assert_eq (user_repo_memory_user_count (s_memory), 1);
    user_destroy (&user);
}
