/*  =========================================================================
    test_mesh_curve - loading CURVE certificates and applying them to sockets
    Certificates are written with czmq's zcert into a temp directory; the
    sockets are inproc, never connected to anything that answers.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_err.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_dir[64];
static char s_secret[160]; //  dir/alice.key_secret
static char s_public[128]; //  dir/public/alice.key, no secret beside it
static char s_garbage[128];

static void
s_setup (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/mesh-curve-XXXXXX");
    cr_assert_not_null (mkdtemp (s_dir));
    zcert_t *cert = zcert_new ();
    zcert_set_meta (cert, "name", "alice");
    char path[128];
    snprintf (path, sizeof path, "%s/alice.key", s_dir);
    cr_assert_eq (zcert_save (cert, path), 0);
    snprintf (s_secret, sizeof s_secret, "%s_secret", path);
    snprintf (path, sizeof path, "%s/public", s_dir);
    cr_assert_eq (mkdir (path, 0700), 0);
    snprintf (s_public, sizeof s_public, "%s/public/alice.key", s_dir);
    cr_assert_eq (zcert_save_public (cert, s_public), 0);
    zcert_destroy (&cert);
    snprintf (s_garbage, sizeof s_garbage, "%s/garbage", s_dir);
    FILE *file = fopen (s_garbage, "w");
    fputs ("curve\n    public-key = \"short\"\n", file);
    fclose (file);
}

static void
s_teardown (void)
{
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s'", s_dir);
    cr_expect_eq (system (command), 0);
}

TestSuite (mesh_curve, .init = s_setup, .fini = s_teardown, .timeout = 10.);

Test (mesh_curve, loads_a_secret_certificate_and_its_name)
{
    char why[256] = "";
    mesh_curve_t *curve = mesh_curve_new (s_secret, s_public, why, sizeof why);
    cr_assert_not_null (curve, "%s", why);
    cr_assert_str_eq (mesh_curve_name (curve), "alice");
    cr_assert_eq (strlen (mesh_curve_public_txt (curve)), 40);
    mesh_curve_destroy (&curve);
    cr_assert_null (curve);
    mesh_curve_destroy (&curve); //  Safe on NULL
}

Test (mesh_curve, says_why_a_certificate_cannot_be_used)
{
    char why[256];
    cr_assert_null (mesh_curve_new ("/nonexistent/x.key_secret", NULL, why, sizeof why));
    cr_assert_not_null (strstr (why, "No such file"), "%s", why);
    cr_assert_null (mesh_curve_new (s_garbage, NULL, why, sizeof why));
    cr_assert_not_null (strstr (why, "not a CURVE certificate"), "%s", why);
    cr_assert_null (mesh_curve_new (s_public, NULL, why, sizeof why));
    cr_assert_not_null (strstr (why, "public certificate"), "%s", why);
    cr_assert_null (mesh_curve_new (s_secret, "/nonexistent/broker.key", why, sizeof why));
    cr_assert_not_null (strstr (why, "--curve-server-cert"), "%s", why);
}

//  Parse `argv` over the CURVE options and load.
static int
s_from_args (int argc, char **argv, bool need_server, mesh_curve_t **curve, char *why, size_t size)
{
    static const mesh_cfg_option_t options[] = {MESH_CFG_CURVE_OPTIONS};
    mesh_cfg_t *cfg = mesh_cfg_new ("test", "", "", options, 2);
    cr_assert_eq (mesh_cfg_parse (cfg, argc, argv), 0);
    int rc = mesh_curve_from_cfg (cfg, need_server, curve, why, size);
    mesh_cfg_destroy (&cfg);
    return rc;
}

Test (mesh_curve, settings_off_on_and_incomplete)
{
    char why[256];
    //  argv strings must be writable (char *): keep them in arrays
    char program[] = "test", cert[] = "--curve-cert", server_cert[] = "--curve-server-cert";
    mesh_curve_t *curve = NULL;
    char *off[] = {program, NULL};
    cr_assert_eq (s_from_args (1, off, true, &curve, why, sizeof why), 0);
    cr_assert_null (curve, "no certificate: CURVE off");
    char *no_server[] = {program, cert, s_secret, NULL};
    cr_assert_eq (s_from_args (3, no_server, true, &curve, why, sizeof why), MESH_EINVAL);
    cr_assert_not_null (strstr (why, "--curve-server-cert"));
    cr_assert_eq (s_from_args (3, no_server, false, &curve, why, sizeof why), 0, "%s", why);
    cr_assert_not_null (curve, "a server needs no server certificate");
    mesh_curve_destroy (&curve);
    char *only_server[] = {program, server_cert, s_public, NULL};
    cr_assert_eq (s_from_args (3, only_server, true, &curve, why, sizeof why), MESH_EINVAL);
    char *both[] = {program, cert, s_secret, server_cert, s_public, NULL};
    cr_assert_eq (s_from_args (5, both, true, &curve, why, sizeof why), 0, "%s", why);
    cr_assert_not_null (curve);
    mesh_curve_destroy (&curve);
}

Test (mesh_curve, applies_client_and_server_options)
{
    char why[256];
    mesh_curve_t *client = mesh_curve_new (s_secret, s_public, why, sizeof why);
    mesh_curve_t *server = mesh_curve_new (s_secret, NULL, why, sizeof why);
    cr_assert (client && server);
    void *context = zmq_ctx_new ();
    void *socket = zmq_socket (context, ZMQ_DEALER);
    cr_assert_eq (mesh_curve_apply_client (NULL, socket), 0, "NULL: plain, nothing to do");
    cr_assert_eq (mesh_curve_apply_client (server, socket), MESH_EINVAL, "no server key");
    cr_assert_eq (mesh_curve_apply_client (client, socket), 0);
    int mechanism = 0;
    size_t size = sizeof mechanism;
    zmq_getsockopt (socket, ZMQ_MECHANISM, &mechanism, &size);
    cr_assert_eq (mechanism, ZMQ_CURVE);
    cr_assert_eq (mesh_curve_connect (client, socket, "not an endpoint"), MESH_EINVAL);
    zmq_close (socket);
    socket = zmq_socket (context, ZMQ_ROUTER);
    cr_assert_eq (mesh_curve_apply_server (server, socket), 0);
    int is_server = 0;
    size = sizeof is_server;
    zmq_getsockopt (socket, ZMQ_CURVE_SERVER, &is_server, &size);
    cr_assert_eq (is_server, 1);
    char domain[32] = "";
    size = sizeof domain;
    zmq_getsockopt (socket, ZMQ_ZAP_DOMAIN, domain, &size);
    cr_assert_str_eq (domain, MESH_CURVE_ZAP_DOMAIN);
    zmq_close (socket);
    zmq_ctx_term (context);
    mesh_curve_destroy (&client);
    mesh_curve_destroy (&server);
}
