#!/usr/bin/env python3
#  tests/fuzz/make_seeds.py - writes the seed corpora of fuzz_user_codec,
#  fuzz_audit_codec, fuzz_user_event, fuzz_gateway_body and fuzz_gateway_auth
#  (tests/fuzz/corpus/NAME/).
#  The messages are hand-written MessagePack in the shapes the user service
#  packs (user_codec_pack_user, user_codec_pack_event) and clients send.
#  A tiny packer, so no Python msgpack module is needed. The JWTs are signed
#  with the fuzz-only keys of tests/fuzz/keys: HS256 here (hmac), RS256 by the
#  openssl tool (PKCS#1 v1.5, deterministic), ES256 here with a nonce derived
#  from the key and message, so a rerun writes the same bytes.
#  SPDX-License-Identifier: MPL-2.0
import base64
import hashlib
import hmac
import json
import os
import re
import struct
import subprocess
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

#  fuzz_gateway_auth: Authorization headers with tokens signed by the keys the
#  harness configures (issuer "iss", audience "aud", API key "zmk_fuzz")
keys = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'keys')
def b64(data): return base64.urlsafe_b64encode(data).rstrip(b'=')
def part(obj): return b64(json.dumps(obj, separators=(',', ':')).encode())
with open(os.path.join(keys, 'hs256.secret'), 'rb') as f:
    SECRET = f.read().strip()
def hs256(msg, secret=SECRET): return hmac.new(secret, msg, hashlib.sha256).digest()
def rs256(msg):
    return subprocess.run(['openssl', 'dgst', '-sha256', '-sign', os.path.join(keys, 'rsa.pem')],
                          input=msg, capture_output=True, check=True).stdout
#  P-256 ECDSA, affine coordinates; the nonce is HMAC(d, hash) (deterministic)
P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
G = (0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
     0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5)
def ec_add(a, b):
    if a is None: return b
    if b is None: return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0: return None
    if a == b: l = (3 * a[0] * a[0] - 3) * pow(2 * a[1], -1, P) % P   #  The curve's a is -3
    else: l = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (l * l - a[0] - b[0]) % P
    return (x, (l * (a[0] - x) - a[1]) % P)
def ec_mul(k, point):
    result = None
    while k:
        if k & 1: result = ec_add(result, point)
        point = ec_add(point, point)
        k >>= 1
    return result
text = subprocess.run(['openssl', 'ec', '-in', os.path.join(keys, 'ec.pem'), '-noout', '-text'],
                      capture_output=True, check=True, text=True).stdout
D = int(''.join(re.search(r'priv:\s*([0-9a-f:\s]+?)\npub:', text).group(1).split()).replace(':', ''), 16)
def es256(msg):
    z = int.from_bytes(hashlib.sha256(msg).digest(), 'big')
    k = int.from_bytes(hmac.new(D.to_bytes(32, 'big'), msg, hashlib.sha256).digest(), 'big') % N or 1
    r = ec_mul(k, G)[0] % N
    s = pow(k, -1, N) * (z + r * D) % N
    return r.to_bytes(32, 'big') + s.to_bytes(32, 'big')
SIGN = {'HS256': hs256, 'RS256': rs256, 'ES256': es256}
def token(claims, alg='HS256', sign=None, header=None):
    msg = part(header or {'alg': alg, 'typ': 'JWT'}) + b'.' + part(claims)
    if alg == 'none' and not sign: return msg + b'.'
    return msg + b'.' + b64((sign or SIGN[alg])(msg))
FUTURE, PAST = 4102444800, 1000000000   #  2100-01-01, 2001-09-09
def claims(**extra):
    c = {'sub': 'alice', 'iss': 'iss', 'aud': 'aud', 'exp': FUTURE, 'scope': 'users:read users:write'}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}
d = os.path.join(root, 'fuzz_gateway_auth')
bearer = lambda t: b'Bearer ' + t
write(d, 'hs256-valid', bearer(token(claims())))
write(d, 'rs256-valid', bearer(token(claims(scope='audit:read events:read'), 'RS256')))
write(d, 'es256-valid', bearer(token(claims(aud=['other', 'aud']), 'ES256')))
write(d, 'hs256-bare-token', token(claims(nbf=PAST, iat=PAST)))   #  As the credential after "Bearer "
write(d, 'hs256-expired', bearer(token(claims(exp=PAST))))
write(d, 'hs256-nbf-future', bearer(token(claims(nbf=FUTURE))))
write(d, 'hs256-exp-string', bearer(token(claims(exp='4102444800'))))
write(d, 'hs256-no-exp', bearer(token(claims(exp=None))))
write(d, 'hs256-no-sub', bearer(token(claims(sub=None))))
write(d, 'hs256-sub-not-string', bearer(token(claims(sub=7))))
write(d, 'hs256-wrong-aud', bearer(token(claims(aud='other'))))
write(d, 'hs256-aud-array-without', bearer(token(claims(aud=['a', 'b']))))
write(d, 'hs256-wrong-iss', bearer(token(claims(iss='other'))))
write(d, 'hs256-no-iss', bearer(token(claims(iss=None))))
write(d, 'hs256-wrong-secret', bearer(token(claims(), sign=lambda m: hs256(m, b'not-the-secret-not-the-secret-000'))))
write(d, 'rs256-bad-signature', bearer(token(claims(), 'RS256', sign=lambda m: rs256(m)[::-1])))
write(d, 'es256-as-rs256', bearer(token(claims(), 'RS256', sign=es256)))
with open(os.path.join(keys, 'rsa.pub.pem'), 'rb') as f:
    RSA_PUBLIC = f.read()
write(d, 'rs256-key-as-hs256-secret', bearer(token(claims(), sign=lambda m: hs256(m, RSA_PUBLIC))))
write(d, 'alg-none', bearer(token(claims(), 'none')))
write(d, 'alg-none-signed', bearer(token(claims(), 'none', sign=hs256)))
write(d, 'alg-missing', bearer(token(claims(), header={'typ': 'JWT'})))
write(d, 'claims-not-object', bearer(part({'alg': 'HS256'}) + b'.' + b64(b'[1]') + b'.' + b64(hs256(part({'alg': 'HS256'}) + b'.' + b64(b'[1]')))))
write(d, 'api-key', b'Bearer zmk_fuzz')
write(d, 'api-key-wrong', b'Bearer zmk_other')
write(d, 'basic', b'Basic YWxpY2U6c2VjcmV0')
write(d, 'bearer-empty', b'Bearer ')
#  The harness also signs the input itself as claims with the HS256 secret
write(d, 'claims-valid', json.dumps(claims()).encode())
write(d, 'claims-expired', json.dumps(claims(exp=PAST, nbf=PAST)).encode())
