/*  =========================================================================
    mesh_test - helpers for tests that run real mesh processes
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_time.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

extern char **environ;

struct mesh_proc_s {
    pid_t pid;                  //  Child, or 0 once reaped
    char log_path[64];          //  Its stderr
};

//  --------------------------------------------------------------------------
int
mesh_test_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in address = { .sin_family = AF_INET };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof address;
    int port = -1;
    if (bind (fd, (struct sockaddr *) &address, sizeof address) == 0
        && getsockname (fd, (struct sockaddr *) &address, &len) == 0)
        port = ntohs (address.sin_port);
    close (fd);
    return port;
}

//  --------------------------------------------------------------------------
const char *
mesh_test_bin (const char *name, char *buffer, size_t size)
{
    //  MESH_PROCESS_BIN_DIR lets a sanitizer run swap in instrumented
    //  processes under uninstrumented tests (see tests/CMakeLists.txt)
    const char *dir = getenv ("MESH_PROCESS_BIN_DIR");
    if (!dir || !*dir)
        dir = getenv ("MESH_BIN_DIR");
    snprintf (buffer, size, "%s/%s", dir? dir: "bin", name);
    return buffer;
}

//  --------------------------------------------------------------------------
mesh_proc_t *
mesh_proc_start (const char *const *argv, const char *const *env)
{
    mesh_proc_t *self = mesh_alloc (sizeof (mesh_proc_t));
    snprintf (self->log_path, sizeof self->log_path, "/tmp/mesh-test-XXXXXX");
    int log_fd = mkstemp (self->log_path);
    if (log_fd < 0) {
        free (self);
        return NULL;
    }
    //  Environment: ours plus the extras (extras win by coming first)
    size_t ours = 0, extra = 0;
    while (environ[ours])
        ours++;
    while (env && env[extra])
        extra++;
    char **child_env = mesh_alloc ((ours + extra + 1) * sizeof (char *));
    size_t count = 0;
    for (size_t index = 0; index < extra; index++)
        child_env[count++] = (char *) env[index];
    for (size_t index = 0; index < ours; index++)
        child_env[count++] = environ[index];

    //  fork + exec rather than posix_spawn: the child must ask the kernel to
    //  kill it when the test process dies (timeout, crash, failed assert),
    //  or orphans would hold ctest's output pipe and ports open.
    pid_t parent = getpid ();
    self->pid = fork ();
    if (self->pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (127);        //  Parent already gone
        int null_fd = open ("/dev/null", O_RDWR);
        dup2 (null_fd, STDIN_FILENO);
        dup2 (null_fd, STDOUT_FILENO);
        dup2 (log_fd, STDERR_FILENO);
        //  The test process may block signals; the child starts clean
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        execve (argv[0], (char *const *) argv, child_env);
        _exit (127);
    }
    free (child_env);
    close (log_fd);
    if (self->pid < 0) {
        unlink (self->log_path);
        free (self);
        return NULL;
    }
    return self;
}

//  --------------------------------------------------------------------------
char *
mesh_proc_log (mesh_proc_t *self)
{
    FILE *file = fopen (self->log_path, "r");
    if (!file)
        return mesh_strndup ("", 0);
    fseek (file, 0, SEEK_END);
    long size = ftell (file);
    fseek (file, 0, SEEK_SET);
    char *text = mesh_alloc ((size_t) size + 1);
    size_t got = fread (text, 1, (size_t) size, file);
    text[got] = '\0';
    fclose (file);
    return text;
}

//  --------------------------------------------------------------------------
bool
mesh_proc_wait_log (mesh_proc_t *self, const char *text, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (true) {
        char *log = mesh_proc_log (self);
        bool seen = strstr (log, text) != NULL;
        free (log);
        if (seen)
            return true;
        if (mesh_mono_ms () >= until)
            return false;
        //  The log is a file: poll it at a short interval (bounded by until)
        usleep (10 * 1000);
    }
}

//  --------------------------------------------------------------------------
void
mesh_proc_signal (mesh_proc_t *self, int signal)
{
    if (self && self->pid > 0)
        kill (self->pid, signal);
}

//  --------------------------------------------------------------------------
bool
mesh_proc_wait_exit (mesh_proc_t *self, int timeout_ms, int *status)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (self->pid > 0) {
        int child_status = 0;
        pid_t done = waitpid (self->pid, &child_status, WNOHANG);
        if (done == self->pid) {
            self->pid = 0;
            if (status)
                *status = child_status;
            return true;
        }
        if (done < 0 || mesh_mono_ms () >= until)
            return false;
        usleep (5 * 1000);
    }
    return true;
}

//  --------------------------------------------------------------------------
pid_t
mesh_proc_pid (const mesh_proc_t *self)
{
    return self->pid;
}

//  --------------------------------------------------------------------------
void
mesh_proc_destroy (mesh_proc_t **self_p)
{
    if (self_p && *self_p) {
        mesh_proc_t *self = *self_p;
        if (self->pid > 0) {
            kill (self->pid, SIGKILL);
            waitpid (self->pid, NULL, 0);
        }
        unlink (self->log_path);
        free (self);
        *self_p = NULL;
    }
}

//  Start the broker once on broker's ports. Returns true when it serves
//  within 10 s; otherwise kills it and returns false.
static bool
s_broker_start_once (mesh_test_broker_t *broker, int heartbeat_ms, const char *const *extra)
{
    snprintf (broker->endpoint, sizeof broker->endpoint, "tcp://127.0.0.1:%d", broker->port);
    snprintf (broker->xsub, sizeof broker->xsub, "tcp://127.0.0.1:%d", broker->xsub_port);
    snprintf (broker->xpub, sizeof broker->xpub, "tcp://127.0.0.1:%d", broker->xpub_port);
    snprintf (broker->admin, sizeof broker->admin, "127.0.0.1:%d", broker->admin_port);
    char path[512], heartbeat[16];
    snprintf (heartbeat, sizeof heartbeat, "%d", heartbeat_ms);
    const char *argv[32] = { mesh_test_bin ("mesh-broker", path, sizeof path),
                             "--bind", broker->endpoint, "--events-xsub", broker->xsub,
                             "--events-xpub", broker->xpub, "--admin", broker->admin,
                             "--heartbeat-ms", heartbeat };
    int argc = 11;
    for (int index = 0; extra && extra[index] && argc < 31; index++)
        argv[argc++] = extra[index];
    argv[argc] = NULL;
    broker->proc = mesh_proc_start (argv, NULL);
    if (!broker->proc)
        return false;
    //  Ready when it answers MMI (retry: the first attempt may race the
    //  bind). A broker that exited (port taken) will never answer.
    int64_t until = mesh_mono_ms () + 10000;
    char answer[16];
    while (mesh_mono_ms () < until && !mesh_proc_wait_exit (broker->proc, 0, NULL))
        if (broker->ready_log? mesh_proc_wait_log (broker->proc, broker->ready_log, 500)
                             : mesh_test_mmi (broker->endpoint, "mmi.service", "none", answer,
                                              sizeof answer, 500))
            return true;
    //  Say why on stderr (ctest shows it for a failed test; a cr_log_warn
    //  would fail a test whose next try succeeds)
    char *log = mesh_proc_log (broker->proc);
    size_t len = strlen (log);
    fprintf (stderr, "mesh_test: mesh-broker on %s did not serve; log tail:\n%s\n",
             broker->endpoint, log + (len > 2000? len - 2000: 0));
    free (log);
    mesh_proc_destroy (&broker->proc);     //  Not _stop: that expects exit 0
    return false;
}

//  --------------------------------------------------------------------------
bool
mesh_test_broker_start (mesh_test_broker_t *broker, int heartbeat_ms, const char *const *extra)
{
    if (broker->port != 0)
        return s_broker_start_once (broker, heartbeat_ms, extra);
    for (int attempt = 0; attempt < 3; attempt++) {
        broker->port = mesh_test_free_port ();
        broker->xsub_port = mesh_test_free_port ();
        broker->xpub_port = mesh_test_free_port ();
        broker->admin_port = mesh_test_free_port ();
        if (s_broker_start_once (broker, heartbeat_ms, extra))
            return true;
    }
    return false;
}

//  --------------------------------------------------------------------------
void
mesh_test_broker_stop (mesh_test_broker_t *broker)
{
    if (!broker->proc)
        return;
    if (mesh_proc_pid (broker->proc) > 0) {
        mesh_proc_signal (broker->proc, SIGTERM);
        int status = -1;
        bool exited = mesh_proc_wait_exit (broker->proc, 10000, &status);
        if (!exited || !WIFEXITED (status) || WEXITSTATUS (status) != 0) {
            char *log = mesh_proc_log (broker->proc);
            size_t len = strlen (log);
            cr_expect (false, "broker did not exit 0 on SIGTERM (status %d); log tail:\n%s",
                       status, log + (len > 4000? len - 4000: 0));
            free (log);
        }
    }
    mesh_proc_destroy (&broker->proc);
}

//  Send an MMI query and copy the raw reply body. Returns the body size or -1.
static int
s_mmi_raw (const char *endpoint, const mesh_curve_t *curve, const char *mmi_service,
           const char *body, void *reply, size_t size, int timeout_ms)
{
    void *context = zmq_ctx_new ();
    void *dealer = zmq_socket (context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    int got = -1;
    if (mesh_curve_connect (curve, dealer, endpoint) == 0) {
        zmq_send (dealer, "", 0, ZMQ_SNDMORE);
        zmq_send (dealer, MDP_CLIENT, strlen (MDP_CLIENT), ZMQ_SNDMORE);
        zmq_send (dealer, mmi_service, strlen (mmi_service), ZMQ_SNDMORE);
        zmq_send (dealer, body, strlen (body), 0);
        zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, timeout_ms) == 1) {
            mdp_frames_t frames;
            if (mdp_frames_recv (&frames, dealer, 0) == 0) {
                if (frames.count == 4) {
                    size_t len = zmq_msg_size (&frames.frame[3]);
                    if (len <= size) {
                        memcpy (reply, zmq_msg_data (&frames.frame[3]), len);
                        got = (int) len;
                    }
                }
                mdp_frames_close (&frames);
            }
        }
    }
    zmq_close (dealer);
    zmq_ctx_term (context);
    return got;
}

//  --------------------------------------------------------------------------
bool
mesh_test_mmi (const char *endpoint, const char *mmi_service, const char *body, char *answer,
               size_t size, int timeout_ms)
{
    return mesh_test_mmi_curve (endpoint, NULL, mmi_service, body, answer, size, timeout_ms);
}

//  --------------------------------------------------------------------------
bool
mesh_test_mmi_curve (const char *endpoint, const mesh_curve_t *curve, const char *mmi_service,
                     const char *body, char *answer, size_t size, int timeout_ms)
{
    int len = s_mmi_raw (endpoint, curve, mmi_service, body, answer, size - 1, timeout_ms);
    if (len < 0)
        return false;
    answer[len] = '\0';
    return true;
}

//  Fill *stats for `service` from an mmi.services reply. Returns false when
//  the reply is not the expected map.
static bool
s_parse_stats (const char *reply, size_t len, const char *service,
               mesh_test_service_stats_t *stats)
{
    memset (stats, 0, sizeof *stats);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    bool valid = msgpack_unpack_next (&unpacked, reply, len, NULL) == MSGPACK_UNPACK_SUCCESS
              && unpacked.data.type == MSGPACK_OBJECT_MAP && unpacked.data.via.map.size == 1
              && unpacked.data.via.map.ptr[0].val.type == MSGPACK_OBJECT_ARRAY;
    msgpack_object list = unpacked.data.via.map.ptr[0].val;
    for (uint32_t index = 0; valid && index < list.via.array.size; index++) {
        msgpack_object entry = list.via.array.ptr[index];
        mesh_test_service_stats_t found = { .listed = true };
        bool match = false;
        for (uint32_t field = 0; entry.type == MSGPACK_OBJECT_MAP && field < entry.via.map.size;
             field++) {
            msgpack_object_kv *pair = &entry.via.map.ptr[field];
            if (pair->key.type != MSGPACK_OBJECT_STR)
                continue;
            char key[16];
            snprintf (key, sizeof key, "%.*s", (int) pair->key.via.str.size,
                      pair->key.via.str.ptr);
            size_t value = pair->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER
                         ? (size_t) pair->val.via.u64
                         : 0;
            if (strcmp (key, "name") == 0)
                match = pair->val.type == MSGPACK_OBJECT_STR
                     && pair->val.via.str.size == strlen (service)
                     && memcmp (pair->val.via.str.ptr, service, strlen (service)) == 0;
            else
            if (strcmp (key, "workers") == 0)
                found.workers = value;
            else
            if (strcmp (key, "idle_credit") == 0)
                found.idle_credit = value;
            else
            if (strcmp (key, "queued") == 0)
                found.queued = value;
            else
            if (strcmp (key, "in_flight") == 0)
                found.in_flight = value;
        }
        if (match)
            *stats = found;
    }
    msgpack_unpacked_destroy (&unpacked);
    return valid;
}

//  --------------------------------------------------------------------------
bool
mesh_test_service_stats (const char *endpoint, const char *service,
                         mesh_test_service_stats_t *stats, int timeout_ms)
{
    char *reply = mesh_alloc (1 << 20);
    int len = s_mmi_raw (endpoint, NULL, "mmi.services", "", reply, 1 << 20, timeout_ms);
    bool valid = len > 0 && s_parse_stats (reply, (size_t) len, service, stats);
    free (reply);
    return valid;
}

//  --------------------------------------------------------------------------
bool
mesh_test_wait_workers (const char *endpoint, const char *service, size_t workers,
                        int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (mesh_mono_ms () < until) {
        mesh_test_service_stats_t stats;
        if (mesh_test_service_stats (endpoint, service, &stats, 500) && stats.workers >= workers)
            return true;
        usleep (10 * 1000);     //  Between bounded queries; the deadline bounds the loop
    }
    return false;
}

//  --------------------------------------------------------------------------
bool
mesh_test_wait_load (const char *endpoint, const char *service, size_t queued,
                     size_t in_flight, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (mesh_mono_ms () < until) {
        mesh_test_service_stats_t stats;
        if (mesh_test_service_stats (endpoint, service, &stats, 500) && stats.queued >= queued
            && stats.in_flight >= in_flight)
            return true;
        usleep (10 * 1000);
    }
    return false;
}

//  --------------------------------------------------------------------------
mesh_proc_t *
mesh_test_echo_worker (const char *endpoint, const char *service, int credit, int heartbeat_ms,
                       const char *const *extra)
{
    char path[512], credit_text[16], heartbeat[16];
    snprintf (credit_text, sizeof credit_text, "%d", credit);
    snprintf (heartbeat, sizeof heartbeat, "%d", heartbeat_ms);
    const char *argv[32] = { mesh_test_bin ("mesh-echo-worker", path, sizeof path),
                             "--broker", endpoint, "--service", service, "--credit", credit_text,
                             "--heartbeat-ms", heartbeat };
    int argc = 9;
    for (int index = 0; extra && extra[index] && argc < 31; index++)
        argv[argc++] = extra[index];
    argv[argc] = NULL;
    return mesh_proc_start (argv, NULL);
}

//  --------------------------------------------------------------------------
bool
mesh_test_wait_service (const char *endpoint, const char *service, const char *want,
                        char *answer, size_t size, int timeout_ms)
{
    char last[16] = "";
    int64_t until = mesh_mono_ms () + timeout_ms;
    bool seen = false;
    while (!seen) {
        int64_t left = until - mesh_mono_ms ();
        if (left <= 0)
            break;
        char got[16];
        if (mesh_test_mmi (endpoint, "mmi.service", service, got, sizeof got,
                           left < 1000? (int) left: 1000)) {
            snprintf (last, sizeof last, "%s", got);
            seen = strcmp (got, want) == 0;
        }
        if (!seen)
            usleep (10 * 1000); //  Between bounded queries; the deadline bounds the loop
    }
    if (answer && size > 0)
        snprintf (answer, size, "%s", last);
    return seen;
}

//  --------------------------------------------------------------------------
void
mesh_test_pack_sleep (msgpack_sbuffer *buffer, uint32_t ms)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 1);
    mesh_pack_cstr (&packer, "ms");
    msgpack_pack_uint32 (&packer, ms);
}

//  --------------------------------------------------------------------------
void
mesh_test_send_request (void *dealer, const char *service, const char *id, const char *method,
                        uint64_t deadline_ms)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    mesh_request_head_t head = { .id = id, .method = method, .deadline_ms = deadline_ms };
    mesh_envelope_pack_request_head (&packer, &head);
    msgpack_pack_nil (&packer);
    const void *parts[] = { "", MDP_CLIENT, service, buffer.data };
    size_t sizes[] = { 0, strlen (MDP_CLIENT), strlen (service), buffer.size };
    int rc = mdp_send_parts (dealer, 0, 4, parts, sizes);
    msgpack_sbuffer_destroy (&buffer);
    cr_assert_eq (rc, 0, "send %s to %s: %s", id, service, zmq_strerror (zmq_errno ()));
}

//  --------------------------------------------------------------------------
bool
mesh_test_recv_reply (void *dealer, int timeout_ms, mesh_test_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) != 1)
        return false;
    reply->at_mono_ms = mesh_mono_ms ();
    reply->at_wall_ms = mesh_wall_ms ();
    mdp_frames_t frames;
    cr_assert_eq (mdp_frames_recv (&frames, dealer, 0), 0);
    cr_assert_eq (frames.count, 4, "reply has %d frames, want 4", frames.count);
    cr_assert (mdp_frame_empty (&frames.frame[0]), "reply has no empty delimiter");
    cr_assert (mdp_frame_eq (&frames.frame[1], MDP_CLIENT), "reply header is not MDPC01");
    zmq_msg_t *service = &frames.frame[2];
    snprintf (reply->service, sizeof reply->service, "%.*s", (int) zmq_msg_size (service),
              (const char *) zmq_msg_data (service));
    mesh_envelope_decoder_t *decoder = mesh_envelope_decoder_new (0);
    mesh_envelope_t envelope;
    int rc = mesh_envelope_decode (decoder, zmq_msg_data (&frames.frame[3]),
                                   zmq_msg_size (&frames.frame[3]), MESH_ENVELOPE_REPLY, &envelope);
    cr_assert_eq (rc, 0, "reply is not an envelope: %s", mesh_envelope_decoder_error (decoder));
    snprintf (reply->id, sizeof reply->id, "%.*s", (int) envelope.id.len, envelope.id.ptr);
    reply->is_error = envelope.is_error;
    reply->code = envelope.code;
    mesh_envelope_decoder_destroy (&decoder);
    mdp_frames_close (&frames);
    return true;
}

//  --------------------------------------------------------------------------
//  Sockets

#define S_MAX_SOCKETS 32

struct mesh_test_sockets_s {
    void *context;              //  Owned
    void *socket[S_MAX_SOCKETS];  //  Owned, in opening order
    int count;                  //  Sockets in socket[]
    int send_timeout_ms;        //  ZMQ_SNDTIMEO of each
};

//  --------------------------------------------------------------------------
mesh_test_sockets_t *
mesh_test_sockets_new (int send_timeout_ms)
{
    void *context = zmq_ctx_new ();
    if (!context)
        return NULL;
    mesh_test_sockets_t *self = mesh_alloc (sizeof (mesh_test_sockets_t));
    self->context = context;
    self->send_timeout_ms = send_timeout_ms;
    return self;
}

//  --------------------------------------------------------------------------
void *
mesh_test_sockets_open (mesh_test_sockets_t *self, int type, const char *endpoint)
{
    cr_assert_not_null (self);
    cr_assert_lt (self->count, S_MAX_SOCKETS, "more than %d sockets in one test", S_MAX_SOCKETS);
    void *socket = zmq_socket (self->context, type);
    cr_assert_not_null (socket);
    self->socket[self->count++] = socket;
    int linger = 0;
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (socket, ZMQ_SNDTIMEO, &self->send_timeout_ms, sizeof self->send_timeout_ms);
    if (endpoint)
        cr_assert_eq (zmq_connect (socket, endpoint), 0, "connect %s: %s", endpoint,
                      zmq_strerror (zmq_errno ()));
    return socket;
}

//  --------------------------------------------------------------------------
void *
mesh_test_sockets_context (mesh_test_sockets_t *self)
{
    return self->context;
}

//  --------------------------------------------------------------------------
void
mesh_test_sockets_destroy (mesh_test_sockets_t **self_p)
{
    if (self_p && *self_p) {
        mesh_test_sockets_t *self = *self_p;
        //  Every socket first, or zmq_ctx_term blocks
        for (int index = 0; index < self->count; index++)
            zmq_close (self->socket[index]);
        zmq_ctx_term (self->context);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  HTTP and Prometheus text

typedef struct {
    char *data;                 //  NUL-terminated, grown with each chunk
    size_t size;                //  Bytes before the NUL
} s_text_t;

//  libcurl body sink: append to the s_text_t in `arg`.
static size_t
s_on_body (char *data, size_t size, size_t count, void *arg)
{
    s_text_t *text = arg;
    size_t bytes = size * count;
    char *grown = realloc (text->data, text->size + bytes + 1);
    if (!grown)
        return 0;               //  libcurl then fails the transfer
    text->data = grown;
    memcpy (text->data + text->size, data, bytes);
    text->size += bytes;
    text->data[text->size] = '\0';
    return bytes;
}

//  --------------------------------------------------------------------------
char *
mesh_test_http_get (const char *url, long *status)
{
    long code = 0;
    s_text_t text = { NULL, 0 };
    CURL *curl = curl_easy_init ();
    CURLcode rc = CURLE_FAILED_INIT;
    if (curl) {
        curl_easy_setopt (curl, CURLOPT_URL, url);
        curl_easy_setopt (curl, CURLOPT_NOPROXY, "*");     //  Ignore http_proxy of the environment
        curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);     //  No SIGALRM for timeouts
        curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
        curl_easy_setopt (curl, CURLOPT_WRITEDATA, &text);
        rc = curl_easy_perform (curl);
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup (curl);
    }
    if (rc != CURLE_OK) {
        free (text.data);
        text.data = NULL;
        code = 0;
    }
    else
    if (!text.data)
        text.data = mesh_strndup ("", 0);       //  An empty body is still a body
    if (status)
        *status = code;
    return text.data;
}

//  --------------------------------------------------------------------------
char *
mesh_test_broker_metrics (const mesh_test_broker_t *broker)
{
    char url[128];
    snprintf (url, sizeof url, "http://%s/metrics", broker->admin);
    long status = 0;
    char *text = mesh_test_http_get (url, &status);
    if (text && status != 200) {
        free (text);
        text = NULL;
    }
    return text;
}

//  True when `labels` stands between `from` and `to` (not past `to`).
static bool
s_span_contains (const char *from, const char *to, const char *labels)
{
    size_t len = strlen (labels);
    for (const char *at = from; at + len <= to; at++)
        if (memcmp (at, labels, len) == 0)
            return true;
    return false;
}

//  --------------------------------------------------------------------------
bool
mesh_test_promtool_check (const char *text, char *output, size_t size)
{
    *output = '\0';
    if (access ("/usr/bin/promtool", X_OK) != 0)
        return true;
    char path[] = "/tmp/mesh-metrics-XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    cr_assert_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
    char command[128];
    snprintf (command, sizeof command, "/usr/bin/promtool check metrics < %s 2>&1", path);
    FILE *check = popen (command, "r");
    size_t got = check? fread (output, 1, size - 1, check): 0;
    output[got] = '\0';
    int status = check? pclose (check): -1;
    unlink (path);
    return status == 0;
}

//  --------------------------------------------------------------------------
double
mesh_test_metric (const char *text, const char *name, const char *labels)
{
    double sum = -1;
    size_t name_len = strlen (name);
    const char *line = text;
    while (line && *line) {
        const char *end = strchr (line, '\n');
        const char *stop = end? end: line + strlen (line);
        if (*line != '#' && (size_t) (stop - line) > name_len
            && strncmp (line, name, name_len) == 0
            && (line[name_len] == '{' || line[name_len] == ' ')) {
            //  The value follows the last space of the line; the label set
            //  ends at the last '}' before it (label values may hold spaces
            //  and braces; the renderer writes no timestamps)
            const char *space = NULL, *close = NULL;
            for (const char *at = line + name_len; at < stop; at++)
                if (*at == ' ')
                    space = at;
            for (const char *at = line + name_len; space && at < space; at++)
                if (*at == '}')
                    close = at;
            bool match = !labels
                      || (line[name_len] == '{' && close
                          && s_span_contains (line + name_len, close, labels));
            if (space && match) {
                if (sum < 0)
                    sum = 0;
                sum += strtod (space + 1, NULL);
            }
        }
        line = end? end + 1: NULL;
    }
    return sum;
}

//  --------------------------------------------------------------------------
void
mesh_test_pg_drop (PGconn *admin, const char *name)
{
    if (!admin || !*name)
        return;
    char sql[160];
    snprintf (sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", name);
    PQclear (PQexec (admin, sql));
}

//  --------------------------------------------------------------------------
void
mesh_test_pg_exec (PGconn *conn, const char *sql)
{
    PGresult *result = PQexec (conn, sql);
    ExecStatusType status = PQresultStatus (result);
    cr_assert (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK, "%s: %s", sql,
               PQerrorMessage (conn));
    PQclear (result);
}

//  --------------------------------------------------------------------------
bool
mesh_test_pg_schema_new (mesh_test_pg_schema_t *schema, const char *prefix)
{
    memset (schema, 0, sizeof *schema);
    const char *url = getenv ("DATABASE_URL");
    if (!url || !*url)
        return false;
    static int counter;
    snprintf (schema->name, sizeof schema->name, "%s_%ld_%d", prefix, (long) getpid (),
              ++counter);
    //  A URL takes options as a query parameter ('=' escaped); a keyword
    //  string as one more keyword
    if (strstr (url, "://"))
        snprintf (schema->conninfo, sizeof schema->conninfo, "%s%coptions=-csearch_path%%3D%s",
                  url, strchr (url, '?')? '&': '?', schema->name);
    else
        snprintf (schema->conninfo, sizeof schema->conninfo, "%s options=-csearch_path=%s", url,
                  schema->name);
    schema->admin = PQconnectdb (url);
    cr_assert_eq (PQstatus (schema->admin), CONNECTION_OK, "%s",
                  PQerrorMessage (schema->admin));
    //  No "drop cascades to ..." NOTICEs at teardown
    mesh_test_pg_exec (schema->admin, "SET client_min_messages = warning");
    char sql[160];
    snprintf (sql, sizeof sql, "CREATE SCHEMA %s", schema->name);
    mesh_test_pg_exec (schema->admin, sql);
    return true;
}

//  --------------------------------------------------------------------------
void
mesh_test_pg_schema_drop (mesh_test_pg_schema_t *schema)
{
    if (schema->admin && *schema->name) {
        char sql[160];
        snprintf (sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema->name);
        PQclear (PQexec (schema->admin, sql));
    }
    PQfinish (schema->admin);   //  Accepts NULL
    memset (schema, 0, sizeof *schema);
}

//  --------------------------------------------------------------------------
long
mesh_test_pg_long (PGconn *conn, const char *sql, const char *param)
{
    const char *params[1] = { param };
    PGresult *result = PQexecParams (conn, sql, param? 1: 0, NULL, params, NULL, NULL, 0);
    cr_assert_eq (PQresultStatus (result), PGRES_TUPLES_OK, "%s: %s", sql,
                  PQerrorMessage (conn));
    cr_assert_eq (PQntuples (result), 1, "%s", sql);
    long value = strtol (PQgetvalue (result, 0, 0), NULL, 10);
    PQclear (result);
    return value;
}

//  --------------------------------------------------------------------------
//  A worker that holds every request.
pid_t
mesh_test_holder_start (const char *endpoint, const char *service, int heartbeat_ms)
{
    fflush (NULL);
    pid_t pid = fork ();
    cr_assert_geq (pid, 0, "fork failed");
    if (pid > 0)
        return pid;
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    void *context = zmq_ctx_new ();
    void *dealer = zmq_socket (context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect (dealer, endpoint) != 0)
        _exit (1);
    unsigned char command = MDP_READY;
    const void *ready[] = { "", MDP_WORKER, &command, service };
    size_t ready_sizes[] = { 0, strlen (MDP_WORKER), 1, strlen (service) };
    mdp_send_parts (dealer, 0, 4, ready, ready_sizes);
    int64_t give_up_ms = mesh_mono_ms () + 120000;
    int64_t heartbeat_at_ms = mesh_mono_ms () + heartbeat_ms;
    while (mesh_mono_ms () < give_up_ms) {
        int64_t wait_ms = heartbeat_at_ms - mesh_mono_ms ();
        zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, (long) (wait_ms > 0? wait_ms: 0));
        mdp_frames_t frames;
        while (mdp_frames_recv (&frames, dealer, ZMQ_DONTWAIT) == 0)
            mdp_frames_close (&frames);     //  Requests are held forever
        if (mesh_mono_ms () >= heartbeat_at_ms) {
            command = MDP_HEARTBEAT;
            const void *beat[] = { "", MDP_WORKER, &command };
            size_t beat_sizes[] = { 0, strlen (MDP_WORKER), 1 };
            mdp_send_parts (dealer, ZMQ_DONTWAIT, 3, beat, beat_sizes);
            heartbeat_at_ms = mesh_mono_ms () + heartbeat_ms;
        }
    }
    _exit (0);
}
