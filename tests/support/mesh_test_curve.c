/*  =========================================================================
    mesh_test_curve - CURVE keys and a CURVE broker for tests
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_curve.h"
#include "mesh/mdp.h"
#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

//  --------------------------------------------------------------------------
void
mesh_test_keys_new (mesh_test_keys_t *keys)
{
    memset (keys, 0, sizeof *keys);
    snprintf (keys->dir, sizeof keys->dir, "/tmp/mesh-keys-XXXXXX");
    cr_assert_not_null (mkdtemp (keys->dir), "cannot make a key directory");
    snprintf (keys->keys, sizeof keys->keys, "%s/keys", keys->dir);
    snprintf (keys->allow, sizeof keys->allow, "%s/allow", keys->dir);
    cr_assert_eq (mkdir (keys->keys, 0700), 0);
    cr_assert_eq (mkdir (keys->allow, 0700), 0);
    snprintf (keys->server, sizeof keys->server, "%s/broker.key", keys->keys);
    mesh_test_keys_add (keys, "broker", (mesh_test_grants_t){0}, false);
}

//  --------------------------------------------------------------------------
void
mesh_test_keys_add (mesh_test_keys_t *keys, const char *name, mesh_test_grants_t grants, bool allow)
{
    zcert_t *cert = zcert_new ();
    cr_assert_not_null (cert);
    zcert_set_meta (cert, "name", "%s", name);
    const char *lists[][2] = {{"serve", grants.serve},
                              {"call", grants.call},
                              {"publish", grants.publish},
                              {"subscribe", grants.subscribe}};
    for (size_t index = 0; index < sizeof lists / sizeof lists[0]; index++)
        if (lists[index][1])
            zcert_set_meta (cert, lists[index][0], "%s", lists[index][1]);
    if (grants.delegate)
        zcert_set_meta (cert, "delegate", "yes");
    char path[256];
    snprintf (path, sizeof path, "%s/%s.key", keys->keys, name);
    cr_assert_eq (zcert_save (cert, path), 0, "cannot write %s", path);
    zcert_destroy (&cert);
    if (allow)
        mesh_test_keys_allow (keys, name, true);
}

//  --------------------------------------------------------------------------
void
mesh_test_keys_allow (mesh_test_keys_t *keys, const char *name, bool allowed)
{
    char from[256], to[256];
    snprintf (from, sizeof from, "%s/%s.key", keys->keys, name);
    snprintf (to, sizeof to, "%s/%s.key", keys->allow, name);
    if (!allowed) {
        cr_assert_eq (unlink (to), 0, "cannot remove %s", to);
        return;
    }
    //  Written aside and renamed in: the broker never reads half a file
    char temporary[272];
    snprintf (temporary, sizeof temporary, "%s/.%s.tmp", keys->dir, name);
    zcert_t *cert = zcert_load (from);
    cr_assert_not_null (cert, "cannot read %s", from);
    cr_assert_eq (zcert_save_public (cert, temporary), 0, "cannot write %s", temporary);
    zcert_destroy (&cert);
    cr_assert_eq (rename (temporary, to), 0);
}

//  --------------------------------------------------------------------------
const char *
mesh_test_keys_secret (const mesh_test_keys_t *keys, const char *name, char *buffer, size_t size)
{
    snprintf (buffer, size, "%s/%s.key_secret", keys->keys, name);
    return buffer;
}

//  --------------------------------------------------------------------------
mesh_curve_t *
mesh_test_keys_curve (const mesh_test_keys_t *keys, const char *name)
{
    char secret[256], why[512] = "";
    mesh_curve_t *curve = mesh_curve_new (mesh_test_keys_secret (keys, name, secret, sizeof secret),
                                          keys->server, why, sizeof why);
    cr_assert_not_null (curve, "keys of %s: %s", name, why);
    return curve;
}

//  --------------------------------------------------------------------------
void
mesh_test_keys_flags (const mesh_test_keys_t *keys, const char *name, const char *argv[4],
                      char *buffer, size_t size)
{
    argv[0] = "--curve-cert";
    argv[1] = mesh_test_keys_secret (keys, name, buffer, size);
    argv[2] = "--curve-server-cert";
    argv[3] = keys->server;
}

//  --------------------------------------------------------------------------
void
mesh_test_keys_destroy (mesh_test_keys_t *keys)
{
    if (!*keys->dir)
        return;
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s'", keys->dir);
    if (system (command) != 0)
        fprintf (stderr, "mesh_test: cannot remove %s\n", keys->dir);
    keys->dir[0] = '\0';
}

//  --------------------------------------------------------------------------
bool
mesh_test_curve_broker_start (mesh_test_broker_t *broker, const mesh_test_keys_t *keys,
                              int heartbeat_ms)
{
    char secret[256];
    const char *extra[] = {"--curve-cert",
                           mesh_test_keys_secret (keys, "broker", secret, sizeof secret),
                           "--curve-allow",
                           keys->allow,
                           "--log-level",
                           "info",
                           NULL};
    broker->ready_log = "broker serving";
    return mesh_test_broker_start (broker, heartbeat_ms, extra);
}

//  --------------------------------------------------------------------------
bool
mesh_test_curve_wait_service (const char *endpoint, const mesh_curve_t *curve, const char *service,
                              const char *want, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (mesh_mono_ms () < until) {
        char answer[16] = "";
        if (mesh_test_mmi_curve (endpoint, curve, "mmi.service", service, answer, sizeof answer,
                                 1000) &&
            strcmp (answer, want) == 0)
            return true;
        usleep (20 * 1000); //  Between queries, bounded by until
    }
    return false;
}

//  --------------------------------------------------------------------------
bool
mesh_test_wait_metric (const mesh_test_broker_t *broker, const char *name, const char *labels,
                       double value, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (true) {
        char *text = mesh_test_broker_metrics (broker);
        double now = text ? mesh_test_metric (text, name, labels) : -1;
        free (text);
        if (now >= value)
            return true;
        if (mesh_mono_ms () >= until)
            return false;
        usleep (20 * 1000); //  Polls an observable, bounded by until
    }
}
