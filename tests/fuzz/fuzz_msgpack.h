/*  =========================================================================
    fuzz_msgpack - checks the harnesses share on what a codec packed
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef FUZZ_MSGPACK_H_INCLUDED
#define FUZZ_MSGPACK_H_INCLUDED

#include <msgpack.h>
#include <stdbool.h>

//  True when `buffer` holds exactly one MessagePack object, nothing more.
static inline bool
fuzz_msgpack_one_object (const msgpack_sbuffer *buffer)
{
    msgpack_unpacked object;
    msgpack_unpacked_init (&object);
    size_t offset = 0;
    bool one = msgpack_unpack_next (&object, buffer->data, buffer->size, &offset) ==
                   MSGPACK_UNPACK_SUCCESS &&
               offset == buffer->size;
    msgpack_unpacked_destroy (&object);
    return one;
}

#endif
