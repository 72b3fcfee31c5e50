/*  =========================================================================
    gateway_tag - what a mesh call's tag points to
    The gateway's one mesh_client carries calls for HTTP requests and for
    SSE streams catching up; each owner struct starts with a gateway_tag_t
    so the loop can tell them apart when the outcome comes back.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_TAG_H_INCLUDED
#define GATEWAY_TAG_H_INCLUDED

typedef enum {
    GATEWAY_TAG_REQUEST,        //  An HTTP request waiting for a reply
    GATEWAY_TAG_STREAM,         //  An SSE stream waiting for events.list
} gateway_tag_kind_t;

typedef struct {
    gateway_tag_kind_t kind;
} gateway_tag_t;

#endif
