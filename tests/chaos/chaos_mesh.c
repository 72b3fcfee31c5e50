/*  =========================================================================
    chaos_mesh - the whole mesh under a supervisor that breaks it

    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */

#include "chaos_mesh.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"
#include "mesh_test_http.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define S_READY_MS 30000 //  Bound on one process becoming ready
#define S_SAMPLE_MS 250  //  RSS sampling interval
#define S_PATH 512

struct chaos_mesh_s {
    chaos_mesh_config_t config;
    char keys_dir[200];
    char database_url[S_PATH];
    int broker_port, xsub_port, xpub_port, admin_port, audit_admin_port, http_port;
    char base[64];
    //  Only the fault thread starts and ends processes; the sampler reads
    //  their pids, so both hold the lock around the table
    pthread_mutex_t lock;
    mesh_proc_t *procs[CHAOS_ROLES];
    chaos_rss_t rss[CHAOS_ROLES];
    bool sampling;
    bool sampler_started;
    pthread_t sampler;
};

static const char *const s_names[CHAOS_ROLES] = {"mesh-broker", "mesh-user-0", "mesh-user-1",
                                                 "mesh-audit", "mesh-gateway"};

//  --------------------------------------------------------------------------
const char *
chaos_role_name (chaos_role_t role)
{
    return role < CHAOS_ROLES ? s_names[role] : "?";
}

//  --------------------------------------------------------------------------
chaos_mesh_t *
chaos_mesh_new (const chaos_mesh_config_t *config)
{
    chaos_mesh_t *self = mesh_alloc (sizeof (chaos_mesh_t));
    self->config = *config;
    snprintf (self->keys_dir, sizeof self->keys_dir, "%s", config->keys_dir);
    snprintf (self->database_url, sizeof self->database_url, "%s", config->database_url);
    self->config.keys_dir = self->keys_dir;
    self->config.database_url = self->database_url;
    int *ports[] = {&self->broker_port, &self->xsub_port,        &self->xpub_port,
                    &self->admin_port,  &self->audit_admin_port, &self->http_port};
    for (size_t index = 0; index < sizeof ports / sizeof ports[0]; index++) {
        *ports[index] = mesh_test_free_port ();
        if (*ports[index] <= 0) {
            free (self);
            return NULL;
        }
    }
    snprintf (self->base, sizeof self->base, "http://127.0.0.1:%d", self->http_port);
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

//  --------------------------------------------------------------------------
const char *
chaos_mesh_base (const chaos_mesh_t *self)
{
    return self->base;
}

//  Resident set of `pid` in KiB, -1 when it cannot be read (gone, zombie).
static long
s_rss_kb (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets (line, sizeof line, file))
        if (strncmp (line, "VmRSS:", 6) == 0) {
            kb = strtol (line + 6, NULL, 10);
            break;
        }
    fclose (file);
    return kb;
}

static void *
s_sampler (void *arg)
{
    chaos_mesh_t *self = arg;
    while (true) {
        pthread_mutex_lock (&self->lock);
        bool sampling = self->sampling;
        for (int role = 0; sampling && role < CHAOS_ROLES; role++) {
            if (!self->procs[role])
                continue;
            long kb = s_rss_kb (mesh_proc_pid (self->procs[role]));
            if (kb <= 0)
                continue;
            chaos_rss_t *rss = &self->rss[role];
            if (rss->samples == 0)
                rss->first_kb = kb;
            if (kb > rss->max_kb)
                rss->max_kb = kb;
            rss->last_kb = kb;
            rss->samples++;
        }
        pthread_mutex_unlock (&self->lock);
        if (!sampling)
            return NULL;
        struct timespec pause = {0, S_SAMPLE_MS * 1000000L};
        nanosleep (&pause, NULL);
    }
}

//  --------------------------------------------------------------------------
chaos_rss_t
chaos_mesh_rss (chaos_mesh_t *self, chaos_role_t role)
{
    pthread_mutex_lock (&self->lock);
    chaos_rss_t rss = self->rss[role];
    pthread_mutex_unlock (&self->lock);
    return rss;
}

//  Registrations of a `user` worker the broker has logged so far.
static size_t
s_user_registrations (chaos_mesh_t *self)
{
    pthread_mutex_lock (&self->lock);
    char *log = self->procs[CHAOS_BROKER] ? mesh_proc_log (self->procs[CHAOS_BROKER]) : NULL;
    pthread_mutex_unlock (&self->lock);
    size_t count = 0;
    for (char *line = log; line && *line;) {
        char *end = strchr (line, '\n');
        if (end)
            *end = '\0';
        if (strstr (line, "\"worker registered\"") && strstr (line, "\"service\":\"user\""))
            count++;
        line = end ? end + 1 : NULL;
    }
    free (log);
    return count;
}

