/*  =========================================================================
    test_broker_events - the broker's XSUB/XPUB event proxy
    Publishers connect PUB sockets to the broker's XSUB port, subscribers
    SUB sockets to its XPUB port. An event is two frames: topic and a
    MessagePack map (CloudEvents attribute names). Subscriptions travel
    SUB -> XPUB -> broker -> XSUB -> PUB and take a moment: the slow-joiner
    problem. Instead of sleeping, every subscriber also subscribes to its
    own probe topic, and the publishers send probes until each subscriber
    has seen one from each publisher: subscriptions from one SUB travel in
    order, so by then its real subscription has reached the publishers too.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_PUBLISHERS 2
#define S_SUBSCRIBERS 4
#define S_WAIT_MS 10000         //  Bound on every wait

static mesh_test_broker_t s_broker;
static mesh_test_sockets_t *s_sockets;  //  Every socket a test opened; teardown closes them

static void
s_setup (void)
{
    memset (&s_broker, 0, sizeof s_broker);
    cr_assert (mesh_test_broker_start (&s_broker, 500, NULL), "broker did not start");
    s_sockets = mesh_test_sockets_new (S_WAIT_MS);
    cr_assert_not_null (s_sockets);
}

static void
s_teardown (void)
{
    mesh_test_sockets_destroy (&s_sockets);
    mesh_test_broker_stop (&s_broker);
}

TestSuite (broker_events, .init = s_setup, .fini = s_teardown, .timeout = 60.);

//  ------------------------------------------------------------ /metrics

//  Current value of a broker metric (fails the test if unavailable).
static double
s_broker_metric (const char *name)
{
    char *text = mesh_test_broker_metrics (&s_broker);
    cr_assert_not_null (text, "GET /metrics failed on %s", s_broker.admin);
    double value = mesh_test_metric (text, name, NULL);
    free (text);
    cr_assert_geq (value, 0, "%s missing from /metrics", name);
    return value;
}

//  ------------------------------------------------------------- events

//  One received event.
typedef struct {
    char topic[64];
    size_t topic_len;
    char payload[1024];
    size_t payload_len;
    int frames;
} s_event_t;

//  Receive one whole message without waiting. Returns false when none.
static bool
s_recv_event (void *socket, s_event_t *event)
{
    memset (event, 0, sizeof *event);
    int more = 1;
    bool got = false;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, socket, got? 0: ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            cr_assert_not (got, "message cut short");
            return false;
        }
        got = true;
        size_t size = zmq_msg_size (&frame);
        if (event->frames == 0) {
            cr_assert_lt (size, sizeof event->topic);
            memcpy (event->topic, zmq_msg_data (&frame), size);
            event->topic_len = size;
        }
        else
        if (event->frames == 1) {
            cr_assert_leq (size, sizeof event->payload);
            memcpy (event->payload, zmq_msg_data (&frame), size);
            event->payload_len = size;
        }
        event->frames++;
        more = zmq_msg_more (&frame);
        zmq_msg_close (&frame);
    }
    return true;
}

//  Publish topic + payload as one two-frame message.
static void
s_publish (void *publisher, const char *topic, const void *payload, size_t size)
{
    cr_assert_eq (zmq_send (publisher, topic, strlen (topic), ZMQ_SNDMORE), (int) strlen (topic));
    cr_assert_eq (zmq_send (publisher, payload, size, 0), (int) size);
}

//  A CloudEvents-style payload for `topic` with `seq`.
static void
s_pack_event (msgpack_sbuffer *buffer, const char *topic, uint64_t seq)
{
    msgpack_sbuffer_clear (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    char id[64], subject[64];
    snprintf (id, sizeof id, "00000000-0000-4000-8000-%012llu", (unsigned long long) seq);
    snprintf (subject, sizeof subject, "11111111-0000-4000-8000-%012llu",
              (unsigned long long) seq % 3);
    msgpack_pack_map (&packer, 9);
    mesh_pack_cstr (&packer, "specversion");
    mesh_pack_cstr (&packer, "1.0");
    mesh_pack_cstr (&packer, "id");
    mesh_pack_cstr (&packer, id);
    mesh_pack_cstr (&packer, "source");
    mesh_pack_cstr (&packer, "/services/user");
    mesh_pack_cstr (&packer, "type");
    mesh_pack_cstr (&packer, topic);
    mesh_pack_cstr (&packer, "time");
    mesh_pack_cstr (&packer, "2025-01-01T00:00:00Z");
    mesh_pack_cstr (&packer, "subject");
    mesh_pack_cstr (&packer, subject);
    mesh_pack_cstr (&packer, "datacontenttype");
    mesh_pack_cstr (&packer, "application/msgpack");
    mesh_pack_cstr (&packer, "data");
    msgpack_pack_map (&packer, 1);
    mesh_pack_cstr (&packer, "name");
    mesh_pack_cstr (&packer, "Ada");
    mesh_pack_cstr (&packer, "seq");
    msgpack_pack_uint64 (&packer, seq);
}

//  The "seq" of an event payload, or 0.
static uint64_t
s_event_seq (const s_event_t *event)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    uint64_t seq = 0;
    if (msgpack_unpack_next (&unpacked, event->payload, event->payload_len, NULL)
            == MSGPACK_UNPACK_SUCCESS
        && unpacked.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t index = 0; index < unpacked.data.via.map.size; index++) {
            msgpack_object_kv *pair = &unpacked.data.via.map.ptr[index];
            if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == 3
                && memcmp (pair->key.via.str.ptr, "seq", 3) == 0
                && pair->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                seq = pair->val.via.u64;
        }
    msgpack_unpacked_destroy (&unpacked);
    return seq;
}

//  ------------------------------------------------------------- the test

typedef struct {
    const char *prefix;         //  Subscription
    char probe[32];             //  Its own probe topic
    void *socket;
    bool probed[S_PUBLISHERS];  //  Saw a probe from each publisher
    bool ended[S_PUBLISHERS];   //  Saw the end marker from each publisher
    uint64_t got[64];           //  seqs of real events, in arrival order
    int got_count;
} s_subscriber_t;

//  True when `topic` (len bytes) starts with "probe.".
static bool
s_is_probe (const s_event_t *event)
{
    return event->topic_len >= 6 && memcmp (event->topic, "probe.", 6) == 0;
}

//  Read every waiting message of `sub`: record probes, ends and events.
static void
s_drain (s_subscriber_t *sub)
{
    s_event_t event;
    while (s_recv_event (sub->socket, &event)) {
        cr_assert_eq (event.frames, 2, "%.*s: %d frames, want 2", (int) event.topic_len,
                      event.topic, event.frames);
        if (s_is_probe (&event)) {
            bool own = event.topic_len == strlen (sub->probe)
                    && memcmp (event.topic, sub->probe, event.topic_len) == 0;
            if (!own) {
                //  Only the catch-all subscriber may see others' probes
                cr_assert_str_empty (sub->prefix, "'%s' got another subscriber's probe %.*s",
                                     sub->prefix, (int) event.topic_len, event.topic);
                continue;
            }
            //  Payload: "probe N" or "end N" where N is the publisher
            int publisher = event.payload[event.payload_len - 1] - '0';
            cr_assert (publisher >= 0 && publisher < S_PUBLISHERS);
            if (event.payload_len > 3 && memcmp (event.payload, "end", 3) == 0)
                sub->ended[publisher] = true;
            else
                sub->probed[publisher] = true;
            continue;
        }
        cr_assert (event.topic_len >= strlen (sub->prefix)
                       && memcmp (event.topic, sub->prefix, strlen (sub->prefix)) == 0,
                   "subscriber '%s' got topic %.*s", sub->prefix, (int) event.topic_len,
                   event.topic);
        cr_assert_lt (sub->got_count, 64);
        sub->got[sub->got_count++] = s_event_seq (&event);
    }
}

//  Wait up to `timeout_ms` for any subscriber to have input, then drain all.
static void
s_poll_all (s_subscriber_t *subs, int timeout_ms)
{
    zmq_pollitem_t items[S_SUBSCRIBERS];
    for (int index = 0; index < S_SUBSCRIBERS; index++)
        items[index] = (zmq_pollitem_t) { subs[index].socket, 0, ZMQ_POLLIN, 0 };
    zmq_poll (items, S_SUBSCRIBERS, timeout_ms);
    for (int index = 0; index < S_SUBSCRIBERS; index++)
        s_drain (&subs[index]);
}

//  True when every subscriber has flag[p] for every publisher p.
static bool
s_all (const s_subscriber_t *subs, bool ended)
{
    for (int index = 0; index < S_SUBSCRIBERS; index++)
        for (int publisher = 0; publisher < S_PUBLISHERS; publisher++)
            if (!(ended? subs[index].ended[publisher]: subs[index].probed[publisher]))
                return false;
    return true;
}

Test (broker_events, subscribers_get_exactly_their_prefix_in_order)
{
    s_subscriber_t subs[S_SUBSCRIBERS] = {
        { .prefix = "user." },
        { .prefix = "user.created" },
        { .prefix = "order." },
        { .prefix = "" },           //  Everything
    };
    for (int index = 0; index < S_SUBSCRIBERS; index++) {
        snprintf (subs[index].probe, sizeof subs[index].probe, "probe.%d", index);
        subs[index].socket = mesh_test_sockets_open (s_sockets, ZMQ_SUB, s_broker.xpub);
        //  The real subscription first, then the probe: they travel in order
        cr_assert_eq (zmq_setsockopt (subs[index].socket, ZMQ_SUBSCRIBE, subs[index].prefix,
                                      strlen (subs[index].prefix)),
                      0);
        cr_assert_eq (zmq_setsockopt (subs[index].socket, ZMQ_SUBSCRIBE, subs[index].probe,
                                      strlen (subs[index].probe)),
                      0);
    }
    void *publishers[S_PUBLISHERS];
    for (int publisher = 0; publisher < S_PUBLISHERS; publisher++)
        publishers[publisher] = mesh_test_sockets_open (s_sockets, ZMQ_PUB, s_broker.xsub);

    //  Probe until every subscriber heard from every publisher (bounded)
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    int probes = 0;
    while (!s_all (subs, false)) {
        cr_assert_lt (mesh_mono_ms (), until, "subscriptions did not reach the publishers in %d ms",
                      S_WAIT_MS);
        for (int publisher = 0; publisher < S_PUBLISHERS; publisher++)
            for (int index = 0; index < S_SUBSCRIBERS; index++)
                if (!subs[index].probed[publisher]) {
                    char payload[16];
                    snprintf (payload, sizeof payload, "probe %d", publisher);
                    s_publish (publishers[publisher], subs[index].probe, payload, strlen (payload));
                    probes++;
                }
        s_poll_all (subs, 20);      //  Bounded wait for input, not a sleep
    }
    cr_log_info ("slow joiner: %d probes until every subscription was in place", probes);
    for (int index = 0; index < S_SUBSCRIBERS; index++)
        cr_assert_eq (subs[index].got_count, 0, "a real event arrived before any was published");

    double forwarded_before = s_broker_metric ("mesh_broker_events_forwarded_total");

    //  Publisher 0 sends user events, publisher 1 order events; a topic
    //  must match the prefix exactly from its first byte
    static const struct {
        int publisher;
        const char *topic;
    } events[] = {
        { 0, "user.created" },  { 1, "order.created" }, { 0, "user.updated" },
        { 0, "user.created" },  { 1, "order.shipped" }, { 0, "user.deleted" },
        { 0, "user.created.v2" }, { 0, "user" },        { 1, "order" },
        { 1, "xuser.created" }, { 0, "User.created" },  { 1, "order.created" },
        { 0, "user.created" },
    };
    const int event_count = (int) (sizeof events / sizeof events[0]);
    msgpack_sbuffer payload;
    msgpack_sbuffer_init (&payload);
    for (int index = 0; index < event_count; index++) {
        s_pack_event (&payload, events[index].topic, (uint64_t) index + 1);
        s_publish (publishers[events[index].publisher], events[index].topic, payload.data,
                   payload.size);
    }
    msgpack_sbuffer_destroy (&payload);
    //  End markers: after them, each publisher's events have all arrived
    for (int publisher = 0; publisher < S_PUBLISHERS; publisher++)
        for (int index = 0; index < S_SUBSCRIBERS; index++) {
            char marker[16];
            snprintf (marker, sizeof marker, "end %d", publisher);
            s_publish (publishers[publisher], subs[index].probe, marker, strlen (marker));
        }
    until = mesh_mono_ms () + S_WAIT_MS;
    while (!s_all (subs, true)) {
        cr_assert_lt (mesh_mono_ms (), until, "end markers did not arrive within %d ms",
                      S_WAIT_MS);
        s_poll_all (subs, 50);
    }

    //  Exactly the matching events, each publisher's in publishing order
    //  (the two publishers' streams may interleave either way)
    for (int index = 0; index < S_SUBSCRIBERS; index++) {
        s_subscriber_t *sub = &subs[index];
        int expected = 0;
        for (int publisher = 0; publisher < S_PUBLISHERS; publisher++) {
            int cursor = 0;
            for (int event = 0; event < event_count; event++) {
                if (events[event].publisher != publisher
                    || strncmp (events[event].topic, sub->prefix, strlen (sub->prefix)) != 0)
                    continue;
                expected++;
                //  Find it after the previous one of this publisher
                while (cursor < sub->got_count && sub->got[cursor] != (uint64_t) event + 1)
                    cursor++;
                cr_assert_lt (cursor, sub->got_count,
                              "subscriber '%s' missed %s (seq %d) or got it out of order",
                              sub->prefix, events[event].topic, event + 1);
                cursor++;
            }
        }
        cr_assert_eq (sub->got_count, expected, "subscriber '%s' got %d events, want %d",
                      sub->prefix, sub->got_count, expected);
    }
    cr_assert_eq (subs[0].got_count, 6);    //  user.*: 4 created (one .v2), updated, deleted
    cr_assert_eq (subs[1].got_count, 4);    //  user.created, x3 + user.created.v2
    cr_assert_eq (subs[2].got_count, 3);    //  order.created x2, order.shipped
    cr_assert_eq (subs[3].got_count, event_count);

    //  The broker counted them. The counter moves just after the batch is
    //  forwarded, so poll it (bounded) rather than read it once.
    double want = forwarded_before + event_count + S_PUBLISHERS * S_SUBSCRIBERS;
    double forwarded = 0;
    until = mesh_mono_ms () + S_WAIT_MS;
    while ((forwarded = s_broker_metric ("mesh_broker_events_forwarded_total")) < want
           && mesh_mono_ms () < until)
        s_poll_all (subs, 20);
    cr_assert_geq (forwarded, want, "events_forwarded_total %.0f, want >= %.0f", forwarded, want);
    cr_assert_gt (s_broker_metric ("mesh_broker_subscription_messages_total"), 0);
}

Test (broker_events, payload_bytes_pass_through_unchanged)
{
    void *subscriber = mesh_test_sockets_open (s_sockets, ZMQ_SUB, s_broker.xpub);
    zmq_setsockopt (subscriber, ZMQ_SUBSCRIBE, "user.", 5);
    void *publisher = mesh_test_sockets_open (s_sockets, ZMQ_PUB, s_broker.xsub);

    //  The payload: every byte value, and an event bigger than one batch
    //  of small messages would be
    static unsigned char bytes[1024];
    for (size_t index = 0; index < sizeof bytes; index++)
        bytes[index] = (unsigned char) (index * 7 + 3);
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    s_event_t event;
    bool got = false;
    while (!got) {
        cr_assert_lt (mesh_mono_ms (), until, "no event arrived within %d ms", S_WAIT_MS);
        //  Until the subscription is in place the PUB drops it: resend
        s_publish (publisher, "user.raw", bytes, sizeof bytes);
        zmq_pollitem_t item = { subscriber, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 20) == 1)
            got = s_recv_event (subscriber, &event);
    }
    cr_assert_eq (event.frames, 2);
    cr_assert_eq (event.topic_len, 8);
    cr_assert (memcmp (event.topic, "user.raw", 8) == 0);
    cr_assert_eq (event.payload_len, sizeof bytes);
    cr_assert (memcmp (event.payload, bytes, sizeof bytes) == 0, "payload changed in transit");
}
