/*  =========================================================================
    fuzz_envelope - libFuzzer harness for mesh_envelope_decode
    The envelope decoder reads bytes from any client or worker on the mesh
    (the broker peeks at every request body), so it must survive anything.
    Each input is decoded as every kind, by a default decoder and by one
    with a tiny size limit. Checks beyond "no crash, no sanitizer report":
    views point inside the input, a rejection always says why, and an
    accepted request re-packed with the libmesh helpers decodes to the same
    fields (pack and decode agree).
    Build (clang only): CC=clang cmake -S . -B build/fuzz -DMESH_FUZZ=ON
    Run: build/fuzz/bin/fuzz_envelope -max_len=4096 [corpus-dir]
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_envelope.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static mesh_envelope_decoder_t *s_decoder;      //  Default limit
static mesh_envelope_decoder_t *s_small;        //  64-byte limit
static mesh_envelope_decoder_t *s_again;        //  Decodes the re-packed request

//  Stop the run with a message: libFuzzer saves the input that did it.
static void
s_fail (const char *what)
{
    fprintf (stderr, "fuzz_envelope: %s\n", what);
    abort ();
}

//  A view must be empty or lie within [base, base + size).
static void
s_check_view (mesh_slice_t slice, const uint8_t *base, size_t size)
{
    if (slice.len && ((const uint8_t *) slice.ptr < base
                      || (const uint8_t *) slice.ptr + slice.len > base + size))
        s_fail ("a decoded view points outside the input");
}

//  Copy a slice into a NUL-terminated buffer; false when it holds a NUL
//  (C-string helpers cannot re-pack it) or does not fit.
static bool
s_cstr (mesh_slice_t slice, char *buffer, size_t buffer_size)
{
    if (slice.len >= buffer_size || (slice.len && memchr (slice.ptr, '\0', slice.len)))
        return false;
    if (slice.len)
        memcpy (buffer, slice.ptr, slice.len);
    buffer[slice.len] = '\0';
    return true;
}

static bool
s_same (mesh_slice_t left, mesh_slice_t right)
{
    return left.len == right.len && (left.len == 0 || memcmp (left.ptr, right.ptr, left.len) == 0);
}

//  Re-pack an accepted request and decode it again: same fields.
static void
s_round_trip (const mesh_envelope_t *envelope)
{
    char id[MESH_ENVELOPE_MAX_ID + 1], method[256], trace[256], idem[256];
    if (!s_cstr (envelope->id, id, sizeof id) || !s_cstr (envelope->method, method, sizeof method)
        || !s_cstr (envelope->trace, trace, sizeof trace)
        || !s_cstr (envelope->idem, idem, sizeof idem))
        return;
    mesh_request_head_t head = {
        .id = id,
        .method = method,
        .deadline_ms = envelope->deadline_ms,
        .trace = envelope->trace.len? trace: NULL,
        .idem = envelope->idem.len? idem: NULL,
    };
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    mesh_envelope_pack_request_head (&packer, &head);
    if (envelope->body)
        msgpack_pack_object (&packer, *envelope->body);
    else
        msgpack_pack_nil (&packer);
    mesh_envelope_t again;
    if (mesh_envelope_decode (s_again, buffer.data, buffer.size, MESH_ENVELOPE_REQUEST, &again)
        != 0)
        s_fail (mesh_envelope_decoder_error (s_again));
    if (!s_same (again.id, envelope->id) || !s_same (again.method, envelope->method)
        || !s_same (again.trace, envelope->trace) || !s_same (again.idem, envelope->idem)
        || again.deadline_ms != envelope->deadline_ms || !again.body)
        s_fail ("a re-packed request decodes to different fields");
    msgpack_sbuffer_destroy (&buffer);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_decoder) {
        s_decoder = mesh_envelope_decoder_new (0);
        s_small = mesh_envelope_decoder_new (64);
        s_again = mesh_envelope_decoder_new (0);
    }
    static const mesh_envelope_kind_t kinds[] = { MESH_ENVELOPE_REQUEST, MESH_ENVELOPE_REPLY,
                                                  MESH_ENVELOPE_ANY };
    for (size_t index = 0; index < 3; index++) {
        mesh_envelope_t envelope;
        int rc = mesh_envelope_decode (s_decoder, data, size, kinds[index], &envelope);
        if (rc) {
            if (!*mesh_envelope_decoder_error (s_decoder))
                s_fail ("a rejection without a reason");
        }
        else {
            s_check_view (envelope.id, data, size);
            s_check_view (envelope.method, data, size);
            s_check_view (envelope.trace, data, size);
            s_check_view (envelope.idem, data, size);
            s_check_view (envelope.message, data, size);
            if (envelope.id.len > MESH_ENVELOPE_MAX_ID)
                s_fail ("an id over the limit was accepted");
            if (kinds[index] == MESH_ENVELOPE_REPLY && envelope.is_error == (envelope.body != NULL))
                s_fail ("a reply with both or neither of body and error was accepted");
            if (kinds[index] == MESH_ENVELOPE_REQUEST)
                s_round_trip (&envelope);
        }
        rc = mesh_envelope_decode (s_small, data, size, kinds[index], &envelope);
        if (size > 64 && rc != MESH_ETOOBIG)
            s_fail ("the size limit was not enforced");
    }
    return 0;
}
