/*  =========================================================================
    test_actor - who did what: the request's actor from the envelope into
    the outbox, the published events, events.list and the audit log
    Real broker, mesh-user, mesh-audit and PostgreSQL (a fresh schema of
    DATABASE_URL per test). Requests are made by a mesh client that sets
    the envelope's actor itself (without CURVE the actor is as claimed),
    and by `meshctl call --actor`. Skipped when DATABASE_URL is not set.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"
#include "mesh_test_http.h"
#include "user_test.h"

#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#define S_WAIT_MS 20000 //  Bound of every wait for an event or the audit log

static mesh_test_mesh_t s_mesh;
static mesh_client_t *s_client;
static mesh_test_sockets_t *s_sockets;

static void
s_setup (void)
{
    if (!mesh_test_mesh_start (&s_mesh, "test_actor", 0, 1, NULL, NULL))
        return;
    s_sockets = mesh_test_sockets_new (1000);
    s_client = mesh_client_new (NULL, s_mesh.broker.endpoint, NULL);
    cr_assert_not_null (s_client);
}

static void
s_teardown (void)
{
    mesh_client_destroy (&s_client);
    mesh_test_sockets_destroy (&s_sockets);
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (actor, .init = s_setup, .fini = s_teardown, .timeout = 180.);

#define S_SKIP_WITHOUT_DATABASE()                                                                  \
    do {                                                                                           \
        if (!s_mesh.gateway)                                                                       \
            cr_skip_test ("DATABASE_URL is not set");                                              \
    } while (0)

//  A user change with string fields `pairs` as `actor` (NULL: none); asserts
//  success and copies the user's id into `id` (when not NULL, 40 bytes).
static void
s_change (const char *method, const char *const *pairs, const char *idem, const char *actor,
          char *id)
{
    msgpack_sbuffer body;
    user_test_pack_strings (&body, pairs);
    mesh_reply_t reply = user_test_call_as (s_client, method, &body, idem, actor, 0);
    msgpack_sbuffer_destroy (&body);
    user_test_expect_code (&reply, MESH_CODE_OK);
    if (id)
        user_test_str (reply.body, "id", id, 40);
}

//  A number from SQL with one text parameter (NULL: none), on the test's
//  admin connection. `format` names schemas only (the data is $1).
static long s_sql (const char *param, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static long
s_sql (const char *param, const char *format, ...)
{
    char sql[512];
    va_list args;
    va_start (args, format);
    vsnprintf (sql, sizeof sql, format, args);
    va_end (args);
    return mesh_test_pg_long (s_mesh.pg.admin, sql, param);
}

//  Subscribe to user events and make sure the subscription has reached the
//  relay's PUB (a subscription travels up through the broker's XPUB/XSUB
//  while events may already flow): create warm-up users until one's event
//  arrives; every event after that one reaches the socket. Returns the SUB
//  socket; *last is the seq of the last warm-up event (each create is one
//  event, numbered 1, 2, ... without gaps), so the test's own come after.
static void *
s_subscribe (user_test_events_t *events, size_t *last)
{
    void *sub = mesh_test_sockets_open (s_sockets, ZMQ_SUB, s_mesh.broker.xpub);
    cr_assert_eq (zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "user.", 5), 0);
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    size_t warmups = 0, seen = 0;
    while (seen == 0 && mesh_mono_ms () < until) {
        char email[64];
        snprintf (email, sizeof email, "warmup%zu@actor.example", warmups++);
        s_change ("user.create", (const char *const[]){"name", "Warm", "email", email, NULL}, NULL,
                  NULL, NULL);
        seen = user_test_events_receive (events, sub, 1, 500);
    }
    cr_assert_gt (seen, 0, "no event reached the subscriber");
    *last = warmups;
    return sub;
}

//  Receive until every seq of from..to has been seen (bounded).
static void
s_receive_range (user_test_events_t *events, void *sub, size_t from, size_t to)
{
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    for (size_t seq = from; seq <= to; seq++)
        while (events->seen[seq] == 0 && mesh_mono_ms () < until)
            user_test_events_receive (events, sub, user_test_events_distinct (events) + 1,
                                      (int)(until - mesh_mono_ms ()));
    for (size_t seq = from; seq <= to; seq++)
        cr_assert_gt (events->seen[seq], 0, "seq %zu never reached the subscriber", seq);
}

//  One audit.list call with string fields `pairs`; any reply code. The
//  reply is borrowed until the next call.
static mesh_reply_t
s_audit_call (const char *const *pairs)
{
    msgpack_sbuffer body;
    user_test_pack_strings (&body, pairs);
    mesh_call_t call = {.service = "audit",
                        .method = "audit.list",
                        .body = body.data,
                        .body_len = body.size,
                        .timeout_ms = 10000};
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    msgpack_sbuffer_destroy (&body);
    return reply;
}

//  audit.list with string fields `pairs`, until it lists at least `count`
//  entries (bounded: mesh-audit takes events asynchronously).
static mesh_reply_t
s_audit_list (const char *const *pairs, size_t count)
{
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    while (true) {
        mesh_reply_t reply = s_audit_call (pairs);
        user_test_expect_code (&reply, MESH_CODE_OK);
        const msgpack_object *items = user_test_get (reply.body, "items");
        cr_assert (items && items->type == MSGPACK_OBJECT_ARRAY);
        if (items->via.array.size >= count || mesh_mono_ms () >= until)
            return reply;
        mesh_test_pg_exec (s_mesh.pg.admin, "SELECT pg_sleep(0.05)"); //  Poll pace
    }
}

//  Item `index` of the reply's items.
static const msgpack_object *
s_item (const mesh_reply_t *reply, uint32_t index)
{
    const msgpack_object *items = user_test_get (reply->body, "items");
    cr_assert_lt (index, items->via.array.size);
    return &items->via.array.ptr[index];
}

//  Assert that an audit entry's actor is `actor` (NULL: nil).
static void
s_expect_entry_actor (const msgpack_object *entry, const char *actor)
{
    const msgpack_object *value = user_test_get (entry, "actor");
    cr_assert_not_null (value, "every audit entry has 'actor'");
    if (!actor) {
        cr_assert_eq (value->type, MSGPACK_OBJECT_NIL, "actor should be nil");
        return;
    }
    char text[USER_TEST_ACTOR_SIZE];
    cr_assert_str_eq (user_test_str (entry, "actor", text, sizeof text), actor);
}

//  --------------------------------------------------------------------------
//  create, update and delete as ops-alice: each event says ops-alice, live
//  and in events.list, and so does the audit log, which lists by actor; a
//  change without an actor has none anywhere.
Test (actor, travels_from_request_to_events_and_audit_log)
{
    S_SKIP_WITHOUT_DATABASE ();
    mesh_test_mesh_audit_start (&s_mesh);
    user_test_events_t *live = user_test_events_new (64);
    size_t last = 0;
    void *sub = s_subscribe (live, &last);

    char ada[40], bob[40];
    s_change ("user.create",
              (const char *const[]){"name", "Ada", "email", "ada@actor.example", NULL}, NULL,
              "ops-alice", ada);
    s_change ("user.update", (const char *const[]){"id", ada, "name", "Ada L.", NULL}, NULL,
              "ops-alice", NULL);
    s_change ("user.delete", (const char *const[]){"id", ada, NULL}, NULL, "ops-alice", NULL);
    s_change ("user.create",
              (const char *const[]){"name", "Bob", "email", "bob@actor.example", NULL}, NULL, NULL,
              bob);
    size_t first = last + 1;
    s_receive_range (live, sub, first, first + 3);

    user_test_events_t *listed = user_test_events_new (64);
    user_test_events_fetch_all (listed, s_client, 2);
    static const char *const types[] = {"user.created", "user.updated", "user.deleted",
                                        "user.created"};
    for (size_t seq = first; seq < first + 4; seq++) {
        const char *subject = seq < first + 3 ? ada : bob;
        const char *actor = seq < first + 3 ? "ops-alice" : "";
        user_test_events_t *records[] = {live, listed};
        for (size_t record = 0; record < 2; record++) {
            cr_assert_eq (records[record]->seen[seq], 1, "seq %zu once (record %zu)", seq, record);
            cr_assert_str_eq (records[record]->type[seq], types[seq - first]);
            cr_assert_str_eq (records[record]->subject[seq], subject);
            cr_assert_str_eq (records[record]->actor[seq], actor, "seq %zu (record %zu)", seq,
                              record);
        }
    }
    //  The warm-up creates named no actor either
    for (size_t seq = 1; seq < first; seq++)
        cr_assert_str_eq (listed->actor[seq], "");
    user_test_events_destroy (&live);
    user_test_events_destroy (&listed);

    //  The outbox row, as the relay and events.list read it
    cr_assert_eq (
        s_sql ("ops-alice", "SELECT count(*) FROM %s.outbox WHERE actor = $1", s_mesh.pg.name), 3);
    cr_assert_eq (
        s_sql (NULL, "SELECT count(*) FROM %s.outbox WHERE actor IS NULL", s_mesh.pg.name),
        (long)first);

    //  The audit log: by actor, exactly Ada's three changes, in order
    mesh_reply_t reply = s_audit_list ((const char *const[]){"actor", "ops-alice", NULL}, 3);
    const msgpack_object *items = user_test_get (reply.body, "items");
    cr_assert_eq (items->via.array.size, 3);
    for (uint32_t index = 0; index < 3; index++) {
        char text[64];
        cr_assert_str_eq (user_test_str (s_item (&reply, index), "type", text, sizeof text),
                          types[index]);
        cr_assert_str_eq (user_test_str (s_item (&reply, index), "subject", text, sizeof text),
                          ada);
        s_expect_entry_actor (s_item (&reply, index), "ops-alice");
    }
    //  Bob's creation: actor nil
    reply = s_audit_list ((const char *const[]){"user_id", bob, NULL}, 1);
    cr_assert_eq (user_test_get (reply.body, "items")->via.array.size, 1);
    s_expect_entry_actor (s_item (&reply, 0), NULL);
    //  Nobody else's changes
    reply = s_audit_list ((const char *const[]){"actor", "ops-bob", NULL}, 0);
    cr_assert_eq (user_test_get (reply.body, "items")->via.array.size, 0);
    //  A filter that cannot be an actor
    reply = s_audit_call ((const char *const[]){"actor", "ops\nalice", NULL});
    user_test_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    char message[256];
    cr_assert (strstr (user_test_message (&reply, message, sizeof message), "actor"), "%s",
               message);
}

//  --------------------------------------------------------------------------
//  An actor that looks like SQL is data: stored, published and audited
//  byte for byte, and every table is still there.
Test (actor, that_looks_like_sql_is_stored_verbatim)
{
    S_SKIP_WITHOUT_DATABASE ();
    mesh_test_mesh_audit_start (&s_mesh);
    static const char actor[] =
        "x'); DROP TABLE outbox; DROP TABLE audit_events; -- \\' \"$1\" Łódź";
    char id[40];
    s_change ("user.create",
              (const char *const[]){"name", "Eve", "email", "eve@actor.example", NULL}, NULL, actor,
              id);
    cr_assert_eq (s_sql (actor, "SELECT count(*) FROM %s.outbox WHERE actor = $1", s_mesh.pg.name),
                  1);
    mesh_reply_t reply = s_audit_list ((const char *const[]){"actor", actor, NULL}, 1);
    cr_assert_eq (user_test_get (reply.body, "items")->via.array.size, 1);
    s_expect_entry_actor (s_item (&reply, 0), actor);
    cr_assert_eq (
        s_sql (actor, "SELECT count(*) FROM %s.audit_events WHERE actor = $1", s_mesh.audit_schema),
        1);
    cr_assert_eq (s_sql (NULL, "SELECT count(*) FROM %s.users", s_mesh.pg.name), 1);
    user_test_events_t *listed = user_test_events_new (8);
    user_test_events_fetch_all (listed, s_client, 10);
    cr_assert_str_eq (listed->actor[1], actor);
    user_test_events_destroy (&listed);
}

//  --------------------------------------------------------------------------
//  A retried change (same idempotency key) by the same actor gets the first
//  reply and writes nothing; the same key from another actor is that
//  caller's mistake (failed_precondition), never a way to read the first
//  caller's stored reply, and writes nothing either.
Test (actor, idempotency_keys_belong_to_their_actor)
{
    S_SKIP_WITHOUT_DATABASE ();
    const char *const pairs[] = {"name", "Ida", "email", "ida@actor.example", NULL};
    char first[40], again[40];
    s_change ("user.create", pairs, "idem-actor-1", "ops-first", first);
    s_change ("user.create", pairs, "idem-actor-1", "ops-first", again);
    cr_assert_str_eq (again, first, "the replay is the first reply");

    msgpack_sbuffer body;
    user_test_pack_strings (&body, pairs);
    mesh_reply_t reply = user_test_call_as (s_client, "user.create", &body, "idem-actor-1",
                                            "ops-second", 0);
    msgpack_sbuffer_destroy (&body);
    user_test_expect_code (&reply, MESH_CODE_FAILED_PRECONDITION);
    cr_assert_eq (s_sql (NULL, "SELECT count(*) FROM %s.outbox", s_mesh.pg.name), 1);
    cr_assert_eq (
        s_sql ("ops-first", "SELECT count(*) FROM %s.outbox WHERE actor = $1", s_mesh.pg.name), 1);
}

//  An actor the domain refuses (a newline would forge a log line) is
//  invalid_argument naming the field, and nothing is written.
Test (actor, that_is_not_text_is_invalid_argument)
{
    S_SKIP_WITHOUT_DATABASE ();
    msgpack_sbuffer body;
    user_test_pack_strings (
        &body, (const char *const[]){"name", "Mal", "email", "mal@actor.example", NULL});
    mesh_reply_t reply = user_test_call_as (s_client, "user.create", &body, NULL, "ops\nalice", 0);
    msgpack_sbuffer_destroy (&body);
    user_test_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    char message[256];
    cr_assert (strstr (user_test_message (&reply, message, sizeof message), "'actor'"), "%s",
               message);
    cr_assert_eq (s_sql (NULL, "SELECT count(*) FROM %s.outbox", s_mesh.pg.name), 0);
    cr_assert_eq (s_sql (NULL, "SELECT count(*) FROM %s.users", s_mesh.pg.name), 0);
}

//  Run meshctl with `args` (NULL-terminated, after the binary); returns its
//  exit status (asserts it exits within 15 s).
static int
s_meshctl (const char *const *args)
{
    char bin[1024];
    const char *argv[16] = {mesh_test_bin ("meshctl", bin, sizeof bin)};
    size_t count = 1;
    for (; args[count - 1] && count < 15; count++)
        argv[count] = args[count - 1];
    argv[count] = NULL;
    mesh_proc_t *proc = mesh_proc_start (argv, NULL);
    cr_assert_not_null (proc);
    int status = -1;
    cr_assert (mesh_proc_wait_exit (proc, 15000, &status), "meshctl did not exit");
    mesh_proc_destroy (&proc);
    cr_assert (WIFEXITED (status));
    return WEXITSTATUS (status);
}

//  --------------------------------------------------------------------------
//  meshctl call --actor sets the envelope's actor.
Test (actor, meshctl_call_sends_the_actor)
{
    S_SKIP_WITHOUT_DATABASE ();
    cr_assert_eq (
        s_meshctl ((const char *const[]){
            "call", "user", "user.create", "{\"name\":\"Cli\",\"email\":\"cli@actor.example\"}",
            "--broker", s_mesh.broker.endpoint, "--actor", "ops-meshctl", NULL}),
        0);
    cr_assert_eq (
        s_sql ("ops-meshctl", "SELECT count(*) FROM %s.outbox WHERE actor = $1", s_mesh.pg.name),
        1);
    //  An empty actor is a usage error, not "none"
    cr_assert_eq (
        s_meshctl ((const char *const[]){"call", "user", "user.create",
                                         "{\"name\":\"Cli\",\"email\":\"cli2@actor.example\"}",
                                         "--broker", s_mesh.broker.endpoint, "--actor=", NULL}),
        2);
    cr_assert_eq (s_sql (NULL, "SELECT count(*) FROM %s.outbox", s_mesh.pg.name), 1);
}
