#!/usr/bin/env python3
#  tests/fuzz/make_seeds.py - writes the seed corpora of fuzz_user_codec,
#  fuzz_audit_codec, fuzz_user_event and fuzz_gateway_body
#  (tests/fuzz/corpus/NAME/).
#  The messages are hand-written MessagePack in the shapes the user service
#  packs (user_codec_pack_user, user_codec_pack_event) and clients send.
#  A tiny packer, so no Python msgpack module is needed.
#  SPDX-License-Identifier: MPL-2.0
import os
import struct
import sys

def p(o):
    if o is None: return b'\xc0'
    if isinstance(o, bool): return b'\xc3' if o else b'\xc2'
    if isinstance(o, int):
        if 0 <= o < 128: return bytes([o])
        if o < 0 and o >= -32: return struct.pack('b', o)
        return b'\xd3' + struct.pack('>q', o)
    if isinstance(o, str):
        b = o.encode(); assert len(b) < 256
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b'\xd9' + bytes([len(b)])) + b
    if isinstance(o, list):
        return bytes([0x90 | len(o)]) + b''.join(p(x) for x in o)
    if isinstance(o, dict):
        return bytes([0x80 | len(o)]) + b''.join(p(k) + p(v) for k, v in o.items())

def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
d = os.path.join(root, 'fuzz_user_codec')
ID = "00000000-0000-4000-8000-000000000001"
write(d, 'create', bytes([0x80]) + p({"name": "Grace", "email": "grace@example.com"}))
write(d, 'create-dup', bytes([0x00]) + p({"name": "Ada", "email": "ADA@example.com"}))
write(d, 'get', bytes([0x01]) + p({"id": ID}))
write(d, 'list', bytes([0x02]) + p({"limit": 10, "after": ID}))
write(d, 'list-nil', bytes([0x02]) + p(None))
write(d, 'update', bytes([0x83]) + p({"id": ID, "name": "Ada L.", "email": "ada.l@example.com"}))
write(d, 'delete', bytes([0x84]) + p({"id": ID}))
write(d, 'events', bytes([0x05]) + p({"after_seq": 0, "limit": 100}))
write(d, 'create-many', bytes([0x86]) + p([{"name": "B", "email": "b@example.com"},
      {"name": "C", "email": "c@example.com"}, {"name": "B2", "email": "b@example.com"}, None]))
d = os.path.join(root, 'fuzz_audit_codec')
UID = "00000000-0000-4000-8000-000000000001"
user = {"id": UID, "name": "Ada", "email": "ada@example.com",
        "created_at": "2025-11-25T13:33:31.123Z", "updated_at": "2025-11-25T13:33:31.123Z"}
def ev(seq, typ, actor=None, trace=None):
    m = {"specversion": "1.0", "id": "0190d3c5-7a1e-4b2c-8d3e-%012d" % seq, "source": "/services/user",
         "type": typ, "time": "2025-11-25T13:33:31.123Z", "subject": UID,
         "datacontenttype": "application/msgpack", "data": user, "seq": seq}
    if trace: m["trace"] = trace
    if actor: m["actor"] = actor
    return m
T = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
write(d, 'event-created', b'\x00' + p(ev(1, "user.created", "key:ops", T)))
write(d, 'event-updated', b'\x00' + p(ev(2, "user.updated")))
write(d, 'event-deleted', b'\x00' + p(ev(3, "user.deleted", "sub:alice")))
write(d, 'events-list-items', b'\x00' + p([ev(4, "user.created"), ev(5, "user.updated", None, T)]))
write(d, 'list', b'\x01' + p({"user_id": UID, "type": "user.created", "limit": 10}))
write(d, 'list-after-string', b'\x01' + p({"after": "2", "actor": "key:ops"}))
write(d, 'list-nil', b'\x01' + p(None))
d = os.path.join(root, 'fuzz_user_event')
write(d, 'user-created', p(ev(1, "user.created", "key:ops", T)))
write(d, 'user-updated', p(ev(2, "user.updated")))
write(d, 'user-deleted', p(ev(3, "user.deleted", "sub:alice")))
d = os.path.join(root, 'fuzz_gateway_body')
#  A route byte (0: POST /v1/users, 1: PATCH /v1/users/{id}), then the body
POST, PATCH = b'\x00', b'\x01'
write(d, 'create', POST + b'{"name": "Grace", "email": "grace@example.com"}')
write(d, 'update', PATCH + b'{"name": "Ada L.", "email": "ada.l@example.com"}')
write(d, 'update-id-in-body', PATCH + b'{"id": "00000000-0000-4000-8000-000000000009", "name": "A"}')
write(d, 'update-unicode', PATCH + '{"name": "Zo\u00eb \\ud83d\\ude00 \u00e9\\n"}'.encode())
write(d, 'values', POST + b'{"a": null, "b": true, "c": false, "d": -9223372036854775808,'
      b' "e": 9223372036854775807, "f": 1.5e-300, "g": [], "h": {}, "i": ""}')
write(d, 'empty', POST)
write(d, 'empty-object', POST + b'{}')
write(d, 'not-json', POST + b'name=Ada&email=ada@example.com')
write(d, 'array', POST + b'[{"name": "Ada"}]')
write(d, 'string', PATCH + b'"Ada"')
write(d, 'duplicate-key', POST + b'{"name": "A", "name": "B"}')
write(d, 'trailing', POST + b'{"name": "A"} {}')
write(d, 'too-big-integer', POST + b'{"n": 9223372036854775808}')
write(d, 'real-overflow', POST + b'{"n": 1e400}')
write(d, 'nul-escape', POST + b'{"name": "A\\u0000B"}')
write(d, 'nul-byte', POST + b'{"name": "A\x00B"}')
write(d, 'bad-utf8', POST + b'{"name": "\xc3\x28"}')
write(d, 'lone-surrogate', POST + b'{"name": "\\ud800"}')
write(d, 'depth-32', POST + b'{"a":' + b'[' * 31 + b']' * 31 + b'}')
write(d, 'depth-33', PATCH + b'{"a":' + b'[' * 32 + b']' * 32 + b'}')
write(d, 'long-bad-escape', POST + b'{"name": "' + 'é'.encode() * 100 + b'\\q"}')
#  Found by the fuzzer: jansson's error context ends inside a UTF-8 sequence
write(d, 'cut-utf8-context', PATCH + '{"name": "Zoë \\ué\\n"}'.encode())
