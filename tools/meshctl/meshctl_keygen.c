/*  =========================================================================
    meshctl_keygen - `meshctl keygen NAME --may ...`: a CURVE certificate pair
    Writes DIR/NAME.key (public: goes into the broker's allow-list) and
    DIR/NAME.key_secret (stays with its holder) in czmq's zcert format. The
    metadata says who holds it (`name`) and what it may do on the bus
    (`serve`, `call`, `publish`, `subscribe`, `delegate`): the broker reads
    it from the allow-list copy, so a grant changes by replacing the public
    file there. Never overwrites: a key is replaced by rotation, not by
    accident.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_alloc.h"
#include "meshctl.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

//  Grants that take a list, in metadata order.
static const char *const s_kinds[] = {"serve", "call", "publish", "subscribe"};
#define S_KIND_COUNT (sizeof s_kinds / sizeof s_kinds[0])
#define S_GRANT_MAX 1024 //  Bytes of one grant list

//  True for names that make safe file names: [A-Za-z0-9._-], no leading dot.
static bool
s_name_valid (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > 64 || name[0] == '.')
        return false;
    return strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
           len;
}

//  Add one --may to the lists. Returns 0 or MESHCTL_EXIT_USAGE.
static int
s_add_grant (const char *may, char lists[S_KIND_COUNT][S_GRANT_MAX], bool *delegate)
{
    if (strcmp (may, "delegate") == 0) {
        *delegate = true;
        return 0;
    }
    const char *colon = strchr (may, ':');
    for (size_t kind = 0; colon && kind < S_KIND_COUNT; kind++) {
        size_t kind_len = strlen (s_kinds[kind]);
        if ((size_t)(colon - may) != kind_len || strncmp (may, s_kinds[kind], kind_len) != 0)
            continue;
        const char *items = colon + 1;
        if (!*items || strspn (items, " ,") == strlen (items))
            break;
        char *list = lists[kind];
        size_t used = strlen (list);
        //  Commas and spaces are both separators; keep the operator's text
        int wrote = snprintf (list + used, S_GRANT_MAX - used, "%s%s", used ? " " : "", items);
        if (wrote < 0 || (size_t)wrote >= S_GRANT_MAX - used) {
            fprintf (stderr, "meshctl: keygen: --may %s: list too long\n", s_kinds[kind]);
            return MESHCTL_EXIT_USAGE;
        }
        return 0;
    }
    fprintf (stderr,
             "meshctl: keygen: --may %s: expected serve:LIST, call:LIST, publish:PREFIXES, "
             "subscribe:PREFIXES or delegate\n",
             may);
    return MESHCTL_EXIT_USAGE;
}

//  --------------------------------------------------------------------------
//  Run `keygen`.
int
meshctl_keygen (const char *name, const char *dir, const char *const *mays, size_t may_count)
{
    if (!s_name_valid (name)) {
        fprintf (stderr, "meshctl: keygen: NAME must be 1-64 of A-Z a-z 0-9 . _ - "
                         "(not starting with a dot)\n");
        return MESHCTL_EXIT_USAGE;
    }
    char lists[S_KIND_COUNT][S_GRANT_MAX] = {{0}};
    bool delegate = false;
    for (size_t index = 0; index < may_count; index++)
        if (s_add_grant (mays[index], lists, &delegate))
            return MESHCTL_EXIT_USAGE;
    if (!dir || !*dir)
        dir = ".";
    char public_path[PATH_MAX], secret_path[PATH_MAX + 8];
    if (snprintf (public_path, sizeof public_path, "%s/%s.key", dir, name) >=
        (int)sizeof public_path) {
        fprintf (stderr, "meshctl: keygen: --dir too long\n");
        return MESHCTL_EXIT_USAGE;
    }
    snprintf (secret_path, sizeof secret_path, "%s_secret", public_path);
    if (access (public_path, F_OK) == 0 || access (secret_path, F_OK) == 0) {
        fprintf (stderr, "meshctl: keygen: %s or its secret exists; not overwriting\n",
                 public_path);
        return MESHCTL_EXIT_USAGE;
    }
    if (access (dir, W_OK) != 0) {
        fprintf (stderr, "meshctl: keygen: cannot write in %s: %s\n", dir, strerror (errno));
        return MESHCTL_EXIT_FAILURE;
    }
    zcert_t *cert = zcert_new ();
    if (!cert) {
        fprintf (stderr, "meshctl: keygen: cannot make a key pair\n");
        return MESHCTL_EXIT_FAILURE;
    }
    zcert_set_meta (cert, "name", "%s", name);
    for (size_t kind = 0; kind < S_KIND_COUNT; kind++)
        if (*lists[kind])
            zcert_set_meta (cert, s_kinds[kind], "%s", lists[kind]);
    if (delegate)
        zcert_set_meta (cert, "delegate", "yes");
    //  zcert_save writes the secret file with private (0600) permissions
    int rc = zcert_save (cert, public_path);
    zcert_destroy (&cert);
    if (rc != 0) {
        fprintf (stderr, "meshctl: keygen: cannot write %s\n", public_path);
        return MESHCTL_EXIT_FAILURE;
    }
    printf ("%s\n%s\n", public_path, secret_path);
    return MESHCTL_EXIT_OK;
}
