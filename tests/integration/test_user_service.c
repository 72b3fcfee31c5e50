/*  =========================================================================
    test_user_service - mesh-user end to end: broker, real PostgreSQL, client
    Starts a broker and mesh-user (2 workers) on a fresh schema of the
    DATABASE_URL database (conninfo options=-csearch_path=...), then calls
    every method of service `user` through libmesh's client and checks the
    replies and error codes; finally SIGTERM must give exit status 0.
    Skipped when DATABASE_URL is not set.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"
#include "user_test.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static mesh_test_pg_schema_t s_pg;  //  This test's schema
static mesh_test_broker_t s_broker;
static mesh_proc_t *s_user;
static mesh_client_t *s_client;
static char s_admin_addr[64];       //  mesh-user's admin host:port

static void
s_setup (void)
{
    if (!mesh_test_pg_schema_new (&s_pg, "test_user_service"))
        return;     //  The test itself skips

    cr_assert (mesh_test_broker_start (&s_broker, 200, NULL), "broker did not start");
    snprintf (s_admin_addr, sizeof s_admin_addr, "127.0.0.1:%d", mesh_test_free_port ());
    s_user = user_test_start (&s_broker, s_pg.conninfo, 2, s_admin_addr, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "user", 2, 15000),
               "mesh-user did not register 2 workers; its log:\n%s", mesh_proc_log (s_user));
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
}

static void
s_teardown (void)
{
    mesh_client_destroy (&s_client);
    mesh_proc_destroy (&s_user);
    mesh_test_broker_stop (&s_broker);
    mesh_test_pg_schema_drop (&s_pg);
}

TestSuite (user_service, .init = s_setup, .fini = s_teardown, .timeout = 90.);

//  Short names for this file's many calls (user_test.h).
static mesh_reply_t
s_call (const char *method, const msgpack_sbuffer *body)
{
    return user_test_call (s_client, method, body, NULL, 0);
}

static mesh_reply_t
s_call_strings (const char *method, const char *const *pairs)
{
    return user_test_call_strings (s_client, method, pairs, NULL);
}

#define s_get user_test_get
#define s_str user_test_str
#define s_expect_code user_test_expect_code

static const char *
s_message (const mesh_reply_t *reply)
{
    static char message[512];
    return user_test_message (reply, message, sizeof message);
}

//  Create a user; returns its id in `id`.
static void
s_create (const char *name, const char *email, char id[64])
{
    mesh_reply_t reply = s_call_strings ("user.create",
                                         (const char *const[]) {"name", name, "email", email,
                                                                NULL});
    s_expect_code (&reply, MESH_CODE_OK);
    s_str (reply.body, "id", id, 64);
}

Test (user_service, every_method_and_error)
{
    if (!*s_pg.name)
        cr_skip_test ("DATABASE_URL is not set");
    char text[256], id[64], id2[64], id3[64];

    //  create: the email comes back trimmed and lower-cased
    mesh_reply_t reply = s_call_strings (
        "user.create",
        (const char *const[]) {"name", "  Ada Lovelace ", "email", " Ada@Example.COM ", NULL});
    s_expect_code (&reply, MESH_CODE_OK);
    s_str (reply.body, "id", id, sizeof id);
    cr_expect_eq (strlen (id), 36);
    cr_expect_str_eq (s_str (reply.body, "name", text, sizeof text), "Ada Lovelace");
    cr_expect_str_eq (s_str (reply.body, "email", text, sizeof text), "ada@example.com");
    s_str (reply.body, "created_at", text, sizeof text);
    cr_expect_eq (strlen (text), 24, "created_at %s", text);
    cr_expect_eq (text[23], 'Z');
    char created_at[256];
    snprintf (created_at, sizeof created_at, "%s", text);
    cr_expect_str_eq (s_str (reply.body, "updated_at", text, sizeof text), created_at);

    //  get
    reply = s_call_strings ("user.get", (const char *const[]) {"id", id, NULL});
    s_expect_code (&reply, MESH_CODE_OK);
    cr_expect_str_eq (s_str (reply.body, "email", text, sizeof text), "ada@example.com");
    cr_expect_str_eq (s_str (reply.body, "id", text, sizeof text), id);

    //  list in two pages of 2 (three users)
    s_create ("Grace", "grace@example.com", id2);
    s_create ("Linus", "linus@example.com", id3);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 1);
    mesh_pack_cstr (&packer, "limit");
    msgpack_pack_int (&packer, 2);
    reply = s_call ("user.list", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    s_expect_code (&reply, MESH_CODE_OK);
    const msgpack_object *items = s_get (reply.body, "items");
    cr_assert_not_null (items);
    cr_assert_eq (items->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq (items->via.array.size, 2);
    char first[64], second[64], next[64];
    s_str (&items->via.array.ptr[0], "id", first, sizeof first);
    s_str (&items->via.array.ptr[1], "id", second, sizeof second);
    cr_expect_lt (strcmp (first, second), 0, "ascending ids");
    s_str (reply.body, "next", next, sizeof next);
    cr_expect_str_eq (next, second);

    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 2);
    mesh_pack_cstr (&packer, "limit");
    msgpack_pack_int (&packer, 2);
    mesh_pack_cstr (&packer, "after");
    mesh_pack_cstr (&packer, next);
    reply = s_call ("user.list", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    s_expect_code (&reply, MESH_CODE_OK);
    items = s_get (reply.body, "items");
    cr_assert_eq (items->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq (items->via.array.size, 1);
    s_str (&items->via.array.ptr[0], "id", text, sizeof text);
    cr_expect_gt (strcmp (text, second), 0);
    const msgpack_object *last = s_get (reply.body, "next");
    cr_assert_not_null (last);
    cr_expect_eq (last->type, MSGPACK_OBJECT_NIL, "last page has next = nil");

    //  list with no body at all: the default page
    reply = s_call ("user.list", NULL);
    s_expect_code (&reply, MESH_CODE_OK);
    items = s_get (reply.body, "items");
    cr_expect_eq (items->via.array.size, 3);

    //  update the name only
    reply = s_call_strings ("user.update",
                            (const char *const[]) {"id", id, "name", "Augusta Ada", NULL});
    s_expect_code (&reply, MESH_CODE_OK);
    cr_expect_str_eq (s_str (reply.body, "name", text, sizeof text), "Augusta Ada");
    cr_expect_str_eq (s_str (reply.body, "email", text, sizeof text), "ada@example.com");
    cr_expect_str_eq (s_str (reply.body, "created_at", text, sizeof text), created_at);

    //  duplicate email (any case) -> already_exists, on create and on update
    reply = s_call_strings ("user.create", (const char *const[]) {"name", "Other", "email",
                                                                  "ADA@example.com", NULL});
    s_expect_code (&reply, MESH_CODE_ALREADY_EXISTS);
    reply = s_call_strings ("user.update",
                            (const char *const[]) {"id", id2, "email", "ada@example.com", NULL});
    s_expect_code (&reply, MESH_CODE_ALREADY_EXISTS);

    //  bad email -> invalid_argument naming the field
    reply = s_call_strings ("user.create",
                            (const char *const[]) {"name", "Bob", "email", "not-an-email", NULL});
    s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    cr_expect (strstr (s_message (&reply), "'email'"), "message: %s", s_message (&reply));

    //  email of the wrong type
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 2);
    mesh_pack_cstr (&packer, "name");
    mesh_pack_cstr (&packer, "Bob");
    mesh_pack_cstr (&packer, "email");
    msgpack_pack_int (&packer, 42);
    reply = s_call ("user.create", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    cr_expect_str_eq (s_message (&reply), "field 'email' must be a string");

    //  missing field
    reply = s_call_strings ("user.create", (const char *const[]) {"name", "Bob", NULL});
    s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    cr_expect (strstr (s_message (&reply), "'email'"), "message: %s", s_message (&reply));

    //  a bad id names "id"
    reply = s_call_strings ("user.get", (const char *const[]) {"id", "nope", NULL});
    s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    cr_expect (strstr (s_message (&reply), "'id'"), "message: %s", s_message (&reply));

    //  body not a map
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    mesh_pack_cstr (&packer, "just a string");
    reply = s_call ("user.get", &buffer);
    msgpack_sbuffer_destroy (&buffer);
    s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    reply = s_call ("user.create", NULL);
    s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);

    //  unknown method
    reply = s_call_strings ("user.frobnicate", (const char *const[]) {NULL});
    s_expect_code (&reply, MESH_CODE_UNIMPLEMENTED);

    //  events.list: after_seq is required; limit 1..1000; wrong types named
    reply = s_call_strings ("events.list", (const char *const[]) {NULL});
    s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    cr_expect (strstr (s_message (&reply), "'after_seq'"), "message: %s", s_message (&reply));
    reply = s_call_strings ("events.list", (const char *const[]) {"after_seq", "0", NULL});
    s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    cr_expect_str_eq (s_message (&reply), "field 'after_seq' must be an integer");
    const int64_t limits[][2] = { {0, 0}, {0, 1001}, {-1, 10} };
    for (size_t index = 0; index < sizeof limits / sizeof limits[0]; index++) {
        msgpack_sbuffer_init (&buffer);
        msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&packer, 2);
        mesh_pack_cstr (&packer, "after_seq");
        msgpack_pack_int64 (&packer, limits[index][0]);
        mesh_pack_cstr (&packer, "limit");
        msgpack_pack_int64 (&packer, limits[index][1]);
        reply = s_call ("events.list", &buffer);
        msgpack_sbuffer_destroy (&buffer);
        s_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
        cr_expect (strstr (s_message (&reply), limits[index][0] < 0 ? "'after_seq'" : "'limit'"),
                   "message: %s", s_message (&reply));
    }

    //  events.list: so far 3 creates and 1 update, in this order, seq 1..4
    //  (numbered by the relay: poll until it has)
    user_test_events_t *events = NULL;
    int64_t numbered_by = mesh_mono_ms () + 10000;
    do {
        user_test_events_destroy (&events);
        events = user_test_events_new (16);
        user_test_events_fetch_all (events, s_client, 2);
    } while (user_test_events_distinct (events) < 4 && mesh_mono_ms () < numbered_by);
    cr_assert_eq (user_test_events_distinct (events), 4);
    cr_expect_str_eq (events->type[1], "user.created");
    cr_expect_str_eq (events->subject[1], id);
    cr_expect_str_eq (events->type[2], "user.created");
    cr_expect_str_eq (events->subject[2], id2);
    cr_expect_str_eq (events->type[3], "user.created");
    cr_expect_str_eq (events->subject[3], id3);
    cr_expect_str_eq (events->type[4], "user.updated");
    cr_expect_str_eq (events->subject[4], id);
    user_test_events_destroy (&events);

    //  delete, then get -> not_found; delete again -> not_found
    reply = s_call_strings ("user.delete", (const char *const[]) {"id", id, NULL});
    s_expect_code (&reply, MESH_CODE_OK);
    cr_expect_eq (reply.body->type, MSGPACK_OBJECT_MAP);
    cr_expect_eq (reply.body->via.map.size, 0);
    reply = s_call_strings ("user.get", (const char *const[]) {"id", id, NULL});
    s_expect_code (&reply, MESH_CODE_NOT_FOUND);
    reply = s_call_strings ("user.delete", (const char *const[]) {"id", id, NULL});
    s_expect_code (&reply, MESH_CODE_NOT_FOUND);

    //  the admin port counts requests by method and outcome
    char url[128];
    long status = 0;
    snprintf (url, sizeof url, "http://%s/ready", s_admin_addr);
    free (mesh_test_http_get (url, &status));
    cr_expect_eq (status, 200, "/ready");
    snprintf (url, sizeof url, "http://%s/metrics", s_admin_addr);
    //  The relay publishes the delete's event a moment after the reply:
    //  poll until it has (bounded)
    char *metrics = NULL;
    int64_t until = mesh_mono_ms () + 10000;
    do {
        free (metrics);
        metrics = mesh_test_http_get (url, &status);
        cr_assert_eq (status, 200);
    } while (mesh_test_metric (metrics, "mesh_user_relay_last_seq", NULL) < 5
             && mesh_mono_ms () < until);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_requests_total",
                                    "method=\"user.create\",outcome=\"ok\""), 3);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_requests_total",
                                    "method=\"user.get\",outcome=\"not_found\""), 1);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_requests_total",
                                    "method=\"other\",outcome=\"unimplemented\""), 1);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_relay_leader", NULL), 1);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_db_connections", "state=\"up\""), 2);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_db_connections", "state=\"down\""), 0);
    cr_expect_gt (mesh_test_metric (metrics, "mesh_user_db_query_duration_seconds_count",
                                    "statement=\"user_insert\""), 0);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_relay_last_seq", NULL), 5);
    cr_expect_geq (mesh_test_metric (metrics, "mesh_user_events_published_total", NULL), 5);
    free (metrics);

    //  SIGTERM: a clean exit 0
    mesh_proc_signal (s_user, SIGTERM);
    int exit_status = -1;
    cr_assert (mesh_proc_wait_exit (s_user, 10000, &exit_status), "mesh-user did not exit");
    cr_expect (WIFEXITED (exit_status) && WEXITSTATUS (exit_status) == 0,
               "exit status %d", exit_status);
}
