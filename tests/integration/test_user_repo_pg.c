/*  =========================================================================
    test_user_repo_pg - the libpq adapter of the user repository, on real PostgreSQL
    Each test migrates a fresh schema of the DATABASE_URL database and points
    the adapter at it through the conninfo (options=-csearch_path=...); the
    schema is dropped at teardown. Checks the port's contract (same return
    codes as testing/user_repo_memory), the outbox row each change writes,
    and the app layer end to end on this adapter. Skipped when DATABASE_URL
    is not set. Outage and reconnect are not exercised here.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_err.h"
#include "mesh_test.h"
#include "mesh/mesh_tracer.h"
#include "otlp_test.h"
#include "user.h"
#include "user_app.h"
#include "user_repo.h"
#include "user_repo_pg.h"
#include "user_schema.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_T0 INT64_C (1764077611123456) //  2025-11-25T13:33:31.123456Z

static mesh_test_pg_schema_t s_pg; //  This test's schema; its admin inspects tables

//  Skip the test when there is no database to test against.
static void
s_need_database (void)
{
    const char *url = getenv ("DATABASE_URL");
    if (!url || !*url)
        cr_skip_test ("DATABASE_URL is not set");
}

static void
s_setup (void)
{
    if (!mesh_test_pg_schema_new (&s_pg, "test_user_repo_pg"))
        return; //  The test itself skips
    char sql[160];
    snprintf (sql, sizeof sql, "SET search_path TO %s", s_pg.name);
    mesh_test_pg_exec (s_pg.admin, sql);
    char error[256] = "";
    int rc = user_schema_migrate (s_pg.admin, NULL, error, sizeof error);
    cr_assert_eq (rc, 0, "migrate: %s", error);
}

static void
s_teardown (void)
{
    mesh_test_pg_schema_drop (&s_pg);
}

TestSuite (user_repo_pg, .init = s_setup, .fini = s_teardown, .timeout = 60.);

//  The adapter on this test's schema; fails the test when it cannot connect.
static user_repo_t *
s_repo (void)
{
    int err = 1;
    user_repo_t *repo = user_repo_pg_new (s_pg.conninfo, NULL, &err);
    cr_assert_not_null (repo, "user_repo_pg_new: %s", mesh_strerror (err));
    cr_assert_eq (err, 0);
    return repo;
}

//  Canonical id number `n` (ascending with n).
static void
s_id (int n, char out[USER_ID_SIZE])
{
    snprintf (out, USER_ID_SIZE, "00000000-0000-4000-8000-%012d", n);
}

static user_t *
s_user (int n, const char *name, const char *email, int64_t created, int64_t updated)
{
    char id[USER_ID_SIZE];
    s_id (n, id);
    user_t *user = user_new (id, name, email, created, updated);
    cr_assert_not_null (user, "test user %d is not valid", n);
    return user;
}

//  An event about `user`, event id number `n` (its own range: 9000 + n).
static user_event_t
s_event (const char *type, int n, const user_t *user, char id[USER_ID_SIZE])
{
    s_id (9000 + n, id);
    return (user_event_t){.type = type,
                          .id = id,
                          .subject = user_id (user),
                          .user = user,
                          .time_us = user_updated_at_us (user)};
}

static void
s_assert_same_user (const user_t *got, const user_t *want)
{
    cr_assert_str_eq (user_id (got), user_id (want));
    cr_assert_str_eq (user_name (got), user_name (want));
    cr_assert_str_eq (user_email (got), user_email (want));
    cr_assert_eq (user_created_at_us (got), user_created_at_us (want), "created %lld != %lld",
                  (long long)user_created_at_us (got), (long long)user_created_at_us (want));
    cr_assert_eq (user_updated_at_us (got), user_updated_at_us (want), "updated %lld != %lld",
                  (long long)user_updated_at_us (got), (long long)user_updated_at_us (want));
}

//  Value of string key `key` in a MessagePack map, as a NUL-terminated copy
//  in `out`; fails the test when missing or not a string.
static void
s_map_str (const msgpack_object *map, const char *key, char *out, size_t size)
{
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[index];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen (key) &&
            memcmp (kv->key.via.str.ptr, key, kv->key.via.str.size) == 0) {
            cr_assert_eq (kv->val.type, MSGPACK_OBJECT_STR, "%s is not a string", key);
            cr_assert_lt (kv->val.via.str.size, size);
            memcpy (out, kv->val.via.str.ptr, kv->val.via.str.size);
            out[kv->val.via.str.size] = '\0';
            return;
        }
    }
    cr_assert_fail ("no key %s in the event data", key);
}

//  Check the outbox row of event `event_id`: type, subject, data (decoded
//  MessagePack = `user` with RFC 3339 times), created_at, no seq, no trace.
static void
s_assert_outbox (const char *event_id, const char *type, const user_t *user, int64_t time_us)
{
    const char *params[1] = {event_id};
    PGresult *result = PQexecParams (s_pg.admin,
                                     "SELECT type, subject::text, data, trace, seq,"
                                     " (extract(epoch FROM created_at) * 1000000)::int8"
                                     " FROM outbox WHERE event_id = $1::uuid",
                                     1, NULL, params, NULL, NULL, 1); //  Binary results
    cr_assert_eq (PQresultStatus (result), PGRES_TUPLES_OK, "%s", PQerrorMessage (s_pg.admin));
    cr_assert_eq (PQntuples (result), 1, "event %s is not in the outbox", event_id);
    cr_assert_eq (PQgetlength (result, 0, 0), (int)strlen (type));
    cr_assert (memcmp (PQgetvalue (result, 0, 0), type, strlen (type)) == 0);
    cr_assert_eq (PQgetlength (result, 0, 1), USER_ID_LEN);
    cr_assert (memcmp (PQgetvalue (result, 0, 1), user_id (user), USER_ID_LEN) == 0);
    cr_assert (PQgetisnull (result, 0, 3), "trace is not NULL");
    cr_assert (PQgetisnull (result, 0, 4), "seq is given only by the relay");
    cr_assert_eq (PQgetlength (result, 0, 5), 8);
    const unsigned char *raw = (const unsigned char *)PQgetvalue (result, 0, 5);
    uint64_t created = 0;
    for (int index = 0; index < 8; index++)
        created = created << 8 | raw[index];
    cr_assert_eq ((int64_t)created, time_us);

    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    msgpack_unpack_return ret = msgpack_unpack_next (&unpacked, PQgetvalue (result, 0, 2),
                                                     (size_t)PQgetlength (result, 0, 2), &offset);
    cr_assert_eq (ret, MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (offset, (size_t)PQgetlength (result, 0, 2), "trailing bytes in data");
    const msgpack_object *map = &unpacked.data;
    cr_assert_eq (map->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq (map->via.map.size, 5);
    char text[USER_NAME_SIZE];
    char want_time[USER_TIME_SIZE];
    s_map_str (map, "id", text, sizeof text);
    cr_assert_str_eq (text, user_id (user));
    s_map_str (map, "name", text, sizeof text);
    cr_assert_str_eq (text, user_name (user));
    s_map_str (map, "email", text, sizeof text);
    cr_assert_str_eq (text, user_email (user));
    s_map_str (map, "created_at", text, sizeof text);
    cr_assert_eq (user_format_time (user_created_at_us (user), want_time, sizeof want_time), 0);
    cr_assert_str_eq (text, want_time);
    s_map_str (map, "updated_at", text, sizeof text);
    cr_assert_eq (user_format_time (user_updated_at_us (user), want_time, sizeof want_time), 0);
    cr_assert_str_eq (text, want_time);
    msgpack_unpacked_destroy (&unpacked);
    PQclear (result);
}

Test (user_repo_pg, insert_then_find_round_trips_every_field)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    //  Microsecond times, and the ends of the range user.h allows
    user_t *users[3] = {
        s_user (1, "Ada Lovelace", "ada@example.com", S_T0, S_T0 + 1),
        s_user (2, "Émile Zola ✓", "emile@example.org", USER_TIME_MIN_US, USER_TIME_MAX_US),
        s_user (3, "Minus", "minus@example.net", -1, -999999),
    };
    for (int index = 0; index < 3; index++) {
        char event_id[USER_ID_SIZE];
        user_event_t event = s_event (USER_EVENT_CREATED, index, users[index], event_id);
        cr_assert_eq (user_repo_insert (repo, users[index], &event), 0);
        user_t *found = NULL;
        cr_assert_eq (user_repo_find (repo, user_id (users[index]), &found), 0);
        s_assert_same_user (found, users[index]);
        user_destroy (&found);
    }
    //  Stored as timestamptz, readable by SQL
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM users WHERE created_at ="
                                " '2025-11-25T13:33:31.123456Z'",
                                NULL),
                  1);
    char missing[USER_ID_SIZE];
    s_id (77, missing);
    user_t *found = NULL;
    cr_assert_eq (user_repo_find (repo, missing, &found), MESH_ENOTFOUND);
    cr_assert_null (found);
    for (int index = 0; index < 3; index++)
        user_destroy (&users[index]);
    user_repo_destroy (&repo);
    cr_assert_null (repo);
}

Test (user_repo_pg, insert_writes_its_outbox_row)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    user_t *user = s_user (1, "Ada", "ada@example.com", S_T0, S_T0);
    char event_id[USER_ID_SIZE];
    user_event_t event = s_event (USER_EVENT_CREATED, 1, user, event_id);
    event.time_us = S_T0 + 7;
    cr_assert_eq (user_repo_insert (repo, user, &event), 0);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox", NULL), 1);
    s_assert_outbox (event_id, USER_EVENT_CREATED, user, S_T0 + 7);
    user_destroy (&user);
    user_repo_destroy (&repo);
}

Test (user_repo_pg, duplicate_email_or_id_conflicts_and_writes_nothing)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    user_t *first = s_user (1, "First", "same@example.com", S_T0, S_T0);
    user_t *second = s_user (2, "Second", "same@example.com", S_T0, S_T0);
    user_t *again = s_user (1, "Same id", "other@example.com", S_T0, S_T0);
    char id1[USER_ID_SIZE], id2[USER_ID_SIZE], id3[USER_ID_SIZE];
    user_event_t event1 = s_event (USER_EVENT_CREATED, 1, first, id1);
    user_event_t event2 = s_event (USER_EVENT_CREATED, 2, second, id2);
    user_event_t event3 = s_event (USER_EVENT_CREATED, 3, again, id3);
    cr_assert_eq (user_repo_insert (repo, first, &event1), 0);
    cr_assert_eq (user_repo_insert (repo, second, &event2), MESH_ECONFLICT);
    cr_assert_eq (user_repo_insert (repo, again, &event3), MESH_ECONFLICT);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM users", NULL), 1);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox", NULL), 1);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox WHERE event_id = $1::uuid", id2), 0);
    //  The same event id twice is a conflict too, and stores no user
    user_t *third = s_user (3, "Third", "third@example.com", S_T0, S_T0);
    user_event_t event4 = s_event (USER_EVENT_CREATED, 1, third, id3);
    cr_assert_eq (user_repo_insert (repo, third, &event4), MESH_ECONFLICT);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM users", NULL), 1);
    //  The adapter is still usable after the failures
    user_t *found = NULL;
    cr_assert_eq (user_repo_find (repo, user_id (first), &found), 0);
    s_assert_same_user (found, first);
    user_destroy (&found);
    user_destroy (&first);
    user_destroy (&second);
    user_destroy (&again);
    user_destroy (&third);
    user_repo_destroy (&repo);
}

//  Destroy `count` users, one more and the repository.
static void
s_destroy_all (user_t **users, int count, user_t **stored, user_repo_t **repo)
{
    for (int index = 0; index < count; index++)
        user_destroy (&users[index]);
    user_destroy (stored);
    user_repo_destroy (repo);
}

//  User 1 with `email`, inserted with event 1 (event id number 9001); the
//  caller destroys it.
static user_t *
s_insert_stored (user_repo_t *repo, const char *email)
{
    user_t *stored = s_user (1, "Stored", email, S_T0, S_T0);
    char event_id[USER_ID_SIZE];
    user_event_t event = s_event (USER_EVENT_CREATED, 1, stored, event_id);
    cr_assert_eq (user_repo_insert (repo, stored, &event), 0);
    return stored;
}

Test (user_repo_pg, insert_many_commits_once_and_conflicts_only_the_taken)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    user_t *stored = s_insert_stored (repo, "taken@example.com");
    //  Free, taken by the stored user, free, taken by the first of this
    //  call (another id), free; the free ones in no email order
    const char *emails[5] = {"zed@example.com", "taken@example.com", "amy@example.com",
                             "zed@example.com", "mo@example.com"};
    static const char *traces[5] = {
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL, NULL, NULL,
        "00-11111111111111111111111111111111-2222222222222222-01"};
    user_t *users[5];
    user_event_t events[5];
    char event_ids[5][USER_ID_SIZE];
    for (int index = 0; index < 5; index++) {
        users[index] = s_user (10 + index, "Batch", emails[index], S_T0, S_T0);
        events[index] = s_event (USER_EVENT_CREATED, 10 + index, users[index], event_ids[index]);
        events[index].trace = traces[index];
    }
    int rcs[5] = {-1, -1, -1, -1, -1};
    user_repo_insert_many (repo, (const user_t *const *) users, events, 5, rcs);
    int want[5] = {0, MESH_ECONFLICT, 0, MESH_ECONFLICT, 0};
    for (int index = 0; index < 5; index++)
        cr_assert_eq (rcs[index], want[index], "create %d: %d", index, rcs[index]);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM users", NULL), 4);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox", NULL), 4);
    //  The three stored ones are one transaction: one xmin
    cr_assert_eq (mesh_test_pg_long (s_pg.admin,
                                     "SELECT count(DISTINCT xmin::text) FROM users"
                                     " WHERE email <> 'taken@example.com'",
                                     NULL),
                  1);
    for (int index = 0; index < 5; index += 2) {
        user_t *found = NULL;
        cr_assert_eq (user_repo_find (repo, user_id (users[index]), &found), 0);
        s_assert_same_user (found, users[index]);
        user_destroy (&found);
    }
    //  Each event with its own trace
    cr_assert_eq (mesh_test_pg_long (s_pg.admin,
                                     "SELECT count(*) FROM outbox WHERE event_id = $1::uuid"
                                     " AND trace = '00-0af7651916cd43dd8448eb211c80319c-"
                                     "b7ad6b7169203331-01'",
                                     event_ids[0]),
                  1);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin,
                                     "SELECT count(*) FROM outbox WHERE event_id = $1::uuid"
                                     " AND trace = '00-11111111111111111111111111111111-"
                                     "2222222222222222-01'",
                                     event_ids[4]),
                  1);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin,
                                     "SELECT count(*) FROM outbox WHERE event_id = $1::uuid"
                                     " AND trace IS NULL",
                                     event_ids[2]),
                  1);
    s_destroy_all (users, 5, &stored, &repo);
}

Test (user_repo_pg, batched_inserts_and_gets_trace_each_statement_under_its_own_request)
{
    s_need_database ();
    otlp_test_t otlp;
    otlp_test_start (&otlp, 200);
    const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint,
                         "OTEL_BSP_SCHEDULE_DELAY", "50", NULL};
    mesh_trace_config_t config;
    char error[256];
    cr_assert_eq (otlp_test_config_read (env, &config, error, sizeof error), 0, "%s", error);
    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_tracer_t *tracer = mesh_tracer_new (&config, metrics);
    cr_assert_not_null (tracer);
    user_pg_metrics_t *pg_metrics = user_pg_metrics_new (metrics);
    user_pg_metrics_set_tracer (pg_metrics, tracer);
    int err = 1;
    user_repo_t *repo = user_repo_pg_new (s_pg.conninfo, pg_metrics, &err);
    cr_assert_not_null (repo, "user_repo_pg_new: %s", mesh_strerror (err));
    //  Three creates of three sampled requests, stored by one pipeline
    static const char *traces[3] = {
        "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1-00000000000000a1-01",
        "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2-00000000000000a2-01",
        "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3-00000000000000a3-01"};
    const char *emails[3] = {"t1@example.com", "t2@example.com", "t3@example.com"};
    user_t *users[3];
    user_event_t events[3];
    char event_ids[3][USER_ID_SIZE];
    for (int index = 0; index < 3; index++) {
        users[index] = s_user (30 + index, "Traced", emails[index], S_T0, S_T0);
        events[index] = s_event (USER_EVENT_CREATED, 30 + index, users[index], event_ids[index]);
        events[index].trace = traces[index];
    }
    int rcs[3] = {-1, -1, -1};
    user_repo_insert_many (repo, (const user_t *const *) users, events, 3, rcs);
    for (int index = 0; index < 3; index++) {
        cr_assert_eq (rcs[index], 0, "create %d: %d", index, rcs[index]);
        char trace_id[33], parent[17];
        snprintf (trace_id, sizeof trace_id, "%.32s", traces[index] + 3);
        snprintf (parent, sizeof parent, "%.16s", traces[index] + 36);
        json_t *spans = otlp_test_wait (&otlp, trace_id, 1, 10000);
        cr_assert_not_null (spans, "no span of trace %s", trace_id);
        json_t *insert = otlp_test_find (spans, NULL, "user_insert");
        cr_assert_not_null (insert, "trace %s has no user_insert span", trace_id);
        cr_assert_str_eq (json_string_value (json_object_get (insert, "parentSpanId")), parent);
        cr_assert_str_eq (otlp_test_attr (insert, "db.operation"), "INSERT");
        json_decref (spans);
    }
    //  The three read back by one pipeline of gets, each get of its own
    //  request: a user_find span each, under that request's trace
    static const char *get_traces[3] = {
        "00-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb1-00000000000000b1-01",
        "00-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2-00000000000000b2-01",
        "00-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb3-00000000000000b3-01"};
    const char *ids[3] = {user_id (users[0]), user_id (users[1]), user_id (users[2])};
    user_t *found[3] = {NULL};
    cr_assert_eq (user_repo_find_many (repo, ids, get_traces, 3, found, rcs), 0);
    for (int index = 0; index < 3; index++) {
        cr_assert_eq (rcs[index], 0, "get %d: %d", index, rcs[index]);
        cr_assert_str_eq (user_id (found[index]), ids[index]);
        char trace_id[33], parent[17];
        snprintf (trace_id, sizeof trace_id, "%.32s", get_traces[index] + 3);
        snprintf (parent, sizeof parent, "%.16s", get_traces[index] + 36);
        json_t *spans = otlp_test_wait (&otlp, trace_id, 1, 10000);
        cr_assert_not_null (spans, "no span of trace %s", trace_id);
        cr_assert_eq (json_array_size (spans), 1, "trace %s: one get, one span", trace_id);
        json_t *find = otlp_test_find (spans, NULL, "user_find");
        cr_assert_not_null (find, "trace %s has no user_find span", trace_id);
        cr_assert_str_eq (json_string_value (json_object_get (find, "parentSpanId")), parent);
        cr_assert_str_eq (otlp_test_attr (find, "db.operation"), "SELECT");
        json_decref (spans);
        user_destroy (&found[index]);
        user_destroy (&users[index]);
    }
    user_repo_destroy (&repo);
    mesh_tracer_destroy (&tracer);
    user_pg_metrics_destroy (&pg_metrics);
    mesh_metrics_destroy (&metrics);
    otlp_test_stop (&otlp);
}

Test (user_repo_pg, insert_many_whose_transaction_fails_tries_each_alone)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    user_t *stored = s_insert_stored (repo, "stored@example.com");
    //  The middle create reuses the stored event's id: its outbox INSERT
    //  fails (unique event_id), which aborts the whole pipeline
    user_t *users[3];
    user_event_t events[3];
    char event_ids[3][USER_ID_SIZE];
    const char *emails[3] = {"a@example.com", "b@example.com", "c@example.com"};
    for (int index = 0; index < 3; index++) {
        users[index] = s_user (20 + index, "Batch", emails[index], S_T0, S_T0);
        events[index] = s_event (USER_EVENT_CREATED, index == 1? 1: 20 + index, users[index],
                                 event_ids[index]);
    }
    int rcs[3] = {-1, -1, -1};
    user_repo_insert_many (repo, (const user_t *const *) users, events, 3, rcs);
    cr_assert_eq (rcs[0], 0);
    cr_assert_eq (rcs[1], MESH_ECONFLICT);
    cr_assert_eq (rcs[2], 0);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM users", NULL), 3);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox", NULL), 3);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin,
                                     "SELECT count(*) FROM users WHERE email = 'b@example.com'",
                                     NULL),
                  0);
    //  The connection left pipeline mode clean: a plain call works
    user_t *found = NULL;
    cr_assert_eq (user_repo_find (repo, user_id (users[2]), &found), 0);
    user_destroy (&found);
    s_destroy_all (users, 3, &stored, &repo);
}

Test (user_repo_pg, update_changes_the_row_and_writes_an_event)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    user_t *ada = s_user (1, "Ada", "ada@example.com", S_T0, S_T0);
    user_t *bob = s_user (2, "Bob", "bob@example.com", S_T0, S_T0);
    char ids[5][USER_ID_SIZE];
    user_event_t event = s_event (USER_EVENT_CREATED, 1, ada, ids[0]);
    cr_assert_eq (user_repo_insert (repo, ada, &event), 0);
    event = s_event (USER_EVENT_CREATED, 2, bob, ids[1]);
    cr_assert_eq (user_repo_insert (repo, bob, &event), 0);

    //  created_at stays as stored whatever the user value says
    user_t *changed = s_user (1, "Ada King", "ada.king@example.com", S_T0 + 5, S_T0 + 1000001);
    event = s_event (USER_EVENT_UPDATED, 3, changed, ids[2]);
    cr_assert_eq (user_repo_update (repo, changed, &event), 0);
    user_t *found = NULL;
    cr_assert_eq (user_repo_find (repo, user_id (ada), &found), 0);
    user_t *want = s_user (1, "Ada King", "ada.king@example.com", S_T0, S_T0 + 1000001);
    s_assert_same_user (found, want);
    user_destroy (&found);
    s_assert_outbox (ids[2], USER_EVENT_UPDATED, changed, S_T0 + 1000001);

    //  Another user's email: conflict, nothing changed, no event
    user_t *clash = s_user (1, "Ada", "bob@example.com", S_T0, S_T0 + 2000000);
    event = s_event (USER_EVENT_UPDATED, 4, clash, ids[3]);
    cr_assert_eq (user_repo_update (repo, clash, &event), MESH_ECONFLICT);
    cr_assert_eq (user_repo_find (repo, user_id (ada), &found), 0);
    s_assert_same_user (found, want);
    user_destroy (&found);

    //  A user that is not there: not found, no event
    user_t *ghost = s_user (9, "Ghost", "ghost@example.com", S_T0, S_T0);
    event = s_event (USER_EVENT_UPDATED, 5, ghost, ids[4]);
    cr_assert_eq (user_repo_update (repo, ghost, &event), MESH_ENOTFOUND);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox", NULL), 3);

    user_destroy (&ada);
    user_destroy (&bob);
    user_destroy (&changed);
    user_destroy (&want);
    user_destroy (&clash);
    user_destroy (&ghost);
    user_repo_destroy (&repo);
}

Test (user_repo_pg, remove_deletes_and_writes_an_event)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    user_t *ada = s_user (1, "Ada", "ada@example.com", S_T0, S_T0 + 3);
    char ids[3][USER_ID_SIZE];
    user_event_t event = s_event (USER_EVENT_CREATED, 1, ada, ids[0]);
    cr_assert_eq (user_repo_insert (repo, ada, &event), 0);
    event = s_event (USER_EVENT_DELETED, 2, ada, ids[1]);
    event.time_us = S_T0 + 99;
    cr_assert_eq (user_repo_remove (repo, user_id (ada), &event), 0);
    s_assert_outbox (ids[1], USER_EVENT_DELETED, ada, S_T0 + 99);
    user_t *found = NULL;
    cr_assert_eq (user_repo_find (repo, user_id (ada), &found), MESH_ENOTFOUND);
    event = s_event (USER_EVENT_DELETED, 3, ada, ids[2]);
    cr_assert_eq (user_repo_remove (repo, user_id (ada), &event), MESH_ENOTFOUND);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox", NULL), 2);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM users", NULL), 0);
    user_destroy (&ada);
    user_repo_destroy (&repo);
}

Test (user_repo_pg, list_pages_by_keyset_in_id_order)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    user_t **out = NULL;
    size_t count = 99;
    cr_assert_eq (user_repo_list (repo, NULL, 10, &out, &count), 0);
    cr_assert_eq (count, 0);
    cr_assert_null (out);

    //  Inserted out of order; listed ascending
    int order[5] = {4, 1, 5, 3, 2};
    for (int index = 0; index < 5; index++) {
        char name[16], email[32], event_id[USER_ID_SIZE];
        snprintf (name, sizeof name, "User %d", order[index]);
        snprintf (email, sizeof email, "u%d@example.com", order[index]);
        user_t *user = s_user (order[index], name, email, S_T0 + order[index], S_T0);
        user_event_t event = s_event (USER_EVENT_CREATED, index, user, event_id);
        cr_assert_eq (user_repo_insert (repo, user, &event), 0);
        user_destroy (&user);
    }
    char after[USER_ID_SIZE] = "";
    int seen = 0;
    size_t sizes[4] = {2, 2, 1, 0};
    for (int page = 0; page < 4; page++) {
        cr_assert_eq (user_repo_list (repo, page ? after : NULL, 2, &out, &count), 0);
        cr_assert_eq (count, sizes[page], "page %d has %zu users", page, count);
        for (size_t index = 0; index < count; index++) {
            seen++;
            char want[USER_ID_SIZE];
            s_id (seen, want);
            cr_assert_str_eq (user_id (out[index]), want);
            cr_assert_eq (user_created_at_us (out[index]), S_T0 + seen);
            snprintf (after, sizeof after, "%s", user_id (out[index]));
            user_destroy (&out[index]);
        }
        free (out);
        out = NULL;
    }
    cr_assert_eq (seen, 5);
    //  A cursor that is not a stored id still pages from where it sorts
    char between[USER_ID_SIZE];
    s_id (0, between);
    cr_assert_eq (user_repo_list (repo, between, 100, &out, &count), 0);
    cr_assert_eq (count, 5);
    for (size_t index = 0; index < count; index++)
        user_destroy (&out[index]);
    free (out);
    user_repo_destroy (&repo);
}

Test (user_repo_pg, sql_injection_strings_are_stored_verbatim)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    const char *names[] = {
        "Robert'); DROP TABLE users;--",
        "x' OR '1'='1",
        "$1 \\x00 \\\\ \" ; -- /* */ E'\\''",
    };
    const char *emails[] = {
        "robert'--@example.com",
        "x'or'1'='1@example.com",
        "a$1{}|~`@example.com",
    };
    for (int index = 0; index < 3; index++) {
        char email[USER_EMAIL_SIZE];
        cr_assert_eq (
            user_email_normalize (emails[index], strlen (emails[index]), email, sizeof email, NULL),
            0, "%s", emails[index]);
        cr_assert_str_eq (email, emails[index]);
        user_t *user = s_user (index + 1, names[index], email, S_T0, S_T0);
        char event_id[USER_ID_SIZE];
        user_event_t event = s_event (USER_EVENT_CREATED, index, user, event_id);
        cr_assert_eq (user_repo_insert (repo, user, &event), 0, "%s", names[index]);
        user_t *found = NULL;
        cr_assert_eq (user_repo_find (repo, user_id (user), &found), 0);
        s_assert_same_user (found, user);
        user_destroy (&found);
        s_assert_outbox (event_id, USER_EVENT_CREATED, user, S_T0);
        user_destroy (&user);
    }
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM users", NULL), 3);
    user_repo_destroy (&repo);
}

