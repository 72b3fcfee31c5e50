/*  =========================================================================
    user_test - helpers for the integration tests of mesh-user
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_test.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

mesh_proc_t *
user_test_start (const mesh_test_broker_t *broker, const char *conninfo, int workers,
                 const char *admin_addr, const char *const *extra)
{
    char bin[1024], count[16], admin[64];
    snprintf (count, sizeof count, "%d", workers);
    if (admin_addr)
        snprintf (admin, sizeof admin, "%s", admin_addr);
    else
        snprintf (admin, sizeof admin, "127.0.0.1:%d", mesh_test_free_port ());
    const char *argv[64] = {
        mesh_test_bin ("mesh-user", bin, sizeof bin),
        "--broker", broker->endpoint,
        "--events-pub", broker->xsub,
        "--database-url", conninfo,
        "--workers", count,
        "--heartbeat-ms", "200",
        "--relay-sweep-ms", "200",
        "--admin", admin,
    };
    size_t argc = 0;
    while (argv[argc])
        argc++;
    for (size_t index = 0; extra && extra[index]; index++) {
        cr_assert_lt (argc, sizeof argv / sizeof argv[0] - 1);
        argv[argc++] = extra[index];
    }
    argv[argc] = NULL;
    mesh_proc_t *proc = mesh_proc_start (argv, NULL);
    cr_assert_not_null (proc, "cannot start %s", bin);
    return proc;
}

void
user_test_stop (mesh_proc_t **proc_p)
{
    if (!*proc_p)
        return;
    mesh_proc_signal (*proc_p, SIGTERM);
    int status = -1;
    bool exited = mesh_proc_wait_exit (*proc_p, 15000, &status);
    char *log = mesh_proc_log (*proc_p);
    cr_expect (exited, "mesh-user did not exit on SIGTERM; log:\n%s", log);
    cr_expect (exited && WIFEXITED (status) && WEXITSTATUS (status) == 0,
               "mesh-user exit status %d; log:\n%s", status, log);
    free (log);
    mesh_proc_destroy (proc_p);
}

mesh_reply_t
user_test_call (mesh_client_t *client, const char *method, const msgpack_sbuffer *body,
                const char *idem, int timeout_ms)
{
    return user_test_call_as (client, method, body, idem, NULL, timeout_ms);
}

mesh_reply_t
user_test_call_as (mesh_client_t *client, const char *method, const msgpack_sbuffer *body,
                   const char *idem, const char *actor, int timeout_ms)
{
    mesh_call_t call = {
        .service = "user",
        .method = method,
        .body = body ? body->data : NULL,
        .body_len = body ? body->size : 0,
        .timeout_ms = timeout_ms ? timeout_ms : 10000,
        .idem = idem,
        .actor = actor,
    };
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (client, &call, &reply), 0);
    return reply;
}

void
user_test_pack_strings (msgpack_sbuffer *buffer, const char *const *pairs)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    size_t count = 0;
    while (pairs[count * 2])
        count++;
    msgpack_pack_map (&packer, count);
    for (size_t index = 0; index < count * 2; index++)
        mesh_pack_cstr (&packer, pairs[index]);
}

mesh_reply_t
user_test_call_strings (mesh_client_t *client, const char *method, const char *const *pairs,
                        const char *idem)
{
    msgpack_sbuffer buffer;
    user_test_pack_strings (&buffer, pairs);
    mesh_reply_t reply = user_test_call (client, method, &buffer, idem, 0);
    msgpack_sbuffer_destroy (&buffer);
    return reply;
}

const msgpack_object *
user_test_get (const msgpack_object *object, const char *name)
{
    cr_assert_not_null (object);
    cr_assert_eq (object->type, MSGPACK_OBJECT_MAP);
    size_t len = strlen (name);
    for (uint32_t index = 0; index < object->via.map.size; index++) {
        const msgpack_object_kv *pair = &object->via.map.ptr[index];
        if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == len
            && memcmp (pair->key.via.str.ptr, name, len) == 0)
            return &pair->val;
    }
    return NULL;
}

const char *
user_test_str (const msgpack_object *object, const char *name, char *out, size_t size)
{
    const msgpack_object *value = user_test_get (object, name);
    cr_assert_not_null (value, "no field %s", name);
    cr_assert_eq (value->type, MSGPACK_OBJECT_STR, "field %s is not a string", name);
    cr_assert_lt (value->via.str.size, size);
    memcpy (out, value->via.str.ptr, value->via.str.size);
    out[value->via.str.size] = '\0';
    return out;
}

uint64_t
user_test_uint (const msgpack_object *object, const char *name)
{
    const msgpack_object *value = user_test_get (object, name);
    cr_assert_not_null (value, "no field %s", name);
    cr_assert_eq (value->type, MSGPACK_OBJECT_POSITIVE_INTEGER, "field %s is not a uint", name);
    return value->via.u64;
}

void
user_test_expect_code (const mesh_reply_t *reply, mesh_code_t code)
{
    cr_assert_eq (reply->code, code, "want %s, got %s: %.*s", mesh_code_name (code),
                  mesh_code_name (reply->code), (int) reply->message.len, reply->message.ptr);
}

const char *
user_test_message (const mesh_reply_t *reply, char *out, size_t size)
{
    size_t len = reply->message.len < size - 1? reply->message.len: size - 1;
    memcpy (out, reply->message.ptr, len);
    out[len] = '\0';
    return out;
}

user_test_events_t *
user_test_events_new (size_t capacity)
{
    user_test_events_t *self = mesh_alloc (sizeof *self);
    self->capacity = capacity;
    self->seen = mesh_alloc ((capacity + 1) * sizeof *self->seen);
    self->subject = mesh_alloc ((capacity + 1) * sizeof *self->subject);
    self->type = mesh_alloc ((capacity + 1) * sizeof *self->type);
    self->actor = mesh_alloc ((capacity + 1) * sizeof *self->actor);
    return self;
}

void
user_test_events_destroy (user_test_events_t **self_p)
{
    if (self_p && *self_p) {
        user_test_events_t *self = *self_p;
        free (self->seen);
        free (self->subject);
        free (self->type);
        free (self->actor);
        free (self);
        *self_p = NULL;
    }
}

void
user_test_events_add (user_test_events_t *self, const msgpack_object *event)
{
    char text[128];
    if (event->type != MSGPACK_OBJECT_MAP) {
        self->malformed++;
        return;
    }
    cr_assert_str_eq (user_test_str (event, "specversion", text, sizeof text), "1.0");
    cr_assert_str_eq (user_test_str (event, "source", text, sizeof text), "/services/user");
    cr_assert_str_eq (user_test_str (event, "datacontenttype", text, sizeof text),
                      "application/msgpack");
    user_test_str (event, "id", text, sizeof text);
    cr_assert_eq (strlen (text), 36, "event id %s", text);
    user_test_str (event, "time", text, sizeof text);
    cr_assert_eq (text[strlen (text) - 1], 'Z', "time %s", text);
    const msgpack_object *data = user_test_get (event, "data");
    cr_assert_not_null (data);
    cr_assert_eq (data->type, MSGPACK_OBJECT_MAP, "data is the user");
    uint64_t seq = user_test_uint (event, "seq");
    if (seq == 0 || seq > self->capacity) {
        self->beyond++;
        return;
    }
    if (self->seen[seq]++ == 0) {
        user_test_str (event, "subject", self->subject[seq], sizeof self->subject[seq]);
        user_test_str (event, "type", self->type[seq], sizeof self->type[seq]);
        if (user_test_get (event, "actor")) {
            user_test_str (event, "actor", self->actor[seq], sizeof self->actor[seq]);
            cr_assert_str_not_empty (self->actor[seq], "seq %zu: an empty actor is absent",
                                     (size_t)seq);
        }
        char id[64];
        cr_assert_str_eq (user_test_str (data, "id", id, sizeof id), self->subject[seq],
                          "data.id is the subject");
    }
}

void
user_test_events_fetch_all (user_test_events_t *self, mesh_client_t *client, int limit)
{
    uint64_t after = 0;
    for (int page = 0; page < 100000; page++) {
        msgpack_sbuffer body;
        msgpack_sbuffer_init (&body);
        msgpack_packer packer;
        msgpack_packer_init (&packer, &body, msgpack_sbuffer_write);
        msgpack_pack_map (&packer, 2);
        mesh_pack_cstr (&packer, "after_seq");
        msgpack_pack_uint64 (&packer, after);
        mesh_pack_cstr (&packer, "limit");
        msgpack_pack_int (&packer, limit);
        mesh_reply_t reply = user_test_call (client, "events.list", &body, NULL, 0);
        msgpack_sbuffer_destroy (&body);
        user_test_expect_code (&reply, MESH_CODE_OK);
        const msgpack_object *items = user_test_get (reply.body, "items");
        cr_assert_not_null (items);
        cr_assert_eq (items->type, MSGPACK_OBJECT_ARRAY);
        for (uint32_t index = 0; index < items->via.array.size; index++) {
            const msgpack_object *event = &items->via.array.ptr[index];
            uint64_t seq = user_test_uint (event, "seq");
            cr_assert_eq (seq, after + 1, "events.list: seq %lu after %lu",
                          (unsigned long) seq, (unsigned long) after);
            user_test_events_add (self, event);
            after = seq;
        }
        if (items->via.array.size < (uint32_t) limit)
            return;
    }
    cr_assert_fail ("events.list never ended");
}

size_t
user_test_events_distinct (const user_test_events_t *self)
{
    size_t distinct = 0;
    for (size_t seq = 1; seq <= self->capacity; seq++)
        distinct += self->seen[seq] > 0;
    return distinct;
}

size_t
user_test_events_receive (user_test_events_t *self, void *sub, size_t count, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    size_t distinct = user_test_events_distinct (self);
    while (distinct < count) {
        int64_t left = until - mesh_mono_ms ();
        if (left <= 0)
            break;
        zmq_pollitem_t item = { sub, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) left) <= 0)
            continue;
        zmq_msg_t topic, body;
        zmq_msg_init (&topic);
        zmq_msg_init (&body);
        cr_assert_geq (zmq_msg_recv (&topic, sub, 0), 0);
        cr_assert (zmq_msg_more (&topic), "an event is two frames");
        cr_assert_geq (zmq_msg_recv (&body, sub, 0), 0);
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        if (msgpack_unpack_next (&unpacked, zmq_msg_data (&body), zmq_msg_size (&body), NULL)
            == MSGPACK_UNPACK_SUCCESS) {
            char type[32];
            user_test_str (&unpacked.data, "type", type, sizeof type);
            cr_assert_eq (zmq_msg_size (&topic), strlen (type), "topic is the type");
            cr_assert (memcmp (zmq_msg_data (&topic), type, strlen (type)) == 0);
            if (user_test_uint (&unpacked.data, "seq") <= self->capacity
                && self->seen[user_test_uint (&unpacked.data, "seq")] == 0)
                distinct++;
            user_test_events_add (self, &unpacked.data);
        }
        else
            self->malformed++;
        msgpack_unpacked_destroy (&unpacked);
        zmq_msg_close (&topic);
        zmq_msg_close (&body);
    }
    return distinct;
}

void
user_test_events_tally (const user_test_events_t *self, size_t upto, size_t *once,
                        size_t *missing, size_t *repeated)
{
    *once = *missing = *repeated = 0;
    for (size_t seq = 1; seq <= upto && seq <= self->capacity; seq++) {
        if (self->seen[seq] == 0)
            (*missing)++;
        else if (self->seen[seq] == 1)
            (*once)++;
        else
            (*repeated)++;
    }
}

//  Run scripts/pg with `action` on `dir`; its stdout (first line) into `out`.
static void
s_scripts_pg (const char *action, const char *dir, char *out, size_t size)
{
    char command[2048];
    snprintf (command, sizeof command, "'%s/scripts/pg' %s '%s' 2>>'%s.log'", MESH_SOURCE_DIR,
              action, dir, dir);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe, "cannot run %s", command);
    char line[1024] = "";
    if (!fgets (line, sizeof line, pipe))
        line[0] = '\0';
    int status = pclose (pipe);
    cr_assert_eq (status, 0, "%s failed (status %d); see %s.log", command, status, dir);
    line[strcspn (line, "\n")] = '\0';
    if (out)
        snprintf (out, size, "%s", line);
}

void
user_test_cluster_start (const char *dir, char *url, size_t size)
{
    s_scripts_pg ("start", dir, url, size);
    cr_assert (url == NULL || strncmp (url, "postgresql://", 13) == 0, "url: %s", url);
}

void
user_test_cluster_stop (const char *dir)
{
    s_scripts_pg ("stop", dir, NULL, 0);
}
