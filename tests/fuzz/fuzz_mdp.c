/*  =========================================================================
    fuzz_mdp - libFuzzer harness for the MDP frame checks (common mdp.c)
    The input is split into frames (each frame: one length byte, then that
    many bytes), up to MDP_MAX_FRAMES, and read the way the broker reads a
    client or worker message: empty delimiter, protocol header, command
    byte, READY credit, service name. Nothing may crash or read past a frame.
    Run: build/fuzz/bin/fuzz_mdp -max_len=1024 [corpus-dir]
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mdp.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

int
    LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    mdp_frames_t frames = { .count = 0 };
    size_t at = 0;
    while (at < size && frames.count < MDP_MAX_FRAMES) {
        size_t len = data[at++];
        if (len > size - at)
            len = size - at;
        zmq_msg_t *frame = &frames.frame[frames.count];
        if (zmq_msg_init_size (frame, len) != 0)
            break;
        //  An exact-size copy, so ASan sees any read past the frame
        if (len > 0)
            memcpy (zmq_msg_data (frame), data + at, len);
        frames.count++;
        at += len;
    }
    frames.overflow = at < size;
    for (int index = 0; index < frames.count; index++) {
        zmq_msg_t *frame = &frames.frame[index];
        size_t len = zmq_msg_size (frame);
        bool client = mdp_frame_eq (frame, MDP_CLIENT);
        bool worker = mdp_frame_eq (frame, MDP_WORKER);
        assert (!(client && worker));
        assert (!mdp_frame_empty (frame) || len == 0);
        int command = mdp_frame_command (frame);
        assert (command == 0 || (command >= MDP_READY && command <= MDP_DISCONNECT));
        assert (command == 0 || len == 1);
        assert (strcmp (mdp_command_name (command), "") != 0);
        int credit = mdp_frame_credit (frame);
        assert (credit >= 0 && credit <= MDP_MAX_CREDIT);
        bool valid = mdp_service_name_valid (zmq_msg_data (frame), len);
        assert (!valid || (len > 0 && len <= MDP_MAX_SERVICE_NAME));
    }
    mdp_frames_close (&frames);
    assert (frames.count == 0);
    return 0;
}
