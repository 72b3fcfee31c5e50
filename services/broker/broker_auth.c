/*  =========================================================================
    broker_auth - who may talk to the broker, and what they may do
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "broker_auth.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_ZAP_FRAMES 7      //  RFC 27 request: version .. credentials
#define S_METADATA_MAX 4096 //  Encoded grants of one certificate
#define S_LOG_BURST 10      //  Refusal lines per second at most; the rest are counted

//  Handshake failure reasons (label "reason").
enum { S_HANDSHAKE_NO_DETAIL, S_HANDSHAKE_PROTOCOL, S_HANDSHAKE_AUTH, S_HANDSHAKE_COUNT_ };

static const char *const s_refusal_names[BROKER_REFUSAL_COUNT_] = {
    [BROKER_REFUSAL_SERVE] = "serve",         [BROKER_REFUSAL_CALL] = "call",
    [BROKER_REFUSAL_ACTOR] = "actor",         [BROKER_REFUSAL_PUBLISH] = "publish",
    [BROKER_REFUSAL_SUBSCRIBE] = "subscribe",
};

//  Which property holds the grant of each refusal kind (actor: delegate).
static const char *const s_refusal_property[BROKER_REFUSAL_COUNT_] = {
    [BROKER_REFUSAL_SERVE] = BROKER_AUTH_SERVE,
    [BROKER_REFUSAL_CALL] = BROKER_AUTH_CALL,
    [BROKER_REFUSAL_ACTOR] = BROKER_AUTH_DELEGATE,
    [BROKER_REFUSAL_PUBLISH] = BROKER_AUTH_PUBLISH,
    [BROKER_REFUSAL_SUBSCRIBE] = BROKER_AUTH_SUBSCRIBE,
};

//  Certificate metadata -> ZAP property, in reply order.
static const char *const s_grants[][2] = {
    {"serve", BROKER_AUTH_SERVE},       {"call", BROKER_AUTH_CALL},
    {"publish", BROKER_AUTH_PUBLISH},   {"subscribe", BROKER_AUTH_SUBSCRIBE},
    {"delegate", BROKER_AUTH_DELEGATE},
};

typedef struct {
    void *pair;    //  Receives the socket's monitor events, owned
    char what[32]; //  Socket name for logs
} s_monitor_t;

struct broker_auth_s {
    void *zap;           //  REP at inproc://zeromq.zap.01, owned
    zcertstore_t *store; //  Allowed public certificates, owned
    s_monitor_t monitors[BROKER_AUTH_MAX_MONITORS];
    size_t monitor_count;        //  Monitors in use
    void *context;               //  Borrowed
    mesh_counter_t *zap_allowed; //  Handshakes the ZAP handler admitted
    mesh_counter_t *zap_denied;  //  Handshakes it refused
    mesh_counter_t *handshake_failures[S_HANDSHAKE_COUNT_];
    mesh_counter_t *refusals[BROKER_REFUSAL_COUNT_];
    int64_t log_second;      //  Monotonic second of the current log window
    int log_lines;           //  Refusal lines logged in it
    uint64_t log_suppressed; //  Lines not logged since the last one that was
};

//  --------------------------------------------------------------------------
//  Bind the ZAP handler.
broker_auth_t *
broker_auth_new (void *context, const char *allow_dir, mesh_metrics_t *metrics, int *err)
{
    assert (context);
    assert (allow_dir);
    assert (metrics);
    int unused;
    if (!err)
        err = &unused;
    struct stat info;
    if (stat (allow_dir, &info) != 0 || !S_ISDIR (info.st_mode)) {
        mesh_log_kv (MESH_LOG_ERROR, "--curve-allow is not a directory", "path", allow_dir, NULL);
        *err = MESH_EINVAL;
        return NULL;
    }
    broker_auth_t *self = mesh_alloc (sizeof (broker_auth_t));
    self->context = context;
    self->store = zcertstore_new (allow_dir);
    self->zap_allowed = mesh_metrics_counter (metrics, "mesh_broker_zap_requests_total",
                                              "CURVE handshakes the broker's ZAP handler answered",
                                              "result", "allowed", NULL);
    self->zap_denied = mesh_metrics_counter (metrics, "mesh_broker_zap_requests_total",
                                             "CURVE handshakes the broker's ZAP handler answered",
                                             "result", "denied", NULL);
    static const char *const reasons[S_HANDSHAKE_COUNT_] = {"no_detail", "protocol", "auth"};
    for (int reason = 0; reason < S_HANDSHAKE_COUNT_; reason++)
        self->handshake_failures[reason] = mesh_metrics_counter (
            metrics, "mesh_broker_handshake_failures_total",
            "Connections whose ZeroMQ handshake failed (protocol: e.g. a plain peer on a CURVE "
            "socket; auth: refused by ZAP)",
            "reason", reasons[reason], NULL);
    for (int what = 0; what < BROKER_REFUSAL_COUNT_; what++)
        self->refusals[what] = mesh_metrics_counter (
            metrics, "mesh_broker_refusals_total",
            "Messages refused because the sender's certificate does not grant them", "what",
            s_refusal_names[what], NULL);

    *err = MESH_EIO;
    self->zap = zmq_socket (context, ZMQ_REP);
    int linger = 0;
    if (!self->zap)
        goto fail;
    zmq_setsockopt (self->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind (self->zap, S_ZAP_ENDPOINT) != 0) {
        mesh_log_kv (MESH_LOG_ERROR, "cannot bind the ZAP handler", "error", zmq_strerror (errno),
                     NULL);
        goto fail;
    }
    *err = 0;
    return self;
fail:
    broker_auth_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Close everything; nulls the caller's pointer.
void
broker_auth_destroy (broker_auth_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        broker_auth_t *self = *self_p;
        for (size_t index = 0; index < self->monitor_count; index++)
            zmq_close (self->monitors[index].pair);
        if (self->zap)
            zmq_close (self->zap);
        zcertstore_destroy (&self->store);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Monitor `socket` for handshake failures.
int
broker_auth_monitor (broker_auth_t *self, void *socket, const char *what)
{
    assert (self);
    assert (socket);
    if (self->monitor_count == BROKER_AUTH_MAX_MONITORS)
        return MESH_EIO;
    s_monitor_t *monitor = &self->monitors[self->monitor_count];
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://mesh-broker-monitor-%zu", self->monitor_count);
    if (zmq_socket_monitor (socket, endpoint,
                            ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0)
        return MESH_EIO;
    monitor->pair = zmq_socket (self->context, ZMQ_PAIR);
    if (!monitor->pair || zmq_connect (monitor->pair, endpoint) != 0) {
        if (monitor->pair)
            zmq_close (monitor->pair);
        return MESH_EIO;
    }
    snprintf (monitor->what, sizeof monitor->what, "%s", what);
    self->monitor_count++;
    return 0;
}

//  --------------------------------------------------------------------------
//  Poll items: the ZAP socket, then the monitors.
size_t
broker_auth_poll_items (broker_auth_t *self, zmq_pollitem_t *items, size_t max)
{
    assert (self);
    size_t count = 0;
    if (count < max)
        items[count++] = (zmq_pollitem_t){self->zap, 0, ZMQ_POLLIN, 0};
    for (size_t index = 0; index < self->monitor_count && count < max; index++)
        items[count++] = (zmq_pollitem_t){self->monitors[index].pair, 0, ZMQ_POLLIN, 0};
    return count;
}

//  Whether a refusal may be logged now: a peer retrying a refused
//  handshake every 100 ms (libzmq's reconnect) or a client sending refused
//  requests flat out must not flood the log; the counters see everything.
//  When lines were dropped, says how many first.
static bool
s_log_allowed (broker_auth_t *self)
{
    int64_t second = mesh_mono_ms () / 1000;
    if (second != self->log_second) {
        self->log_second = second;
        self->log_lines = 0;
    }
    if (self->log_lines >= S_LOG_BURST) {
        self->log_suppressed++;
        return false;
    }
    self->log_lines++;
    if (self->log_suppressed) {
        char count[24];
        snprintf (count, sizeof count, "%" PRIu64, self->log_suppressed);
        mesh_log_kv (MESH_LOG_WARN, "refusals not logged (over 10 a second)", "count", count, NULL);
        self->log_suppressed = 0;
    }
    return true;
}

//  Append one ZMTP metadata property (RFC 23: 1-byte name length, name,
//  4-byte big-endian value length, value). Returns false when out of room.
static bool
s_put_property (zchunk_t *chunk, const char *name, const char *value)
{
    size_t name_len = strlen (name), value_len = strlen (value);
    if (zchunk_size (chunk) + 5 + name_len + value_len > zchunk_max_size (chunk))
        return false;
    byte length[4] = {(byte)(value_len >> 24), (byte)(value_len >> 16), (byte)(value_len >> 8),
                      (byte)value_len};
    byte name_byte = (byte)name_len;
    zchunk_extend (chunk, &name_byte, 1);
    zchunk_extend (chunk, name, name_len);
    zchunk_extend (chunk, length, 4);
    zchunk_extend (chunk, value, value_len);
    return true;
}

//  Answer one ZAP request (frames as received). Decides 200 or 400.
static void
s_zap_answer (broker_auth_t *self, zmq_msg_t *frames, int count)
{
    const char *status = "400", *text = "unknown key";
    const char *name = "";
    zchunk_t *metadata = zchunk_new (NULL, S_METADATA_MAX);
    char address[64] = "";
    if (count == S_ZAP_FRAMES) {
        size_t len = zmq_msg_size (&frames[3]);
        snprintf (address, sizeof address, "%.*s", (int)(len < 63 ? len : 63),
                  (const char *)zmq_msg_data (&frames[3]));
    }
    if (count != S_ZAP_FRAMES || zmq_msg_size (&frames[5]) != 5 ||
        memcmp (zmq_msg_data (&frames[5]), "CURVE", 5) != 0 || zmq_msg_size (&frames[6]) != 32)
        text = "only CURVE is served";
    else {
        char key[41];
        zmq_z85_encode (key, zmq_msg_data (&frames[6]), 32);
        //  The lookup reloads the directory when it changed: new keys and
        //  revocations take effect for the next handshake
        zcert_t *cert = zcertstore_lookup (self->store, key);
        const char *cert_name = cert ? zcert_meta (cert, "name") : NULL;
        if (cert && (!cert_name || !*cert_name))
            text = "certificate without a name";
        else if (cert) {
            name = cert_name;
            bool fits = true;
            for (size_t index = 0; index < sizeof s_grants / sizeof s_grants[0]; index++) {
                const char *value = zcert_meta (cert, s_grants[index][0]);
                fits = fits && s_put_property (metadata, s_grants[index][1], value ? value : "");
            }
            if (fits) {
                status = "200";
                text = "OK";
            }
            else
                text = "certificate metadata too large";
        }
    }
    bool allowed = strcmp (status, "200") == 0;
    mesh_counter_inc (allowed ? self->zap_allowed : self->zap_denied);
    if (allowed)
        mesh_log_kv (MESH_LOG_DEBUG, "key admitted", "name", name, "peer", address, NULL);
    else if (s_log_allowed (self))
        mesh_log_kv (MESH_LOG_WARN, "key refused at handshake", "peer", address, "why", text, NULL);
    const char *request_id = "";
    size_t request_id_len = 0;
    if (count >= 2) {
        request_id = zmq_msg_data (&frames[1]);
        request_id_len = zmq_msg_size (&frames[1]);
    }
    zmq_send (self->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send (self->zap, request_id, request_id_len, ZMQ_SNDMORE);
    zmq_send (self->zap, status, 3, ZMQ_SNDMORE);
    zmq_send (self->zap, text, strlen (text), ZMQ_SNDMORE);
    zmq_send (self->zap, name, strlen (name), ZMQ_SNDMORE);
    zmq_send (self->zap, allowed ? zchunk_data (metadata) : NULL,
              allowed ? zchunk_size (metadata) : 0, 0);
    zchunk_destroy (&metadata);
}

//  Answer every waiting ZAP request.
static void
s_zap_drain (broker_auth_t *self)
{
    mdp_frames_t frames;
    while (mdp_frames_recv (&frames, self->zap, ZMQ_DONTWAIT) == 0) {
        s_zap_answer (self, frames.frame, frames.overflow ? 0 : frames.count);
        mdp_frames_close (&frames);
    }
}

//  Count the events a monitor has waiting.
static void
s_monitor_drain (broker_auth_t *self, s_monitor_t *monitor)
{
    while (true) {
        zmq_msg_t event, endpoint;
        zmq_msg_init (&event);
        if (zmq_msg_recv (&event, monitor->pair, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&event);
            return;
        }
        zmq_msg_init (&endpoint);
        if (zmq_msg_more (&event))
            zmq_msg_recv (&endpoint, monitor->pair, 0);
        uint16_t id = 0;
        if (zmq_msg_size (&event) >= 2)
            memcpy (&id, zmq_msg_data (&event), 2); //  Host order, as libzmq writes it
        int reason = id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH       ? S_HANDSHAKE_AUTH
                     : id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? S_HANDSHAKE_PROTOCOL
                                                                 : S_HANDSHAKE_NO_DETAIL;
        mesh_counter_inc (self->handshake_failures[reason]);
        mesh_log_kv (MESH_LOG_DEBUG, "handshake failed", "socket", monitor->what, "reason",
                     reason == S_HANDSHAKE_AUTH       ? "auth"
                     : reason == S_HANDSHAKE_PROTOCOL ? "protocol"
                                                      : "no_detail",
                     NULL);
        zmq_msg_close (&event);
        zmq_msg_close (&endpoint);
    }
}

//  --------------------------------------------------------------------------
//  Handle the poll results of our items.
void
broker_auth_on_poll (broker_auth_t *self, const zmq_pollitem_t *items, size_t count)
{
    assert (self);
    if (count > 0 && (items[0].revents & ZMQ_POLLIN))
        s_zap_drain (self);
    for (size_t index = 1; index < count && index - 1 < self->monitor_count; index++)
        if (items[index].revents & ZMQ_POLLIN)
            s_monitor_drain (self, &self->monitors[index - 1]);
}

//  Whether the list `grants` (names separated by spaces or commas; "*" is
//  any) covers `subject`: equal, or when `prefix`, a leading part of it.
static bool
s_covers (const char *grants, const char *subject, size_t len, bool prefix)
{
    const char *cursor = grants;
    while (*cursor) {
        cursor += strspn (cursor, " ,");
        size_t token = strcspn (cursor, " ,");
        if (token == 0)
            break;
        bool fits = prefix ? token <= len : token == len;
        if ((token == 1 && *cursor == '*') || (fits && memcmp (cursor, subject, token) == 0))
            return true;
        cursor += token;
    }
    return false;
}

//  Log and count one refusal.
static void
s_refuse (broker_auth_t *self, const zmq_msg_t *msg, broker_refusal_t what, const void *subject,
          size_t len)
{
    mesh_counter_inc (self->refusals[what]);
    if (!s_log_allowed (self))
        return;
    const char *name = zmq_msg_gets (msg, BROKER_AUTH_USER_ID);
    char text[257];
    snprintf (text, sizeof text, "%.*s", (int)(len < 256 ? len : 256), (const char *)subject);
    mesh_log_kv (MESH_LOG_WARN, "refused: not granted", "name", name ? name : "", "what",
                 s_refusal_names[what], "subject", text, NULL);
}

//  --------------------------------------------------------------------------
//  Whether the sender of `msg` holds a grant.
bool
broker_auth_allows (broker_auth_t *self, const zmq_msg_t *msg, broker_refusal_t what,
                    const void *subject, size_t len)
{
    assert (self);
    assert (msg);
    assert (what != BROKER_REFUSAL_ACTOR);
    //  No property: a message not from a CURVE peer, which cannot reach a
    //  CURVE socket; refuse rather than assume
    const char *grants = zmq_msg_gets (msg, s_refusal_property[what]);
    bool prefix = what == BROKER_REFUSAL_PUBLISH || what == BROKER_REFUSAL_SUBSCRIBE;
    if (grants && s_covers (grants, subject, len, prefix))
        return true;
    s_refuse (self, msg, what, subject, len);
    return false;
}

//  --------------------------------------------------------------------------
//  Whether the sender of `msg` may name `actor`.
bool
broker_auth_allows_actor (broker_auth_t *self, const zmq_msg_t *msg, const char *actor, size_t len)
{
    assert (self);
    assert (msg);
    if (len == 0)
        return true;
    const char *name = zmq_msg_gets (msg, BROKER_AUTH_USER_ID);
    if (name && strlen (name) == len && memcmp (name, actor, len) == 0)
        return true;
    const char *delegate = zmq_msg_gets (msg, BROKER_AUTH_DELEGATE);
    if (delegate && strcmp (delegate, "yes") == 0)
        return true;
    s_refuse (self, msg, BROKER_REFUSAL_ACTOR, actor, len);
    return false;
}
