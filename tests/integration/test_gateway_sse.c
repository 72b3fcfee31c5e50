/*  =========================================================================
    test_gateway_sse - GET /v1/events: user events as Server-Sent Events
    A connected client sees the event of each user created; a client that
    reconnects with Last-Event-ID gets exactly the events it missed (caught
    up through events.list), then live ones, with no gap and no repeat.
    Needs the user service's outbox relay and events.list (issue 3); skipped
    without DATABASE_URL.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_http.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mesh_test_mesh_t s_mesh;

static void
s_setup (void)
{
    mesh_test_mesh_start (&s_mesh, "test_gateway_sse", 0, 1, NULL, NULL);
}

static void
s_teardown (void)
{
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (gateway_sse, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  One open stream and what it received.
typedef struct {
    CURLM *multi;
    CURL *easy;
    struct curl_slist *headers;
    char *text;                 //  Everything received, NUL-terminated
    size_t len;
    int running;
} s_stream_t;

static size_t
s_on_data (char *data, size_t size, size_t count, void *arg)
{
    s_stream_t *stream = (s_stream_t *) arg;
    size_t bytes = size * count;
    stream->text = mesh_realloc (stream->text, stream->len + bytes + 1);
    memcpy (stream->text + stream->len, data, bytes);
    stream->len += bytes;
    stream->text[stream->len] = '\0';
    return bytes;
}

//  Drive the transfer until `text` has arrived; false after timeout_ms.
static bool
s_stream_wait (s_stream_t *stream, const char *text, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (!strstr (stream->text, text)) {
        if (mesh_mono_ms () >= until || !stream->running)
            return false;
        curl_multi_perform (stream->multi, &stream->running);
        curl_multi_poll (stream->multi, NULL, 0, 50, NULL);
    }
    return true;
}

//  Open GET /v1/events (with Last-Event-ID when last_id is not NULL) and
//  wait until the gateway says the stream is live.
static s_stream_t *
s_stream_open (const char *last_id)
{
    s_stream_t *stream = mesh_alloc (sizeof (s_stream_t));
    stream->text = mesh_strndup ("", 0);
    char url[128], header[64];
    snprintf (url, sizeof url, "%s/v1/events", s_mesh.base);
    stream->easy = mesh_test_curl_new (url, 60000L);
    curl_easy_setopt (stream->easy, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt (stream->easy, CURLOPT_WRITEDATA, stream);
    if (last_id) {
        snprintf (header, sizeof header, "Last-Event-ID: %s", last_id);
        stream->headers = curl_slist_append (NULL, header);
        curl_easy_setopt (stream->easy, CURLOPT_HTTPHEADER, stream->headers);
    }
    stream->multi = curl_multi_init ();
    curl_multi_add_handle (stream->multi, stream->easy);
    stream->running = 1;
    cr_assert (s_stream_wait (stream, ": connected\n\n", 5000), "stream did not open: %s",
               stream->text);
    long status = 0;
    curl_easy_getinfo (stream->easy, CURLINFO_RESPONSE_CODE, &status);
    cr_assert_eq (status, 200);
    return stream;
}

static void
s_stream_close (s_stream_t **stream_p)
{
    s_stream_t *stream = *stream_p;
    curl_multi_remove_handle (stream->multi, stream->easy);
    curl_easy_cleanup (stream->easy);
    curl_multi_cleanup (stream->multi);
    curl_slist_free_all (stream->headers);
    free (stream->text);
    free (stream);
    *stream_p = NULL;
}

//  Occurrences of `needle` in `text`.
static size_t
s_count (const char *text, const char *needle)
{
    size_t count = 0;
    for (const char *at = strstr (text, needle); at; at = strstr (at + 1, needle))
        count++;
    return count;
}

//  Create a user; its id into `id` (37 bytes) and the JSON text that its
//  event carries as subject into `subject`.
static void
s_create (const char *email, char *id, char *subject, size_t size)
{
    char url[160];
    mesh_test_create_user (s_mesh.base, "Sse", email, url, sizeof url);
    snprintf (id, 37, "%s", strrchr (url, '/') + 1);
    snprintf (subject, size, "\"subject\":\"%s\"", id);
}

//  The seq of the event about `subject` in the stream (its "id:" line).
static uint64_t
s_seq_of (const s_stream_t *stream, const char *subject)
{
    const char *data = strstr (stream->text, subject);
    cr_assert_not_null (data);
    const char *id_line = NULL;
    for (const char *at = strstr (stream->text, "id: "); at && at < data;
         at = strstr (at + 1, "\nid: "))
        id_line = at[0] == '\n'? at + 1: at;
    cr_assert_not_null (id_line);
    return strtoull (id_line + 4, NULL, 10);
}

Test (gateway_sse, connected_client_sees_each_created_user)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    s_stream_t *stream = s_stream_open (NULL);
    char id[37], subjects[3][80];
    for (int index = 0; index < 3; index++) {
        char email[64];
        snprintf (email, sizeof email, "live%d@example.com", index);
        s_create (email, id, subjects[index], sizeof subjects[index]);
    }
    for (int index = 0; index < 3; index++)
        cr_assert (s_stream_wait (stream, subjects[index], 10000), "no event for %s:\n%s",
                   subjects[index], stream->text);
    for (int index = 0; index < 3; index++)
        cr_assert_eq (s_count (stream->text, subjects[index]), 1);
    cr_assert_eq (s_count (stream->text, "event: user.created\n"), 3, "%s", stream->text);
    //  Consecutive seqs
    uint64_t first = s_seq_of (stream, subjects[0]);
    cr_assert_eq (s_seq_of (stream, subjects[1]), first + 1);
    cr_assert_eq (s_seq_of (stream, subjects[2]), first + 2);
    s_stream_close (&stream);
}

Test (gateway_sse, last_event_id_resumes_without_gap_or_repeat)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    s_stream_t *stream = s_stream_open (NULL);
    char id[37], seen[80], missed[2][80], live[80];
    s_create ("seen@example.com", id, seen, sizeof seen);
    cr_assert (s_stream_wait (stream, seen, 10000), "no event:\n%s", stream->text);
    uint64_t last = s_seq_of (stream, seen);
    s_stream_close (&stream);

    //  Two users while the client is away
    s_create ("missed0@example.com", id, missed[0], sizeof missed[0]);
    s_create ("missed1@example.com", id, missed[1], sizeof missed[1]);
    char last_id[32];
    snprintf (last_id, sizeof last_id, "%" PRIu64, last);
    stream = s_stream_open (last_id);
    cr_assert (s_stream_wait (stream, missed[1], 10000), "missed events not replayed:\n%s",
               stream->text);
    //  Then live again
    s_create ("after@example.com", id, live, sizeof live);
    cr_assert (s_stream_wait (stream, live, 10000), "no live event after catch-up:\n%s",
               stream->text);
    cr_assert_eq (s_count (stream->text, seen), 0, "repeated an event it had seen");
    cr_assert_eq (s_count (stream->text, missed[0]), 1);
    cr_assert_eq (s_count (stream->text, missed[1]), 1);
    cr_assert_eq (s_count (stream->text, live), 1);
    cr_assert_eq (s_seq_of (stream, missed[0]), last + 1);
    cr_assert_eq (s_seq_of (stream, missed[1]), last + 2);
    cr_assert_eq (s_seq_of (stream, live), last + 3);
    cr_assert_eq (s_count (stream->text, "\nid: ") + (strncmp (stream->text, "id: ", 4) == 0),
                  3, "exactly the missed and the live events:\n%s", stream->text);
    s_stream_close (&stream);
}

Test (gateway_sse, bad_last_event_id_is_400)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    char url[128];
    snprintf (url, sizeof url, "%s/v1/events", s_mesh.base);
    static const char *const bad[] = { "Last-Event-ID: yesterday", NULL };
    mesh_test_http_response_t response = mesh_test_http_do ("GET", url, NULL, bad);
    json_decref (mesh_test_expect_problem (&response, 400, "urn:zmesh:problem:bad-parameter"));
    mesh_test_http_response_free (&response);
}

Test (gateway_sse, traceparent_reaches_the_event)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    s_stream_t *stream = s_stream_open (NULL);
    //  The client's trace id goes into the envelope, the user service keeps
    //  it with the change, and the event carries it
    static const char *const trace[] = {
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL,
    };
    char url[128];
    snprintf (url, sizeof url, "%s/v1/users", s_mesh.base);
    mesh_test_http_response_t response = mesh_test_http_do (
        "POST", url, "{\"name\":\"Traced\",\"email\":\"traced@example.com\"}", trace);
    cr_assert_eq (response.status, 201, "%s", response.body);
    json_t *user = mesh_test_http_json (&response);
    char subject[80];
    snprintf (subject, sizeof subject, "\"subject\":\"%s\"", mesh_test_json_str (user, "id"));
    json_decref (user);
    mesh_test_http_response_free (&response);
    cr_assert (s_stream_wait (stream, subject, 10000), "no event:\n%s", stream->text);
    cr_assert (s_stream_wait (stream, "\"trace\":\"00-0af7651916cd43dd8448eb211c80319c-", 1000),
               "the event does not carry the client's trace id:\n%s", stream->text);
    s_stream_close (&stream);
}
