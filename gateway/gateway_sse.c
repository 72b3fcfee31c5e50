/*  =========================================================================
    gateway_sse - GET /v1/events: user events as Server-Sent Events
    Each stream is an MHD response fed by a content reader: the reader hands
    MHD what the stream's buffer holds, and when it is empty suspends the
    connection; appending data resumes it. Everything runs on the gateway's
    one loop thread, so there are no locks.
    A stream outlives its connection while a catch-up call is in flight
    (the call's tag points to it): MHD's free callback marks it released
    and the reply, or gateway_sse_destroy, frees it.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_sse.h"
#include "gateway_tag.h"
#include "gateway_trace.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_json.h"
#include "mesh/mesh_log.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PAGE 1000                     //  events.list limit per catch-up call
#define S_MAX_BUFFERED (1024 * 1024)    //  A client further behind is ended
#define S_BLOCK_SIZE 4096               //  MHD's read block for the stream

typedef struct s_stream_s s_stream_t;

struct s_stream_s {
    gateway_tag_t tag;          //  GATEWAY_TAG_STREAM; first member
    gateway_sse_t *owner;       //  The set it belongs to
    struct MHD_Connection *connection;  //  Borrowed from MHD until released
    s_stream_t *prev;           //  In owner->streams
    s_stream_t *next;
    char *buffer;               //  Bytes not yet handed to MHD
    size_t len;                 //  Bytes in buffer
    size_t sent;                //  Of which already handed over
    size_t capacity;            //  Bytes allocated
    uint64_t last_seq;          //  Last seq sent (or the resume point)
    bool have_seq;              //  last_seq means something yet
    bool catching_up;           //  Taking events from events.list, not live
    bool in_mesh;               //  A call with this tag is in flight
    bool suspended;             //  MHD connection suspended, waiting for data
    bool ended;                 //  No more data: end after the buffer
    bool released;              //  MHD freed the response: connection gone
    char request_id[GATEWAY_REQUEST_ID_MAX + 1];    //  For the log
    char trace_id[MESH_TRACE_ID_HEX_SIZE];          //  For the log, "" when none
    char span_id[MESH_SPAN_ID_HEX_SIZE];            //  For the log, "" when none
    char actor[MESH_ENVELOPE_MAX_ACTOR + 1];        //  Of catch-up calls, "" when none
};

struct gateway_sse_s {
    mesh_client_t *client;      //  Borrowed: catch-up calls
    gateway_metrics_t *metrics; //  Borrowed
    int timeout_ms;             //  Per catch-up call
    s_stream_t *streams;        //  Every stream not yet freed
    size_t open;                //  Streams not yet released
    uint64_t max_seq;           //  Highest seq seen live
    bool have_max;              //  max_seq means something yet
    msgpack_sbuffer buffer;     //  Encodes catch-up requests
};

//  --------------------------------------------------------------------------
//  A set of streams.
gateway_sse_t *
gateway_sse_new (mesh_client_t *client, gateway_metrics_t *metrics, int timeout_ms)
{
    assert (client);
    assert (metrics);
    gateway_sse_t *self = mesh_alloc (sizeof (gateway_sse_t));
    self->client = client;
    self->metrics = metrics;
    self->timeout_ms = timeout_ms;
    msgpack_sbuffer_init (&self->buffer);
    return self;
}

static void
s_stream_free (s_stream_t *stream)
{
    gateway_sse_t *owner = stream->owner;
    if (stream->prev)
        stream->prev->next = stream->next;
    else
        owner->streams = stream->next;
    if (stream->next)
        stream->next->prev = stream->prev;
    free (stream->buffer);
    free (stream);
}

//  --------------------------------------------------------------------------
//  Destroy the set and every stream left.
void
gateway_sse_destroy (gateway_sse_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_sse_t *self = *self_p;
        while (self->streams)
            s_stream_free (self->streams);
        msgpack_sbuffer_destroy (&self->buffer);
        free (self);
        *self_p = NULL;
    }
}

//  Wake the connection if it waits for data.
static void
s_wake (s_stream_t *stream)
{
    if (stream->suspended && !stream->released) {
        stream->suspended = false;
        MHD_resume_connection (stream->connection);
    }
}

//  End the stream: the client reconnects with Last-Event-ID and misses
//  nothing.
static void
s_end (s_stream_t *stream, const char *why)
{
    if (stream->ended)
        return;
    stream->ended = true;
    mesh_log_kv (MESH_LOG_DEBUG, "event stream ended", "request_id", stream->request_id,
                 "trace_id", stream->trace_id[0]? stream->trace_id: NULL, "span_id",
                 stream->span_id[0]? stream->span_id: NULL, "reason", why, NULL);
    s_wake (stream);
}

//  Append `len` bytes for the client.
static void
s_append (s_stream_t *stream, const char *data, size_t len)
{
    if (stream->ended || stream->released)
        return;
    if (stream->len - stream->sent + len > S_MAX_BUFFERED) {
        s_end (stream, "client too slow");
        return;
    }
    if (stream->sent && stream->sent == stream->len)
        stream->sent = stream->len = 0;
    if (stream->len + len > stream->capacity) {
        //  Drop what MHD already took before growing
        if (stream->sent) {
            memmove (stream->buffer, stream->buffer + stream->sent, stream->len - stream->sent);
            stream->len -= stream->sent;
            stream->sent = 0;
        }
        if (stream->len + len > stream->capacity) {
            stream->capacity = (stream->len + len) * 2;
            stream->buffer = mesh_realloc (stream->buffer, stream->capacity);
        }
    }
    memcpy (stream->buffer + stream->len, data, len);
    stream->len += len;
    s_wake (stream);
}

//  Unsigned integer field `name` of map `object`; false when absent or not
//  a non-negative integer.
static bool
s_field_seq (const msgpack_object *object, uint64_t *seq)
{
    if (object->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t index = 0; index < object->via.map.size; index++) {
        const msgpack_object_kv *pair = &object->via.map.ptr[index];
        if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == 3
            && memcmp (pair->key.via.str.ptr, "seq", 3) == 0) {
            if (pair->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return false;
            *seq = pair->val.via.u64;
            return true;
        }
    }
    return false;
}

//  The SSE text of one event (fresh string; caller frees), or NULL when it
//  cannot be shown: "id: seq", "event: type", "data: compact JSON".
static char *
s_format (const msgpack_object *event, uint64_t *seq, size_t *len)
{
    if (!s_field_seq (event, seq))
        return NULL;
    json_t *json = mesh_msgpack_to_json (event, MESH_JSON_MAX_DEPTH);
    if (!json)
        return NULL;
    char *text = NULL;
    const char *type = json_string_value (json_object_get (json, "type"));
    //  Compact JSON has no newline; the type must not have one either, or
    //  it would end the field early
    char *data = json_dumps (json, JSON_COMPACT);
    if (type && data && !strpbrk (type, "\r\n")) {
        size_t size = strlen (type) + strlen (data) + 64;
        text = mesh_alloc (size);
        int written = snprintf (text, size, "id: %" PRIu64 "\nevent: %s\ndata: %s\n\n", *seq,
                                type, data);
        *len = (size_t) written;
    }
    free (data);
    json_decref (json);
    return text;
}

//  Ask events.list for what follows the stream's last seq.
static void
s_fetch (s_stream_t *stream)
{
    gateway_sse_t *self = stream->owner;
    stream->catching_up = true;
    msgpack_sbuffer_clear (&self->buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &self->buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 2);
    mesh_pack_cstr (&packer, "after_seq");
    msgpack_pack_uint64 (&packer, stream->last_seq);
    mesh_pack_cstr (&packer, "limit");
    msgpack_pack_uint32 (&packer, S_PAGE);
    mesh_call_t call = {
        .service = "user",
        .method = "events.list",
        .body = self->buffer.data,
        .body_len = self->buffer.size,
        .timeout_ms = self->timeout_ms,
        .actor = stream->actor[0]? stream->actor: NULL,
        .tag = stream,
    };
    int rc = mesh_client_send (self->client, &call, NULL);
    if (rc) {
        s_end (stream, mesh_strerror (rc));
        return;
    }
    stream->in_mesh = true;
}

//  Offer a live event to one stream.
static void
s_offer (s_stream_t *stream, uint64_t seq, const char *text, size_t len)
{
    if (stream->ended || stream->released || stream->catching_up)
        return;     //  A stream catching up looks at max_seq when it is done
    if (!stream->have_seq || seq == stream->last_seq + 1) {
        s_append (stream, text, len);
        stream->last_seq = seq;
        stream->have_seq = true;
    }
    else if (seq > stream->last_seq)
        s_fetch (stream);       //  A gap: PUB/SUB dropped something
}

//  --------------------------------------------------------------------------
//  One live event.
void
gateway_sse_on_event (gateway_sse_t *self, const void *topic, size_t topic_len,
                      const void *payload, size_t payload_len)
{
    assert (self);
    (void) topic;
    (void) topic_len;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    uint64_t seq = 0;
    size_t len = 0;
    char *text = NULL;
    //  Checked first: msgpack-c trusts container counts, so a few bytes on
    //  the bus could make it allocate gigabytes (issue 13)
    if (mesh_msgpack_check (payload, payload_len) == 0
        && msgpack_unpack_next (&unpacked, payload, payload_len, &offset) == MSGPACK_UNPACK_SUCCESS
        && offset == payload_len)
        text = s_format (&unpacked.data, &seq, &len);
    msgpack_unpacked_destroy (&unpacked);
    if (!text) {
        mesh_log_kv (MESH_LOG_DEBUG, "malformed event dropped", NULL);
        return;
    }
    if (!self->have_max || seq > self->max_seq) {
        self->max_seq = seq;
        self->have_max = true;
    }
    for (s_stream_t *stream = self->streams; stream; stream = stream->next)
        s_offer (stream, seq, text, len);
    free (text);
}

//  --------------------------------------------------------------------------
//  The outcome of a catch-up call.
void
gateway_sse_on_reply (gateway_sse_t *self, const mesh_reply_t *reply)
{
    assert (self);
    assert (reply);
    s_stream_t *stream = (s_stream_t *) reply->tag;
    stream->in_mesh = false;
    gateway_metrics_mesh_call (self->metrics, "user", "events.list", reply->code);
    if (stream->released) {
        s_stream_free (stream);
        return;
    }
    if (reply->code != MESH_CODE_OK) {
        s_end (stream, mesh_code_name (reply->code));
        return;
    }
    const msgpack_object *items = NULL;
    if (reply->body && reply->body->type == MSGPACK_OBJECT_MAP)
        for (uint32_t index = 0; index < reply->body->via.map.size; index++) {
            const msgpack_object_kv *pair = &reply->body->via.map.ptr[index];
            if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == 5
                && memcmp (pair->key.via.str.ptr, "items", 5) == 0
                && pair->val.type == MSGPACK_OBJECT_ARRAY)
                items = &pair->val;
        }
    if (!items) {
        s_end (stream, "events.list reply without items");
        return;
    }
    uint32_t count = items->via.array.size;
    for (uint32_t index = 0; index < count; index++) {
        uint64_t seq = 0;
        size_t len = 0;
        char *text = s_format (&items->via.array.ptr[index], &seq, &len);
        if (!text) {
            s_end (stream, "malformed event in events.list");
            return;
        }
        if (seq > stream->last_seq) {
            s_append (stream, text, len);
            stream->last_seq = seq;
        }
        free (text);
    }
    //  Another page, or live events that arrived while this one was in
    //  flight (they were skipped): fetch again. An empty page ends the
    //  catch-up whatever max_seq says, so a store that lost events cannot
    //  make a stream ask for ever.
    if (count > 0 && (count >= S_PAGE || (self->have_max && self->max_seq > stream->last_seq)))
        s_fetch (stream);
    else
        stream->catching_up = false;
}

//  MHD asks for the next bytes of the stream.
static ssize_t
s_read (void *cls, uint64_t position, char *block, size_t max)
{
    (void) position;
    s_stream_t *stream = (s_stream_t *) cls;
    size_t waiting = stream->len - stream->sent;
    if (waiting) {
        size_t count = waiting < max? waiting: max;
        memcpy (block, stream->buffer + stream->sent, count);
        stream->sent += count;
        return (ssize_t) count;
    }
    if (stream->ended)
        return MHD_CONTENT_READER_END_OF_STREAM;
    //  Nothing to send: park the connection until s_append wakes it
    stream->suspended = true;
    MHD_suspend_connection (stream->connection);
    return 0;
}

//  MHD is done with the response: the connection is gone.
static void
s_release (void *cls)
{
    s_stream_t *stream = (s_stream_t *) cls;
    gateway_sse_t *self = stream->owner;
    stream->released = true;
    stream->suspended = false;
    self->open--;
    gateway_metrics_sse_streams (self->metrics, -1);
    if (!stream->in_mesh)
        s_stream_free (stream);
}

//  --------------------------------------------------------------------------
//  Open a stream.
struct MHD_Response *
gateway_sse_open (gateway_sse_t *self, struct MHD_Connection *connection, bool resume,
                  uint64_t last_seq, const char *request_id, const char *traceparent,
                  const char *actor)
{
    assert (self);
    assert (connection);
    s_stream_t *stream = mesh_alloc (sizeof (s_stream_t));
    stream->tag.kind = GATEWAY_TAG_STREAM;
    stream->owner = self;
    stream->connection = connection;
    snprintf (stream->request_id, sizeof stream->request_id, "%s", request_id);
    mesh_traceparent_ids (traceparent, traceparent? strlen (traceparent): 0, stream->trace_id,
                          stream->span_id);
    snprintf (stream->actor, sizeof stream->actor, "%s", actor? actor: "");
    struct MHD_Response *response = MHD_create_response_from_callback (
        MHD_SIZE_UNKNOWN, S_BLOCK_SIZE, s_read, stream, s_release);
    if (!response) {
        free (stream);
        return NULL;
    }
    stream->next = self->streams;
    if (self->streams)
        self->streams->prev = stream;
    self->streams = stream;
    self->open++;
    gateway_metrics_sse_streams (self->metrics, 1);

    //  The client reconnects after a second when the stream ends; the
    //  comment tells it (and tests) that the stream is live
    static const char hello[] = "retry: 1000\n: connected\n\n";
    s_append (stream, hello, sizeof hello - 1);
    if (resume) {
        stream->last_seq = last_seq;
        stream->have_seq = true;
        s_fetch (stream);
    }
    else {
        stream->last_seq = self->max_seq;
        stream->have_seq = self->have_max;
    }
    return response;
}

//  --------------------------------------------------------------------------
//  A comment to every idle stream.
void
gateway_sse_ping (gateway_sse_t *self)
{
    assert (self);
    static const char ping[] = ": ping\n\n";
    for (s_stream_t *stream = self->streams; stream; stream = stream->next)
        if (stream->len == stream->sent)
            s_append (stream, ping, sizeof ping - 1);
}

//  --------------------------------------------------------------------------
//  End every stream.
void
gateway_sse_end_all (gateway_sse_t *self)
{
    assert (self);
    for (s_stream_t *stream = self->streams; stream; stream = stream->next)
        if (!stream->released)
            s_end (stream, "gateway shutting down");
}

//  --------------------------------------------------------------------------
//  Streams whose connection MHD has not yet released.
size_t
gateway_sse_count (const gateway_sse_t *self)
{
    assert (self);
    return self->open;
}