Test (user_repo_pg, new_reports_unreachable_server_and_missing_schema)
{
    s_need_database ();
    int err = 0;
    user_repo_t *repo = user_repo_pg_new ("host=127.0.0.1 port=1 connect_timeout=5", NULL, &err);
    cr_assert_null (repo);
    cr_assert_eq (err, MESH_EUNAVAIL);
    //  A schema without the tables: the statements cannot be prepared
    char sql[160];
    snprintf (sql, sizeof sql, "CREATE SCHEMA %s_empty", s_pg.name);
    mesh_test_pg_exec (s_pg.admin, sql);
    char conninfo[1100];
    const char *url = getenv ("DATABASE_URL");
    if (strstr (url, "://"))
        snprintf (conninfo, sizeof conninfo, "%s%coptions=-csearch_path%%3D%s_empty", url,
                  strchr (url, '?') ? '&' : '?', s_pg.name);
    else
        snprintf (conninfo, sizeof conninfo, "%s options=-csearch_path=%s_empty", url, s_pg.name);
    repo = user_repo_pg_new (conninfo, NULL, &err);
    snprintf (sql, sizeof sql, "DROP SCHEMA %s_empty", s_pg.name);
    mesh_test_pg_exec (s_pg.admin, sql);
    cr_assert_null (repo);
    cr_assert_eq (err, MESH_EIO);
}