//  Argument vector of `role` into argv (NULL-terminated); the strings live
//  in `text` (rows of S_PATH bytes).
static void
s_argv (const chaos_mesh_t *self, chaos_role_t role, const char *argv[32], char text[][S_PATH])
{
    size_t count = 0, row = 0;
#define S_ARG(...)                                                                                 \
    do {                                                                                           \
        snprintf (text[row], S_PATH, __VA_ARGS__);                                                 \
        argv[count++] = text[row++];                                                               \
    } while (0)
    const char *keys = self->keys_dir;
    const char *binary = role == CHAOS_BROKER    ? "mesh-broker"
                         : role == CHAOS_AUDIT   ? "mesh-audit"
                         : role == CHAOS_GATEWAY ? "mesh-gateway"
                                                 : "mesh-user";
    mesh_test_bin (binary, text[row], S_PATH);
    argv[count++] = text[row++];
    S_ARG ("--heartbeat-ms=%d", self->config.heartbeat_ms);
    if (role == CHAOS_BROKER) {
        S_ARG ("--bind=tcp://127.0.0.1:%d", self->broker_port);
        S_ARG ("--events-xsub=tcp://127.0.0.1:%d", self->xsub_port);
        S_ARG ("--events-xpub=tcp://127.0.0.1:%d", self->xpub_port);
        S_ARG ("--admin=127.0.0.1:%d", self->admin_port);
        S_ARG ("--liveness=3");
        S_ARG ("--curve-cert=%s/broker.key_secret", keys);
        S_ARG ("--curve-allow=%s/allow", keys);
    }
    else {
        const char *key = role == CHAOS_AUDIT     ? "audit"
                          : role == CHAOS_GATEWAY ? "gateway"
                                                  : "user";
        S_ARG ("--broker=tcp://127.0.0.1:%d", self->broker_port);
        S_ARG ("--curve-cert=%s/%s.key_secret", keys, key);
        S_ARG ("--curve-server-cert=%s/broker.key", keys);
    }
    if (role == CHAOS_USER_0 || role == CHAOS_USER_1) {
        S_ARG ("--events-pub=tcp://127.0.0.1:%d", self->xsub_port);
        S_ARG ("--workers=1");
        S_ARG ("--admin=127.0.0.1:0");
        S_ARG ("--liveness=3");
    }
    if (role == CHAOS_AUDIT) {
        S_ARG ("--events-sub=tcp://127.0.0.1:%d", self->xpub_port);
        S_ARG ("--admin=127.0.0.1:%d", self->audit_admin_port);
        S_ARG ("--liveness=3");
    }
    if (role == CHAOS_GATEWAY) {
        S_ARG ("--http=127.0.0.1:%d", self->http_port);
        S_ARG ("--events-sub=tcp://127.0.0.1:%d", self->xpub_port);
        S_ARG ("--jwt-hs256-secret-files=%s/jwt-hs256.secret", keys);
        S_ARG ("--jwt-issuer=zmesh-dev");
        S_ARG ("--jwt-audience=zmesh");
        S_ARG ("--rate-limit=%d", self->config.rate_limit);
        S_ARG ("--rate-burst=%d", self->config.rate_limit / 2);
    }
#undef S_ARG
    argv[count] = NULL;
}

//  --------------------------------------------------------------------------
bool
chaos_mesh_start_role (chaos_mesh_t *self, chaos_role_t role, char *why, size_t size)
{
    const char *argv[32];
    char text[32][S_PATH];
    s_argv (self, role, argv, text);
    char database[S_PATH + 16];
    snprintf (database, sizeof database, "DATABASE_URL=%s", self->database_url);
    const char *env[] = {database, NULL};
    bool user = role == CHAOS_USER_0 || role == CHAOS_USER_1;
    size_t registered_before = user ? s_user_registrations (self) : 0;
    mesh_proc_t *proc = mesh_proc_start (argv, env);
    if (!proc) {
        snprintf (why, size, "%s could not be started", s_names[role]);
        return false;
    }
    pthread_mutex_lock (&self->lock);
    mesh_proc_t *old = self->procs[role];
    self->procs[role] = proc;
    self->rss[role].starts++;
    pthread_mutex_unlock (&self->lock);
    mesh_proc_destroy (&old);

    const char *ready = role == CHAOS_BROKER    ? "broker serving"
                        : role == CHAOS_AUDIT   ? "audit service ready"
                        : role == CHAOS_GATEWAY ? "gateway serving"
                                                : "user service ready";
    if (!mesh_proc_wait_log (proc, ready, S_READY_MS)) {
        snprintf (why, size, "%s did not log \"%s\" within %d ms", s_names[role], ready,
                  S_READY_MS);
        return false;
    }
    //  A user process counts once the broker has logged its worker (the
    //  broker may still count a dead predecessor's until it expires)
    int64_t until = mesh_mono_ms () + S_READY_MS;
    while (user && s_user_registrations (self) <= registered_before) {
        if (mesh_mono_ms () >= until) {
            snprintf (why, size, "%s's worker did not register within %d ms", s_names[role],
                      S_READY_MS);
            return false;
        }
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep (&pause, NULL);
    }
    return true;
}

