/*  =========================================================================
    chaos_client - careful HTTP clients of the mesh, and what they saw

    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */

#include "chaos_client.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_time.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define S_OP_BUDGET_MS 20000      //  One operation's retries end after this
#define S_ATTEMPT_TIMEOUT_MS 8000 //  The gateway's deadline is 5 s
#define S_BACKOFF_FIRST_MS 100
#define S_BACKOFF_MAX_MS 1000
#define S_LIVE_USERS 24 //  A client creates less once it has this many
#define S_BODY_MAX 65536

static const char *const s_kind_names[CHAOS_KINDS] = {
    "create", "create_invalid",   "create_duplicate", "get",
    "update", "update_duplicate", "delete",           "list"};

const char *
chaos_kind_name (chaos_kind_t kind)
{
    return kind < CHAOS_KINDS ? s_kind_names[kind] : "?";
}

const char *
chaos_result_name (chaos_result_t result)
{
    return result == CHAOS_OK ? "ok" : result == CHAOS_FAILED ? "failed" : "unknown";
}

//  --------------------------------------------------------------------------
//  Growing arrays, each owned by one thread while it runs.

static void *
s_grow (void *items, size_t count, size_t *capacity, size_t item_size)
{
    if (count < *capacity)
        return items;
    *capacity = *capacity ? *capacity * 2 : 256;
    void *grown = realloc (items, *capacity * item_size);
    if (!grown)
        abort (); //  Out of memory in a test tool: nothing to save
    return grown;
}

void
chaos_sleep_ms (int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec pause = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep (&pause, NULL);
}

uint64_t
chaos_random (uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 2685821657736338717ULL;
}

static double
s_uniform (uint64_t *state)
{
    return (double)(chaos_random (state) >> 11) / (double)(1ULL << 53);
}

//  --------------------------------------------------------------------------
//  One HTTP exchange on a kept-alive connection.

typedef struct {
    CURL *curl;
    char body[S_BODY_MAX];
    size_t body_size;
    bool retry_after;
    long retry_after_s;
} s_http_t;

static size_t
s_http_body (char *data, size_t size, size_t count, void *arg)
{
    s_http_t *http = arg;
    size_t bytes = size * count;
    size_t room = sizeof http->body - 1 - http->body_size;
    size_t take = bytes < room ? bytes : room;
    memcpy (http->body + http->body_size, data, take);
    http->body_size += take;
    http->body[http->body_size] = '\0';
    return bytes;
}

static size_t
s_http_header (char *data, size_t size, size_t count, void *arg)
{
    s_http_t *http = arg;
    size_t bytes = size * count;
    if (bytes > 12 && strncasecmp (data, "Retry-After:", 12) == 0) {
        http->retry_after = true;
        http->retry_after_s = strtol (data + 12, NULL, 10);
    }
    return bytes;
}

static bool
s_http_init (s_http_t *http)
{
    http->curl = curl_easy_init ();
    return http->curl != NULL;
}

//  One attempt: `method` on base + path with optional JSON `body` and
//  header lines (NULL-terminated). Returns the status (0: no answer).
static long
s_http (s_http_t *http, const char *method, const char *url, const char *body,
        const char *const *headers, long timeout_ms)
{
    CURL *curl = http->curl;
    curl_easy_reset (curl);
    http->body_size = 0;
    http->body[0] = '\0';
    http->retry_after = false;
    http->retry_after_s = 0;
    struct curl_slist *list = NULL;
    for (size_t index = 0; headers && headers[index]; index++)
        list = curl_slist_append (list, headers[index]);
    if (body)
        list = curl_slist_append (list, "Content-Type: application/json");
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_NOPROXY, "*"); //  Ignore http_proxy of the environment
    curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_http_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, http);
    curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, s_http_header);
    curl_easy_setopt (curl, CURLOPT_HEADERDATA, http);
    if (body) {
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE, (long)strlen (body));
    }
    long status = 0;
    if (curl_easy_perform (curl) == CURLE_OK)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all (list);
    return status;
}

//  --------------------------------------------------------------------------
//  Steady clients

