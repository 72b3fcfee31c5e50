/*  =========================================================================
    fuzz_audit_codec - libFuzzer harness for mesh-audit's decoders
    mesh-audit reads user events from the bus (any publisher the broker
    admits) and audit.list bodies from any client, so both decoders must
    survive anything. Each input is unpacked as MessagePack and given to
    audit_codec_event and to audit_codec_list (on an in-memory store that
    holds the events accepted so far), after the size check of every count
    (mesh_msgpack_check) that mesh-audit's subscriber and the envelope
    decoder run first. Checks beyond "no crash, no sanitizer report": an accepted event passes the
   domain's own check and packs as an entry that unpacks again; a refused one says why and owns
   nothing; a list either packs a reply that unpacks or names what was wrong. Build (clang only):
   CC=clang cmake -S . -B build/fuzz -DMESH_FUZZ=ON Run: build/fuzz/bin/fuzz_audit_codec
   -max_len=4096 [corpus-dir] SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "audit_codec.h"
#include "audit_event.h"
#include "audit_store_memory.h"
#include "mesh/mesh_envelope.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define S_MAX_STORED 64 //  Events kept for audit.list to walk

static audit_store_memory_t *s_memory;

//  Stop the run with a message: libFuzzer saves the input that did it.
static void
s_fail (const char *what)
{
    fprintf (stderr, "fuzz_audit_codec: %s\n", what);
    abort ();
}

//  True when `buffer` holds exactly one complete MessagePack object.
static bool
s_unpacks (const msgpack_sbuffer *buffer)
{
    msgpack_zone zone;
    msgpack_zone_init (&zone, 1024);
    msgpack_object object;
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack (buffer->data, buffer->size, &offset, &zone, &object);
    msgpack_zone_destroy (&zone);
    return rc == MSGPACK_UNPACK_SUCCESS && offset == buffer->size;
}

static void
s_check_event (const msgpack_object *object, audit_store_t *store)
{
    audit_event_t event = {0};
    const char *why = audit_codec_event (object, &event);
    if (why) {
        if (!*why || event.data)
            s_fail ("a refused event gave no reason or kept its data");
        return;
    }
    if (audit_event_check (&event))
        s_fail ("an accepted event breaks audit_event_check");
    msgpack_sbuffer entry;
    msgpack_sbuffer_init (&entry);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &entry, msgpack_sbuffer_write);
    audit_codec_pack_entry (&packer, &event);
    if (!s_unpacks (&entry))
        s_fail ("an accepted event packs an entry that does not unpack");
    msgpack_sbuffer_destroy (&entry);
    //  Keep it (when its seq follows the cursor) for audit.list to walk
    uint64_t cursor = 0;
    size_t stored = 0;
    if (audit_store_memory_count (s_memory) < S_MAX_STORED &&
        audit_store_cursor (store, &cursor) == 0 && event.seq == cursor + 1)
        audit_store_append (store, cursor, &event, 1, &stored);
    audit_event_clear (&event);
}

static void
s_check_list (const msgpack_object *object, audit_store_t *store)
{
    msgpack_sbuffer reply;
    msgpack_sbuffer_init (&reply);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &reply, msgpack_sbuffer_write);
    char message[256] = "";
    int rc = audit_codec_list (store, object, &packer, message, sizeof message);
    if (rc == 0 && !s_unpacks (&reply))
        s_fail ("audit.list packed a reply that does not unpack");
    if (rc != 0 && !*message)
        s_fail ("audit.list refused a body without saying why");
    msgpack_sbuffer_destroy (&reply);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_memory)
        s_memory = audit_store_memory_new ();
    audit_store_t *store = audit_store_memory_store (s_memory);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 2048);
    msgpack_object object;
    size_t offset = 0;
    //  As mesh-audit reads a body: the size check of every count first
    //  (msgpack-c allocates what an array header claims), then msgpack-c
    if (mesh_msgpack_check (data, size) == 0 &&
        msgpack_unpack ((const char *)data, size, &offset, &zone, &object) ==
            MSGPACK_UNPACK_SUCCESS) {
        s_check_event (&object, store);
        s_check_list (&object, store);
    }
    msgpack_zone_destroy (&zone);
    return 0;
}