//  --------------------------------------------------------------------------
bool
chaos_mesh_start (chaos_mesh_t *self, char *why, size_t size)
{
    static const chaos_role_t order[] = {CHAOS_BROKER, CHAOS_USER_0, CHAOS_USER_1, CHAOS_AUDIT,
                                         CHAOS_GATEWAY};
    for (size_t index = 0; index < sizeof order / sizeof order[0]; index++)
        if (!chaos_mesh_start_role (self, order[index], why, size))
            return false;
    if (!mesh_test_wait_ready (self->base, 200, S_READY_MS)) {
        snprintf (why, size, "the gateway's /ready did not answer 200 within %d ms", S_READY_MS);
        return false;
    }
    self->sampling = true;
    self->sampler_started = pthread_create (&self->sampler, NULL, s_sampler, self) == 0;
    return true;
}

//  --------------------------------------------------------------------------
void
chaos_mesh_kill (chaos_mesh_t *self, chaos_role_t role)
{
    pthread_mutex_lock (&self->lock);
    mesh_proc_t *proc = self->procs[role];
    self->procs[role] = NULL;
    pthread_mutex_unlock (&self->lock);
    mesh_proc_destroy (&proc);
}

//  --------------------------------------------------------------------------
bool
chaos_mesh_stop_role (chaos_mesh_t *self, chaos_role_t role, int timeout_ms, int *status)
{
    mesh_proc_t *proc = self->procs[role];
    if (!proc)
        return false;
    mesh_proc_signal (proc, SIGTERM);
    int wait_status = 0;
    bool exited = mesh_proc_wait_exit (proc, timeout_ms, &wait_status);
    if (exited)
        *status = WIFEXITED (wait_status) ? WEXITSTATUS (wait_status) : -1;
    chaos_mesh_kill (self, role);
    return exited;
}

//  --------------------------------------------------------------------------
void
chaos_mesh_signal (chaos_mesh_t *self, chaos_role_t role, int signal)
{
    if (self->procs[role])
        mesh_proc_signal (self->procs[role], signal);
}

//  --------------------------------------------------------------------------
void
chaos_mesh_log_tail (chaos_mesh_t *self, chaos_role_t role, char *buffer, size_t size)
{
    buffer[0] = '\0';
    if (!self->procs[role] || size == 0)
        return;
    char *log = mesh_proc_log (self->procs[role]);
    size_t length = strlen (log);
    const char *from = length >= size ? log + length - (size - 1) : log;
    snprintf (buffer, size, "%s", from);
    free (log);
}

//  --------------------------------------------------------------------------
size_t
chaos_mesh_stop_all (chaos_mesh_t *self, char *report, size_t size)
{
    //  The order of scripts/run: the gateway drains HTTP first, the broker
    //  goes last
    static const chaos_role_t order[] = {CHAOS_GATEWAY, CHAOS_AUDIT, CHAOS_USER_0, CHAOS_USER_1,
                                         CHAOS_BROKER};
    size_t unclean = 0, length = 0;
    report[0] = '\0';
    for (size_t index = 0; index < sizeof order / sizeof order[0]; index++) {
        chaos_role_t role = order[index];
        if (!self->procs[role])
            continue;
        mesh_proc_signal (self->procs[role], SIGCONT);
        int status = -1;
        bool exited = chaos_mesh_stop_role (self, role, 15000, &status);
        unclean += !exited || status != 0;
        int wrote = snprintf (report + length, length < size ? size - length : 0, "%s%s %s%d",
                              length ? ", " : "", s_names[role], exited ? "exit " : "hung ",
                              exited ? status : -1);
        length += wrote > 0 ? (size_t)wrote : 0;
        if (length >= size)
            length = size - 1;
    }
    return unclean;
}

//  --------------------------------------------------------------------------
void
chaos_mesh_destroy (chaos_mesh_t **self_p)
{
    chaos_mesh_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->sampling = false;
    pthread_mutex_unlock (&self->lock);
    if (self->sampler_started)
        pthread_join (self->sampler, NULL);
    char report[256];
    chaos_mesh_stop_all (self, report, sizeof report);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}
