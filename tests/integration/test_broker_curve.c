/*  =========================================================================
    test_broker_curve - CURVE, ZAP and authorization on the broker
    Real processes on loopback: a broker with CURVE on and an allow-list
    directory, echo workers and libmesh clients holding test keys. Proves
    that a stranger gets nothing (no call, no registration, no events), that
    each grant (serve, call, actor/delegate, publish, subscribe) is
    enforced and counted, that the allow-list can rotate and revoke keys
    while the broker runs, and that a plain peer fails cleanly.
    Ordering makes the "dropped" checks exact: one publisher's messages
    reach a subscriber in order, so a subscriber that receives the allowed
    message sent after a refused one would have received the refused one
    first had it passed.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh/mesh_time.h"
#include "mesh_test_curve.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define S_WAIT_MS 10000   //  Bound of every wait for a change
#define S_REFUSED_MS 1000 //  Deadline of a call that must get nothing

static mesh_test_keys_t s_keys;
static mesh_test_broker_t s_broker;
static mesh_proc_t *s_worker;          //  Echo worker for "echo", allowed
static mesh_test_sockets_t *s_sockets; //  Raw PUB/SUB sockets of a test

//  Start an echo worker for `service` holding the key `name`.
static mesh_proc_t *
s_echo_worker (const char *service, const char *name)
{
    char secret[256];
    const char *extra[5] = {NULL};
    mesh_test_keys_flags (&s_keys, name, extra, secret, sizeof secret);
    mesh_proc_t *worker = mesh_test_echo_worker (s_broker.endpoint, service, 1, 250, extra);
    cr_assert_not_null (worker);
    return worker;
}

static void
s_setup (void)
{
    mesh_test_keys_new (&s_keys);
    mesh_test_keys_add (&s_keys, "worker", (mesh_test_grants_t){.serve = "echo"}, true);
    mesh_test_keys_add (&s_keys, "auditor", (mesh_test_grants_t){.serve = "audit"}, true);
    mesh_test_keys_add (&s_keys, "client", (mesh_test_grants_t){.call = "echo,other"}, true);
    mesh_test_keys_add (&s_keys, "gateway", (mesh_test_grants_t){.call = "echo", .delegate = true},
                        true);
    mesh_test_keys_add (&s_keys, "publisher", (mesh_test_grants_t){.publish = "user."}, true);
    mesh_test_keys_add (&s_keys, "relay", (mesh_test_grants_t){.publish = "*"}, true);
    mesh_test_keys_add (&s_keys, "ops", (mesh_test_grants_t){.subscribe = "*"}, true);
    mesh_test_keys_add (&s_keys, "reader", (mesh_test_grants_t){.subscribe = "user."}, true);
    mesh_test_keys_add (
        &s_keys, "stranger",
        (mesh_test_grants_t){.call = "*", .serve = "*", .publish = "*", .subscribe = "*"}, false);
    memset (&s_broker, 0, sizeof s_broker);
    cr_assert (mesh_test_curve_broker_start (&s_broker, &s_keys, 250), "broker did not start");
    s_worker = s_echo_worker ("echo", "worker");
    mesh_curve_t *curve = mesh_test_keys_curve (&s_keys, "client");
    cr_assert (mesh_test_curve_wait_service (s_broker.endpoint, curve, "echo", "200", S_WAIT_MS),
               "the allowed worker did not register");
    mesh_curve_destroy (&curve);
    s_sockets = mesh_test_sockets_new (1000);
    cr_assert_not_null (s_sockets);
}

static void
s_teardown (void)
{
    mesh_test_sockets_destroy (&s_sockets);
    mesh_proc_destroy (&s_worker);
    mesh_test_broker_stop (&s_broker);
    mesh_test_keys_destroy (&s_keys);
}

TestSuite (broker_curve, .init = s_setup, .fini = s_teardown, .timeout = 90.);

//  One call as the holder of key `name`, on a fresh connection (so a
//  handshake happens now). Returns the outcome code; when `text` is not
//  NULL it gets the string body of a successful reply.
static mesh_code_t
s_call (const char *name, const char *service, const char *method, const char *actor,
        int timeout_ms, char *text, size_t size)
{
    mesh_curve_t *curve = name ? mesh_test_keys_curve (&s_keys, name) : NULL;
    int err = 0;
    mesh_client_t *client = mesh_client_new_curve (NULL, s_broker.endpoint, curve, &err);
    cr_assert_not_null (client, "client: %s", mesh_strerror (err));
    mesh_call_t call = {
        .service = service, .method = method, .actor = actor, .timeout_ms = timeout_ms};
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (client, &call, &reply), 0);
    mesh_code_t code = reply.code;
    if (text && code == MESH_CODE_OK) {
        cr_assert_eq (reply.body->type, MSGPACK_OBJECT_STR);
        snprintf (text, size, "%.*s", (int)reply.body->via.str.size, reply.body->via.str.ptr);
    }
    mesh_client_destroy (&client);
    mesh_curve_destroy (&curve);
    return code;
}

//  A raw socket of `type` holding key `name` (NULL: plain), connected.
static void *
s_socket (int type, const char *name, const char *endpoint)
{
    void *socket = mesh_test_sockets_open (s_sockets, type, NULL);
    mesh_curve_t *curve = name ? mesh_test_keys_curve (&s_keys, name) : NULL;
    cr_assert_eq (mesh_curve_connect (curve, socket, endpoint), 0);
    mesh_curve_destroy (&curve); //  libzmq copied the keys
    return socket;
}

//  Receive one single-frame message as text within timeout_ms, or "".
static void
s_recv_text (void *socket, int timeout_ms, char *text, size_t size)
{
    *text = '\0';
    zmq_pollitem_t item = {socket, 0, ZMQ_POLLIN, 0};
    if (zmq_poll (&item, 1, timeout_ms) == 1) {
        int got = zmq_recv (socket, text, size - 1, 0);
        text[got > 0 ? (size_t)got < size - 1 ? (size_t)got : size - 1 : 0] = '\0';
    }
}

//  Publish `first` then `second` on `pub` until `sub` receives something;
//  returns what it received first (or "" after S_WAIT_MS).
static void
s_publish_until_received (void *pub, const char *first, const char *second, void *sub, char *text,
                          size_t size)
{
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    *text = '\0';
    //  Subscriptions travel asynchronously (slow joiner): publish in rounds
    while (!*text && mesh_mono_ms () < until) {
        zmq_send (pub, first, strlen (first), ZMQ_DONTWAIT);
        zmq_send (pub, second, strlen (second), ZMQ_DONTWAIT);
        s_recv_text (sub, 50, text, size);
    }
}

Test (broker_curve, allowed_key_calls_and_its_name_is_the_actor)
{
    char text[64];
    cr_assert_eq (s_call ("client", "echo", "echo", NULL, 5000, NULL, 0), MESH_CODE_OK);
    cr_assert_eq (s_call ("client", "echo", "actor", "client", 5000, text, sizeof text),
                  MESH_CODE_OK);
    cr_assert_str_eq (text, "client");
    char *metrics = mesh_test_broker_metrics (&s_broker);
    cr_assert_not_null (metrics);
    cr_assert_geq (
        mesh_test_metric (metrics, "mesh_broker_zap_requests_total", "result=\"allowed\""), 3.0);
    char output[4096];
    cr_assert (mesh_test_promtool_check (metrics, output, sizeof output), "promtool: %s", output);
    free (metrics);
}

Test (broker_curve, unknown_key_cannot_call_or_register_and_the_broker_keeps_serving)
{
    cr_assert_eq (s_call ("stranger", "echo", "echo", NULL, S_REFUSED_MS, NULL, 0),
                  MESH_CODE_DEADLINE_EXCEEDED);
    mesh_proc_t *worker = s_echo_worker ("echo2", "stranger");
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_zap_requests_total",
                                      "result=\"denied\"", 2.0, S_WAIT_MS));
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_handshake_failures_total",
                                      "reason=\"auth\"", 2.0, S_WAIT_MS));
    mesh_curve_t *curve = mesh_test_keys_curve (&s_keys, "client");
    cr_assert (mesh_test_curve_wait_service (s_broker.endpoint, curve, "echo2", "404", S_WAIT_MS));
    mesh_curve_destroy (&curve);
    cr_assert_eq (s_call ("client", "echo", "echo", NULL, 5000, NULL, 0), MESH_CODE_OK);
    char *log = mesh_proc_log (s_broker.proc);
    cr_assert_not_null (strstr (log, "key refused at handshake"));
    free (log);
    mesh_proc_destroy (&worker);
}

Test (broker_curve, worker_key_for_audit_cannot_register_user)
{
    mesh_proc_t *worker = s_echo_worker ("user", "auditor");
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_refusals_total", "what=\"serve\"",
                                      1.0, S_WAIT_MS));
    mesh_curve_t *curve = mesh_test_keys_curve (&s_keys, "client");
    cr_assert (mesh_test_curve_wait_service (s_broker.endpoint, curve, "user", "404", S_WAIT_MS));
    mesh_curve_destroy (&curve);
    char *log = mesh_proc_log (s_broker.proc);
    cr_assert_not_null (strstr (log, "\"name\":\"auditor\""), "refusal names the key: %s", log);
    free (log);
    mesh_proc_destroy (&worker);
}

Test (broker_curve, client_key_for_echo_gets_permission_denied_from_audit)
{
    mesh_proc_t *worker = s_echo_worker ("audit", "auditor");
    mesh_curve_t *curve = mesh_test_keys_curve (&s_keys, "client");
    cr_assert (mesh_test_curve_wait_service (s_broker.endpoint, curve, "audit", "200", S_WAIT_MS),
               "mmi.* is open to every admitted key, and auditor may serve audit");
    mesh_curve_destroy (&curve);
    cr_assert_eq (s_call ("client", "audit", "echo", NULL, 5000, NULL, 0),
                  MESH_CODE_PERMISSION_DENIED);
    cr_assert_eq (s_call ("gateway", "other", "echo", NULL, 5000, NULL, 0),
                  MESH_CODE_PERMISSION_DENIED);
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_refusals_total", "what=\"call\"", 2.0,
                                      S_WAIT_MS));
    cr_assert_eq (s_call ("client", "echo", "echo", NULL, 5000, NULL, 0), MESH_CODE_OK);
    mesh_proc_destroy (&worker);
}

Test (broker_curve, actor_spoofing_is_refused_without_delegate_and_allowed_with_it)
{
    char text[64];
    cr_assert_eq (s_call ("client", "echo", "actor", "mallory", 5000, NULL, 0),
                  MESH_CODE_PERMISSION_DENIED);
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_refusals_total", "what=\"actor\"",
                                      1.0, S_WAIT_MS));
    cr_assert_eq (s_call ("gateway", "echo", "actor", "alice", 5000, text, sizeof text),
                  MESH_CODE_OK);
    cr_assert_str_eq (text, "alice");
}

Test (broker_curve, events_outside_the_publish_prefixes_are_dropped)
{
    void *ops = s_socket (ZMQ_SUB, "ops", s_broker.xpub);
    zmq_setsockopt (ops, ZMQ_SUBSCRIBE, "", 0);
    void *publisher = s_socket (ZMQ_PUB, "publisher", s_broker.xsub);
    void *stranger = s_socket (ZMQ_PUB, "stranger", s_broker.xsub);
    zmq_send (stranger, "user.stranger", 13, ZMQ_DONTWAIT); //  Goes nowhere: no handshake
    char text[64];
    s_publish_until_received (publisher, "audit.refused", "user.allowed", ops, text, sizeof text);
    cr_assert_str_eq (text, "user.allowed", "the refused topic came through: %s", text);
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_refusals_total", "what=\"publish\"",
                                      1.0, S_WAIT_MS));
    //  The stranger was turned away at the handshake
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_zap_requests_total",
                                      "result=\"denied\"", 1.0, S_WAIT_MS));
    for (int index = 0; index < 20; index++) {
        s_recv_text (ops, 0, text, sizeof text);
        cr_assert (strcmp (text, "user.stranger") != 0 && strcmp (text, "audit.refused") != 0);
    }
}

Test (broker_curve, subscriptions_outside_the_subscribe_prefixes_are_not_applied)
{
    void *reader = s_socket (ZMQ_SUB, "reader", s_broker.xpub);
    zmq_setsockopt (reader, ZMQ_SUBSCRIBE, "audit.", 6); //  Refused
    zmq_setsockopt (reader, ZMQ_SUBSCRIBE, "user.", 5);  //  Allowed
    void *stranger = s_socket (ZMQ_SUB, "stranger", s_broker.xpub);
    zmq_setsockopt (stranger, ZMQ_SUBSCRIBE, "", 0);
    void *relay = s_socket (ZMQ_PUB, "relay", s_broker.xsub);
    char text[64];
    s_publish_until_received (relay, "audit.secret", "user.created", reader, text, sizeof text);
    cr_assert_str_eq (text, "user.created", "a refused subscription was applied: %s", text);
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_refusals_total", "what=\"subscribe\"",
                                      1.0, S_WAIT_MS));
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_zap_requests_total",
                                      "result=\"denied\"", 1.0, S_WAIT_MS));
    s_recv_text (stranger, 0, text, sizeof text);
    cr_assert_str_eq (text, "", "the stranger received %s", text);
}

Test (broker_curve, keys_rotate_and_are_revoked_without_a_restart)
{
    //  The new key exists but is not allowed yet
    mesh_test_keys_add (&s_keys, "client-2", (mesh_test_grants_t){.call = "echo"}, false);
    cr_assert_eq (s_call ("client-2", "echo", "echo", NULL, S_REFUSED_MS, NULL, 0),
                  MESH_CODE_DEADLINE_EXCEEDED);
    //  Rotation: both allowed
    mesh_test_keys_allow (&s_keys, "client-2", true);
    cr_assert_eq (s_call ("client-2", "echo", "echo", NULL, 5000, NULL, 0), MESH_CODE_OK);
    cr_assert_eq (s_call ("client", "echo", "echo", NULL, 5000, NULL, 0), MESH_CODE_OK);
    //  then the old one removed: its new connections fail, the new key works
    mesh_test_keys_allow (&s_keys, "client", false);
    cr_assert_eq (s_call ("client", "echo", "echo", NULL, S_REFUSED_MS, NULL, 0),
                  MESH_CODE_DEADLINE_EXCEEDED);
    cr_assert_eq (s_call ("client-2", "echo", "echo", NULL, 5000, NULL, 0), MESH_CODE_OK);
    //  Revocation of the last one
    mesh_test_keys_allow (&s_keys, "client-2", false);
    cr_assert_eq (s_call ("client-2", "echo", "echo", NULL, S_REFUSED_MS, NULL, 0),
                  MESH_CODE_DEADLINE_EXCEEDED);
    cr_assert_eq (s_call ("gateway", "echo", "echo", NULL, 5000, NULL, 0), MESH_CODE_OK);
}

Test (broker_curve, plain_peer_fails_the_handshake_cleanly_and_is_counted)
{
    cr_assert_eq (s_call (NULL, "echo", "echo", NULL, S_REFUSED_MS, NULL, 0),
                  MESH_CODE_DEADLINE_EXCEEDED);
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_handshake_failures_total", NULL, 1.0,
                                      S_WAIT_MS));
    cr_assert_eq (s_call ("client", "echo", "echo", NULL, 5000, NULL, 0), MESH_CODE_OK);
}

//  Run mesh-broker with `flags` and expect exit status 2 with `text` on stderr.
static void
s_expect_refused_start (const char *const *flags, const char *text)
{
    char path[512];
    const char *argv[16] = {mesh_test_bin ("mesh-broker", path, sizeof path),
                            "--bind",
                            "tcp://127.0.0.1:0",
                            "--events-xsub",
                            "",
                            "--events-xpub",
                            "",
                            "--admin",
                            "127.0.0.1:0"};
    int argc = 9;
    for (int index = 0; flags[index] && argc < 15; index++)
        argv[argc++] = flags[index];
    argv[argc] = NULL;
    mesh_proc_t *proc = mesh_proc_start (argv, NULL);
    cr_assert_not_null (proc);
    int status = 0;
    cr_assert (mesh_proc_wait_exit (proc, 10000, &status), "the broker did not exit");
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 2, "status %d", status);
    char *log = mesh_proc_log (proc);
    cr_assert_not_null (strstr (log, text), "stderr: %s", log);
    free (log);
    mesh_proc_destroy (&proc);
}

Test (broker_curve, broker_refuses_to_start_with_a_cert_and_no_allow_list_or_a_bad_cert)
{
    char secret[256];
    mesh_test_keys_secret (&s_keys, "broker", secret, sizeof secret);
    const char *no_allow[] = {"--curve-cert", secret, NULL};
    s_expect_refused_start (no_allow, "--curve-allow");
    const char *missing[] = {"--curve-cert", "/nonexistent/broker.key_secret", "--curve-allow",
                             s_keys.allow, NULL};
    s_expect_refused_start (missing, "No such file");
    //  (keys/ holds each secret beside its public file, which zcert_load
    //  would take; allow/ has public certificates only)
    char public_only_path[256];
    snprintf (public_only_path, sizeof public_only_path, "%s/worker.key", s_keys.allow);
    const char *public_only[] = {"--curve-cert", public_only_path, "--curve-allow", s_keys.allow,
                                 NULL};
    s_expect_refused_start (public_only, "public certificate");
    const char *not_a_dir[] = {"--curve-cert", secret, "--curve-allow", "/nonexistent", NULL};
    s_expect_refused_start (not_a_dir, "not a directory");
}

Test (broker_curve, every_zeromq_binary_shows_the_curve_settings_in_help)
{
    const char *binaries[] = {"mesh-broker", "mesh-user",        "mesh-audit", "mesh-gateway",
                              "meshctl",     "mesh-echo-worker", "mesh-bench"};
    for (size_t index = 0; index < sizeof binaries / sizeof binaries[0]; index++) {
        char path[512], command[600], output[16384];
        snprintf (command, sizeof command, "%s --help",
                  mesh_test_bin (binaries[index], path, sizeof path));
        FILE *help = popen (command, "r");
        cr_assert_not_null (help);
        size_t got = fread (output, 1, sizeof output - 1, help);
        output[got] = '\0';
        cr_assert_eq (pclose (help), 0, "%s --help failed", binaries[index]);
        cr_assert_not_null (strstr (output, "MESH_CURVE_CERT"), "%s: %s", binaries[index], output);
        cr_assert_not_null (strstr (output, "MESH_CURVE_SERVER_CERT"), "%s", binaries[index]);
    }
}

//  Run `command` (a shell line); returns its exit status and its stdout
//  and stderr in `output`.
static int
s_shell (const char *command, char *output, size_t size)
{
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    size_t got = fread (output, 1, size - 1, pipe);
    output[got] = '\0';
    int status = pclose (pipe);
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

Test (broker_curve, meshctl_keygen_writes_a_pair_that_meshctl_call_uses_as_its_actor)
{
    char meshctl[512], command[2048], output[4096];
    mesh_test_bin ("meshctl", meshctl, sizeof meshctl);
    snprintf (command, sizeof command,
              "%s keygen operator --may call:echo --may 'subscribe:user. audit.' --dir %s 2>&1",
              meshctl, s_keys.keys);
    cr_assert_eq (s_shell (command, output, sizeof output), 0, "%s", output);
    cr_assert_eq (s_shell (command, output, sizeof output), 2, "overwrote: %s", output);
    cr_assert_not_null (strstr (output, "not overwriting"));

    char path[256];
    snprintf (path, sizeof path, "%s/operator.key_secret", s_keys.keys);
    struct stat info;
    cr_assert_eq (stat (path, &info), 0);
    cr_assert_eq (info.st_mode & 0777, 0600, "secret mode %o", info.st_mode & 0777);
    snprintf (path, sizeof path, "%s/operator.key", s_keys.keys);
    zcert_t *cert = zcert_load (path);
    cr_assert_not_null (cert);
    cr_assert_str_eq (zcert_meta (cert, "name"), "operator");
    cr_assert_str_eq (zcert_meta (cert, "call"), "echo");
    cr_assert_str_eq (zcert_meta (cert, "subscribe"), "user. audit.");
    cr_assert_null (zcert_meta (cert, "delegate"));
    zcert_destroy (&cert);

    mesh_test_keys_allow (&s_keys, "operator", true);
    snprintf (command, sizeof command,
              "%s --broker %s --curve-cert %s/operator.key_secret --curve-server-cert %s "
              "--timeout 5000 call echo actor '{}' 2>&1",
              meshctl, s_broker.endpoint, s_keys.keys, s_keys.server);
    cr_assert_eq (s_shell (command, output, sizeof output), 0, "%s", output);
    cr_assert_str_eq (output, "\"operator\"\n");

    snprintf (command, sizeof command, "%s keygen bad --may fly:high --dir %s 2>&1", meshctl,
              s_keys.keys);
    cr_assert_eq (s_shell (command, output, sizeof output), 2, "%s", output);
}

Test (broker_curve, a_subscriber_that_leaves_is_unsubscribed_upstream_and_others_still_receive)
{
    void *relay = s_socket (ZMQ_PUB, "relay", s_broker.xsub);
    //  A context of its own: this subscriber is closed in the middle
    void *context = zmq_ctx_new ();
    void *reader = zmq_socket (context, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt (reader, ZMQ_LINGER, &linger, sizeof linger);
    mesh_curve_t *curve = mesh_test_keys_curve (&s_keys, "reader");
    cr_assert_eq (mesh_curve_connect (curve, reader, s_broker.xpub), 0);
    mesh_curve_destroy (&curve);
    zmq_setsockopt (reader, ZMQ_SUBSCRIBE, "user.", 5);
    char text[64];
    s_publish_until_received (relay, "user.one", "user.one", reader, text, sizeof text);
    cr_assert_str_eq (text, "user.one");
    char *metrics = mesh_test_broker_metrics (&s_broker);
    double before = mesh_test_metric (metrics, "mesh_broker_subscription_messages_total", NULL);
    free (metrics);
    zmq_close (reader);
    zmq_ctx_term (context);
    //  libzmq makes the unsubscription itself (no properties); it goes up
    cr_assert (mesh_test_wait_metric (&s_broker, "mesh_broker_subscription_messages_total", NULL,
                                      before + 1, S_WAIT_MS));
    void *second = s_socket (ZMQ_SUB, "reader", s_broker.xpub);
    zmq_setsockopt (second, ZMQ_SUBSCRIBE, "user.", 5);
    s_publish_until_received (relay, "user.two", "user.two", second, text, sizeof text);
    cr_assert_str_eq (text, "user.two");
}
