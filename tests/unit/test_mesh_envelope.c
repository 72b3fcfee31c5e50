/*  =========================================================================
    test_mesh_envelope - the MessagePack envelope: round trips and rejections
    Envelopes under test are built two ways: with the libmesh pack helpers
    (round trips) and by hand with msgpack-c (every malformed shape). Every
    decode runs on an exactly-sized heap copy of the input, so a read past
    the end is an AddressSanitizer error in sanitized builds.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_envelope.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mesh_envelope_decoder_t *s_decoder;
static msgpack_sbuffer s_buffer;        //  The envelope being built
static msgpack_packer s_packer;         //  Writes into s_buffer
static void *s_copy;                    //  Exactly-sized copy of the last input

static void
s_setup (void)
{
    s_decoder = mesh_envelope_decoder_new (0);
    cr_assert_not_null (s_decoder);
    msgpack_sbuffer_init (&s_buffer);
    msgpack_packer_init (&s_packer, &s_buffer, msgpack_sbuffer_write);
    s_copy = NULL;
}

static void
s_teardown (void)
{
    free (s_copy);
    s_copy = NULL;
    msgpack_sbuffer_destroy (&s_buffer);
    mesh_envelope_decoder_destroy (&s_decoder);
}

TestSuite (mesh_envelope, .init = s_setup, .fini = s_teardown, .timeout = 30.);

//  Decode `size` bytes of `data` from an exactly-sized heap copy (kept until
//  the next call: the envelope's views point into it).
static int
s_decode_bytes (mesh_envelope_decoder_t *decoder, const void *data, size_t size,
                mesh_envelope_kind_t kind, mesh_envelope_t *envelope)
{
    free (s_copy);
    s_copy = malloc (size? size: 1);
    cr_assert_not_null (s_copy);
    if (size)
        memcpy (s_copy, data, size);
    return mesh_envelope_decode (decoder, s_copy, size, kind, envelope);
}

//  Decode what has been packed into s_buffer.
static int
s_decode (mesh_envelope_kind_t kind, mesh_envelope_t *envelope)
{
    return s_decode_bytes (s_decoder, s_buffer.data, s_buffer.size, kind, envelope);
}

//  Pack helpers for hand-built envelopes.
static void
s_str (const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (&s_packer, len);
    msgpack_pack_str_body (&s_packer, text, len);
}

static void
s_kv_str (const char *key, const char *value)
{
    s_str (key);
    s_str (value);
}

static void
s_kv_uint (const char *key, uint64_t value)
{
    s_str (key);
    msgpack_pack_uint64 (&s_packer, value);
}

//  Expect s_buffer to be rejected as `kind` with `code` and an error
//  message containing `needle`.
static void
s_expect_reject (mesh_envelope_kind_t kind, int code, const char *needle)
{
    mesh_envelope_t envelope;
    int rc = s_decode (kind, &envelope);
    const char *why = mesh_envelope_decoder_error (s_decoder);
    cr_assert_eq (rc, code, "want %d (%s), got %d (%s): '%s'", code, mesh_strerror (code), rc,
                  mesh_strerror (rc), why);
    cr_assert_not_null (strstr (why, needle), "error '%s' does not mention '%s'", why, needle);
}

//  True when `slice` holds exactly `text`.
static bool
s_slice_is (mesh_slice_t slice, const char *text)
{
    return mesh_slice_eq (slice, text);
}

//  ---------------------------------------------------------------- round trips

Test (mesh_envelope, request_round_trip_with_every_field)
{
    mesh_request_head_t head = {
        .id = "req-0001",
        .method = "user.get",
        .deadline_ms = UINT64_C (1735689600123),
        .trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        .idem = "idem-key-42",
        .actor = "jwt:ada",
    };
    mesh_envelope_pack_request_head (&s_packer, &head);
    msgpack_pack_map (&s_packer, 1);
    s_kv_str ("id", "7c1e");

    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REQUEST, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert (s_slice_is (envelope.id, "req-0001"));
    cr_assert (s_slice_is (envelope.method, "user.get"));
    cr_assert_eq (envelope.deadline_ms, UINT64_C (1735689600123));
    cr_assert (s_slice_is (envelope.trace, head.trace));
    cr_assert (s_slice_is (envelope.idem, "idem-key-42"));
    cr_assert (s_slice_is (envelope.actor, "jwt:ada"));
    cr_assert_not (envelope.is_error);
    cr_assert_eq (envelope.code, MESH_CODE_OK);
    cr_assert_eq (envelope.message.len, 0);
    cr_assert_not_null (envelope.body);
    cr_assert_eq (envelope.body->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq (envelope.body->via.map.size, 1);
    cr_assert (envelope.body->via.map.ptr[0].val.type == MSGPACK_OBJECT_STR);
    cr_assert_eq (envelope.body->via.map.ptr[0].val.via.str.size, 4);
    cr_assert (memcmp (envelope.body->via.map.ptr[0].val.via.str.ptr, "7c1e", 4) == 0);
    cr_assert_str_empty (mesh_envelope_decoder_error (s_decoder));

    //  The same bytes are also a valid envelope of kind ANY
    cr_assert_eq (s_decode (MESH_ENVELOPE_ANY, &envelope), 0);
    cr_assert (s_slice_is (envelope.method, "user.get"));
}

Test (mesh_envelope, request_round_trip_with_only_required_fields)
{
    mesh_request_head_t head = { .id = "a", .method = "echo" };
    mesh_envelope_pack_request_head (&s_packer, &head);
    msgpack_pack_nil (&s_packer);

    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REQUEST, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert (s_slice_is (envelope.id, "a"));
    cr_assert (s_slice_is (envelope.method, "echo"));
    cr_assert_eq (envelope.deadline_ms, 0);
    cr_assert_eq (envelope.trace.len, 0);
    cr_assert_eq (envelope.idem.len, 0);
    cr_assert_eq (envelope.actor.len, 0);
    cr_assert_not_null (envelope.body, "a packed nil body is present (as nil)");
    cr_assert_eq (envelope.body->type, MSGPACK_OBJECT_NIL);
}

Test (mesh_envelope, request_without_body_key_decodes_with_null_body)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REQUEST, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert_null (envelope.body);
}

Test (mesh_envelope, success_reply_round_trip)
{
    mesh_envelope_pack_reply_head (&s_packer, "r-77", 4);
    msgpack_pack_array (&s_packer, 3);
    msgpack_pack_int (&s_packer, -5);
    msgpack_pack_true (&s_packer);
    s_str ("three");

    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert (s_slice_is (envelope.id, "r-77"));
    cr_assert_not (envelope.is_error);
    cr_assert_eq (envelope.code, MESH_CODE_OK);
    cr_assert_not_null (envelope.body);
    cr_assert_eq (envelope.body->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq (envelope.body->via.array.size, 3);
    cr_assert_eq (envelope.body->via.array.ptr[0].via.i64, -5);
    cr_assert (envelope.body->via.array.ptr[1].via.boolean);
    cr_assert_eq (envelope.method.len, 0);
}

Test (mesh_envelope, reply_with_empty_id_round_trips)
{
    //  The broker answers opaque (non-envelope) requests with an empty id
    mesh_envelope_pack_reply_head (&s_packer, NULL, 0);
    msgpack_pack_nil (&s_packer);
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert_eq (envelope.id.len, 0);
    cr_assert_not_null (envelope.body);
}

Test (mesh_envelope, error_reply_round_trip_for_every_code)
{
    for (int code = MESH_CODE_INVALID_ARGUMENT; code < MESH_CODE_COUNT_; code++) {
        msgpack_sbuffer_clear (&s_buffer);
        char message[64];
        snprintf (message, sizeof message, "failure number %d", code);
        mesh_envelope_pack_error (&s_packer, "err-id", 6, (mesh_code_t) code, message);
        mesh_envelope_t envelope;
        cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0, "%s: %s",
                      mesh_code_name ((mesh_code_t) code),
                      mesh_envelope_decoder_error (s_decoder));
        cr_assert (s_slice_is (envelope.id, "err-id"));
        cr_assert (envelope.is_error);
        cr_assert_eq (envelope.code, code, "%s decoded as %s", mesh_code_name ((mesh_code_t) code),
                      mesh_code_name (envelope.code));
        cr_assert (s_slice_is (envelope.message, message));
        cr_assert_null (envelope.body);
    }
}

Test (mesh_envelope, error_reply_with_null_message_has_empty_message)
{
    mesh_envelope_pack_error (&s_packer, "e", 1, MESH_CODE_NOT_FOUND, NULL);
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0);
    cr_assert_eq (envelope.code, MESH_CODE_NOT_FOUND);
    cr_assert_eq (envelope.message.len, 0);
}

Test (mesh_envelope, error_without_message_is_accepted)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("error");
    msgpack_pack_map (&s_packer, 1);
    s_kv_str ("code", "unavailable");
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert (envelope.is_error);
    cr_assert_eq (envelope.code, MESH_CODE_UNAVAILABLE);
    cr_assert_eq (envelope.message.len, 0);
}

Test (mesh_envelope, unknown_error_code_decodes_as_internal)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("error");
    msgpack_pack_map (&s_packer, 2);
    s_kv_str ("code", "quota_melted");
    s_kv_str ("message", "from a newer peer");
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert (envelope.is_error);
    cr_assert_eq (envelope.code, MESH_CODE_INTERNAL);
    cr_assert (s_slice_is (envelope.message, "from a newer peer"));
}

Test (mesh_envelope, error_code_ok_is_still_an_error)
{
    //  An error map that claims "ok" must never read as success
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("error");
    msgpack_pack_map (&s_packer, 1);
    s_kv_str ("code", "ok");
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0);
    cr_assert (envelope.is_error);
    cr_assert_neq (envelope.code, MESH_CODE_OK);
}

Test (mesh_envelope, unknown_keys_are_ignored)
{
    msgpack_pack_map (&s_packer, 7);
    s_kv_str ("x-future", "ignored");
    msgpack_pack_int (&s_packer, 7);        //  A non-string key
    msgpack_pack_nil (&s_packer);
    s_str ("nested-future");
    msgpack_pack_map (&s_packer, 1);
    s_kv_uint ("v", 99);                    //  Not the envelope's v
    s_kv_uint ("v", 1);
    s_kv_str ("id", "k");
    s_kv_str ("method", "m");
    s_str ("body");
    msgpack_pack_uint8 (&s_packer, 3);
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REQUEST, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert (s_slice_is (envelope.id, "k"));
    cr_assert_eq (envelope.body->via.u64, 3);
}

Test (mesh_envelope, unknown_keys_inside_error_are_ignored)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("error");
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("retry_after_ms", 250);
    s_kv_str ("code", "resource_exhausted");
    s_kv_str ("message", "slow down");
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert_eq (envelope.code, MESH_CODE_RESOURCE_EXHAUSTED);
}

Test (mesh_envelope, id_of_exactly_128_bytes_is_accepted)
{
    char id[MESH_ENVELOPE_MAX_ID + 1];
    memset (id, 'i', MESH_ENVELOPE_MAX_ID);
    id[MESH_ENVELOPE_MAX_ID] = '\0';
    mesh_envelope_pack_reply_head (&s_packer, id, MESH_ENVELOPE_MAX_ID);
    msgpack_pack_nil (&s_packer);
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert_eq (envelope.id.len, MESH_ENVELOPE_MAX_ID);
}

Test (mesh_envelope, decoder_is_reusable_and_error_resets)
{
    mesh_envelope_t envelope;
    cr_assert_neq (s_decode_bytes (s_decoder, "", 0, MESH_ENVELOPE_ANY, &envelope), 0);
    cr_assert_str_not_empty (mesh_envelope_decoder_error (s_decoder));
    for (int round = 0; round < 1000; round++) {
        msgpack_sbuffer_clear (&s_buffer);
        char id[32];
        snprintf (id, sizeof id, "round-%d", round);
        mesh_request_head_t head = { .id = id, .method = "m" };
        mesh_envelope_pack_request_head (&s_packer, &head);
        msgpack_pack_array (&s_packer, (size_t) round % 50);
        for (int item = 0; item < round % 50; item++)
            msgpack_pack_int (&s_packer, item);
        cr_assert_eq (s_decode (MESH_ENVELOPE_REQUEST, &envelope), 0);
        cr_assert (s_slice_is (envelope.id, id));
        cr_assert_eq (envelope.body->via.array.size, (uint32_t) round % 50);
        cr_assert_str_empty (mesh_envelope_decoder_error (s_decoder));
    }
}

//  ------------------------------------------------------------ code names

Test (mesh_envelope, code_names_round_trip)
{
    const char *expected[MESH_CODE_COUNT_] = {
        "ok", "invalid_argument", "not_found", "already_exists", "failed_precondition",
        "unauthenticated", "permission_denied", "resource_exhausted", "unavailable",
        "deadline_exceeded", "unimplemented", "internal",
    };
    for (int code = 0; code < MESH_CODE_COUNT_; code++) {
        const char *name = mesh_code_name ((mesh_code_t) code);
        cr_assert_str_eq (name, expected[code]);
        if (code == MESH_CODE_OK)
            //  "ok" is not an error code: from a peer it means a bug, so internal
            cr_assert_eq (mesh_code_from_name (name, strlen (name)), MESH_CODE_INTERNAL);
        else
            cr_assert_eq (mesh_code_from_name (name, strlen (name)), code, "%s", name);
    }
    cr_assert_str_eq (mesh_code_name ((mesh_code_t) -1), "internal");
    cr_assert_str_eq (mesh_code_name (MESH_CODE_COUNT_), "internal");
    cr_assert_eq (mesh_code_from_name ("not_foun", 8), MESH_CODE_INTERNAL);
    cr_assert_eq (mesh_code_from_name ("not_found_", 10), MESH_CODE_INTERNAL);
    cr_assert_eq (mesh_code_from_name ("NOT_FOUND", 9), MESH_CODE_INTERNAL);
    cr_assert_eq (mesh_code_from_name ("", 0), MESH_CODE_INTERNAL);
    //  Length, not NUL, ends the name
    cr_assert_eq (mesh_code_from_name ("not_found trailing", 9), MESH_CODE_NOT_FOUND);
}

Test (mesh_envelope, slice_eq)
{
    mesh_slice_t slice = { "abcdef", 3 };
    cr_assert (mesh_slice_eq (slice, "abc"));
    cr_assert_not (mesh_slice_eq (slice, "abcd"));
    cr_assert_not (mesh_slice_eq (slice, "ab"));
    mesh_slice_t empty = { NULL, 0 };
    cr_assert (mesh_slice_eq (empty, ""));
    cr_assert_not (mesh_slice_eq (empty, "a"));
}

//  -------------------------------------------------------------- rejections

Test (mesh_envelope, rejects_empty_input)
{
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_EINVAL, "empty");
}

Test (mesh_envelope, rejects_bytes_that_are_not_msgpack)
{
    //  0xc1 is the one byte MessagePack never uses
    msgpack_sbuffer_write (&s_buffer, "\xc1\x01\x02", 3);
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_EINVAL, "not valid MessagePack");
}

Test (mesh_envelope, rejects_truncated_envelope)
{
    mesh_envelope_pack_reply_head (&s_packer, "abc", 3);
    s_str ("some body text");
    s_buffer.size -= 1;
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_EINVAL, "truncated");
}

Test (mesh_envelope, rejects_trailing_bytes)
{
    mesh_envelope_pack_reply_head (&s_packer, "abc", 3);
    msgpack_pack_nil (&s_packer);
    msgpack_pack_nil (&s_packer);
    msgpack_pack_nil (&s_packer);
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_EINVAL, "2 trailing bytes");
}

Test (mesh_envelope, rejects_a_root_that_is_not_a_map)
{
    msgpack_pack_array (&s_packer, 2);
    msgpack_pack_uint8 (&s_packer, 1);
    s_str ("id");
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_ETYPE, "must be a map");
    msgpack_sbuffer_clear (&s_buffer);
    s_str ("hello");
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_ETYPE, "must be a map");
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_nil (&s_packer);
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_ETYPE, "must be a map");
}

Test (mesh_envelope, rejects_missing_version)
{
    msgpack_pack_map (&s_packer, 2);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_EINVAL, "'v' is missing");
}

Test (mesh_envelope, rejects_version_of_the_wrong_type)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_str ("v", "1");
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "'v'");

    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 2);
    s_str ("v");
    msgpack_pack_double (&s_packer, 1.0);
    s_kv_str ("id", "x");
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_ETYPE, "'v'");

    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 2);
    s_str ("v");
    msgpack_pack_int (&s_packer, -1);
    s_kv_str ("id", "x");
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_ETYPE, "'v'");

    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 2);
    s_str ("v");
    msgpack_pack_nil (&s_packer);
    s_kv_str ("id", "x");
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_ETYPE, "'v'");
}

Test (mesh_envelope, rejects_unknown_version)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 2);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_EVERSION, "version 2");

    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 2);
    s_kv_uint ("v", 0);
    s_kv_str ("id", "x");
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_EVERSION, "version 0");
}

Test (mesh_envelope, rejects_missing_id)
{
    msgpack_pack_map (&s_packer, 2);
    s_kv_uint ("v", 1);
    s_kv_str ("method", "m");
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_EINVAL, "'id' is missing");
}

Test (mesh_envelope, rejects_id_that_is_not_a_string)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_uint ("id", 12);
    s_kv_str ("method", "m");
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "'id' must be a string");

    //  bin is not str
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 2);
    s_kv_uint ("v", 1);
    s_str ("id");
    msgpack_pack_bin (&s_packer, 2);
    msgpack_pack_bin_body (&s_packer, "ab", 2);
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_ETYPE, "'id' must be a string");
}

Test (mesh_envelope, rejects_id_over_128_bytes)
{
    char id[MESH_ENVELOPE_MAX_ID + 2];
    memset (id, 'i', MESH_ENVELOPE_MAX_ID + 1);
    id[MESH_ENVELOPE_MAX_ID + 1] = '\0';
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", id);
    s_kv_str ("method", "m");
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETOOBIG, "'id' is over 128 bytes");
}

Test (mesh_envelope, rejects_request_without_method)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("body");
    msgpack_pack_nil (&s_packer);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_EINVAL, "'method' is missing");

    //  The same map is a valid reply and a valid ANY
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0);
    cr_assert_eq (s_decode (MESH_ENVELOPE_ANY, &envelope), 0);
}

Test (mesh_envelope, rejects_method_that_is_not_a_string)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("method");
    msgpack_pack_array (&s_packer, 0);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "'method' must be a string");
}

Test (mesh_envelope, rejects_negative_or_string_deadline)
{
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_str ("deadline");
    msgpack_pack_int64 (&s_packer, -1000);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "'deadline'");

    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_kv_str ("deadline", "1735689600123");
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "'deadline'");

    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_str ("deadline");
    msgpack_pack_double (&s_packer, 1e12);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "'deadline'");
}

Test (mesh_envelope, accepts_largest_deadline)
{
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_kv_uint ("deadline", UINT64_MAX);
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REQUEST, &envelope), 0);
    cr_assert_eq (envelope.deadline_ms, UINT64_MAX);
}

Test (mesh_envelope, rejects_trace_or_idem_that_is_not_a_string)
{
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_kv_uint ("trace", 5);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "'trace' must be a string");

    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_str ("idem");
    msgpack_pack_map (&s_packer, 0);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "'idem' must be a string");
}

Test (mesh_envelope, rejects_error_that_is_not_a_map)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("error", "not_found");
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_ETYPE, "'error' must be a map");
}

Test (mesh_envelope, rejects_error_without_code)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("error");
    msgpack_pack_map (&s_packer, 1);
    s_kv_str ("message", "what went wrong");
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_EINVAL, "'error.code' is missing");
}

Test (mesh_envelope, rejects_error_code_or_message_of_the_wrong_type)
{
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("error");
    msgpack_pack_map (&s_packer, 1);
    s_kv_uint ("code", 5);
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_ETYPE, "'error.code' must be a string");

    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("error");
    msgpack_pack_map (&s_packer, 2);
    s_kv_str ("code", "internal");
    s_kv_uint ("message", 5);
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_ETYPE, "'error.message' must be a string");
}

Test (mesh_envelope, rejects_reply_with_both_body_and_error)
{
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("body", "b");
    s_str ("error");
    msgpack_pack_map (&s_packer, 1);
    s_kv_str ("code", "internal");
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_EINVAL, "both 'body' and 'error'");
}

Test (mesh_envelope, rejects_reply_with_neither_body_nor_error)
{
    msgpack_pack_map (&s_packer, 2);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_EINVAL, "needs 'body' or 'error'");
}

Test (mesh_envelope, rejects_request_that_carries_an_error)
{
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_str ("error");
    msgpack_pack_map (&s_packer, 1);
    s_kv_str ("code", "internal");
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_EINVAL, "'error'");
}

Test (mesh_envelope, rejects_oversize_input_without_parsing_it)
{
    mesh_envelope_decoder_t *small = mesh_envelope_decoder_new (64);
    mesh_envelope_t envelope;
    //  65 bytes that are not MessagePack at all: the size check comes first
    char junk[65];
    memset (junk, 0xc1, sizeof junk);
    int rc = s_decode_bytes (small, junk, sizeof junk, MESH_ENVELOPE_ANY, &envelope);
    cr_assert_eq (rc, MESH_ETOOBIG, "got %d: %s", rc, mesh_envelope_decoder_error (small));
    cr_assert_not_null (strstr (mesh_envelope_decoder_error (small), "65 bytes"), "%s",
                        mesh_envelope_decoder_error (small));
    cr_assert_not_null (strstr (mesh_envelope_decoder_error (small), "limit of 64"));

    //  Exactly at the limit is parsed (and here accepted)
    mesh_envelope_pack_reply_head (&s_packer, "x", 1);
    size_t head = s_buffer.size;
    char text[64];
    size_t text_len = 64 - head - 2;   //  str8 header is 2 bytes
    memset (text, 't', text_len);
    msgpack_pack_str (&s_packer, text_len);
    msgpack_pack_str_body (&s_packer, text, text_len);
    cr_assert_eq (s_buffer.size, 64);
    rc = s_decode_bytes (small, s_buffer.data, s_buffer.size, MESH_ENVELOPE_REPLY, &envelope);
    cr_assert_eq (rc, 0, "%s", mesh_envelope_decoder_error (small));
    mesh_envelope_decoder_destroy (&small);
    cr_assert_null (small);
}

Test (mesh_envelope, default_limit_is_one_mebibyte)
{
    mesh_envelope_pack_reply_head (&s_packer, "big", 3);
    size_t text_len = MESH_ENVELOPE_MAX_SIZE - s_buffer.size - 5;  //  str32 header
    char *text = malloc (text_len);
    memset (text, 'b', text_len);
    msgpack_pack_str (&s_packer, text_len);
    msgpack_pack_str_body (&s_packer, text, text_len);
    free (text);
    cr_assert_eq (s_buffer.size, MESH_ENVELOPE_MAX_SIZE);
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REPLY, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    cr_assert_eq (envelope.body->via.str.size, text_len);
    msgpack_pack_nil (&s_packer);           //  One byte over
    s_expect_reject (MESH_ENVELOPE_REPLY, MESH_ETOOBIG, "over the limit");
}

//  Pack an envelope whose body nests `levels - 1` arrays, so the whole
//  document has `levels` containers: the envelope map is level 1.
static void
s_pack_nested (int levels)
{
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "deep");
    s_kv_str ("method", "m");
    s_str ("body");
    for (int level = 2; level <= levels; level++)
        msgpack_pack_array (&s_packer, 1);
    msgpack_pack_int (&s_packer, 42);
}

Test (mesh_envelope, nesting_of_exactly_32_levels_is_accepted)
{
    s_pack_nested (MESH_ENVELOPE_MAX_DEPTH);
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REQUEST, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    const msgpack_object *object = envelope.body;
    int arrays = 0;
    while (object->type == MSGPACK_OBJECT_ARRAY) {
        object = &object->via.array.ptr[0];
        arrays++;
    }
    cr_assert_eq (arrays, MESH_ENVELOPE_MAX_DEPTH - 1);
    cr_assert_eq (object->via.u64, 42);
}

Test (mesh_envelope, nesting_of_33_levels_is_rejected)
{
    s_pack_nested (MESH_ENVELOPE_MAX_DEPTH + 1);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETOODEEP, "deeper than 32");

    //  Maps count as levels too, and an empty container is still a level
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "deep");
    s_kv_str ("method", "m");
    s_str ("body");
    for (int level = 2; level <= MESH_ENVELOPE_MAX_DEPTH; level++) {
        msgpack_pack_map (&s_packer, 1);
        s_str ("k");
    }
    msgpack_pack_array (&s_packer, 0);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETOODEEP, "deeper than 32");
}

Test (mesh_envelope, very_deep_nesting_is_rejected_quickly)
{
    //  100 000 levels: must not recurse or allocate per level
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "deep");
    s_str ("body");
    for (int level = 0; level < 100000; level++)
        msgpack_pack_array (&s_packer, 1);
    msgpack_pack_nil (&s_packer);
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_ETOODEEP, "deeper than 32");
}

Test (mesh_envelope, container_claiming_more_items_than_bytes_is_truncated)
{
    //  Five bytes claiming four billion items. Whatever the decoder does, it
    //  must not try to allocate memory for them (msgpack-c would ask for
    //  ~100 GB up front, which aborts sanitized and fuzzing builds), and the
    //  answer is the truth: the input is truncated.
    static const struct {
        const char *bytes;
        size_t size;
    } cases[] = {
        { "\xdd\xff\xff\xff\xff", 5 },      //  array32, 2^32-1 items
        { "\xdf\xff\xff\xff\xff", 5 },      //  map32, 2^32-1 pairs
        { "\xdd\x0f\xff\xff\xff", 5 },      //  array32, 2^28 items (6 GB of objects)
        { "\xdc\xff\xff", 3 },              //  array16
        { "\xde\xff\xff\x01", 4 },          //  map16
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        msgpack_sbuffer_clear (&s_buffer);
        msgpack_sbuffer_write (&s_buffer, cases[index].bytes, cases[index].size);
        s_expect_reject (MESH_ENVELOPE_ANY, MESH_EINVAL, "truncated");
    }
    //  The same inside a well-formed envelope prefix
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_str ("body");
    msgpack_sbuffer_write (&s_buffer, "\xdf\xff\xff\xff\xff", 5);
    s_expect_reject (MESH_ENVELOPE_ANY, MESH_EINVAL, "truncated");
}

//  ------------------------------------------------------------- robustness

//  A rich, valid request envelope in s_buffer.
static void
s_pack_rich_request (void)
{
    mesh_request_head_t head = {
        .id = "0123456789abcdef",
        .method = "user.update",
        .deadline_ms = UINT64_C (1900000000000),
        .trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        .idem = "key",
    };
    mesh_envelope_pack_request_head (&s_packer, &head);
    msgpack_pack_map (&s_packer, 6);
    s_kv_str ("name", "Ada Lovelace");
    s_kv_str ("email", "ada@example.org");
    s_str ("tags");
    msgpack_pack_array (&s_packer, 3);
    msgpack_pack_int (&s_packer, -1);
    msgpack_pack_double (&s_packer, 2.5);
    msgpack_pack_bin (&s_packer, 3);
    msgpack_pack_bin_body (&s_packer, "\x00\x01\x02", 3);
    s_str ("ext");
    msgpack_pack_ext (&s_packer, 4, 7);
    msgpack_pack_ext_body (&s_packer, "abcd", 4);
    s_str ("big");
    msgpack_pack_uint64 (&s_packer, UINT64_MAX);
    s_str ("nested");
    msgpack_pack_map (&s_packer, 1);
    s_str ("list");
    msgpack_pack_array (&s_packer, 2);
    msgpack_pack_map (&s_packer, 0);
    msgpack_pack_str (&s_packer, 300);
    char filler[300];
    memset (filler, 'f', sizeof filler);
    msgpack_pack_str_body (&s_packer, filler, sizeof filler);
}

//  Views of a decoded envelope must point inside the input.
static void
s_assert_views_inside (const mesh_envelope_t *envelope, const void *data, size_t size)
{
    const mesh_slice_t *slices[] = { &envelope->id, &envelope->method, &envelope->trace,
                                     &envelope->idem, &envelope->message };
    const char *begin = data, *end = begin + size;
    for (size_t index = 0; index < sizeof slices / sizeof slices[0]; index++)
        if (slices[index]->len)
            cr_assert (slices[index]->ptr >= begin
                           && slices[index]->ptr + slices[index]->len <= end,
                       "slice %zu points outside the input", index);
}

Test (mesh_envelope, every_truncation_of_a_valid_envelope_is_rejected)
{
    s_pack_rich_request ();
    size_t size = s_buffer.size;
    mesh_envelope_t envelope;
    cr_assert_eq (s_decode (MESH_ENVELOPE_REQUEST, &envelope), 0, "%s",
                  mesh_envelope_decoder_error (s_decoder));
    for (size_t prefix = 0; prefix < size; prefix++) {
        int rc = s_decode_bytes (s_decoder, s_buffer.data, prefix, MESH_ENVELOPE_REQUEST,
                                 &envelope);
        cr_assert_neq (rc, 0, "a %zu-byte prefix of %zu bytes was accepted", prefix, size);
        cr_assert_str_not_empty (mesh_envelope_decoder_error (s_decoder));
        mesh_slice_t id;
        uint64_t deadline_ms;
        cr_assert_neq (mesh_envelope_peek (s_copy, prefix, &id, &deadline_ms, NULL), 0,
                       "peek accepted a %zu-byte prefix", prefix);
    }
}

//  xorshift64*: a fixed-seed generator so a failure can be replayed.
static uint64_t
s_random (uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C (2685821657736338717);
}

Test (mesh_envelope, random_byte_flips_never_crash)
{
    s_pack_rich_request ();
    size_t size = s_buffer.size;
    unsigned char *original = malloc (size);
    memcpy (original, s_buffer.data, size);
    uint64_t seed = UINT64_C (0x5eed0f00d);
    const char *env_seed = getenv ("MESH_FUZZ_SEED");
    if (env_seed && *env_seed)
        seed = strtoull (env_seed, NULL, 0);
    fprintf (stderr, "random_byte_flips_never_crash: seed 0x%llx (replay: MESH_FUZZ_SEED)\n",
             (unsigned long long) seed);
    uint64_t state = seed? seed: 1;
    int accepted = 0;
    for (int round = 0; round < 20000; round++) {
        unsigned char *mutant = malloc (size);
        memcpy (mutant, original, size);
        int flips = 1 + (int) (s_random (&state) % 4);
        for (int flip = 0; flip < flips; flip++) {
            size_t at = (size_t) (s_random (&state) % size);
            if (s_random (&state) % 2)
                mutant[at] ^= (unsigned char) (1u << (s_random (&state) % 8));
            else
                mutant[at] = (unsigned char) s_random (&state);
        }
        //  Sometimes also cut it short, at a random length
        size_t length = s_random (&state) % 4 == 0? (size_t) (s_random (&state) % size): size;
        mesh_envelope_t envelope;
        int rc = mesh_envelope_decode (s_decoder, mutant, length, MESH_ENVELOPE_ANY, &envelope);
        mesh_slice_t id;
        uint64_t deadline_ms;
        int peeked = mesh_envelope_peek (mutant, length, &id, &deadline_ms, NULL);
        if (rc == 0) {
            accepted++;
            s_assert_views_inside (&envelope, mutant, length);
            //  Whatever decodes, the broker's peek reads the same way
            cr_assert_eq (peeked, 0, "decode accepted what peek refused (round %d)", round);
            cr_assert (id.len == envelope.id.len && (id.len == 0 || id.ptr == envelope.id.ptr),
                       "peek id '%.*s', decode id '%.*s' (round %d)", (int) id.len, id.ptr,
                       (int) envelope.id.len, envelope.id.ptr, round);
            cr_assert_eq (deadline_ms, envelope.deadline_ms);
        }
        else
            cr_assert_str_not_empty (mesh_envelope_decoder_error (s_decoder));
        free (mutant);
    }
    cr_log_info ("random_byte_flips_never_crash: %d of 20000 mutants still decoded", accepted);
    free (original);
}

Test (mesh_envelope, random_bytes_never_crash)
{
    uint64_t state = UINT64_C (0xfeedface);
    for (int round = 0; round < 20000; round++) {
        size_t size = (size_t) (s_random (&state) % 64);
        unsigned char *bytes = malloc (size? size: 1);
        for (size_t index = 0; index < size; index++)
            bytes[index] = (unsigned char) s_random (&state);
        //  Bias towards containers so the parser goes deep
        if (size && s_random (&state) % 2)
            bytes[0] = (unsigned char) (0x80 | (s_random (&state) % 16));
        mesh_envelope_t envelope;
        int rc = mesh_envelope_decode (s_decoder, bytes, size, MESH_ENVELOPE_ANY, &envelope);
        if (rc == 0)
            s_assert_views_inside (&envelope, bytes, size);
        free (bytes);
    }
}

Test (mesh_envelope, peek_reads_id_and_deadline_of_requests_and_replies)
{
    s_pack_rich_request ();
    mesh_slice_t id;
    uint64_t deadline_ms = 7;
    cr_assert_eq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, NULL), 0);
    cr_assert (s_slice_is (id, "0123456789abcdef"));
    cr_assert_eq (deadline_ms, UINT64_C (1900000000000));

    msgpack_sbuffer_clear (&s_buffer);
    mesh_envelope_pack_error (&s_packer, "r-1", 3, MESH_CODE_NOT_FOUND, "gone");
    cr_assert_eq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, NULL), 0);
    cr_assert (s_slice_is (id, "r-1"));
    cr_assert_eq (deadline_ms, 0, "no deadline reads as 0");

    //  Not envelopes: a string, a map without v, v = 2, an id that is a number
    msgpack_sbuffer_clear (&s_buffer);
    s_str ("hello");
    cr_assert_eq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, NULL),
                  MESH_ETYPE);
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 1);
    s_kv_str ("id", "x");
    cr_assert_neq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, NULL), 0);
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 2);
    s_kv_uint ("v", 2);
    s_kv_str ("id", "x");
    cr_assert_eq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, NULL),
                  MESH_EVERSION);
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 2);
    s_kv_uint ("v", 1);
    s_kv_uint ("id", 5);
    cr_assert_neq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, NULL), 0);
}

Test (mesh_envelope, peek_reads_the_actor_when_asked)
{
    mesh_request_head_t head = { .id = "r-2", .method = "user.delete", .actor = "meshctl-ops" };
    mesh_envelope_pack_request_head (&s_packer, &head);
    msgpack_pack_nil (&s_packer);
    mesh_slice_t id, actor = { "x", 1 };
    uint64_t deadline_ms;
    cr_assert_eq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, &actor), 0);
    cr_assert (s_slice_is (id, "r-2"));
    cr_assert (s_slice_is (actor, "meshctl-ops"));

    //  Absent: empty
    msgpack_sbuffer_clear (&s_buffer);
    head.actor = NULL;
    mesh_envelope_pack_request_head (&s_packer, &head);
    msgpack_pack_nil (&s_packer);
    cr_assert_eq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, &actor), 0);
    cr_assert_eq (actor.len, 0);

    //  Not a string, or too long: not an envelope the broker can vouch for
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_uint ("actor", 5);
    cr_assert_neq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, &actor), 0);
    cr_assert_eq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, NULL), 0,
                  "without an actor wanted, its value is only walked over");
    char long_actor[MESH_ENVELOPE_MAX_ACTOR + 2];
    memset (long_actor, 'a', sizeof long_actor - 1);
    long_actor[sizeof long_actor - 1] = '\0';
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 3);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("actor", long_actor);
    cr_assert_neq (mesh_envelope_peek (s_buffer.data, s_buffer.size, &id, &deadline_ms, &actor), 0);
}

Test (mesh_envelope, rejects_actor_that_is_not_a_string_or_too_long)
{
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_kv_uint ("actor", 1);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETYPE, "actor");

    char long_actor[MESH_ENVELOPE_MAX_ACTOR + 2];
    memset (long_actor, 'a', sizeof long_actor - 1);
    long_actor[sizeof long_actor - 1] = '\0';
    msgpack_sbuffer_clear (&s_buffer);
    msgpack_pack_map (&s_packer, 4);
    s_kv_uint ("v", 1);
    s_kv_str ("id", "x");
    s_kv_str ("method", "m");
    s_kv_str ("actor", long_actor);
    s_expect_reject (MESH_ENVELOPE_REQUEST, MESH_ETOOBIG, "actor");
}
