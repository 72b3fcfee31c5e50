/*  =========================================================================
    test_gateway_audit - GET /v1/audit through the gateway to mesh-audit
    The audit log of a user's changes, filtered by user_id and paged by
    seq (limit, after = the previous page's next); who made each change
    (`actor`), and the log filtered by it. Skipped without DATABASE_URL.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_http.h"
#include "user_test.h"

#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mesh_test_mesh_t s_mesh;

static void
s_setup (void)
{
    if (mesh_test_mesh_start (&s_mesh, "test_gateway_audit", 0, 1, NULL, NULL))
        mesh_test_mesh_audit_start (&s_mesh);
}

static void
s_teardown (void)
{
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (gateway_audit, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  GET base + path; the JSON body (caller decrefs); fails unless 200.
static json_t *
s_get_json (const char *path)
{
    char url[256];
    snprintf (url, sizeof url, "%s%s", s_mesh.base, path);
    mesh_test_http_response_t response = mesh_test_http_do ("GET", url, NULL, NULL);
    cr_assert_eq (response.status, 200, "GET %s: %ld %s", path, response.status,
                  response.body);
    json_t *json = mesh_test_http_json (&response);
    mesh_test_http_response_free (&response);
    return json;
}

//  Wait (bounded) until the gateway reaches mesh-audit: until its probe has
//  seen the audit worker it answers 503.
static void
s_wait_audit_reachable (void)
{
    char probe[160];
    snprintf (probe, sizeof probe, "%s/v1/audit?limit=1", s_mesh.base);
    long status = 0;
    int64_t until = mesh_mono_ms () + 10000;
    while (status != 200 && mesh_mono_ms () < until) {
        mesh_test_http_response_t response = mesh_test_http_do ("GET", probe, NULL, NULL);
        status = response.status;
        mesh_test_http_response_free (&response);
        if (status != 200)
            usleep (20 * 1000);
    }
    cr_assert_eq (status, 200, "the gateway never reached mesh-audit");
}

Test (gateway_audit, a_users_changes_in_order_and_paged)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    s_wait_audit_reachable ();
    char url[160];
    mesh_test_create_user (s_mesh.base, "Audited", "audited@example.com", url, sizeof url);
    mesh_test_http_response_t response = mesh_test_http_do ("PATCH", url, "{\"name\":\"Renamed\"}",
                                                            NULL);
    cr_assert_eq (response.status, 200);
    mesh_test_http_response_free (&response);
    const char *id = strrchr (url, '/') + 1;

    //  The audit service takes the events asynchronously: poll, bounded
    char path[160];
    snprintf (path, sizeof path, "/v1/audit?user_id=%s", id);
    json_t *page = NULL;
    int64_t until = mesh_mono_ms () + 10000;
    while (true) {
        page = s_get_json (path);
        if (json_array_size (json_object_get (page, "items")) >= 2 || mesh_mono_ms () >= until)
            break;
        json_decref (page);
        usleep (50 * 1000);
    }
    json_t *items = json_object_get (page, "items");
    cr_assert_eq (json_array_size (items), 2, "%s", json_dumps (page, 0));
    cr_assert_str_eq (mesh_test_json_str (json_array_get (items, 0), "type"), "user.created");
    cr_assert_str_eq (mesh_test_json_str (json_array_get (items, 1), "type"), "user.updated");
    cr_assert_str_eq (mesh_test_json_str (json_array_get (items, 0), "subject"), id);
    json_decref (page);

    //  Paging: limit 1, then after = next
    snprintf (path, sizeof path, "/v1/audit?user_id=%s&limit=1", id);
    page = s_get_json (path);
    cr_assert_eq (json_array_size (json_object_get (page, "items")), 1);
    json_t *next = json_object_get (page, "next");
    cr_assert (json_is_integer (next), "next is not an integer: %s", json_dumps (page, 0));
    snprintf (path, sizeof path, "/v1/audit?user_id=%s&limit=1&after=%lld", id,
              (long long) json_integer_value (next));
    json_decref (page);
    page = s_get_json (path);
    items = json_object_get (page, "items");
    cr_assert_eq (json_array_size (items), 1);
    cr_assert_str_eq (mesh_test_json_str (json_array_get (items, 0), "type"), "user.updated");
    json_decref (page);

    snprintf (path, sizeof path, "%s/v1/audit?after=yesterday", s_mesh.base);
    response = mesh_test_http_do ("GET", path, NULL, NULL);
    json_decref (mesh_test_expect_problem (&response, 400, "urn:zmesh:problem:bad-parameter"));
    mesh_test_http_response_free (&response);
}

//  GET base + path until its page has at least `count` items (mesh-audit
//  takes events asynchronously: bounded poll); returns the last page.
static json_t *
s_wait_items (const char *path, size_t count)
{
    int64_t until = mesh_mono_ms () + 20000;
    while (true) {
        json_t *page = s_get_json (path);
        if (json_array_size (json_object_get (page, "items")) >= count || mesh_mono_ms () >= until)
            return page;
        json_decref (page);
        usleep (50 * 1000);
    }
}

//  The gateway does not name the HTTP caller yet: the changes are made by a
//  mesh client that sets the envelope's actor itself; /v1/audit shows it.
Test (gateway_audit, shows_who_made_each_change_and_filters_by_actor)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    s_wait_audit_reachable ();
    mesh_client_t *client = mesh_client_new (NULL, s_mesh.broker.endpoint, NULL);
    cr_assert_not_null (client);
    msgpack_sbuffer body;
    user_test_pack_strings (
        &body, (const char *const[]){"name", "Grace", "email", "grace@example.com", NULL});
    mesh_reply_t reply = user_test_call_as (client, "user.create", &body, NULL, "ops-alice", 0);
    msgpack_sbuffer_destroy (&body);
    user_test_expect_code (&reply, MESH_CODE_OK);
    char id[40];
    user_test_str (reply.body, "id", id, sizeof id);
    user_test_pack_strings (&body, (const char *const[]){"id", id, "name", "Grace H.", NULL});
    reply = user_test_call_as (client, "user.update", &body, NULL, NULL, 0);
    msgpack_sbuffer_destroy (&body);
    user_test_expect_code (&reply, MESH_CODE_OK);
    mesh_client_destroy (&client);

    char path[160];
    snprintf (path, sizeof path, "/v1/audit?user_id=%s", id);
    json_t *page = s_wait_items (path, 2);
    json_t *items = json_object_get (page, "items");
    cr_assert_eq (json_array_size (items), 2, "%s", json_dumps (page, 0));
    cr_assert_str_eq (mesh_test_json_str (json_array_get (items, 0), "actor"), "ops-alice");
    json_t *none = json_object_get (json_array_get (items, 1), "actor");
    cr_assert (none && json_is_null (none), "no actor is null: %s", json_dumps (page, 0));
    json_decref (page);

    page = s_wait_items ("/v1/audit?actor=ops-alice", 1);
    items = json_object_get (page, "items");
    cr_assert_eq (json_array_size (items), 1, "%s", json_dumps (page, 0));
    cr_assert_str_eq (mesh_test_json_str (json_array_get (items, 0), "type"), "user.created");
    cr_assert_str_eq (mesh_test_json_str (json_array_get (items, 0), "subject"), id);
    json_decref (page);
    //  URL-encoded, matched exactly: "ops-alice " is someone else
    page = s_get_json ("/v1/audit?actor=ops-alice%20");
    cr_assert_eq (json_array_size (json_object_get (page, "items")), 0);
    json_decref (page);

    snprintf (path, sizeof path, "%s/v1/audit?actor=", s_mesh.base);
    mesh_test_http_response_t response = mesh_test_http_do ("GET", path, NULL, NULL);
    json_decref (mesh_test_expect_problem (&response, 400, "urn:zmesh:problem:bad-parameter"));
    mesh_test_http_response_free (&response);
    //  A control character: the audit service refuses it (422, names the field)
    snprintf (path, sizeof path, "%s/v1/audit?actor=a%%0Ab", s_mesh.base);
    response = mesh_test_http_do ("GET", path, NULL, NULL);
    json_t *problem =
        mesh_test_expect_problem (&response, 422, "urn:zmesh:problem:invalid-argument");
    cr_assert (strstr (mesh_test_json_str (problem, "detail"), "actor"), "%s",
               mesh_test_json_str (problem, "detail"));
    json_decref (problem);
    mesh_test_http_response_free (&response);
}
