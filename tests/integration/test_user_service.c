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
#include "mesh_test.h"

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
    char bin[1024];
    snprintf (s_admin_addr, sizeof s_admin_addr, "127.0.0.1:%d", mesh_test_free_port ());
    const char *argv[] = {
        mesh_test_bin ("mesh-user", bin, sizeof bin),
        "--broker", s_broker.endpoint,
        "--database-url", s_pg.conninfo,
        "--workers", "2",
        "--heartbeat-ms", "200",
        "--admin", s_admin_addr,
        NULL,
    };
    s_user = mesh_proc_start (argv, NULL);
    cr_assert_not_null (s_user, "cannot start %s", bin);
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

//  Call `method` of service user with `body` (a packed object, or NULL for
//  nil) and return the reply (borrowed until the next call).
static mesh_reply_t
s_call (const char *method, const msgpack_sbuffer *body)
{
    mesh_call_t call = {
        .service = "user",
        .method = method,
        .body = body ? body->data : NULL,
        .body_len = body ? body->size : 0,
        .timeout_ms = 10000,
    };
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    return reply;
}

//  Pack a map of string pairs: keys and values alternate, NULL-terminated.
static void
s_pack_strings (msgpack_sbuffer *buffer, const char *const *pairs)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    size_t count = 0;
    while (pairs[count * 2])
        count++;
    msgpack_pack_map (&packer, count);
    for (size_t index = 0; index < count * 2; index++)
        mesh_pack_cstr (&packer, pairs[index]);
}

//  Call with a map of string pairs.
static mesh_reply_t
s_call_strings (const char *method, const char *const *pairs)
{
    msgpack_sbuffer buffer;
    s_pack_strings (&buffer, pairs);
    mesh_reply_t reply = s_call (method, &buffer);
    msgpack_sbuffer_destroy (&buffer);
    return reply;
}

//  Field `name` of map `object`, or NULL.
static const msgpack_object *
s_get (const msgpack_object *object, const char *name)
{
    cr_assert_not_null (object);
    cr_assert_eq (object->type, MSGPACK_OBJECT_MAP);
    for (uint32_t index = 0; index < object->via.map.size; index++) {
        const msgpack_object_kv *pair = &object->via.map.ptr[index];
        if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == strlen (name)
            && memcmp (pair->key.via.str.ptr, name, strlen (name)) == 0)
            return &pair->val;
    }
    return NULL;
}

//  String field `name` of `object` copied into `out`; fails when not a string.
static const char *
s_str (const msgpack_object *object, const char *name, char *out, size_t size)
{
    const msgpack_object *value = s_get (object, name);
    cr_assert_not_null (value, "no field %s", name);
    cr_assert_eq (value->type, MSGPACK_OBJECT_STR, "field %s is not a string", name);
    cr_assert_lt (value->via.str.size, size);
    memcpy (out, value->via.str.ptr, value->via.str.size);
    out[value->via.str.size] = '\0';
    return out;
}

static void
s_expect_code (const mesh_reply_t *reply, mesh_code_t code)
{
    cr_assert_eq (reply->code, code, "want %s, got %s: %.*s", mesh_code_name (code),
                  mesh_code_name (reply->code), (int) reply->message.len,
                  reply->message.ptr);
}

//  The reply's error message as a C string (static buffer).
static const char *
s_message (const mesh_reply_t *reply)
{
    static char message[512];
    size_t len = reply->message.len < sizeof message - 1 ? reply->message.len
                                                         : sizeof message - 1;
    memcpy (message, reply->message.ptr, len);
    message[len] = '\0';
    return message;
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

    //  unknown method; events.list comes with the relay
    reply = s_call_strings ("user.frobnicate", (const char *const[]) {NULL});
    s_expect_code (&reply, MESH_CODE_UNIMPLEMENTED);
    reply = s_call_strings ("events.list", (const char *const[]) {NULL});
    s_expect_code (&reply, MESH_CODE_UNIMPLEMENTED);

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
    char *metrics = mesh_test_http_get (url, &status);
    cr_assert_eq (status, 200);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_requests_total",
                                    "method=\"user.create\",outcome=\"ok\""), 3);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_requests_total",
                                    "method=\"user.get\",outcome=\"not_found\""), 1);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_requests_total",
                                    "method=\"other\",outcome=\"unimplemented\""), 1);
    free (metrics);

    //  SIGTERM: a clean exit 0
    mesh_proc_signal (s_user, SIGTERM);
    int exit_status = -1;
    cr_assert (mesh_proc_wait_exit (s_user, 10000, &exit_status), "mesh-user did not exit");
    cr_expect (WIFEXITED (exit_status) && WEXITSTATUS (exit_status) == 0,
               "exit status %d", exit_status);
}
