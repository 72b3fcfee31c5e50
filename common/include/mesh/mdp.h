/*  =========================================================================
    mdp - Majordomo Protocol MDP/0.1 (ZeroMQ RFC 7) framing helpers
    Shared by the broker, the client and the worker. A frame set is received
    whole into an mdp_frames_t of zmq_msg_t on the stack: no allocation per
    message, and frames can be moved onward with zmq_msg_send (zero copy).
    Nothing here asserts on wire data: validation returns codes.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_MDP_H_INCLUDED
#define MESH_MDP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

#define MDP_CLIENT "MDPC01"
#define MDP_WORKER "MDPW01"

typedef enum {
    MDP_READY = 0x01,
    MDP_REQUEST = 0x02,
    MDP_REPLY = 0x03,
    MDP_HEARTBEAT = 0x04,
    MDP_DISCONNECT = 0x05,
} mdp_command_t;

//  Frames kept per message; more is a protocol error (the rest are read and
//  dropped so the socket stays in step). Bodies of RFC 7 peers may have
//  several frames; 16 leaves room for routing envelopes too.
#define MDP_MAX_FRAMES 16
#define MDP_MAX_CREDIT 1000
#define MDP_MAX_SERVICE_NAME 255

typedef struct {
    zmq_msg_t frame[MDP_MAX_FRAMES];
    int count;                  //  Frames held in `frame`
    bool overflow;              //  More than MDP_MAX_FRAMES arrived (dropped)
} mdp_frames_t;

//  Receive one whole multipart message from `socket` into `frames`.
//  `flags` as zmq_msg_recv (ZMQ_DONTWAIT). Returns 0, MESH_ETIMEDOUT when
//  nothing is waiting (EAGAIN), MESH_EINTR, or MESH_EIO. On 0 the caller
//  owns the frames and must call mdp_frames_close.
int
    mdp_frames_recv (mdp_frames_t *frames, void *socket, int flags);

//  Close every frame still held. Idempotent.
void
    mdp_frames_close (mdp_frames_t *frames);

//  True when `frame` holds exactly the bytes of NUL-terminated `text`.
bool
    mdp_frame_eq (zmq_msg_t *frame, const char *text);

//  True when `frame` is empty.
bool
    mdp_frame_empty (zmq_msg_t *frame);

//  Worker command byte of `frame`, or 0 when it is not one valid byte.
int
    mdp_frame_command (zmq_msg_t *frame);

//  Parse a READY credit frame (ASCII digits, 1..MDP_MAX_CREDIT). Returns
//  the credit, or 0 when the frame is not a valid credit.
int
    mdp_frame_credit (zmq_msg_t *frame);

//  True when `frame` is a usable service name: 1..255 bytes of printable
//  ASCII with no space (names appear in logs and metric labels).
bool
    mdp_service_name_valid (const void *name, size_t len);

//  Send `count` buffers as one multipart message. Flags as zmq_send
//  (ZMQ_DONTWAIT). Returns 0, MESH_EBUSY (EAGAIN: peer's queue full),
//  MESH_EUNAVAIL (EHOSTUNREACH: ROUTER peer gone) or MESH_EIO.
int
    mdp_send_parts (void *socket, int flags, size_t count, const void *const *data,
                    const size_t *sizes);

//  Human name of a worker command ("READY"), or "UNKNOWN".
const char *
    mdp_command_name (int command);

#endif
