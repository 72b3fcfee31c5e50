/*  =========================================================================
    test_audit_ingest - the audit use cases against the in-memory store
    The Clone pattern's rules (catch up first, drop what is stored, fetch on
    a gap, never skip a seq) and audit.list's paging and filters, with the
    live stream played by hand and events.list by an in-memory source.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_ingest.h"
#include "audit_list.h"
#include "audit_store_memory.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static audit_store_memory_t *s_store;
static audit_source_memory_t *s_source;
static audit_ingest_t *s_ingest;

static void
s_setup (void)
{
    s_store = audit_store_memory_new ();
    s_source = audit_source_memory_new ();
    s_ingest = audit_ingest_new (audit_store_memory_store (s_store),
                                 audit_source_memory_source (s_source));
}

static void
s_teardown (void)
{
    audit_ingest_destroy (&s_ingest);
    audit_source_memory_destroy (&s_source);
    audit_store_memory_destroy (&s_store);
}

TestSuite (audit_ingest, .init = s_setup, .fini = s_teardown, .timeout = 30.);

//  Publish `count` events at the source; copies of them in `live` (when
//  not NULL) as the live stream would deliver them.
static void
s_publish (size_t count, audit_event_t *live)
{
    for (size_t index = 0; index < count; index++) {
        if (live)
            live[index] = (audit_event_t) {0};
        audit_source_memory_publish (s_source, live ? &live[index] : NULL);
    }
}

//  Every seq 1..upto stored exactly once.
static void
s_expect_all_once (uint64_t upto)
{
    cr_assert_eq (audit_store_memory_count (s_store), upto);
    for (uint64_t seq = 1; seq <= upto; seq++)
        cr_assert_eq (audit_store_memory_count_seq (s_store, seq), 1, "seq %llu",
                      (unsigned long long) seq);
}

Test (audit_ingest, starts_behind_and_catches_up_in_pages)
{
    cr_assert (audit_ingest_behind (s_ingest));
    s_publish (2500, NULL);
    cr_assert_eq (audit_ingest_catch_up (s_ingest), 0);
    cr_assert_not (audit_ingest_behind (s_ingest));
    cr_assert_eq (audit_ingest_cursor (s_ingest), 2500);
    s_expect_all_once (2500);
    cr_assert_eq (audit_ingest_stats (s_ingest)->fetched, 2500);
    cr_assert_eq (audit_ingest_stats (s_ingest)->stored, 2500);
    cr_assert_eq (audit_source_memory_fetches (s_source), 3, "pages of 1000");
}

Test (audit_ingest, live_events_in_order_and_duplicates)
{
    cr_assert_eq (audit_ingest_catch_up (s_ingest), 0);
    audit_event_t live[10];
    s_publish (10, live);
    cr_assert_eq (audit_ingest_offer (s_ingest, live, 5), 0);
    cr_assert_eq (audit_ingest_cursor (s_ingest), 5);
    //  The same five again, then the rest: five duplicates
    audit_event_t again[5];
    for (int index = 0; index < 5; index++)
        audit_event_fake (&again[index], (uint64_t) index + 1);
    cr_assert_eq (audit_ingest_offer (s_ingest, again, 5), 0);
    cr_assert_eq (audit_ingest_offer (s_ingest, live + 5, 5), 0);
    cr_assert_eq (audit_ingest_cursor (s_ingest), 10);
    s_expect_all_once (10);
    cr_assert_eq (audit_ingest_stats (s_ingest)->duplicates, 5);
    cr_assert_eq (audit_ingest_stats (s_ingest)->gaps, 0);
    cr_assert_eq (audit_source_memory_fetches (s_source), 1, "no fetch but the first");
}

Test (audit_ingest, a_gap_fetches_the_missing_events)
{
    cr_assert_eq (audit_ingest_catch_up (s_ingest), 0);
    audit_event_t live[20];
    s_publish (20, live);
    //  The stream lost 4..9 and delivers 15 twice
    audit_event_t stream[16];
    size_t count = 0;
    for (size_t index = 0; index < 20; index++)
        if (index < 3 || index >= 9)
            audit_event_move ((stream[count] = (audit_event_t) {0}, &stream[count]), &live[index]),
                count++;
    audit_event_fake (&stream[count++], 15);
    cr_assert_eq (audit_ingest_offer (s_ingest, stream, count), 0);
    cr_assert_eq (audit_ingest_cursor (s_ingest), 20);
    s_expect_all_once (20);
    const audit_ingest_stats_t *stats = audit_ingest_stats (s_ingest);
    cr_assert_eq (stats->gaps, 1);
    //  The catch-up fetched 4..20; the live 10..20 and the second 15 then
    //  were duplicates
    cr_assert_eq (stats->fetched, 17);
    cr_assert_eq (stats->duplicates, 12);
    for (size_t index = 0; index < 20; index++)
        audit_event_clear (&live[index]);
}

Test (audit_ingest, failures_leave_it_behind_until_a_catch_up_works)
{
    cr_assert_eq (audit_ingest_catch_up (s_ingest), 0);
    audit_event_t live[6];
    s_publish (6, live);
    cr_assert_eq (audit_ingest_offer (s_ingest, live, 2), 0);
    //  A gap while events.list is down: nothing lost, nothing skipped
    audit_source_memory_set_down (s_source, true);
    cr_assert_eq (audit_ingest_offer (s_ingest, live + 4, 1), MESH_EUNAVAIL);
    cr_assert (audit_ingest_behind (s_ingest));
    cr_assert_eq (audit_ingest_cursor (s_ingest), 2);
    //  While behind, live events wait for the catch-up
    cr_assert_eq (audit_ingest_offer (s_ingest, live + 5, 1), 0);
    cr_assert_eq (audit_ingest_cursor (s_ingest), 2);
    audit_source_memory_set_down (s_source, false);
    //  The store down: the catch-up fails too
    audit_store_memory_set_down (s_store, true);
    cr_assert_eq (audit_ingest_catch_up (s_ingest), MESH_EUNAVAIL);
    audit_store_memory_set_down (s_store, false);
    cr_assert_eq (audit_ingest_catch_up (s_ingest), 0);
    cr_assert_not (audit_ingest_behind (s_ingest));
    s_expect_all_once (6);
    for (size_t index = 0; index < 6; index++)
        audit_event_clear (&live[index]);
}

Test (audit_ingest, a_cursor_moved_by_another_writer_is_reloaded)
{
    cr_assert_eq (audit_ingest_catch_up (s_ingest), 0);
    audit_event_t live[4];
    s_publish (4, live);
    audit_store_memory_set_cursor (s_store, 3);
    cr_assert_eq (audit_ingest_offer (s_ingest, live, 1), 0);
    cr_assert (audit_ingest_behind (s_ingest));
    cr_assert_eq (audit_ingest_cursor (s_ingest), 3);
    cr_assert_eq (audit_ingest_catch_up (s_ingest), 0);
    cr_assert_eq (audit_ingest_cursor (s_ingest), 4);
    cr_assert_eq (audit_store_memory_count_seq (s_store, 4), 1);
    for (size_t index = 0; index < 4; index++)
        audit_event_clear (&live[index]);
}

//  --- audit.list -------------------------------------------------------------

Test (audit_ingest, list_pages_and_filters)
{
    s_publish (30, NULL);
    cr_assert_eq (audit_ingest_catch_up (s_ingest), 0);
    audit_store_t *store = audit_store_memory_store (s_store);
    const char *field, *why;
    int64_t limit = 12;
    audit_list_request_t request = { .limit = &limit };
    audit_page_t page;
    cr_assert_eq (audit_list (store, &request, &page, &field, &why), 0);
    cr_assert_eq (page.count, 12);
    cr_assert_eq (page.events[0].seq, 1);
    cr_assert_eq (page.next, 12);
    audit_events_free (page.events, page.count);
    int64_t after = 24;
    request.after = &after;
    cr_assert_eq (audit_list (store, &request, &page, &field, &why), 0);
    cr_assert_eq (page.count, 6);
    cr_assert_eq (page.events[0].seq, 25);
    cr_assert_eq (page.next, 0, "last page: no cursor");
    audit_events_free (page.events, page.count);

    //  One user's events (subject seq % 7 == 3), only creations (seq % 3 == 0)
    const char *user = "00000000-0000-4000-9000-000000000003";
    audit_list_request_t filtered = { .user_id = user, .user_id_len = strlen (user),
                                      .type = "user.created", .type_len = 12 };
    cr_assert_eq (audit_list (store, &filtered, &page, &field, &why), 0);
    cr_assert_eq (page.count, 2);
    cr_assert_eq (page.events[0].seq, 3);
    cr_assert_eq (page.events[1].seq, 24);
    audit_events_free (page.events, page.count);

    struct { audit_list_request_t request; const char *field; } bad[] = {
        { { .user_id = "nope", .user_id_len = 4 }, "user_id" },
        { { .type = "user.exploded", .type_len = 13 }, "type" },
        { { .after = &(int64_t) {-1} }, "after" },
        { { .limit = &(int64_t) {0} }, "limit" },
        { { .limit = &(int64_t) {AUDIT_LIST_MAX + 1} }, "limit" },
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        cr_assert_eq (audit_list (store, &bad[index].request, &page, &field, &why), MESH_EINVAL);
        cr_assert_str_eq (field, bad[index].field);
        cr_assert_not_null (why);
    }
}

Test (audit_ingest, event_rules_and_time_parsing)
{
    audit_event_t event;
    audit_event_fake (&event, 1);
    cr_assert_null (audit_event_check (&event));
    event.seq = 0;
    cr_assert_not_null (audit_event_check (&event));
    event.seq = 1;
    strcpy (event.type, "user.exploded");
    cr_assert_not_null (audit_event_check (&event));
    audit_event_clear (&event);
    cr_assert_not (audit_uuid_valid ("00000000-0000-4000-8000-00000000000A", 36));
    cr_assert (audit_uuid_valid ("00000000-0000-4000-8000-00000000000a", 36));
    int64_t us = 0;
    cr_assert_eq (audit_time_parse ("1970-01-01T00:00:01.5Z", 22, &us), 0);
    cr_assert_eq (us, 1500000);
    cr_assert_eq (audit_time_parse ("2026-11-25T16:00:00.123456789Z", 30, &us), 0);
    cr_assert_eq (us, INT64_C (1795622400123456));
    cr_assert_eq (audit_time_parse ("2026-11-25 16:00:00Z", 20, &us), MESH_EINVAL);
    cr_assert_eq (audit_time_parse ("2026-11-25T16:00:00", 19, &us), MESH_EINVAL);
}

Test (audit_ingest, list_filters_by_actor)
{
    //  Events 1..6: the even ones asked for by ops-alice, 3 by ops-bob, the
    //  rest by nobody named
    audit_event_t events[6];
    for (uint64_t seq = 1; seq <= 6; seq++) {
        audit_event_fake (&events[seq - 1], seq);
        snprintf (events[seq - 1].actor, sizeof events[seq - 1].actor, "%s",
                  seq % 2 == 0 ? "ops-alice"
                  : seq == 3   ? "ops-bob"
                               : "");
        cr_assert_null (audit_event_check (&events[seq - 1]));
    }
    audit_store_t *store = audit_store_memory_store (s_store);
    size_t stored = 0;
    cr_assert_eq (audit_store_append (store, 0, events, 6, &stored), 0);
    cr_assert_eq (stored, 6);
    for (size_t index = 0; index < 6; index++)
        audit_event_clear (&events[index]);

    const char *field, *why;
    audit_page_t page;
    audit_list_request_t request = {.actor = "ops-alice", .actor_len = 9};
    cr_assert_eq (audit_list (store, &request, &page, &field, &why), 0);
    cr_assert_eq (page.count, 3);
    for (size_t index = 0; index < page.count; index++) {
        cr_assert_eq (page.events[index].seq, 2 * (index + 1));
        cr_assert_str_eq (page.events[index].actor, "ops-alice");
    }
    audit_events_free (page.events, page.count);
    //  Exact match: a prefix is another actor
    request = (audit_list_request_t){.actor = "ops-", .actor_len = 4};
    cr_assert_eq (audit_list (store, &request, &page, &field, &why), 0);
    cr_assert_eq (page.count, 0);
    audit_events_free (page.events, page.count);

    static const char *const bad[] = {"", "a\nb", "\xff"};
    for (size_t index = 0; index < 3; index++) {
        request = (audit_list_request_t){.actor = bad[index], .actor_len = strlen (bad[index])};
        cr_assert_eq (audit_list (store, &request, &page, &field, &why), MESH_EINVAL, "%zu", index);
        cr_assert_str_eq (field, "actor");
    }
    char too_long[AUDIT_ACTOR_MAX + 1];
    memset (too_long, 'a', sizeof too_long);
    request = (audit_list_request_t){.actor = too_long, .actor_len = sizeof too_long};
    cr_assert_eq (audit_list (store, &request, &page, &field, &why), MESH_EINVAL);
    cr_assert (audit_actor_valid (too_long, AUDIT_ACTOR_MAX));
    cr_assert (audit_actor_valid ("jwt:Zoë", 8));
    cr_assert_not (audit_actor_valid ("\xc2\x85", 2), "C1 control");
    cr_assert_not (audit_actor_valid ("\xed\xa0\x80", 3), "surrogate");
    cr_assert_not (audit_actor_valid ("\xf4\x90\x80\x80", 4), "above U+10FFFF");
}
