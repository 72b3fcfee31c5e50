/*  =========================================================================
    fuzz_audit_codec - libFuzzer harness for the audit service's decoders
    mesh-audit reads event maps from the bus (the user service's stream,
    and events.list replies' items) and audit.list bodies from any client.
    The input's first byte picks the path; the rest is one MessagePack
    object, checked with mesh_msgpack_check as the subscriber and the
    envelope decoder check it before unpacking:
      even: audit_codec_event on the object (on each item, if an array, as
            audit_source_mesh reads an events.list reply); an accepted event
            must pass audit_event_check, pack into exactly one object and
            be appended to an in-memory store
      odd:  audit_codec_list against an in-memory store holding a few events
    A success packs exactly one object; a failure packs nothing and says why.
    Build (clang only): CC=clang cmake -S . -B build/fuzz -DMESH_FUZZ=ON
    Run: scripts/fuzz fuzz_audit_codec
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_codec.h"
#include "audit_store_memory.h"
#include "fuzz_msgpack.h"

#include "mesh/mesh_envelope.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define ITEMS_MAX 16 //  Items of an events.list reply decoded

static audit_store_memory_t *s_listed; //  The store audit.list reads

static void
s_fail (const char *what)
{
    fprintf (stderr, "fuzz_audit_codec: %s\n", what);
    abort ();
}

static void
s_check_one (const msgpack_sbuffer *buffer)
{
    if (!fuzz_msgpack_one_object (buffer))
        s_fail ("a reply that is not exactly one object");
}

static void
s_event (const msgpack_object *map, audit_store_memory_t *memory)
{
    audit_event_t event = {0}; //  audit_codec_event clears (frees) it first
    const char *why = audit_codec_event (map, &event);
    if (why) {
        if (!*why)
            s_fail ("a rejection without a reason");
        if (event.data)
            s_fail ("a rejected event keeps data");
        return;
    }
    if (audit_event_check (&event) != NULL)
        s_fail ("an accepted event fails audit_event_check");
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    audit_codec_pack_entry (&packer, &event);
    s_check_one (&buffer);
    msgpack_sbuffer_destroy (&buffer);
    //  The store takes events in seq order from its cursor (the ingest
    //  use case sees to that): put the cursor just before this one.
    audit_store_memory_set_cursor (memory, event.seq - 1);
    size_t stored = 0;
    if (audit_store_append (audit_store_memory_store (memory), event.seq - 1, &event, 1, &stored) !=
        0)
        s_fail ("the store refused a valid event");
    audit_event_clear (&event);
}

static void
s_list (const msgpack_object *body)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    char message[256];
    message[0] = '\0';
    int rc = audit_codec_list (audit_store_memory_store (s_listed), body, &packer, message,
                               sizeof message);
    if (rc == 0)
        s_check_one (&buffer);
    else if (buffer.size || !message[0])
        s_fail ("a failure that packed a reply or gave no reason");
    msgpack_sbuffer_destroy (&buffer);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_listed) {
        s_listed = audit_store_memory_new ();
        audit_event_t events[4];
        for (size_t index = 0; index < 4; index++)
            audit_event_fake (&events[index], index + 1);
        size_t stored = 0;
        if (!s_listed ||
            audit_store_append (audit_store_memory_store (s_listed), 0, events, 4, &stored))
            s_fail ("cannot seed the store");
        for (size_t index = 0; index < 4; index++)
            audit_event_clear (&events[index]);
    }
    if (size < 2)
        return 0;
    size_t offset = 0;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (mesh_msgpack_check (data + 1, size - 1) != 0 ||
        msgpack_unpack_next (&unpacked, (const char *)data + 1, size - 1, &offset) !=
            MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy (&unpacked);
        return 0;
    }
    const msgpack_object *object = &unpacked.data;
    if (data[0] & 1)
        s_list (object);
    else {
        audit_store_memory_t *memory = audit_store_memory_new ();
        if (!memory)
            s_fail ("out of memory");
        if (object->type == MSGPACK_OBJECT_ARRAY)
            for (size_t index = 0; index < object->via.array.size && index < ITEMS_MAX; index++)
                s_event (&object->via.array.ptr[index], memory);
        else
            s_event (object, memory);
        audit_store_memory_destroy (&memory);
    }
    msgpack_unpacked_destroy (&unpacked);
    return 0;
}