//  The app's environment: ids 1, 2, 3, ... and a clock that ticks 1 ms.
typedef struct {
    int next_id;
    int64_t now;
} s_env_state_t;

static void
s_make_id (void *arg, char out[USER_ID_SIZE])
{
    s_env_state_t *state = (s_env_state_t *)arg;
    s_id (++state->next_id, out);
}

static int64_t
s_now_us (void *arg)
{
    s_env_state_t *state = (s_env_state_t *)arg;
    state->now += 1000;
    return state->now;
}

Test (user_repo_pg, app_use_cases_end_to_end)
{
    s_need_database ();
    user_repo_t *repo = s_repo ();
    s_env_state_t state = {.next_id = 100, .now = S_T0};
    user_app_env_t env = {.make_id = s_make_id, .now_us = s_now_us, .arg = &state};
    user_app_t *app = user_app_new (repo, &env);
    cr_assert_not_null (app);

    const char *field = NULL, *why = NULL;
    user_t *created = NULL;
    const char *name = "  Grace Hopper ";
    const char *email = " Grace@Example.COM";
    cr_assert_eq (user_app_create (app, NULL, 0, name, strlen (name), email, strlen (email),
                                   &created, &field, &why),
                  0, "%s: %s", field, why);
    cr_assert_str_eq (user_name (created), "Grace Hopper");
    cr_assert_str_eq (user_email (created), "grace@example.com");

    //  The same email in another case is taken
    user_t *duplicate = NULL;
    const char *shout = "GRACE@example.com";
    cr_assert_eq (
        user_app_create (app, NULL, 0, "G", 1, shout, strlen (shout), &duplicate, &field, &why),
        MESH_ECONFLICT);
    cr_assert_null (duplicate);

    user_t *got = NULL;
    const char *upper = user_id (created);
    char upper_id[USER_ID_SIZE];
    for (int index = 0; index < USER_ID_LEN; index++)
        upper_id[index] =
            (char)(upper[index] >= 'a' && upper[index] <= 'f' ? upper[index] - 'a' + 'A'
                                                              : upper[index]);
    upper_id[USER_ID_LEN] = '\0';
    cr_assert_eq (user_app_get (app, upper_id, USER_ID_LEN, &got, &field, &why), 0);
    s_assert_same_user (got, created);
    user_destroy (&got);

    user_t *other = NULL;
    cr_assert_eq (
        user_app_create (app, NULL, 0, "Alan", 4, "alan@example.com", 16, &other, &field, &why), 0);
    user_page_t *page = NULL;
    int64_t limit = 1;
    cr_assert_eq (user_app_list (app, NULL, 0, &limit, &page, &field, &why), 0);
    cr_assert_eq (user_page_count (page), 1);
    s_assert_same_user (user_page_item (page, 0), created);
    cr_assert_not_null (user_page_next (page));
    char next[USER_ID_SIZE];
    snprintf (next, sizeof next, "%s", user_page_next (page));
    user_page_destroy (&page);
    cr_assert_eq (user_app_list (app, next, strlen (next), &limit, &page, &field, &why), 0);
    cr_assert_eq (user_page_count (page), 1);
    s_assert_same_user (user_page_item (page, 0), other);
    user_page_destroy (&page);

    cr_assert_eq (user_app_delete (app, NULL, 0, user_id (other), USER_ID_LEN, &field, &why), 0);
    cr_assert_eq (user_app_get (app, user_id (other), USER_ID_LEN, &got, &field, &why),
                  MESH_ENOTFOUND);
    //  Two creates and a delete: three events, each about its user
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox", NULL), 3);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT count(*) FROM outbox WHERE type = 'user.deleted'"
                                " AND subject = $1::uuid",
                                user_id (other)),
                  1);
    user_destroy (&created);
    user_destroy (&other);
    user_app_destroy (&app);
    user_repo_destroy (&repo);
}

