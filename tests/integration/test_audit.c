/*  =========================================================================
    test_audit - mesh-audit end to end: every user event in the audit log,
    exactly once, whatever process dies
    Real broker, real mesh-user and mesh-audit processes, real PostgreSQL:
    the user service in a fresh schema of DATABASE_URL, the audit log in
    another. The truth the audit log is checked against is the user
    service's outbox: after every scenario the audit log holds exactly the
    outbox's events (same ids, seq 1..N, none missing, none twice).
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
#include <inttypes.h>
#include <libpq-fe.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#define S_USERS 2               //  mesh-user processes at most

static mesh_test_pg_schema_t s_pg;  //  The user service's schema
static char s_audit_schema[96];     //  The audit log's schema
static char s_audit_admin[64];      //  mesh-audit's admin host:port
static mesh_test_broker_t s_broker;
static mesh_proc_t *s_users[S_USERS];
static char s_user_admin[S_USERS][64];
static mesh_proc_t *s_audit;
static mesh_client_t *s_client;
static mesh_test_sockets_t *s_sockets;

static void
s_setup (void)
{
    if (!mesh_test_pg_schema_new (&s_pg, "test_audit"))
        return;
    snprintf (s_audit_schema, sizeof s_audit_schema, "%s_log", s_pg.name);
    snprintf (s_audit_admin, sizeof s_audit_admin, "127.0.0.1:%d", mesh_test_free_port ());
    cr_assert (mesh_test_broker_start (&s_broker, 200, NULL), "broker did not start");
    s_sockets = mesh_test_sockets_new (1000);
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
}

//  Stop mesh-audit with SIGTERM: exit status 0 expected.
static void
s_stop_audit (void)
{
    if (!s_audit)
        return;
    mesh_proc_signal (s_audit, SIGTERM);
    int status = -1;
    bool exited = mesh_proc_wait_exit (s_audit, 15000, &status);
    char *log = mesh_proc_log (s_audit);
    cr_expect (exited && WIFEXITED (status) && WEXITSTATUS (status) == 0,
               "mesh-audit exit status %d; log:\n%s", status, log);
    free (log);
    mesh_proc_destroy (&s_audit);
}

static void
s_teardown (void)
{
    mesh_client_destroy (&s_client);
    mesh_test_sockets_destroy (&s_sockets);
    s_stop_audit ();
    for (int index = 0; index < S_USERS; index++)
        user_test_stop (&s_users[index]);
    mesh_test_broker_stop (&s_broker);
    mesh_test_pg_drop (s_pg.admin, s_audit_schema);
    mesh_test_pg_schema_drop (&s_pg);
}

TestSuite (audit, .init = s_setup, .fini = s_teardown, .timeout = 240.);

static void
s_start_audit (void)
{
    char bin[1024];
    const char *argv[] = {
        mesh_test_bin ("mesh-audit", bin, sizeof bin),
        "--broker", s_broker.endpoint,
        "--events-sub", s_broker.xpub,
        "--database-url", s_pg.conninfo,
        "--schema", s_audit_schema,
        "--admin", s_audit_admin,
        "--heartbeat-ms", "200",
        "--catchup-ms", "500",
        NULL,
    };
    s_audit = mesh_proc_start (argv, NULL);
    cr_assert_not_null (s_audit, "cannot start %s", bin);
}

//  GET `path` on mesh-audit's admin port until it answers 200 or timeout_ms
//  passed; the last status (0: no answer).
static long
s_audit_admin_poll (const char *path, int timeout_ms)
{
    char url[192];
    long status = 0;
    snprintf (url, sizeof url, "http://%s%s", s_audit_admin, path);
    int64_t until = mesh_mono_ms () + timeout_ms;
    do
        free (mesh_test_http_get (url, &status));
    while (status != 200 && mesh_mono_ms () < until);
    return status;
}

static void
s_kill_audit (void)
{
    mesh_proc_signal (s_audit, SIGKILL);
    cr_assert (mesh_proc_wait_exit (s_audit, 5000, NULL), "mesh-audit did not die");
    mesh_proc_destroy (&s_audit);
}

static void
s_start_user (int index, int workers)
{
    snprintf (s_user_admin[index], sizeof s_user_admin[index], "127.0.0.1:%d",
              mesh_test_free_port ());
    s_users[index] = user_test_start (&s_broker, s_pg.conninfo, workers, s_user_admin[index],
                                      NULL);
}

//  A number from SQL run on the admin connection (schema-qualified SQL).
static long
s_sql_long (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static long
s_sql_long (const char *format, ...)
{
    char sql[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (sql, sizeof sql, format, args);
    va_end (args);
    return mesh_test_pg_long (s_pg.admin, sql, NULL);
}

//  Events in the outbox (the truth: one per committed change).
static long
s_outbox_count (void)
{
    return s_sql_long ("SELECT count(*) FROM %s.outbox", s_pg.name);
}

//  Wait (bounded) until the audit log holds `count` events; returns what
//  it holds then.
static long
s_wait_audit_count (long count, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    long have = -1;
    while (mesh_mono_ms () < until) {
        //  The table appears once mesh-audit has migrated
        if (s_sql_long ("SELECT count(*) FROM pg_tables WHERE schemaname = '%s'"
                        " AND tablename = 'audit_events'", s_audit_schema) == 1) {
            have = s_sql_long ("SELECT count(*) FROM %s.audit_events", s_audit_schema);
            if (have >= count)
                return have;
        }
        mesh_test_pg_exec (s_pg.admin, "SELECT pg_sleep(0.05)");    //  Bounded poll pace
    }
    return have;
}

//  The audit log holds exactly the outbox's events: same ids, same seqs
//  1..N, each once.
static void
s_expect_audit_is_outbox (void)
{
    long outbox = s_outbox_count ();
    cr_assert_gt (outbox, 0);
    long audited = s_wait_audit_count (outbox, 60000);
    char *log = mesh_proc_log (s_audit);
    cr_assert_eq (audited, outbox, "audit log has %ld events, outbox %ld; audit log:\n%s",
                  audited, outbox, log);
    free (log);
    cr_expect_eq (s_sql_long ("SELECT count(DISTINCT seq) FROM %s.audit_events",
                              s_audit_schema), outbox);
    cr_expect_eq (s_sql_long ("SELECT min(seq) FROM %s.audit_events", s_audit_schema), 1);
    cr_expect_eq (s_sql_long ("SELECT max(seq) FROM %s.audit_events", s_audit_schema), outbox);
    cr_expect_eq (s_sql_long ("SELECT count(*) FROM %s.audit_events a JOIN %s.outbox o"
                              " ON o.event_id = a.event_id AND o.seq = a.seq"
                              " AND o.type = a.type AND o.subject = a.subject",
                              s_audit_schema, s_pg.name), outbox,
                  "every audited event is the outbox's event with the same seq");
    cr_expect_eq (s_sql_long ("SELECT seq FROM %s.audit_cursor", s_audit_schema), outbox);
}

//  Create `count` users through the mesh, `window` at a time; `at` (may be
//  NULL) is called after each reply with the number answered so far.
//  Returns how many creates succeeded.
static size_t
s_create_many (size_t count, size_t window, const char *tag, void (*at) (size_t done))
{
    size_t sent = 0, done = 0, ok = 0;
    int64_t until = mesh_mono_ms () + 180000;
    while (done < count && mesh_mono_ms () < until) {
        while (sent < count && sent - done < window) {
            char email[96];
            snprintf (email, sizeof email, "%s%zu@audit.example", tag, sent);
            msgpack_sbuffer body;
            user_test_pack_strings (&body, (const char *const[]) {"name", "Audit", "email",
                                                                  email, NULL});
            mesh_call_t call = {
                .service = "user", .method = "user.create", .body = body.data,
                .body_len = body.size, .timeout_ms = 20000,
            };
            cr_assert_eq (mesh_client_send (s_client, &call, NULL), 0);
            msgpack_sbuffer_destroy (&body);
            sent++;
        }
        mesh_reply_t reply;
        if (mesh_client_recv (s_client, &reply, 1000) != 0)
            continue;
        done++;
        ok += reply.code == MESH_CODE_OK;
        if (at)
            at (done);
    }
    cr_assert_eq (done, count, "only %zu of %zu creates answered", done, count);
    return ok;
}

//  --------------------------------------------------------------------------
Test (audit, events_arrive_and_list_in_order)
{
    if (!*s_pg.name)
        cr_skip_test ("DATABASE_URL is not set");
    s_start_user (0, 2);
    s_start_audit ();
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "user", 2, 30000));
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "audit", 2, 30000),
               "audit workers did not register; log:\n%s", mesh_proc_log (s_audit));
    char ada[64], bob[64];
    mesh_reply_t reply = user_test_call_strings (
        s_client, "user.create",
        (const char *const[]) {"name", "Ada", "email", "ada@audit.example", NULL}, NULL);
    user_test_expect_code (&reply, MESH_CODE_OK);
    user_test_str (reply.body, "id", ada, sizeof ada);
    reply = user_test_call_strings (
        s_client, "user.create",
        (const char *const[]) {"name", "Bob", "email", "bob@audit.example", NULL}, NULL);
    user_test_expect_code (&reply, MESH_CODE_OK);
    user_test_str (reply.body, "id", bob, sizeof bob);
    reply = user_test_call_strings (
        s_client, "user.update", (const char *const[]) {"id", ada, "name", "Ada L.", NULL}, NULL);
    user_test_expect_code (&reply, MESH_CODE_OK);
    reply = user_test_call_strings (s_client, "user.delete", (const char *const[]) {"id", ada,
                                                                                    NULL}, NULL);
    user_test_expect_code (&reply, MESH_CODE_OK);
    s_expect_audit_is_outbox ();

    //  audit.list for Ada: created, updated, deleted, in seq order
    mesh_call_t call = { .service = "audit", .method = "audit.list", .timeout_ms = 10000 };
    msgpack_sbuffer body;
    user_test_pack_strings (&body, (const char *const[]) {"user_id", ada, NULL});
    call.body = body.data;
    call.body_len = body.size;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    msgpack_sbuffer_destroy (&body);
    user_test_expect_code (&reply, MESH_CODE_OK);
    const msgpack_object *items = user_test_get (reply.body, "items");
    cr_assert_eq (items->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq (items->via.array.size, 3);
    const char *types[] = {"user.created", "user.updated", "user.deleted"};
    uint64_t last_seq = 0;
    for (uint32_t index = 0; index < 3; index++) {
        const msgpack_object *entry = &items->via.array.ptr[index];
        char text[64];
        cr_expect_str_eq (user_test_str (entry, "type", text, sizeof text), types[index]);
        cr_expect_str_eq (user_test_str (entry, "subject", text, sizeof text), ada);
        uint64_t seq = user_test_uint (entry, "seq");
        cr_expect_gt (seq, last_seq, "seq order");
        last_seq = seq;
        const msgpack_object *data = user_test_get (entry, "data");
        cr_assert_not_null (data);
        cr_expect_eq (data->type, MSGPACK_OBJECT_MAP, "data is the user");
        user_test_str (entry, "received_at", text, sizeof text);
    }
    const msgpack_object *next = user_test_get (reply.body, "next");
    cr_expect (next && next->type == MSGPACK_OBJECT_NIL, "one page");

    //  Pages of one, by type; a bad filter names its field
    user_test_pack_strings (&body, (const char *const[]) {"type", "user.created", "limit", "x",
                                                          NULL});
    call.body = body.data;
    call.body_len = body.size;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    msgpack_sbuffer_destroy (&body);
    user_test_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    user_test_pack_strings (&body, (const char *const[]) {"user_id", "nope", NULL});
    call.body = body.data;
    call.body_len = body.size;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    msgpack_sbuffer_destroy (&body);
    user_test_expect_code (&reply, MESH_CODE_INVALID_ARGUMENT);
    char message[256];
    cr_expect (strstr (user_test_message (&reply, message, sizeof message), "user_id"), "%s",
               message);
}

//  1000 creates as fast as the mesh allows, `restart` called after each
//  answer (it restarts mesh-audit at some of them): the audit log ends with
//  exactly the 1000 events, in outbox order.
static void
s_thousand_creates_audit_restarted (const char *prefix, void (*restart) (size_t done))
{
    if (!*s_pg.name)
        cr_skip_test ("DATABASE_URL is not set");
    s_start_user (0, 4);
    s_start_audit ();
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "user", 4, 30000));
    size_t ok = s_create_many (1000, 32, prefix, restart);
    cr_assert_eq (ok, 1000);
    cr_assert_eq (s_outbox_count (), 1000);
    s_expect_audit_is_outbox ();
    cr_expect_eq (s_sql_long ("SELECT count(*) FROM %s.audit_events WHERE type = 'user.created'",
                              s_audit_schema), 1000);
}

//  --------------------------------------------------------------------------
//  1000 creates as fast as the mesh allows; mesh-audit SIGKILLed twice and
//  restarted meanwhile: the audit log ends with exactly the 1000 events.
static void
s_kill_audit_twice (size_t done)
{
    if (done == 300 || done == 650) {
        s_kill_audit ();
        s_start_audit ();
    }
}

Test (audit, audit_killed_twice_loses_and_repeats_nothing)
{
    s_thousand_creates_audit_restarted ("kill", s_kill_audit_twice);
}

//  --------------------------------------------------------------------------
//  The same with the graceful stop of a rolling restart: mesh-audit gets
//  SIGTERM twice mid-stream, exits 0 each time and is started again; the
//  audit log ends with exactly the 1000 events.
static void
s_restart_audit_twice (size_t done)
{
    if (done == 300 || done == 650) {
        s_stop_audit ();
        s_start_audit ();
        //  As an operator's rolling restart does: the next stop waits until
        //  the new process serves. Its admin port opens after it blocked
        //  SIGTERM for its orderly stop; before that (a slow start, under
        //  TSan), SIGTERM would simply kill it.
        long status = s_audit_admin_poll ("/healthz", 30000);
        cr_assert_eq (status, 200, "the restarted mesh-audit never served /healthz");
    }
}

Test (audit, audit_rolling_restart_misses_nothing)
{
    s_thousand_creates_audit_restarted ("term", s_restart_audit_twice);
}

//  --------------------------------------------------------------------------
//  The broker SIGKILLed and restarted on the same ports mid-stream.
static void
s_kill_broker (size_t done)
{
    if (done != 400)
        return;
    mesh_proc_signal (s_broker.proc, SIGKILL);
    cr_assert (mesh_proc_wait_exit (s_broker.proc, 5000, NULL), "broker did not die");
    mesh_proc_destroy (&s_broker.proc);
    cr_assert (mesh_test_broker_start (&s_broker, 200, NULL), "broker restart failed");
}

Test (audit, broker_restarted_mid_stream)
{
    if (!*s_pg.name)
        cr_skip_test ("DATABASE_URL is not set");
    s_start_user (0, 4);
    s_start_audit ();
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "user", 4, 30000));
    //  Requests in flight when the broker dies end unavailable or at their
    //  deadline; those that committed have events all the same
    size_t ok = s_create_many (1000, 32, "broker", s_kill_broker);
    cr_assert_gt (ok, 500, "most creates succeed (%zu)", ok);
    s_expect_audit_is_outbox ();
}

//  --------------------------------------------------------------------------
//  The mesh-user process whose relay leads is SIGKILLed mid-stream: the
//  other process's relay takes the lock and goes on; nothing is lost.
static int s_leader = -1;       //  Index of the leading process

static void
s_kill_leader (size_t done)
{
    if (done != 300)
        return;
    mesh_proc_signal (s_users[s_leader], SIGKILL);
    cr_assert (mesh_proc_wait_exit (s_users[s_leader], 5000, NULL));
    mesh_proc_destroy (&s_users[s_leader]);
}

Test (audit, relay_process_killed_another_takes_over)
{
    if (!*s_pg.name)
        cr_skip_test ("DATABASE_URL is not set");
    s_start_user (0, 2);
    s_start_user (1, 2);
    s_start_audit ();
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "user", 4, 30000));
    //  Which one leads? (exactly one, after a first event)
    mesh_reply_t reply = user_test_call_strings (
        s_client, "user.create",
        (const char *const[]) {"name", "First", "email", "first@audit.example", NULL}, NULL);
    user_test_expect_code (&reply, MESH_CODE_OK);
    int64_t until = mesh_mono_ms () + 10000;
    while (s_leader < 0 && mesh_mono_ms () < until)
        for (int index = 0; index < S_USERS; index++) {
            char url[192];
            long status = 0;
            snprintf (url, sizeof url, "http://%s/metrics", s_user_admin[index]);
            char *metrics = mesh_test_http_get (url, &status);
            if (metrics && mesh_test_metric (metrics, "mesh_user_relay_leader", NULL) == 1)
                s_leader = index;
            free (metrics);
        }
    cr_assert_geq (s_leader, 0, "no relay leads");
    s_create_many (1000, 32, "leader", s_kill_leader);
    //  Workers of the dead process held requests: those ended unavailable
    //  (or committed without a reply): the outbox is the truth
    s_expect_audit_is_outbox ();
    char url[192];
    long status = 0;
    snprintf (url, sizeof url, "http://%s/metrics", s_user_admin[1 - s_leader]);
    char *metrics = mesh_test_http_get (url, &status);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_user_relay_leader", NULL), 1,
                  "the survivor leads");
    free (metrics);
}

//  --------------------------------------------------------------------------
//  An audit service that starts after 500 events catches up to all of them.
Test (audit, late_subscriber_catches_up)
{
    if (!*s_pg.name)
        cr_skip_test ("DATABASE_URL is not set");
    s_start_user (0, 4);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "user", 4, 30000));
    cr_assert_eq (s_create_many (500, 32, "late", NULL), 500);
    //  Start the audit service only once the relay has published all 500
    //  (a moment after the last reply), so every one must come by catch-up
    char published_url[192];
    long published_status = 0;
    snprintf (published_url, sizeof published_url, "http://%s/metrics", s_user_admin[0]);
    double published = 0;
    int64_t published_by = mesh_mono_ms () + 10000;
    while (published < 500 && mesh_mono_ms () < published_by) {
        char *text = mesh_test_http_get (published_url, &published_status);
        published = text ? mesh_test_metric (text, "mesh_user_events_published_total", NULL) : 0;
        free (text);
    }
    cr_assert_eq (published, 500);
    s_start_audit ();
    s_expect_audit_is_outbox ();
    //  Readiness once caught up; the catch-up is counted
    long status = s_audit_admin_poll ("/ready", 10000);
    cr_expect_eq (status, 200);
    char url[192];
    snprintf (url, sizeof url, "http://%s/metrics", s_audit_admin);
    char *metrics = mesh_test_http_get (url, &status);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_audit_catchup_events_total", NULL), 500,
                  "metrics:\n%s", metrics);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_audit_events_stored_total", NULL), 500);
    cr_expect_eq (mesh_test_metric (metrics, "mesh_audit_lag", NULL), 0);
    free (metrics);
}

//  --------------------------------------------------------------------------
//  A publisher that sends garbage to the broker's XSUB does not stop the
//  audit service: each bad message is counted by reason and skipped.
Test (audit, garbage_on_the_stream_is_skipped)
{
    if (!*s_pg.name)
        cr_skip_test ("DATABASE_URL is not set");
    s_start_user (0, 2);
    s_start_audit ();
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "user", 2, 30000));
    long status = s_audit_admin_poll ("/ready", 30000);
    cr_assert_eq (status, 200, "mesh-audit never ready");
    char url[192];

    void *pub = mesh_test_sockets_open (s_sockets, ZMQ_PUB, s_broker.xsub);
    //  The subscription must reach this publisher before garbage counts:
    //  send until the audit service has counted some (bounded)
    snprintf (url, sizeof url, "http://%s/metrics", s_audit_admin);
    double frames = 0, packs = 0, fields = 0;
    int64_t until = mesh_mono_ms () + 30000;
    while ((frames < 1 || packs < 1 || fields < 1) && mesh_mono_ms () < until) {
        zmq_send (pub, "user.created", 12, 0);                              //  One frame
        zmq_send (pub, "user.created", 12, ZMQ_SNDMORE);                    //  Three frames
        zmq_send (pub, "a", 1, ZMQ_SNDMORE);
        zmq_send (pub, "b", 1, 0);
        zmq_send (pub, "user.created", 12, ZMQ_SNDMORE);                    //  Not msgpack
        zmq_send (pub, "\xc1\xc1\xc1", 3, 0);
        zmq_send (pub, "user.created", 12, ZMQ_SNDMORE);                    //  A billion items
        zmq_send (pub, "\xdd\x3b\x9a\xca\x00", 5, 0);
        zmq_send (pub, "user.updated", 12, ZMQ_SNDMORE);                    //  Missing fields
        zmq_send (pub, "\x81\xa3seq\x05", 6, 0);
        char *metrics = mesh_test_http_get (url, &status);
        frames = mesh_test_metric (metrics, "mesh_audit_malformed_total", "reason=\"frames\"");
        packs = mesh_test_metric (metrics, "mesh_audit_malformed_total", "reason=\"msgpack\"");
        fields = mesh_test_metric (metrics, "mesh_audit_malformed_total", "reason=\"fields\"");
        free (metrics);
    }
    cr_expect_geq (frames, 1);
    cr_expect_geq (packs, 1);
    cr_expect_geq (fields, 1);
    //  Still serving: real events land
    cr_assert_eq (s_create_many (20, 8, "after-garbage", NULL), 20);
    s_expect_audit_is_outbox ();
}
