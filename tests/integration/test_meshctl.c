/*  =========================================================================
    test_meshctl - the meshctl binary against a real mesh-broker
    Each test starts a broker on free loopback ports and, where it needs
    one, an in-process echo worker (mesh_worker on a thread), then runs
    meshctl as a child process and checks its stdout, stderr and exit
    status: the exit statuses are meshctl's interface for scripts.
    Every wait is bounded; nothing sleeps.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_time.h"
#include "mesh/mesh_worker.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

extern char **environ;

#define S_OUTPUT_MAX 65536

//  A meshctl child process with its stdout and stderr collected.
typedef struct {
    pid_t pid;                  //  Child, 0 once reaped
    int status;                 //  waitpid status once reaped
    int fds[2];                 //  stdout, stderr read ends; -1 at EOF
    char text[2][S_OUTPUT_MAX]; //  stdout, stderr so far, NUL-terminated
    size_t len[2];              //  Bytes in text
} s_child_t;

static mesh_test_broker_t s_broker;
static mesh_worker_t *s_worker;
static pthread_t s_worker_thread;

//  Start meshctl with `args` (NULL-terminated, without argv[0]); `input`
//  is written to its stdin (NULL = /dev/null).
static s_child_t *
s_spawn (const char *const *args, const char *input)
{
    s_child_t *child = mesh_alloc (sizeof (s_child_t));
    char path[512];
    const char *argv[32] = { mesh_test_bin ("meshctl", path, sizeof path) };
    for (int index = 0; args[index]; index++) {
        cr_assert_lt (index, 30);
        argv[index + 1] = args[index];
    }
    int out[2], err[2], in[2];
    cr_assert_eq (pipe (out), 0);
    cr_assert_eq (pipe (err), 0);
    cr_assert_eq (pipe (in), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2 (&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2 (&actions, err[1], STDERR_FILENO);
    for (int index = 0; index < 2; index++) {
        posix_spawn_file_actions_addclose (&actions, out[index]);
        posix_spawn_file_actions_addclose (&actions, err[index]);
        posix_spawn_file_actions_addclose (&actions, in[index]);
    }
    int rc = posix_spawn (&child->pid, argv[0], &actions, NULL, (char *const *) argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    cr_assert_eq (rc, 0, "cannot start %s: %s", argv[0], strerror (rc));
    close (in[0]);
    close (out[1]);
    close (err[1]);
    if (input)      //  Small: fits in the pipe buffer, so this cannot block
        cr_assert_eq (write (in[1], input, strlen (input)), (ssize_t) strlen (input));
    close (in[1]);
    child->fds[0] = out[0];
    child->fds[1] = err[0];
    return child;
}

//  Read what the child wrote, waiting up to `wait_ms` for something.
static void
s_pump (s_child_t *child, int wait_ms)
{
    struct pollfd items[2];
    for (int index = 0; index < 2; index++)
        items[index] = (struct pollfd) { .fd = child->fds[index], .events = POLLIN };
    if (poll (items, 2, wait_ms) <= 0)
        return;
    for (int index = 0; index < 2; index++) {
        if (child->fds[index] < 0 || !(items[index].revents & (POLLIN | POLLHUP)))
            continue;
        size_t room = S_OUTPUT_MAX - 1 - child->len[index];
        ssize_t got = read (child->fds[index], child->text[index] + child->len[index], room);
        if (got > 0)
            child->len[index] += (size_t) got;
        else
        if (got == 0 || errno != EINTR) {
            close (child->fds[index]);
            child->fds[index] = -1;
        }
        child->text[index][child->len[index]] = '\0';
    }
}

//  True once the child has exited and both pipes are drained, within
//  `timeout_ms`.
static bool
s_wait_exit (s_child_t *child, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (mesh_mono_ms () < until) {
        if (child->fds[0] >= 0 || child->fds[1] >= 0)
            s_pump (child, 20);
        else
        if (child->pid > 0 && waitpid (child->pid, &child->status, WNOHANG) == child->pid)
            child->pid = 0;         //  Pipes close at exit: this does not spin for long
        if (child->pid == 0)
            return true;
    }
    return false;
}

//  True once stream `which` (0 stdout, 1 stderr) holds `text`.
static bool
s_wait_text (s_child_t *child, int which, const char *text, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (!strstr (child->text[which], text)) {
        if (mesh_mono_ms () >= until || child->fds[which] < 0)
            return false;
        s_pump (child, 20);
    }
    return true;
}

//  Kill if still running, reap and free.
static void
s_child_destroy (s_child_t **child_p)
{
    s_child_t *child = *child_p;
    if (child->pid > 0) {
        kill (child->pid, SIGKILL);
        waitpid (child->pid, NULL, 0);
    }
    for (int index = 0; index < 2; index++)
        if (child->fds[index] >= 0)
            close (child->fds[index]);
    free (child);
    *child_p = NULL;
}

//  Exit status of a child that has been reaped; fails the test otherwise.
static int
s_exit_code (const s_child_t *child)
{
    cr_assert (WIFEXITED (child->status), "meshctl did not exit normally (status %d)",
               child->status);
    return WEXITSTATUS (child->status);
}

//  Run meshctl to completion (10 s at most) and return the child.
static s_child_t *
s_run (const char *const *args, const char *input)
{
    s_child_t *child = s_spawn (args, input);
    cr_assert (s_wait_exit (child, 10000), "meshctl did not finish; stderr: %s", child->text[1]);
    return child;
}

//  Echo worker: "echo" returns the body, "fail" not_found, "ext" a body
//  with no JSON form.
static mesh_code_t
s_echo (void *arg, const mesh_request_t *request, mesh_response_t *response)
{
    if (mesh_slice_eq (request->method, "fail")) {
        snprintf (response->message, sizeof response->message, "no user 42");
        return MESH_CODE_NOT_FOUND;
    }
    if (mesh_slice_eq (request->method, "ext")) {
        msgpack_pack_ext (response->body, 1, 1);
        msgpack_pack_ext_body (response->body, "x", 1);
        return MESH_CODE_OK;
    }
    if (request->body)
        msgpack_pack_object (response->body, *request->body);
    else
        msgpack_pack_nil (response->body);
    return MESH_CODE_OK;
}

static void *
s_worker_main (void *arg)
{
    mesh_worker_run ((mesh_worker_t *) arg);
    return NULL;
}

static void
s_setup (void)
{
    cr_assert (mesh_test_broker_start (&s_broker, 500, NULL), "mesh-broker did not start");
}

//  Setup plus an echo worker registered as "echo".
static void
s_setup_with_worker (void)
{
    s_setup ();
    mesh_worker_cfg_t cfg = {
        .broker = s_broker.endpoint,
        .service = "echo",
        .credit = 2,
        .heartbeat_ms = 500,
        .handler = s_echo,
    };
    int err = 0;
    s_worker = mesh_worker_new (&cfg, &err);
    cr_assert_not_null (s_worker, "%s", mesh_strerror (err));
    cr_assert_eq (pthread_create (&s_worker_thread, NULL, s_worker_main, s_worker), 0);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, 5000),
               "echo worker did not register");
}

static void
s_teardown (void)
{
    if (s_worker) {
        mesh_worker_stop (s_worker);
        pthread_join (s_worker_thread, NULL);
        mesh_worker_destroy (&s_worker);
    }
    mesh_test_broker_stop (&s_broker);
}

// cppcheck-suppress unknownMacro
TestSuite (meshctl, .fini = s_teardown, .timeout = 60.);

Test (meshctl, help_lists_commands_variables_and_exit_codes)
{
    s_child_t *child = s_run ((const char *[]) { "--help", NULL }, NULL);
    cr_assert_eq (s_exit_code (child), 0);
    const char *expected[] = { "call SERVICE METHOD JSON", "services", "service NAME",
                               "events [TOPIC-PREFIX]", "MESH_BROKER", "MESH_EVENTS_SUB",
                               "--timeout", "--pretty", "--count", "11  invalid_argument",
                               "19  deadline_exceeded", "21  internal" };
    for (size_t index = 0; index < sizeof expected / sizeof expected[0]; index++)
        cr_assert (strstr (child->text[0], expected[index]), "--help lacks \"%s\"",
                   expected[index]);
    s_child_destroy (&child);

    child = s_run ((const char *[]) { "--version", NULL }, NULL);
    cr_assert_eq (s_exit_code (child), 0);
    cr_assert_str_eq (child->text[0], "meshctl " MESH_VERSION "\n");
    s_child_destroy (&child);
}

Test (meshctl, usage_errors_exit_2)
{
    const char *const *cases[] = {
        (const char *[]) { NULL },
        (const char *[]) { "frobnicate", NULL },
        (const char *[]) { "--no-such-flag", "services", NULL },
        (const char *[]) { "call", "echo", "echo", NULL },
        (const char *[]) { "call", "echo", "echo", "{\"unterminated\":", NULL },
        (const char *[]) { "call", "mmi.service", "x", "{}", NULL },
        (const char *[]) { "--timeout", "soon", "services", NULL },
        (const char *[]) { "--pretty=maybe", "services", NULL },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        s_child_t *child = s_run (cases[index], NULL);
        cr_assert_eq (s_exit_code (child), 2, "case %zu: stderr %s", index, child->text[1]);
        cr_assert_neq (child->len[1], 0, "case %zu says nothing on stderr", index);
        cr_assert_eq (child->len[0], 0, "case %zu prints on stdout", index);
        s_child_destroy (&child);
    }
}

Test (meshctl, services_lists_workers_as_table_and_json, .init = s_setup_with_worker)
{
    s_child_t *child =
        s_run ((const char *[]) { "--broker", s_broker.endpoint, "services", NULL }, NULL);
    cr_assert_eq (s_exit_code (child), 0, "stderr: %s", child->text[1]);
    cr_assert (strstr (child->text[0], "NAME") && strstr (child->text[0], "IDLE_CREDIT"));
    const char *row = strstr (child->text[0], "\necho ");
    cr_assert_not_null (row, "no echo row in:\n%s", child->text[0]);
    unsigned long workers = 99, idle = 99;
    cr_assert_eq (sscanf (row, " echo %lu %lu", &workers, &idle), 2);
    cr_assert_eq (workers, 1);
    cr_assert_eq (idle, 2, "credit 2, nothing in flight");
    s_child_destroy (&child);

    child = s_run ((const char *[]) { "--broker", s_broker.endpoint, "services", "--json", NULL },
                   NULL);
    cr_assert_eq (s_exit_code (child), 0);
    json_error_t error;
    json_t *listing = json_loads (child->text[0], 0, &error);
    cr_assert_not_null (listing, "not JSON: %s", child->text[0]);
    json_t *first = json_array_get (json_object_get (listing, "services"), 0);
    cr_assert_str_eq (json_string_value (json_object_get (first, "name")), "echo");
    cr_assert_eq (json_integer_value (json_object_get (first, "workers")), 1);
    cr_assert (json_is_integer (json_object_get (first, "queued")));
    cr_assert (json_is_integer (json_object_get (first, "in_flight")));
    json_decref (listing);
    s_child_destroy (&child);
}

Test (meshctl, service_answers_200_or_404, .init = s_setup_with_worker)
{
    s_child_t *child =
        s_run ((const char *[]) { "--broker", s_broker.endpoint, "service", "echo", NULL }, NULL);
    cr_assert_eq (s_exit_code (child), 0);
    cr_assert_str_eq (child->text[0], "200\n");
    s_child_destroy (&child);
    child = s_run ((const char *[]) { "--broker", s_broker.endpoint, "service", "nobody", NULL },
                   NULL);
    cr_assert_eq (s_exit_code (child), 1);
    cr_assert_str_eq (child->text[0], "404\n");
    s_child_destroy (&child);
}

Test (meshctl, call_prints_the_reply_body_as_json, .init = s_setup_with_worker)
{
    const char *body = "{\"name\":\"Zo\\u00eb\",\"n\":[1,-2,2.5,null,true,{}]}";
    s_child_t *child = s_run (
        (const char *[]) { "--broker", s_broker.endpoint, "call", "echo", "echo", body, NULL },
        NULL);
    cr_assert_eq (s_exit_code (child), 0, "stderr: %s", child->text[1]);
    json_t *sent = json_loads (body, 0, NULL);
    json_t *printed = json_loads (child->text[0], 0, NULL);
    cr_assert (json_equal (sent, printed), "printed %s", child->text[0]);
    cr_assert_eq (strchr (child->text[0], '\n'), child->text[0] + child->len[0] - 1,
                  "one line");
    json_decref (printed);
    s_child_destroy (&child);

    //  A small reply, the body from stdin, and the envelope options. A reply
    //  this small lives inside its zmq_msg_t (no heap block), and the debug
    //  log line reuses the stack: together they catch views into a moved
    //  message.
    child = s_run ((const char *[]) { "--broker", s_broker.endpoint, "--id", "req-1", "--idem",
                                      "key-1", "--log-level", "debug", "call", "echo", "echo",
                                      "-", NULL },
                   "\"plain\"");
    cr_assert_eq (s_exit_code (child), 0, "stderr: %s", child->text[1]);
    cr_assert_str_eq (child->text[0], "\"plain\"\n");
    s_child_destroy (&child);

    child = s_run ((const char *[]) { "--broker", s_broker.endpoint, "--pretty", "call", "echo",
                                      "echo", body, NULL },
                   NULL);
    cr_assert_eq (s_exit_code (child), 0);
    printed = json_loads (child->text[0], 0, NULL);
    cr_assert (json_equal (sent, printed));
    cr_assert (strstr (child->text[0], "\n  \"name\""), "indented: %s", child->text[0]);
    json_decref (printed);
    json_decref (sent);
    s_child_destroy (&child);
}

Test (meshctl, call_error_reply_sets_exit_status, .init = s_setup_with_worker)
{
    s_child_t *child = s_run (
        (const char *[]) { "--broker", s_broker.endpoint, "call", "echo", "fail", "{}", NULL },
        NULL);
    cr_assert_eq (s_exit_code (child), 10 + MESH_CODE_NOT_FOUND);
    cr_assert_eq (child->len[0], 0, "nothing on stdout");
    json_t *report = json_loads (child->text[1], JSON_DISABLE_EOF_CHECK, NULL);
    cr_assert_not_null (report, "stderr is not JSON: %s", child->text[1]);
    json_t *error = json_object_get (report, "error");
    cr_assert_str_eq (json_string_value (json_object_get (error, "code")), "not_found");
    cr_assert_str_eq (json_string_value (json_object_get (error, "message")), "no user 42");
    json_decref (report);
    s_child_destroy (&child);

    //  A body with no JSON form is a failure to read the reply, not a mesh error
    child = s_run (
        (const char *[]) { "--broker", s_broker.endpoint, "call", "echo", "ext", "{}", NULL },
        NULL);
    cr_assert_eq (s_exit_code (child), 4);
    s_child_destroy (&child);
}

Test (meshctl, nothing_listening_means_deadline_or_timeout)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", mesh_test_free_port ());
    s_child_t *child = s_run ((const char *[]) { "--broker", endpoint, "--timeout", "200", "call",
                                                 "echo", "echo", "{}", NULL },
                              NULL);
    cr_assert_eq (s_exit_code (child), 10 + MESH_CODE_DEADLINE_EXCEEDED);
    cr_assert (strstr (child->text[1], "\"deadline_exceeded\""), "stderr: %s", child->text[1]);
    s_child_destroy (&child);
    child = s_run (
        (const char *[]) { "--broker", endpoint, "--timeout", "200", "services", NULL }, NULL);
    cr_assert_eq (s_exit_code (child), 3);
    s_child_destroy (&child);
}

Test (meshctl, events_prints_one_json_line_per_event, .init = s_setup)
{
    s_child_t *child = s_spawn ((const char *[]) { "--events", s_broker.xpub, "--count", "2",
                                                   "--timeout", "10000", "events", "user.",
                                                   NULL },
                                NULL);
    mesh_test_sockets_t *sockets = mesh_test_sockets_new (5000);
    cr_assert_not_null (sockets);
    void *publisher = mesh_test_sockets_open (sockets, ZMQ_PUB, s_broker.xsub);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 2);
    mesh_pack_cstr (&packer, "type");
    mesh_pack_cstr (&packer, "user.created");
    mesh_pack_cstr (&packer, "seq");
    msgpack_pack_uint64 (&packer, 7);
    //  Subscriptions travel to the proxy asynchronously (slow joiner): keep
    //  publishing a bad event then a good one, and one on a topic not
    //  subscribed, until meshctl has printed two good ones and exits.
    int64_t until = mesh_mono_ms () + 10000;
    while (child->pid > 0 && mesh_mono_ms () < until) {
        zmq_send (publisher, "user.created", 12, ZMQ_SNDMORE);
        zmq_send (publisher, "x", 1, ZMQ_SNDMORE);
        zmq_send (publisher, "y", 1, 0);
        zmq_send (publisher, "audit.other", 11, ZMQ_SNDMORE);
        zmq_send (publisher, buffer.data, buffer.size, 0);
        zmq_send (publisher, "user.created", 12, ZMQ_SNDMORE);
        zmq_send (publisher, buffer.data, buffer.size, 0);
        s_wait_exit (child, 20);
    }
    cr_assert (s_wait_exit (child, 5000), "meshctl events did not stop after --count 2");
    cr_assert_eq (s_exit_code (child), 0, "stderr: %s", child->text[1]);
    char *line = strtok (child->text[0], "\n");
    for (int count = 0; count < 2; count++, line = strtok (NULL, "\n")) {
        cr_assert_not_null (line, "event line %d missing", count);
        json_t *event = json_loads (line, 0, NULL);
        cr_assert_not_null (event, "not JSON: %s", line);
        cr_assert_str_eq (json_string_value (json_object_get (event, "topic")), "user.created");
        json_t *body = json_object_get (event, "event");
        cr_assert_eq (json_integer_value (json_object_get (body, "seq")), 7);
        json_decref (event);
    }
    cr_assert_null (line, "more than --count events printed");
    cr_assert (strstr (child->text[1], "\"malformed_event\""), "stderr: %s", child->text[1]);
    msgpack_sbuffer_destroy (&buffer);
    mesh_test_sockets_destroy (&sockets);
    s_child_destroy (&child);
}

Test (meshctl, events_silence_and_signals, .init = s_setup)
{
    s_child_t *child = s_run (
        (const char *[]) { "--events", s_broker.xpub, "--timeout", "200", "events", NULL }, NULL);
    cr_assert_eq (s_exit_code (child), 3);
    s_child_destroy (&child);

    const int signals[] = { SIGTERM, SIGINT };
    for (size_t index = 0; index < 2; index++) {
        child = s_spawn ((const char *[]) { "--events", s_broker.xpub, "--log-level", "info",
                                            "events", NULL },
                         NULL);
        //  Handlers are in place once it logs its subscription
        cr_assert (s_wait_text (child, 1, "subscribed", 5000), "stderr: %s", child->text[1]);
        kill (child->pid, signals[index]);
        cr_assert (s_wait_exit (child, 5000));
        cr_assert_eq (s_exit_code (child), 0, "signal %d", signals[index]);
        s_child_destroy (&child);
    }
}
