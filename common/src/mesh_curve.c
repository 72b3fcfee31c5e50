/*  =========================================================================
    mesh_curve - this process's CURVE keys, applied to its ZeroMQ sockets
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_curve.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

//  What zcert_load gives as secret key for a public-only certificate
#define S_NO_SECRET "0000000000000000000000000000000000000000"

struct mesh_curve_s {
    zcert_t *cert;   //  Own keys and metadata, owned
    zcert_t *server; //  Broker's public certificate, owned, or NULL
};

//  Load one certificate file, explaining in `why` why it cannot be used.
static zcert_t *
s_load (const char *path, const char *what, char *why, size_t why_size)
{
    //  zcert_load says NULL for both a missing and a malformed file:
    //  access() tells the operator which one it is
    if (access (path, R_OK) != 0) {
        snprintf (why, why_size, "%s %s: %s", what, path, strerror (errno));
        return NULL;
    }
    zcert_t *cert = zcert_load (path);
    if (!cert)
        snprintf (why, why_size, "%s %s: not a CURVE certificate (czmq zcert format)", what, path);
    return cert;
}

//  --------------------------------------------------------------------------
//  Load the own secret certificate and optionally the server's public one.
mesh_curve_t *
mesh_curve_new (const char *cert_path, const char *server_cert_path, char *why, size_t why_size)
{
    assert (cert_path);
    assert (why);
    mesh_curve_t *self = mesh_alloc (sizeof (mesh_curve_t));
    self->cert = s_load (cert_path, "--curve-cert", why, why_size);
    if (!self->cert)
        goto fail;
    if (strcmp (zcert_secret_txt (self->cert), S_NO_SECRET) == 0) {
        snprintf (why, why_size,
                  "--curve-cert %s: a public certificate; give the NAME.key_secret file",
                  cert_path);
        goto fail;
    }
    if (server_cert_path && *server_cert_path) {
        self->server = s_load (server_cert_path, "--curve-server-cert", why, why_size);
        if (!self->server)
            goto fail;
    }
    return self;
fail:
    mesh_curve_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
mesh_curve_destroy (mesh_curve_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mesh_curve_t *self = *self_p;
        zcert_destroy (&self->cert);
        zcert_destroy (&self->server);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Read the CURVE settings of a process.
int
mesh_curve_from_cfg (const mesh_cfg_t *cfg, bool need_server, mesh_curve_t **curve_p, char *why,
                     size_t why_size)
{
    assert (cfg);
    assert (curve_p);
    *curve_p = NULL;
    const char *cert = mesh_cfg_get (cfg, "curve-cert");
    const char *server = mesh_cfg_get (cfg, "curve-server-cert");
    if (!cert || !*cert) {
        if (server && *server) {
            snprintf (why, why_size, "--curve-server-cert needs --curve-cert");
            return MESH_EINVAL;
        }
        return 0;
    }
    if (need_server && (!server || !*server)) {
        snprintf (why, why_size, "--curve-cert needs --curve-server-cert (the broker's key)");
        return MESH_EINVAL;
    }
    *curve_p = mesh_curve_new (cert, need_server ? server : NULL, why, why_size);
    return *curve_p ? 0 : MESH_EINVAL;
}

//  Set one binary key option. Returns 0 or MESH_EIO.
static int
s_set_key (void *socket, int option, const byte *key)
{
    return zmq_setsockopt (socket, option, key, 32) == 0 ? 0 : MESH_EIO;
}

//  --------------------------------------------------------------------------
//  Make `socket` a CURVE client.
int
mesh_curve_apply_client (const mesh_curve_t *self, void *socket)
{
    assert (socket);
    if (!self)
        return 0;
    if (!self->server)
        return MESH_EINVAL;
    if (s_set_key (socket, ZMQ_CURVE_SERVERKEY, zcert_public_key (self->server)) ||
        s_set_key (socket, ZMQ_CURVE_PUBLICKEY, zcert_public_key (self->cert)) ||
        s_set_key (socket, ZMQ_CURVE_SECRETKEY, zcert_secret_key (self->cert)))
        return MESH_EIO;
    return 0;
}

//  --------------------------------------------------------------------------
//  Apply the client options and connect.
int
mesh_curve_connect (const mesh_curve_t *self, void *socket, const char *endpoint)
{
    assert (socket);
    assert (endpoint);
    int rc = mesh_curve_apply_client (self, socket);
    if (rc)
        return rc;
    return zmq_connect (socket, endpoint) == 0 ? 0 : MESH_EINVAL;
}

//  --------------------------------------------------------------------------
//  Make `socket` a CURVE server.
int
mesh_curve_apply_server (const mesh_curve_t *self, void *socket)
{
    assert (socket);
    if (!self)
        return 0;
    int on = 1;
    //  The domain makes libzmq ask the ZAP handler for every handshake
    if (zmq_setsockopt (socket, ZMQ_CURVE_SERVER, &on, sizeof on) != 0 ||
        s_set_key (socket, ZMQ_CURVE_SECRETKEY, zcert_secret_key (self->cert)) ||
        zmq_setsockopt (socket, ZMQ_ZAP_DOMAIN, MESH_CURVE_ZAP_DOMAIN,
                        strlen (MESH_CURVE_ZAP_DOMAIN)) != 0)
        return MESH_EIO;
    return 0;
}

//  --------------------------------------------------------------------------
//  The certificate's name.
const char *
mesh_curve_name (const mesh_curve_t *self)
{
    assert (self);
    const char *name = zcert_meta (self->cert, "name");
    return name ? name : "";
}

//  --------------------------------------------------------------------------
//  The own public key, Z85.
const char *
mesh_curve_public_txt (const mesh_curve_t *self)
{
    assert (self);
    return zcert_public_txt (self->cert);
}
