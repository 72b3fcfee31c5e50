/*  =========================================================================
    mesh_cfg - settings from flags and MESH_* environment variables
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mesh_cfg_s {
    const char *program;                //  Name for messages
    const char *usage;                  //  Usage line tail
    const char *summary;                //  One paragraph for --help
    const mesh_cfg_option_t *options;   //  Borrowed table
    size_t count;                       //  Entries in the table
    const char **values;                //  Value in force per option, borrowed
    const char **positional;            //  Non-flag arguments, borrowed from argv
    size_t positional_count;            //  Entries in positional
    char error[256];                    //  Why the last parse failed
};

//  --------------------------------------------------------------------------
//  Create a configuration over an option table.
mesh_cfg_t *
mesh_cfg_new (const char *program, const char *usage, const char *summary,
              const mesh_cfg_option_t *options, size_t count)
{
    assert (program);
    assert (options || count == 0);
    mesh_cfg_t *self = mesh_alloc (sizeof (mesh_cfg_t));
    self->program = program;
    self->usage = usage? usage: "[options]";
    self->summary = summary? summary: "";
    self->options = options;
    self->count = count;
    self->values = mesh_alloc ((count + 1) * sizeof (char *));
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
mesh_cfg_destroy (mesh_cfg_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mesh_cfg_t *self = *self_p;
        free (self->values);
        free (self->positional);
        free (self);
        *self_p = NULL;
    }
}

//  Index of option `name` (name_len bytes), or -1.
static int
s_find (const mesh_cfg_t *self, const char *name, size_t name_len)
{
    for (size_t index = 0; index < self->count; index++)
        if (strlen (self->options[index].name) == name_len
            && memcmp (self->options[index].name, name, name_len) == 0)
            return (int) index;
    return -1;
}

//  --------------------------------------------------------------------------
//  Read argv and the environment.
int
mesh_cfg_parse (mesh_cfg_t *self, int argc, char **argv)
{
    assert (self);
    self->error[0] = '\0';
    for (size_t index = 0; index < self->count; index++) {
        const mesh_cfg_option_t *option = &self->options[index];
        const char *env = option->env? getenv (option->env): NULL;
        self->values[index] = env? env: option->fallback;
    }
    free (self->positional);
    self->positional = mesh_alloc ((size_t) (argc > 0? argc: 1) * sizeof (char *));
    self->positional_count = 0;
    bool flags_done = false;
    for (int arg = 1; arg < argc; arg++) {
        const char *text = argv[arg];
        if (flags_done || strncmp (text, "--", 2) != 0 || text[2] == '\0') {
            if (!flags_done && strcmp (text, "--") == 0) {
                flags_done = true;
                continue;
            }
            self->positional[self->positional_count++] = text;
            continue;
        }
        const char *name = text + 2;
        if (strcmp (name, "help") == 0)
            return MESH_CFG_HELP;
        if (strcmp (name, "version") == 0)
            return MESH_CFG_VERSION;
        const char *equals = strchr (name, '=');
        size_t name_len = equals? (size_t) (equals - name): strlen (name);
        int option = s_find (self, name, name_len);
        if (option < 0) {
            snprintf (self->error, sizeof self->error, "unknown option --%.*s (see --help)",
                      (int) name_len, name);
            return MESH_EINVAL;
        }
        if (equals)
            self->values[option] = equals + 1;
        else
        if (arg + 1 < argc)
            self->values[option] = argv[++arg];
        else {
            snprintf (self->error, sizeof self->error, "option --%s needs a value", name);
            return MESH_EINVAL;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Why the last parse failed.
const char *
mesh_cfg_error (const mesh_cfg_t *self)
{
    assert (self);
    return self->error;
}

//  --------------------------------------------------------------------------
//  Value in force for option `name`.
const char *
mesh_cfg_get (const mesh_cfg_t *self, const char *name)
{
    assert (self);
    assert (name);
    int option = s_find (self, name, strlen (name));
    assert (option >= 0);       //  Asking for an undeclared option is a bug
    return self->values[option];
}

//  --------------------------------------------------------------------------
//  Value of `name` as an integer in [min, max].
int
mesh_cfg_get_long (mesh_cfg_t *self, const char *name, long min, long max, long *value)
{
    assert (self);
    assert (value);
    const char *text = mesh_cfg_get (self, name);
    if (!text || !*text) {
        snprintf (self->error, sizeof self->error, "--%s is required", name);
        return MESH_EINVAL;
    }
    errno = 0;
    char *end = NULL;
    long number = strtol (text, &end, 10);
    if (errno || *end != '\0' || number < min || number > max) {
        snprintf (self->error, sizeof self->error,
                  "--%s must be an integer from %ld to %ld, not \"%s\"", name, min, max, text);
        return MESH_EINVAL;
    }
    *value = number;
    return 0;
}

//  --------------------------------------------------------------------------
//  Positional arguments.
size_t
mesh_cfg_argc (const mesh_cfg_t *self)
{
    assert (self);
    return self->positional_count;
}

const char *
mesh_cfg_arg (const mesh_cfg_t *self, size_t index)
{
    assert (self);
    return index < self->positional_count? self->positional[index]: NULL;
}

//  True for settings whose value is never printed or logged: the password
//  inside DATABASE_URL, the API keys OTLP headers usually carry.
static bool
s_secret (const mesh_cfg_option_t *option)
{
    static const char *const secrets[] = {"DATABASE_URL", "OTEL_EXPORTER_OTLP_HEADERS",
                                          "OTEL_EXPORTER_OTLP_TRACES_HEADERS"};
    for (size_t index = 0; option->env && index < sizeof secrets / sizeof secrets[0]; index++)
        if (strcmp (option->env, secrets[index]) == 0)
            return true;
    return false;
}

//  --------------------------------------------------------------------------
//  Print usage, summary and every option.
void
mesh_cfg_print_help (const mesh_cfg_t *self, FILE *stream)
{
    assert (self);
    fprintf (stream, "usage: %s %s\n\n%s\n\noptions (flags win over environment):\n",
             self->program, self->usage, self->summary);
    for (size_t index = 0; index < self->count; index++) {
        const mesh_cfg_option_t *option = &self->options[index];
        fprintf (stream, "  --%-22s %s\n", option->name, option->help);
        fprintf (stream, "  %-24s env %s, default %s, now %s\n", "",
                 option->env? option->env: "(none)",
                 option->fallback? option->fallback: "(none)",
                 !self->values[index]? "(unset)"
                 : s_secret (option) && *self->values[index]? "(set)"
                                                             : self->values[index]);
    }
    fprintf (stream, "  --%-22s %s\n  --%-22s %s\n", "help", "print this help and exit",
             "version", "print the version and exit");
}

//  --------------------------------------------------------------------------
//  Answer --help or --version.
bool
mesh_cfg_answer_builtin (const mesh_cfg_t *self, int rc, FILE *stream)
{
    assert (self);
    if (rc == MESH_CFG_HELP)
        mesh_cfg_print_help (self, stream);
    else
    if (rc == MESH_CFG_VERSION)
        fprintf (stream, "%s %s\n", self->program, MESH_VERSION);
    return rc == MESH_CFG_HELP || rc == MESH_CFG_VERSION;
}

//  --------------------------------------------------------------------------
//  Log the settings in force, one line.
void
mesh_cfg_log (const mesh_cfg_t *self)
{
    assert (self);
    const char **pairs = mesh_alloc (2 * (self->count + 1) * sizeof (char *));
    for (size_t index = 0; index < self->count; index++) {
        const char *value = self->values[index];
        bool secret = s_secret (&self->options[index]);
        pairs[2 * index] = self->options[index].name;
        pairs[2 * index + 1] = secret && value && *value? "(set)": value? value: "(unset)";
    }
    mesh_log_pairs (MESH_LOG_INFO, "settings", pairs, self->count);
    free (pairs);
}