Test (user_repo_pg, recovers_after_its_backend_is_terminated)
{
    s_need_database ();
    //  The adapter's backend is found by application_name
    char app_name[64];
    snprintf (app_name, sizeof app_name, "repo_pg_test_%ld", (long)getpid ());
    char conninfo[1200];
    snprintf (conninfo, sizeof conninfo, "%s%capplication_name=%s", s_pg.conninfo,
              strstr (s_pg.conninfo, "://") ? '&' : ' ', app_name);
    int err = 0;
    user_repo_t *repo = user_repo_pg_new (conninfo, NULL, &err);
    cr_assert_not_null (repo, "%s", mesh_strerror (err));
    user_t *ada = s_user (1, "Ada", "ada@example.com", S_T0, S_T0);
    char event_id[USER_ID_SIZE];
    user_event_t event = s_event (USER_EVENT_CREATED, 1, ada, event_id);
    cr_assert_eq (user_repo_insert (repo, ada, &event), 0);

    //  An administrator ends the session (SQLSTATE 57P01 on the next use);
    //  the timeout makes pg_terminate_backend wait until the backend is gone
    long pid =
        mesh_test_pg_long (s_pg.admin, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app_name);
    char pid_text[32];
    snprintf (pid_text, sizeof pid_text, "%ld", pid);
    cr_assert_eq (mesh_test_pg_long (s_pg.admin, "SELECT pg_terminate_backend($1::int, 10000)::int", pid_text), 1);
    user_t *found = NULL;
    cr_assert_eq (user_repo_find (repo, user_id (ada), &found), MESH_EUNAVAIL);
    cr_assert_null (found);
    //  The next call reconnects and prepares again
    cr_assert_eq (user_repo_find (repo, user_id (ada), &found), 0);
    s_assert_same_user (found, ada);
    user_destroy (&found);
    user_destroy (&ada);
    user_repo_destroy (&repo);
}
