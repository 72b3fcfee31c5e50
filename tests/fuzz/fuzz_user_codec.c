/*  =========================================================================
    fuzz_user_codec - libFuzzer harness for the user service's body decoders
    Every user.* and events.list body comes from any client of the mesh.
    The input's first byte picks the method (and whether an actor is set);
    the rest is one MessagePack object, the body (none: a request without
    a body); user.create's batched path (user_codec_create_many) takes an
    array's first 8 items as 8 requests. Each input
    runs against a fresh in-memory repository (services/user/testing) that
    already holds one user, so decode, validation and the use cases run
    without a database. Checks beyond "no crash, no sanitizer report": a
    success packs exactly one object, a failure packs nothing and says why.
    Build (clang only): CC=clang cmake -S . -B build/fuzz -DMESH_FUZZ=ON
    Run: scripts/fuzz fuzz_user_codec
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "fuzz_msgpack.h"
#include "user_codec.h"
#include "user_repo_memory.h"

#include "mesh/mesh_envelope.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define BATCH_MAX 8 //  Requests in one create_many call
#define MESSAGE_SIZE 256

static void
s_fail (const char *what)
{
    fprintf (stderr, "fuzz_user_codec: %s\n", what);
    abort ();
}

static void
s_make_id (void *arg, char out[USER_ID_SIZE])
{
    unsigned long *next_id = (unsigned long *)arg;
    snprintf (out, USER_ID_SIZE, "00000000-0000-4000-8000-%012lu", ++*next_id);
}

static int64_t
s_now_us (void *arg)
{
    (void)arg;
    return INT64_C (1764077611123000);
}

//  The reply contract: rc 0 packs exactly one object, an error nothing
//  and a non-empty message.
static void
s_check_reply (int rc, const msgpack_sbuffer *buffer, const char *message)
{
    if (rc == 0) {
        if (message[0])
            s_fail ("a success with a message");
        if (!fuzz_msgpack_one_object (buffer))
            s_fail ("a success that did not pack exactly one object");
    }
    else {
        if (buffer->size)
            s_fail ("a failure that packed a reply");
        if (!message[0])
            s_fail ("a failure without a message");
    }
}

//  One single-request method on the body.
static void
s_call (user_codec_fn *method, user_app_t *app, mesh_slice_t actor, const msgpack_object *body)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    char message[MESSAGE_SIZE];
    int rc = method (app, actor, body, &packer, message, sizeof message);
    s_check_reply (rc, &buffer, message);
    msgpack_sbuffer_destroy (&buffer);
}

static void
s_create_many (user_app_t *app, mesh_slice_t actor, const msgpack_object *bodies, size_t count)
{
    user_codec_request_t requests[BATCH_MAX];
    msgpack_sbuffer buffers[BATCH_MAX];
    msgpack_packer packers[BATCH_MAX];
    msgpack_packer *replies[BATCH_MAX];
    char message_store[BATCH_MAX][MESSAGE_SIZE];
    char *messages[BATCH_MAX];
    int rcs[BATCH_MAX];
    for (size_t index = 0; index < count; index++) {
        requests[index] = (user_codec_request_t){
            .actor = actor,
            .body = &bodies[index],
            .trace = (index & 1) ? "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : NULL,
        };
        msgpack_sbuffer_init (&buffers[index]);
        msgpack_packer_init (&packers[index], &buffers[index], msgpack_sbuffer_write);
        replies[index] = &packers[index];
        messages[index] = message_store[index];
    }
    user_codec_create_many (app, requests, count, replies, messages, MESSAGE_SIZE, rcs);
    for (size_t index = 0; index < count; index++) {
        s_check_reply (rcs[index], &buffers[index], messages[index]);
        msgpack_sbuffer_destroy (&buffers[index]);
    }
}

//  A repository holding one user, id ...000000000001, created through the
//  codec itself.
static void
s_seed_user (user_app_t *app)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 2);
    msgpack_pack_str_with_body (&packer, "name", 4);
    msgpack_pack_str_with_body (&packer, "Ada", 3);
    msgpack_pack_str_with_body (&packer, "email", 5);
    msgpack_pack_str_with_body (&packer, "ada@example.com", 15);
    msgpack_unpacked body;
    msgpack_unpacked_init (&body);
    size_t offset = 0;
    if (msgpack_unpack_next (&body, buffer.data, buffer.size, &offset) != MSGPACK_UNPACK_SUCCESS)
        s_fail ("the seed body does not unpack");
    msgpack_sbuffer reply;
    msgpack_sbuffer_init (&reply);
    msgpack_packer reply_packer;
    msgpack_packer_init (&reply_packer, &reply, msgpack_sbuffer_write);
    char message[MESSAGE_SIZE];
    if (user_codec_create (app, (mesh_slice_t){0}, &body.data, &reply_packer, message,
                           sizeof message) != 0)
        s_fail (message);
    msgpack_sbuffer_destroy (&reply);
    msgpack_unpacked_destroy (&body);
    msgpack_sbuffer_destroy (&buffer);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static user_codec_fn *const methods[] = {user_codec_create, user_codec_get,
                                             user_codec_list,   user_codec_update,
                                             user_codec_delete, user_codec_events};
    const size_t method_count = sizeof methods / sizeof methods[0];
    unsigned selector = data[0];
    mesh_slice_t actor =
        (selector & 0x80) ? (mesh_slice_t){.ptr = "fuzz", .len = 4} : (mesh_slice_t){0};

    //  The rest is one object, checked as the worker's envelope decoder
    //  checks bodies (msgpack-c alone would trust a huge claimed count).
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object *body = NULL;
    if (size > 1) {
        size_t offset = 0;
        if (mesh_msgpack_check (data + 1, size - 1) != 0 ||
            msgpack_unpack_next (&unpacked, (const char *)data + 1, size - 1, &offset) !=
                MSGPACK_UNPACK_SUCCESS) {
            msgpack_unpacked_destroy (&unpacked);
            return 0;
        }
        body = &unpacked.data;
    }

    unsigned long next_id = 0;
    user_repo_memory_t *memory = user_repo_memory_new ();
    user_app_env_t env = {.make_id = s_make_id, .now_us = s_now_us, .arg = &next_id};
    user_app_t *app = user_app_new (user_repo_memory_repo (memory), &env);
    if (!memory || !app)
        s_fail ("out of memory");
    s_seed_user (app);

    size_t choice = (selector & 0x7f) % (method_count + 1);
    if (choice == method_count) {
        //  The batch: an array's items (up to BATCH_MAX), else the one body
        if (body && body->type == MSGPACK_OBJECT_ARRAY && body->via.array.size)
            s_create_many (app, actor, body->via.array.ptr,
                           body->via.array.size < BATCH_MAX ? body->via.array.size : BATCH_MAX);
        else if (body)
            s_create_many (app, actor, body, 1);
    }
    else
        s_call (methods[choice], app, actor, body);

    user_app_destroy (&app);
    user_repo_t *repo = user_repo_memory_repo (memory);
    user_repo_destroy (&repo);
    msgpack_unpacked_destroy (&unpacked);
    return 0;
}
