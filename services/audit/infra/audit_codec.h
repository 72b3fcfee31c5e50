/*  =========================================================================
    audit_codec - MessagePack <-> audit events, and the audit.list bodies
    Reads the user service's event maps (CloudEvents attributes + seq, from
    the live stream and from events.list) into audit_event_t; packs audit
    log entries for audit.list replies.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_CODEC_H_INCLUDED
#define AUDIT_CODEC_H_INCLUDED

#include "audit_event.h"
#include "audit_store.h"

#include <msgpack.h>
#include <stddef.h>

//  Decode one event map into *event (cleared first; data becomes JSON
//  text; the optional extension attribute `actor` goes to event->actor). Returns NULL on success,
//  else a static reason and *event is left cleared: the map is not a map, misses a field, has a
//  field of the wrong type, or breaks audit_event_check.
const char *
    audit_codec_event (const msgpack_object *map, audit_event_t *event);

//  Pack one audit log entry: {id, seq, type, subject, time, data, trace
//  (when known), actor (string, or nil when the change named none),
//  received_at}; data as the user map.
void
    audit_codec_pack_entry (msgpack_packer *packer, const audit_event_t *event);

//  audit.list {user_id?, type?, actor?, after?, limit?} -> {items: [entry...],
//  next: seq or nil}. `after` may be an integer or its decimal string (the
//  cursor of the previous page as the gateway's query string has it).
//  Returns 0 with the reply packed, or MESH_EINVAL (message names the
//  field) or a store error, with a message.
int
    audit_codec_list (audit_store_t *store, const msgpack_object *body, msgpack_packer *reply,
                      char *message, size_t message_size);

#endif