typedef struct {
    struct chaos_clients_s *owner;
    size_t index;
    char authorization[1200];
    uint64_t random;
    s_http_t http;
    chaos_ledger_t ledger;
    size_t op_capacity, attempt_capacity, user_capacity;
    pthread_t thread;
    bool started;
} s_client_t;

typedef struct {
    char authorization[1200];
    int64_t *seqs;
    size_t count, capacity;
    size_t connections;
    int64_t last_seq;
    char line[4096];
    size_t line_size;
    int64_t pending_id; //  id: of the event being read, -1 none
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t lock;
} s_reader_t;

struct chaos_clients_s {
    char base[96];
    double rate;
    int64_t epoch_ms;
    s_client_t *clients;
    size_t count;
    atomic_bool stop;
    s_reader_t reader;
};

//  --------------------------------------------------------------------------
chaos_clients_t *
chaos_clients_new (const char *base, const char *const *tokens, size_t count, double rate,
                   uint64_t seed, int64_t epoch_ms)
{
    chaos_clients_t *self = mesh_alloc (sizeof (chaos_clients_t));
    snprintf (self->base, sizeof self->base, "%s", base);
    self->rate = rate;
    self->epoch_ms = epoch_ms;
    self->count = count;
    self->clients = mesh_alloc (count * sizeof (s_client_t));
    for (size_t index = 0; index < count; index++) {
        s_client_t *client = &self->clients[index];
        client->owner = self;
        client->index = index;
        snprintf (client->authorization, sizeof client->authorization, "Authorization: Bearer %s",
                  tokens[index]);
        //  Distinct, never-zero streams per client
        client->random = (seed + 1) * 0x9E3779B97F4A7C15ULL + index * 0xBF58476D1CE4E5B9ULL;
        if (!client->random)
            client->random = 1;
        if (!s_http_init (&client->http)) {
            chaos_clients_destroy (&self);
            return NULL;
        }
    }
    pthread_mutex_init (&self->reader.lock, NULL);
    return self;
}

//  Record one attempt's answer in the ledger.
static void
s_record_attempt (s_client_t *client, chaos_op_t *op, int64_t start_ms, long status,
                  bool retry_after)
{
    chaos_ledger_t *ledger = &client->ledger;
    ledger->attempts = s_grow (ledger->attempts, ledger->attempt_count, &client->attempt_capacity,
                               sizeof (chaos_attempt_t));
    ledger->attempts[ledger->attempt_count++] = (chaos_attempt_t){
        .start_ms = start_ms - client->owner->epoch_ms,
        .end_ms = mesh_mono_ms () - client->owner->epoch_ms,
        .status = status,
        .retry_after = retry_after,
    };
    op->attempts++;
    op->status = status;
}

