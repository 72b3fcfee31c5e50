/*  =========================================================================
    mesh_test - helpers for tests that run real mesh processes
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
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
    const char *dir = getenv ("MESH_BIN_DIR");
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

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, log_fd, STDERR_FILENO);
    posix_spawn_file_actions_addopen (&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    int rc = posix_spawn (&self->pid, argv[0], &actions, NULL, (char *const *) argv, child_env);
    posix_spawn_file_actions_destroy (&actions);
    free (child_env);
    close (log_fd);
    if (rc != 0) {
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

//  --------------------------------------------------------------------------
bool
mesh_test_broker_start (mesh_test_broker_t *broker, int heartbeat_ms, const char *const *extra)
{
    if (broker->port == 0) {
        broker->port = mesh_test_free_port ();
        broker->xsub_port = mesh_test_free_port ();
        broker->xpub_port = mesh_test_free_port ();
        broker->admin_port = mesh_test_free_port ();
    }
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
    //  Ready when it answers MMI (retry: the first attempt may race the bind)
    int64_t until = mesh_mono_ms () + 10000;
    char answer[16];
    while (mesh_mono_ms () < until)
        if (mesh_test_mmi (broker->endpoint, "mmi.service", "none", answer, sizeof answer, 500))
            return true;
    return false;
}

//  --------------------------------------------------------------------------
void
mesh_test_broker_stop (mesh_test_broker_t *broker)
{
    if (!broker->proc)
        return;
    mesh_proc_signal (broker->proc, SIGTERM);
    if (!mesh_proc_wait_exit (broker->proc, 5000, NULL))
        mesh_proc_signal (broker->proc, SIGKILL);
    mesh_proc_destroy (&broker->proc);
}

//  Send an MMI query and copy the raw reply body. Returns the body size or -1.
static int
s_mmi_raw (const char *endpoint, const char *mmi_service, const char *body, void *reply,
           size_t size, int timeout_ms)
{
    void *context = zmq_ctx_new ();
    void *dealer = zmq_socket (context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    int got = -1;
    if (zmq_connect (dealer, endpoint) == 0) {
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
    int len = s_mmi_raw (endpoint, mmi_service, body, answer, size - 1, timeout_ms);
    if (len < 0)
        return false;
    answer[len] = '\0';
    return true;
}

//  Workers of `service` in an mmi.services reply, or 0.
static size_t
s_workers_of (const char *reply, size_t len, const char *service)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t workers = 0;
    if (msgpack_unpack_next (&unpacked, reply, len, NULL) == MSGPACK_UNPACK_SUCCESS
        && unpacked.data.type == MSGPACK_OBJECT_MAP && unpacked.data.via.map.size == 1) {
        msgpack_object list = unpacked.data.via.map.ptr[0].val;
        for (uint32_t index = 0; list.type == MSGPACK_OBJECT_ARRAY && index < list.via.array.size;
             index++) {
            msgpack_object entry = list.via.array.ptr[index];
            bool match = false;
            size_t count = 0;
            for (uint32_t field = 0; entry.type == MSGPACK_OBJECT_MAP && field < entry.via.map.size;
                 field++) {
                msgpack_object_kv *pair = &entry.via.map.ptr[field];
                if (pair->key.via.str.size == 4 && memcmp (pair->key.via.str.ptr, "name", 4) == 0)
                    match = pair->val.type == MSGPACK_OBJECT_STR
                         && pair->val.via.str.size == strlen (service)
                         && memcmp (pair->val.via.str.ptr, service, strlen (service)) == 0;
                if (pair->key.via.str.size == 7
                    && memcmp (pair->key.via.str.ptr, "workers", 7) == 0)
                    count = (size_t) pair->val.via.u64;
            }
            if (match)
                workers = count;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    return workers;
}

//  --------------------------------------------------------------------------
bool
mesh_test_wait_workers (const char *endpoint, const char *service, size_t workers,
                        int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    static char reply[65536];
    while (mesh_mono_ms () < until) {
        int len = s_mmi_raw (endpoint, "mmi.services", "", reply, sizeof reply, 500);
        if (len > 0 && s_workers_of (reply, (size_t) len, service) >= workers)
            return true;
        usleep (10 * 1000);     //  Between bounded queries; the deadline bounds the loop
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
