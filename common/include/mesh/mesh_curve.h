/*  =========================================================================
    mesh_curve - this process's CURVE keys, applied to its ZeroMQ sockets
    Every ZeroMQ process of the mesh loads its secret certificate (czmq's
    zcert format, the NAME.key_secret file `meshctl keygen` writes) and,
    when it connects to the broker, the broker's public certificate. The
    module turns them into socket options on raw libzmq sockets: client
    side (ZMQ_CURVE_SERVERKEY, PUBLICKEY, SECRETKEY) or server side
    (ZMQ_CURVE_SERVER, SECRETKEY, ZMQ_ZAP_DOMAIN). A NULL mesh_curve_t means
    CURVE is off: every apply function is then a no-op, so callers need no
    branch and plain peers cost exactly what they did before.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_CURVE_H_INCLUDED
#define MESH_CURVE_H_INCLUDED

#include "mesh/mesh_cfg.h"

#include <stdbool.h>
#include <stddef.h>

//  The settings of every ZeroMQ process (the broker adds --curve-allow).
#define MESH_CFG_CURVE_OPTIONS                                                                     \
    {"curve-cert", "MESH_CURVE_CERT", "",                                                          \
     "own secret CURVE certificate (NAME.key_secret); empty: CURVE off"},                          \
    {                                                                                              \
        "curve-server-cert", "MESH_CURVE_SERVER_CERT", "",                                         \
            "the broker's public CURVE certificate (needed with --curve-cert)"                     \
    }

//  The ZAP domain the broker's sockets announce.
#define MESH_CURVE_ZAP_DOMAIN "mesh"

typedef struct mesh_curve_s mesh_curve_t;

//  Load the secret certificate `cert_path` and, when `server_cert_path` is
//  not NULL or empty, the server's public certificate. Returns NULL with a
//  reason in `why` (NUL-terminated, at most `why_size` bytes) when a file
//  is missing, unreadable or malformed, or `cert_path` has no secret key.
mesh_curve_t *mesh_curve_new (const char *cert_path, const char *server_cert_path, char *why,
                              size_t why_size);

//  Destroy; nulls the caller's pointer. Safe on NULL.
void mesh_curve_destroy (mesh_curve_t **self_p);

//  Read --curve-cert and --curve-server-cert from `cfg` (declared with
//  MESH_CFG_CURVE_OPTIONS). Returns 0 with *curve_p NULL when CURVE is off
//  (no cert), 0 with a new instance in *curve_p, or MESH_EINVAL with a
//  reason in `why`. `need_server` demands a server certificate (processes
//  that connect to the broker).
int mesh_curve_from_cfg (const mesh_cfg_t *cfg, bool need_server, mesh_curve_t **curve_p, char *why,
                         size_t why_size);

//  Make `socket` a CURVE client of the loaded server key. No-op returning
//  0 when self is NULL. Returns 0, MESH_EINVAL (no server certificate
//  loaded) or MESH_EIO (libzmq refused an option). Call before connect.
int mesh_curve_apply_client (const mesh_curve_t *self, void *socket);

//  Apply the client options (as mesh_curve_apply_client; none when self
//  is NULL) and connect `socket` to `endpoint`. Returns 0, MESH_EINVAL
//  (bad endpoint, no server certificate) or MESH_EIO.
int mesh_curve_connect (const mesh_curve_t *self, void *socket, const char *endpoint);

//  Make `socket` a CURVE server in ZAP domain MESH_CURVE_ZAP_DOMAIN. No-op
//  returning 0 when self is NULL. Returns 0 or MESH_EIO. Call before bind.
int mesh_curve_apply_server (const mesh_curve_t *self, void *socket);

//  The certificate's `name` metadata (empty string when it has none).
//  Borrowed; valid while self lives.
const char *mesh_curve_name (const mesh_curve_t *self);

//  The Z85 public key of this process's certificate (40 characters).
//  Borrowed; valid while self lives.
const char *mesh_curve_public_txt (const mesh_curve_t *self);

#endif
