/*  =========================================================================
    mdp - Majordomo Protocol MDP/0.1 (ZeroMQ RFC 7) framing helpers
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mdp.h"
#include "mesh/mesh_err.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

//  Map errno after a failed zmq call to a mesh code.
static int
s_errno_code (int error)
{
    switch (error) {
        case EAGAIN: return MESH_ETIMEDOUT;
        case EINTR: return MESH_EINTR;
        case EHOSTUNREACH: return MESH_EUNAVAIL;
        default: return MESH_EIO;
    }
}

//  --------------------------------------------------------------------------
//  Receive one whole multipart message.
int
mdp_frames_recv (mdp_frames_t *frames, void *socket, int flags)
{
    assert (frames);
    assert (socket);
    frames->count = 0;
    frames->overflow = false;
    zmq_msg_t extra;
    while (true) {
        zmq_msg_t *frame = frames->count < MDP_MAX_FRAMES? &frames->frame[frames->count]: &extra;
        zmq_msg_init (frame);
        //  Only the first frame may wait: the rest of a multipart message
        //  arrives atomically with it.
        if (zmq_msg_recv (frame, socket, frames->count || frames->overflow? 0: flags) < 0) {
            int error = errno;
            zmq_msg_close (frame);
            mdp_frames_close (frames);
            return s_errno_code (error);
        }
        bool more = zmq_msg_more (frame);
        if (frame == &extra) {
            frames->overflow = true;
            zmq_msg_close (&extra);
        }
        else
            frames->count++;
        if (!more)
            return 0;
    }
}

//  --------------------------------------------------------------------------
//  Close every frame still held.
void
mdp_frames_close (mdp_frames_t *frames)
{
    assert (frames);
    for (int index = 0; index < frames->count; index++)
        zmq_msg_close (&frames->frame[index]);
    frames->count = 0;
}

//  --------------------------------------------------------------------------
//  True when `frame` holds exactly `text`.
bool
mdp_frame_eq (zmq_msg_t *frame, const char *text)
{
    size_t len = strlen (text);
    return zmq_msg_size (frame) == len && memcmp (zmq_msg_data (frame), text, len) == 0;
}

//  --------------------------------------------------------------------------
//  True when `frame` is empty.
bool
mdp_frame_empty (zmq_msg_t *frame)
{
    return zmq_msg_size (frame) == 0;
}

//  --------------------------------------------------------------------------
//  Worker command byte, or 0.
int
mdp_frame_command (zmq_msg_t *frame)
{
    if (zmq_msg_size (frame) != 1)
        return 0;
    int command = *(const unsigned char *) zmq_msg_data (frame);
    return command >= MDP_READY && command <= MDP_DISCONNECT? command: 0;
}

//  --------------------------------------------------------------------------
//  Parse a READY credit frame.
int
mdp_frame_credit (zmq_msg_t *frame)
{
    size_t size = zmq_msg_size (frame);
    const unsigned char *digits = zmq_msg_data (frame);
    if (size == 0 || size > 4)
        return 0;
    int credit = 0;
    for (size_t index = 0; index < size; index++) {
        if (digits[index] < '0' || digits[index] > '9')
            return 0;
        credit = credit * 10 + (digits[index] - '0');
    }
    return credit >= 1 && credit <= MDP_MAX_CREDIT? credit: 0;
}

//  --------------------------------------------------------------------------
//  True when `name` is a usable service name.
bool
mdp_service_name_valid (const void *name, size_t len)
{
    if (len == 0 || len > MDP_MAX_SERVICE_NAME)
        return false;
    const unsigned char *bytes = name;
    for (size_t index = 0; index < len; index++)
        if (bytes[index] <= 0x20 || bytes[index] >= 0x7f || bytes[index] == '"'
            || bytes[index] == '\\')
            return false;
    return true;
}

//  --------------------------------------------------------------------------
//  Send `count` buffers as one multipart message.
int
mdp_send_parts (void *socket, int flags, size_t count, const void *const *data,
                const size_t *sizes)
{
    assert (socket);
    for (size_t index = 0; index < count; index++) {
        int more = index + 1 < count? ZMQ_SNDMORE: 0;
        //  Only the first part can fail with EAGAIN/EHOSTUNREACH: once it is
        //  accepted, the rest of the message is too.
        if (zmq_send (socket, data[index], sizes[index], flags | more) < 0)
            return errno == EAGAIN? MESH_EBUSY: s_errno_code (errno);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Human name of a worker command.
const char *
mdp_command_name (int command)
{
    switch (command) {
        case MDP_READY: return "READY";
        case MDP_REQUEST: return "REQUEST";
        case MDP_REPLY: return "REPLY";
        case MDP_HEARTBEAT: return "HEARTBEAT";
        case MDP_DISCONNECT: return "DISCONNECT";
        default: return "UNKNOWN";
    }
}