//  Retry-worthy: nothing applied for sure (429) or maybe applied (the rest).
static bool
s_retryable (long status)
{
    return status == 0 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

//  Perform `op` with retries: the same request (and key) until an answer
//  that is not retry-worthy, or the budget ends. Sets op->result.
static void
s_perform (s_client_t *client, chaos_op_t *op, const char *method, const char *path,
           const char *body)
{
    char url[256];
    snprintf (url, sizeof url, "%s%s", client->owner->base, path);
    char key_header[80];
    char request_id[80];
    const char *headers[4] = {client->authorization, NULL, NULL, NULL};
    size_t header_count = 1;
    if (*op->key) {
        snprintf (key_header, sizeof key_header, "Idempotency-Key: %s", op->key);
        headers[header_count++] = key_header;
    }
    int64_t deadline = mesh_mono_ms () + S_OP_BUDGET_MS;
    int64_t backoff = S_BACKOFF_FIRST_MS;
    bool maybe_applied = false;
    op->first_attempt = client->ledger.attempt_count;
    while (true) {
        snprintf (request_id, sizeof request_id, "X-Request-ID: chaos-c%zu-o%" PRIu64 "-a%zu",
                  client->index, op->number, op->attempts + 1);
        headers[header_count] = request_id;
        int64_t start = mesh_mono_ms ();
        long status = s_http (&client->http, method, url, body, headers, S_ATTEMPT_TIMEOUT_MS);
        headers[header_count] = NULL;
        s_record_attempt (client, op, start, status, client->http.retry_after);
        if (status >= 200 && status < 300) {
            op->result = CHAOS_OK;
            return;
        }
        if (!s_retryable (status)) {
            op->result = CHAOS_FAILED;
            return;
        }
        if (status != 429)
            maybe_applied = true;
        int64_t wait = backoff + (int64_t)(s_uniform (&client->random) * (double)backoff);
        if (client->http.retry_after && client->http.retry_after_s > 0)
            wait = client->http.retry_after_s * 1000;
        backoff = backoff * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : backoff * 2;
        if (mesh_mono_ms () + wait >= deadline) {
            op->result = maybe_applied ? CHAOS_UNKNOWN : CHAOS_FAILED;
            return;
        }
        chaos_sleep_ms (wait);
    }
}

//  The user object of an answer: its id, name and email.
static bool
s_parse_user (const char *text, char *id, size_t id_size, char *name, size_t name_size, char *email,
              size_t email_size)
{
    json_t *root = json_loads (text, 0, NULL);
    const char *got_id = json_string_value (json_object_get (root, "id"));
    const char *got_name = json_string_value (json_object_get (root, "name"));
    const char *got_email = json_string_value (json_object_get (root, "email"));
    bool ok = got_id && got_name && got_email;
    if (ok) {
        snprintf (id, id_size, "%s", got_id);
        snprintf (name, name_size, "%s", got_name);
        snprintf (email, email_size, "%s", got_email);
    }
    json_decref (root);
    return ok;
}

//  A live user of the client (neither deleted nor in doubt), other than
//  `except`; NULL when none.
static chaos_user_t *
s_pick_user (s_client_t *client, const chaos_user_t *except)
{
    chaos_ledger_t *ledger = &client->ledger;
    size_t live = 0;
    for (size_t index = 0; index < ledger->user_count; index++)
        live += !ledger->users[index].deleted && !ledger->users[index].pending &&
                &ledger->users[index] != except;
    if (live == 0)
        return NULL;
    size_t pick = (size_t)(chaos_random (&client->random) % live);
    for (size_t index = 0; index < ledger->user_count; index++) {
        chaos_user_t *user = &ledger->users[index];
        if (user->deleted || user->pending || user == except)
            continue;
        if (pick-- == 0)
            return user;
    }
    return NULL;
}

static size_t
s_live_users (const s_client_t *client)
{
    size_t live = 0;
    for (size_t index = 0; index < client->ledger.user_count; index++)
        live += !client->ledger.users[index].deleted && !client->ledger.users[index].pending;
    return live;
}

//  The next operation's kind, from the client's state and its dice.
static chaos_kind_t
s_choose (s_client_t *client)
{
    size_t live = s_live_users (client);
    if (live < 2)
        return CHAOS_CREATE;
    double dice = s_uniform (&client->random);
    double create = live >= S_LIVE_USERS ? 0.05 : 0.22;
    if (dice < create)
        return CHAOS_CREATE;
    if ((dice -= create) < 0.03)
        return CHAOS_CREATE_INVALID;
    if ((dice -= 0.03) < 0.02)
        return CHAOS_CREATE_DUPLICATE;
    if ((dice -= 0.02) < 0.30)
        return CHAOS_GET;
    if ((dice -= 0.30) < 0.20)
        return CHAOS_UPDATE;
    if ((dice -= 0.20) < 0.02)
        return CHAOS_UPDATE_DUPLICATE;
    if ((dice -= 0.02) < 0.08)
        return CHAOS_DELETE;
    return CHAOS_LIST;
}

//  Choose, perform and record one operation.
static void
s_operate (s_client_t *client, uint64_t number)
{
    chaos_ledger_t *ledger = &client->ledger;
    ledger->ops = s_grow (ledger->ops, ledger->op_count, &client->op_capacity, sizeof (chaos_op_t));
    chaos_op_t *op = &ledger->ops[ledger->op_count++];
    memset (op, 0, sizeof *op);
    op->number = number;
    op->kind = s_choose (client);
    //  Unique per client and operation: names, emails and keys never repeat
    snprintf (op->name, sizeof op->name, "chaos-c%zu-o%" PRIu64, client->index, number);
    snprintf (op->email, sizeof op->email, "c%zu-o%" PRIu64 "@chaos.example", client->index,
              number);
    char body[256];
    char path[128];
    chaos_user_t *user = NULL;
    const chaos_user_t *other = NULL;
    bool write = op->kind != CHAOS_GET && op->kind != CHAOS_LIST;
    if (write)
        snprintf (op->key, sizeof op->key, "chaos-c%zu-o%" PRIu64, client->index, number);

    switch (op->kind) {
    case CHAOS_CREATE_DUPLICATE:
        other = s_pick_user (client, NULL);
        snprintf (op->email, sizeof op->email, "%s", other->email);
        //  fall through
    case CHAOS_CREATE:
    case CHAOS_CREATE_INVALID:
        if (op->kind == CHAOS_CREATE_INVALID)
            snprintf (op->email, sizeof op->email, "not-an-email-c%zu-o%" PRIu64, client->index,
                      number);
        snprintf (body, sizeof body, "{\"name\":\"%s\",\"email\":\"%s\"}", op->name, op->email);
        s_perform (client, op, "POST", "/v1/users", body);
        break;
    case CHAOS_GET:
    case CHAOS_UPDATE:
    case CHAOS_UPDATE_DUPLICATE:
    case CHAOS_DELETE:
        user = s_pick_user (client, NULL);
        snprintf (op->user_id, sizeof op->user_id, "%s", user->id);
        snprintf (path, sizeof path, "/v1/users/%s", user->id);
        if (op->kind == CHAOS_GET)
            s_perform (client, op, "GET", path, NULL);
        else if (op->kind == CHAOS_DELETE)
            s_perform (client, op, "DELETE", path, NULL);
        else {
            other = op->kind == CHAOS_UPDATE_DUPLICATE ? s_pick_user (client, user) : NULL;
            if (op->kind == CHAOS_UPDATE_DUPLICATE && !other) {
                op->kind = CHAOS_UPDATE;
            }
            if (other)
                snprintf (op->email, sizeof op->email, "%s", other->email);
            else if (number % 2)
                snprintf (op->email, sizeof op->email, "%s", user->email); //  Name only
            if (!other && number % 2)
                snprintf (body, sizeof body, "{\"name\":\"%s\"}", op->name);
            else
                snprintf (body, sizeof body, "{\"name\":\"%s\",\"email\":\"%s\"}", op->name,
                          op->email);
            s_perform (client, op, "PATCH", path, body);
        }
        break;
    case CHAOS_LIST:
    case CHAOS_KINDS:
        op->kind = CHAOS_LIST;
        s_perform (client, op, "GET", "/v1/users?limit=20", NULL);
        break;
    }

    //  What the answer means for the client's users
    char id[40], name[48], email[80];
    if (op->kind == CHAOS_CREATE && op->result == CHAOS_OK &&
        s_parse_user (client->http.body, id, sizeof id, name, sizeof name, email, sizeof email)) {
        ledger->users = s_grow (ledger->users, ledger->user_count, &client->user_capacity,
                                sizeof (chaos_user_t));
        chaos_user_t *created = &ledger->users[ledger->user_count++];
        memset (created, 0, sizeof *created);
        snprintf (created->id, sizeof created->id, "%s", id);
        snprintf (created->name, sizeof created->name, "%s", name);
        snprintf (created->email, sizeof created->email, "%s", email);
        snprintf (op->user_id, sizeof op->user_id, "%s", id);
    }
    if (!user)
        return;
    if (op->kind == CHAOS_GET && op->result == CHAOS_OK) {
        op->stale_read = !s_parse_user (client->http.body, id, sizeof id, name, sizeof name, email,
                                        sizeof email) ||
                         strcmp (name, user->name) || strcmp (email, user->email);
    }
    else if (op->kind == CHAOS_GET && op->result == CHAOS_FAILED)
        op->stale_read = op->status == 404; //  A live, acknowledged user not found
    else if (op->kind == CHAOS_UPDATE && op->result == CHAOS_OK &&
             s_parse_user (client->http.body, id, sizeof id, name, sizeof name, email,
                           sizeof email)) {
        snprintf (user->name, sizeof user->name, "%s", name);
        snprintf (user->email, sizeof user->email, "%s", email);
        user->updates_ok++;
    }
    else if (op->kind == CHAOS_DELETE && op->result == CHAOS_OK)
        user->deleted = true;
    else if ((op->kind == CHAOS_UPDATE || op->kind == CHAOS_DELETE) &&
             op->result == CHAOS_UNKNOWN) {
        user->pending = true;
        user->pending_kind = op->kind;
        snprintf (user->pending_name, sizeof user->pending_name, "%s", op->name);
        snprintf (user->pending_email, sizeof user->pending_email, "%s", op->email);
    }
}

static void *
s_client_run (void *arg)
{
    s_client_t *client = arg;
    double period_ms = 1000.0 / client->owner->rate;
    //  Spread the clients' first operations over one period
    double next =
        (double)mesh_mono_ms () + period_ms * (double)client->index / (double)client->owner->count;
    uint64_t number = 0;
    while (!atomic_load (&client->owner->stop)) {
        chaos_sleep_ms ((int64_t)next - mesh_mono_ms ());
        if (atomic_load (&client->owner->stop))
            break;
        s_operate (client, ++number);
        next += period_ms;
        //  Behind after a slow operation: go on at the pace, no catch-up rush
        if (next < (double)mesh_mono_ms ())
            next = (double)mesh_mono_ms ();
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  The event reader

static void
s_reader_line (s_reader_t *reader)
{
    reader->line[reader->line_size] = '\0';
    if (reader->line_size == 0) {
        //  A blank line ends an event: only a whole event counts as seen
        if (reader->pending_id > 0) {
            pthread_mutex_lock (&reader->lock);
            reader->seqs =
                s_grow (reader->seqs, reader->count, &reader->capacity, sizeof (int64_t));
            reader->seqs[reader->count++] = reader->pending_id;
            reader->last_seq = reader->pending_id;
            pthread_mutex_unlock (&reader->lock);
        }
        reader->pending_id = -1;
    }
    else if (strncmp (reader->line, "id:", 3) == 0)
        reader->pending_id = strtoll (reader->line + 3, NULL, 10);
    reader->line_size = 0;
}

static size_t
s_reader_write (char *data, size_t size, size_t count, void *arg)
{
    s_reader_t *reader = arg;
    size_t bytes = size * count;
    for (size_t index = 0; index < bytes; index++) {
        char c = data[index];
        if (c == '\n')
            s_reader_line (reader);
        else if (c != '\r' && reader->line_size < sizeof reader->line - 1)
            reader->line[reader->line_size++] = c;
    }
    return bytes;
}

static int
s_reader_progress (void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                   curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    s_reader_t *reader = arg;
    return atomic_load (&reader->stop) ? 1 : 0;
}

static void *
s_reader_run (void *arg)
{
    chaos_clients_t *self = arg;
    s_reader_t *reader = &self->reader;
    CURL *curl = curl_easy_init ();
    char url[160];
    snprintf (url, sizeof url, "%s/v1/events", self->base);
    while (curl && !atomic_load (&reader->stop)) {
        char resume[64];
        pthread_mutex_lock (&reader->lock);
        snprintf (resume, sizeof resume, "Last-Event-ID: %" PRId64, reader->last_seq);
        bool resuming = reader->last_seq > 0;
        reader->connections++;
        pthread_mutex_unlock (&reader->lock);
        struct curl_slist *list = curl_slist_append (NULL, reader->authorization);
        if (resuming)
            list = curl_slist_append (list, resume);
        reader->line_size = 0;
        reader->pending_id = -1;
        curl_easy_reset (curl);
        curl_easy_setopt (curl, CURLOPT_URL, url);
        curl_easy_setopt (curl, CURLOPT_NOPROXY, "*");
        curl_easy_setopt (curl, CURLOPT_HTTPHEADER, list);
        curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_reader_write);
        curl_easy_setopt (curl, CURLOPT_WRITEDATA, reader);
        curl_easy_setopt (curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt (curl, CURLOPT_XFERINFOFUNCTION, s_reader_progress);
        curl_easy_setopt (curl, CURLOPT_XFERINFODATA, reader);
        //  A stream that stays silent this long is dead (a stopped peer):
        //  the gateway sends a comment every few seconds
        curl_easy_setopt (curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt (curl, CURLOPT_LOW_SPEED_TIME, 30L);
        curl_easy_perform (curl);
        curl_slist_free_all (list);
        if (!atomic_load (&reader->stop))
            chaos_sleep_ms (200);
    }
    curl_easy_cleanup (curl);
    return NULL;
}

//  --------------------------------------------------------------------------
bool
chaos_clients_start (chaos_clients_t *self, const char *events_token)
{
    snprintf (self->reader.authorization, sizeof self->reader.authorization,
              "Authorization: Bearer %s", events_token);
    self->reader.started = pthread_create (&self->reader.thread, NULL, s_reader_run, self) == 0;
    if (!self->reader.started)
        return false;
    for (size_t index = 0; index < self->count; index++) {
        s_client_t *client = &self->clients[index];
        client->started = pthread_create (&client->thread, NULL, s_client_run, client) == 0;
        if (!client->started)
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
void
chaos_clients_stop (chaos_clients_t *self)
{
    atomic_store (&self->stop, true);
    for (size_t index = 0; index < self->count; index++)
        if (self->clients[index].started) {
            pthread_join (self->clients[index].thread, NULL);
            self->clients[index].started = false;
        }
}

//  --------------------------------------------------------------------------
bool
chaos_clients_events_until (chaos_clients_t *self, int64_t seq, int timeout_ms)
{
    s_reader_t *reader = &self->reader;
    int64_t until = mesh_mono_ms () + timeout_ms;
    bool seen = false;
    while (true) {
        pthread_mutex_lock (&reader->lock);
        seen = reader->last_seq >= seq;
        pthread_mutex_unlock (&reader->lock);
        if (seen || mesh_mono_ms () >= until)
            break;
        chaos_sleep_ms (50);
    }
    atomic_store (&reader->stop, true);
    if (reader->started) {
        pthread_join (reader->thread, NULL);
        reader->started = false;
    }
    return seen;
}

//  --------------------------------------------------------------------------
const int64_t *
chaos_clients_events (const chaos_clients_t *self, size_t *count, size_t *connections)
{
    *count = self->reader.count;
    *connections = self->reader.connections;
    return self->reader.seqs;
}

//  --------------------------------------------------------------------------
const chaos_ledger_t *
chaos_clients_ledger (const chaos_clients_t *self, size_t index)
{
    return &self->clients[index].ledger;
}

size_t
chaos_clients_count (const chaos_clients_t *self)
{
    return self->count;
}

//  --------------------------------------------------------------------------
bool
chaos_clients_write_ledger (const chaos_clients_t *self, const char *path)
{
    FILE *file = fopen (path, "w");
    if (!file)
        return false;
    for (size_t index = 0; index < self->count; index++) {
        const chaos_ledger_t *ledger = &self->clients[index].ledger;
        for (size_t number = 0; number < ledger->op_count; number++) {
            const chaos_op_t *op = &ledger->ops[number];
            const chaos_attempt_t *first = &ledger->attempts[op->first_attempt];
            const chaos_attempt_t *last = &ledger->attempts[op->first_attempt + op->attempts - 1];
            json_t *statuses = json_array ();
            for (size_t attempt = 0; attempt < op->attempts; attempt++)
                json_array_append_new (
                    statuses, json_integer (ledger->attempts[op->first_attempt + attempt].status));
            json_t *line = json_pack (
                "{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:o, s:b}", "client",
                (json_int_t)index, "op", (json_int_t)op->number, "kind", chaos_kind_name (op->kind),
                "result", chaos_result_name (op->result), "user", op->user_id, "key", op->key,
                "name", op->name, "email", op->email, "start_ms", (json_int_t)first->start_ms,
                "end_ms", (json_int_t)last->end_ms, "statuses", statuses, "stale_read",
                op->stale_read);
            char *text = line ? json_dumps (line, JSON_COMPACT) : NULL;
            if (text)
                fprintf (file, "%s\n", text);
            free (text);
            json_decref (line);
        }
    }
    return fclose (file) == 0;
}

//  --------------------------------------------------------------------------
void
chaos_clients_destroy (chaos_clients_t **self_p)
{
    chaos_clients_t *self = *self_p;
    if (!self)
        return;
    chaos_clients_stop (self);
    chaos_clients_events_until (self, 0, 0);
    for (size_t index = 0; index < self->count; index++) {
        s_client_t *client = &self->clients[index];
        if (client->http.curl)
            curl_easy_cleanup (client->http.curl);
        free (client->ledger.ops);
        free (client->ledger.attempts);
        free (client->ledger.users);
    }
    free (self->clients);
    free (self->reader.seqs);
    pthread_mutex_destroy (&self->reader.lock);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  The burst

typedef struct {
    char url[160];
    char authorization[1200];
    double period_ms;
    int64_t until_ms;
    int64_t epoch_ms;
    s_http_t http;
    chaos_attempt_t *attempts;
    size_t count, capacity;
    pthread_t thread;
    bool started;
} s_burster_t;

static void *
s_burst_run (void *arg)
{
    s_burster_t *burster = arg;
    const char *headers[] = {burster->authorization, NULL};
    double next = (double)mesh_mono_ms ();
    while (mesh_mono_ms () < burster->until_ms) {
        chaos_sleep_ms ((int64_t)next - mesh_mono_ms ());
        int64_t start = mesh_mono_ms ();
        long status = s_http (&burster->http, "GET", burster->url, NULL, headers, 10000);
        burster->attempts = s_grow (burster->attempts, burster->count, &burster->capacity,
                                    sizeof (chaos_attempt_t));
        burster->attempts[burster->count++] = (chaos_attempt_t){
            .start_ms = start - burster->epoch_ms,
            .end_ms = mesh_mono_ms () - burster->epoch_ms,
            .status = status,
            .retry_after = burster->http.retry_after,
        };
        next += burster->period_ms;
        if (next < (double)mesh_mono_ms ())
            next = (double)mesh_mono_ms ();
    }
    return NULL;
}

bool
chaos_burst_run (const char *base, const char *token, size_t threads, double rate, int duration_ms,
                 int64_t epoch_ms, chaos_attempt_t **attempts, size_t *count)
{
    s_burster_t *bursters = mesh_alloc (threads * sizeof (s_burster_t));
    int64_t until = mesh_mono_ms () + duration_ms;
    bool ok = true;
    for (size_t index = 0; index < threads; index++) {
        s_burster_t *burster = &bursters[index];
        snprintf (burster->url, sizeof burster->url, "%s/v1/users?limit=1", base);
        snprintf (burster->authorization, sizeof burster->authorization, "Authorization: Bearer %s",
                  token);
        burster->period_ms = 1000.0 * (double)threads / rate;
        burster->until_ms = until;
        burster->epoch_ms = epoch_ms;
        if (s_http_init (&burster->http))
            burster->started = pthread_create (&burster->thread, NULL, s_burst_run, burster) == 0;
        ok = ok && burster->started;
    }
    size_t total = 0;
    for (size_t index = 0; index < threads; index++) {
        if (bursters[index].started)
            pthread_join (bursters[index].thread, NULL);
        total += bursters[index].count;
    }
    *attempts = mesh_alloc ((total ? total : 1) * sizeof (chaos_attempt_t));
    *count = 0;
    for (size_t index = 0; index < threads; index++) {
        s_burster_t *burster = &bursters[index];
        memcpy (*attempts + *count, burster->attempts, burster->count * sizeof (chaos_attempt_t));
        *count += burster->count;
        free (burster->attempts);
        if (burster->http.curl)
            curl_easy_cleanup (burster->http.curl);
    }
    free (bursters);
    return ok;
}
