/*  =========================================================================
    meshctl - the operator's command line for a zmesh
    Calls a service through the broker (JSON in, JSON out), lists the
    broker's services (mmi.services), asks whether one has workers
    (mmi.service) and tails user events. This file reads flags and MESH_*
    variables with mesh_cfg, prints --help (commands and exit statuses) and
    dispatches; each command lives in its own meshctl_*.c file.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "meshctl.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_curve.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const mesh_cfg_option_t s_options[] = {
    { "broker", "MESH_BROKER", "tcp://127.0.0.1:5555", "broker endpoint (call, service[s])" },
    { "events", "MESH_EVENTS_SUB", "tcp://127.0.0.1:5557", "broker event endpoint, XPUB (events)" },
    { "timeout", NULL, NULL, "ms: reply deadline (5000 if unset); events: silence => exit 3" },
    { "id", NULL, NULL, "call: request id (default: a unique one)" },
    { "idem", NULL, NULL, "call: idempotency key (envelope idem)" },
    { "actor", NULL, NULL, "call: who asks (envelope actor; with CURVE the broker checks it)" },
    { "pretty", NULL, "false", "call, services --json: indented JSON (a switch)" },
    { "json", NULL, "false", "services: JSON instead of a table (a switch)" },
    { "count", NULL, NULL, "events: exit 0 after this many (malformed ones not counted)" },
    { "dir", NULL, ".", "keygen: directory the certificate pair is written to" },
    MESH_CFG_CURVE_OPTIONS,
    { "scopes", NULL, NULL, "apikey, token: comma list of users:read, users:write, audit:read, events:read" },
    { "key-file", NULL, NULL, "token: HS256 secret file, or RSA / EC P-256 private key (PEM)" },
    { "ttl", NULL, "3600", "token: seconds until it expires" },
    { "issuer", NULL, NULL, "token: its iss claim" },
    { "audience", NULL, NULL, "token: its aud claim" },
    { "log-level", "MESH_LOG_LEVEL", "warn", "debug, info, warn or error" },
    { "log-format", "MESH_LOG_FORMAT", "text", "text, or json (one object per line)" },
};
#define S_OPTION_COUNT (sizeof s_options / sizeof s_options[0])

//  Options that are switches: a bare --pretty means --pretty=true.
static const char *const s_switches[] = { "pretty", "json" };
static char s_pretty_on[] = "--pretty=true";
static char s_json_on[] = "--json=true";
static char *const s_switches_on[] = { s_pretty_on, s_json_on };

static const char s_summary[] =
    "Operate a zmesh from the shell.\n"
    "\n"
    "commands:\n"
    "  call SERVICE METHOD JSON  send one request and print the reply body as one JSON\n"
    "                            line; JSON \"-\" reads the body from stdin\n"
    "  services                  list services: workers, idle credit, queued, in flight\n"
    "                            (the broker's mmi.services)\n"
    "  service NAME              ask whether NAME has workers (mmi.service): 200 or 404\n"
    "  events [TOPIC-PREFIX]     print each event as one JSON line {\"topic\",\"event\"}\n"
    "                            until Ctrl-C, --count events or --timeout of silence\n"
    "  keygen NAME --may GRANT   write DIR/NAME.key (public) and DIR/NAME.key_secret, a\n"
    "                            CURVE certificate pair (--dir, default .); GRANT, repeated:\n"
    "                            serve:SERVICES call:SERVICES publish:PREFIXES\n"
    "                            subscribe:PREFIXES delegate (lists: commas or spaces)\n"
    "  apikey NAME --scopes S,S  a new API key for mesh-gateway: line 1 the key (shown\n"
    "                            once), line 2 its line for MESH_GATEWAY_API_KEYS_FILE\n"
    "  token SUBJECT --key-file F  a JWT for mesh-gateway (HS256 secret, or RS256/ES256\n"
    "                            private key), --scopes, --ttl, --issuer, --audience\n"
    "\n"
    "examples:\n"
    "  meshctl call user user.get '{\"id\":\"0b6f...\"}' --pretty\n"
    "  meshctl call user user.delete '{\"id\":\"0b6f...\"}' --actor ops-alice\n"
    "  meshctl events user. --count 10\n"
    "  meshctl keygen gateway --may call:user,audit --may subscribe:user. --may delegate";

//  --------------------------------------------------------------------------
//  Print the exit statuses, part of --help.
static void
s_print_exit_codes (FILE *stream)
{
    fprintf (stream,
             "\nexit status:\n"
             "  0   success\n"
             "  1   service NAME: the broker answered 404 (no worker)\n"
             "  2   usage: bad option, command or JSON argument\n"
             "  3   timeout: no broker reply (services, service), or no event within\n"
             "      --timeout (events)\n"
             "  4   failure: socket error, or a reply or event meshctl cannot read\n"
             "  10+ call: the service replied with an error (its JSON is on stderr);\n"
             "      no reply before --timeout is deadline_exceeded\n");
    for (int code = MESH_CODE_INVALID_ARGUMENT; code < MESH_CODE_COUNT_; code++)
        fprintf (stream, "  %-3d %s\n", MESHCTL_EXIT_MESH_BASE + code,
                 mesh_code_name ((mesh_code_t) code));
}

//  What the command line holds besides what mesh_cfg reads.
typedef struct {
    char **args;                //  argv without --may, switches expanded; owned array
    int count;                  //  Entries in args
    const char **mays;          //  Values of --may (keygen grants, repeatable); owned array
    size_t may_count;           //  Entries in mays
} s_argv_t;

//  Copy argv, turning a bare switch (--pretty) into --pretty=true so that
//  mesh_cfg, whose options all take values, reads it without eating the
//  next argument, and taking out every --may (mesh_cfg keeps one value per
//  option; keygen takes many). Strings are static or argv's.
static void
s_expand_switches (int argc, char **argv, s_argv_t *out)
{
    out->args = mesh_alloc ((size_t) (argc + 1) * sizeof (char *));
    out->mays = mesh_alloc ((size_t) (argc + 1) * sizeof (char *));
    out->count = 0;
    out->may_count = 0;
    bool flags_done = false;
    for (int arg = 0; arg < argc; arg++) {
        char *text = argv[arg];
        if (arg > 0 && !flags_done) {
            if (strcmp (text, "--may") == 0 && arg + 1 < argc) {
                out->mays[out->may_count++] = argv[++arg];
                continue;
            }
            if (strncmp (text, "--may=", 6) == 0) {
                out->mays[out->may_count++] = text + 6;
                continue;
            }
            if (strcmp (text, "--") == 0)
                flags_done = true;
            for (size_t index = 0; index < sizeof s_switches / sizeof s_switches[0]; index++)
                if (strncmp (text, "--", 2) == 0 && strcmp (text + 2, s_switches[index]) == 0)
                    text = s_switches_on[index];
        }
        out->args[out->count++] = text;
    }
}

//  --------------------------------------------------------------------------
//  Read switch `name` into *value. Returns 0, or MESHCTL_EXIT_USAGE.
static int
s_get_switch (const mesh_cfg_t *cfg, const char *name, bool *value)
{
    const char *text = mesh_cfg_get (cfg, name);
    if (!text || strcmp (text, "false") == 0 || strcmp (text, "0") == 0)
        *value = false;
    else
    if (strcmp (text, "true") == 0 || strcmp (text, "1") == 0)
        *value = true;
    else {
        fprintf (stderr, "meshctl: --%s takes no value, or true or false, not \"%s\"\n", name,
                 text);
        return MESHCTL_EXIT_USAGE;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Fill *opts from the parsed configuration. Returns 0 or MESHCTL_EXIT_USAGE.
static int
s_read_opts (mesh_cfg_t *cfg, meshctl_opts_t *opts)
{
    memset (opts, 0, sizeof *opts);
    opts->broker = mesh_cfg_get (cfg, "broker");
    opts->events = mesh_cfg_get (cfg, "events");
    opts->id = mesh_cfg_get (cfg, "id");
    opts->idem = mesh_cfg_get (cfg, "idem");
    opts->actor = mesh_cfg_get (cfg, "actor");
    opts->timeout_ms = -1;
    long number;
    if (mesh_cfg_get (cfg, "timeout")) {
        if (mesh_cfg_get_long (cfg, "timeout", 1, INT_MAX, &number))
            goto usage;
        opts->timeout_ms = (int) number;
    }
    if (mesh_cfg_get (cfg, "count")) {
        if (mesh_cfg_get_long (cfg, "count", 1, LONG_MAX, &number))
            goto usage;
        opts->count = number;
    }
    if (!opts->broker || !*opts->broker || !opts->events || !*opts->events) {
        fprintf (stderr, "meshctl: --broker and --events must not be empty\n");
        return MESHCTL_EXIT_USAGE;
    }
    if (s_get_switch (cfg, "pretty", &opts->pretty) || s_get_switch (cfg, "json", &opts->json))
        return MESHCTL_EXIT_USAGE;
    return 0;
usage:
    fprintf (stderr, "meshctl: %s\n", mesh_cfg_error (cfg));
    return MESHCTL_EXIT_USAGE;
}

//  --------------------------------------------------------------------------
//  Complain about the command line and return the usage status.
static int
s_usage (const char *message, const char *detail)
{
    fprintf (stderr, "meshctl: %s%s (see meshctl --help)\n", message, detail? detail: "");
    return MESHCTL_EXIT_USAGE;
}

//  --------------------------------------------------------------------------
//  Run one of the commands that talk to the broker.
static int
s_command (mesh_cfg_t *cfg, const meshctl_opts_t *opts, const char *command, size_t args)
{
    if (strcmp (command, "call") == 0) {
        if (args != 4)
            return s_usage ("usage: meshctl call SERVICE METHOD JSON", NULL);
        return meshctl_call (opts, mesh_cfg_arg (cfg, 1), mesh_cfg_arg (cfg, 2),
                             mesh_cfg_arg (cfg, 3));
    }
    if (strcmp (command, "services") == 0) {
        if (args != 1)
            return s_usage ("usage: meshctl services", NULL);
        return meshctl_services (opts);
    }
    if (strcmp (command, "service") == 0) {
        if (args != 2)
            return s_usage ("usage: meshctl service NAME", NULL);
        return meshctl_service (opts, mesh_cfg_arg (cfg, 1));
    }
    if (strcmp (command, "events") == 0) {
        if (args > 2)
            return s_usage ("usage: meshctl events [TOPIC-PREFIX]", NULL);
        return meshctl_events (opts, args == 2? mesh_cfg_arg (cfg, 1): "");
    }
    return s_usage ("unknown command: ", command);
}

//  --------------------------------------------------------------------------
//  Run the command named by the first positional argument.
static int
s_run (mesh_cfg_t *cfg, const s_argv_t *argv)
{
    if (mesh_log_setup ("meshctl", mesh_cfg_get (cfg, "log-level"),
                        mesh_cfg_get (cfg, "log-format")))
        return s_usage ("bad --log-level or --log-format", NULL);
    meshctl_opts_t opts;
    int rc = s_read_opts (cfg, &opts);
    if (rc)
        return rc;
    size_t args = mesh_cfg_argc (cfg);
    const char *command = mesh_cfg_arg (cfg, 0);
    if (!command)
        return s_usage ("no command: call, services, service, events, keygen, apikey or token",
                        NULL);
    if (strcmp (command, "keygen") == 0) {
        if (args != 2)
            return s_usage ("usage: meshctl keygen NAME [--may GRANT]... [--dir DIR]", NULL);
        return meshctl_keygen (mesh_cfg_arg (cfg, 1), mesh_cfg_get (cfg, "dir"), argv->mays,
                               argv->may_count);
    }
    if (strcmp (command, "apikey") == 0) {
        if (args != 2)
            return s_usage ("usage: meshctl apikey NAME --scopes SCOPE[,SCOPE...]", NULL);
        return meshctl_apikey (mesh_cfg_arg (cfg, 1), mesh_cfg_get (cfg, "scopes"));
    }
    if (strcmp (command, "token") == 0) {
        long ttl_s = 0;
        if (args != 2 || mesh_cfg_get_long (cfg, "ttl", 1, 10L * 365 * 86400, &ttl_s))
            return s_usage ("usage: meshctl token SUBJECT --key-file FILE [--scopes S,S] "
                            "[--ttl SECONDS]",
                            NULL);
        return meshctl_token (mesh_cfg_arg (cfg, 1), mesh_cfg_get (cfg, "scopes"),
                              mesh_cfg_get (cfg, "key-file"), ttl_s, mesh_cfg_get (cfg, "issuer"),
                              mesh_cfg_get (cfg, "audience"));
    }
    if (argv->may_count)
        return s_usage ("--may is for keygen", NULL);
    mesh_curve_t *curve = NULL;
    char why[512];
    if (mesh_curve_from_cfg (cfg, true, &curve, why, sizeof why))
        return s_usage (why, NULL);
    opts.curve = curve;
    rc = s_command (cfg, &opts, command, args);
    mesh_curve_destroy (&curve);
    return rc;
}

//  --------------------------------------------------------------------------
//  Reply timeout: --timeout, or the client's default.
int
meshctl_reply_timeout_ms (const meshctl_opts_t *opts)
{
    return opts->timeout_ms > 0? opts->timeout_ms: 5000;
}

//  --------------------------------------------------------------------------
//  Write one JSON value as a line and flush.
int
meshctl_print_json (FILE *stream, const json_t *value, bool pretty)
{
    size_t flags = JSON_ENCODE_ANY | (pretty? JSON_INDENT (2): JSON_COMPACT);
    char *text = json_dumps (value, flags);
    if (!text)
        return -1;
    int rc = fprintf (stream, "%s\n", text) < 0 || fflush (stream) != 0? -1: 0;
    free (text);
    return rc;
}

//  --------------------------------------------------------------------------
//  A JSON string of outside bytes, made printable when they are not UTF-8.
json_t *
meshctl_json_text (const char *text, size_t len)
{
    json_t *string = json_stringn (len? text: "", len);
    if (string)
        return string;
    char *copy = mesh_alloc (len + 1);
    for (size_t index = 0; index < len; index++) {
        unsigned char byte = (unsigned char) text[index];
        copy[index] = byte >= 0x20 && byte < 0x7F? (char) byte: '?';
    }
    string = json_stringn (copy, len);
    free (copy);
    return string;
}

//  --------------------------------------------------------------------------
//  Entry point: parse, then help, version or a command.
int
main (int argc, char **argv)
{
    s_argv_t expanded;
    s_expand_switches (argc, argv, &expanded);
    mesh_cfg_t *cfg = mesh_cfg_new ("meshctl", "[options] COMMAND [ARGS]", s_summary, s_options,
                                    S_OPTION_COUNT);
    int status;
    int rc = mesh_cfg_parse (cfg, expanded.count, expanded.args);
    if (rc == MESH_CFG_HELP) {
        mesh_cfg_print_help (cfg, stdout);
        s_print_exit_codes (stdout);
        status = MESHCTL_EXIT_OK;
    }
    else
    if (rc == MESH_CFG_VERSION) {
        printf ("meshctl %s\n", MESH_VERSION);
        status = MESHCTL_EXIT_OK;
    }
    else
    if (rc) {
        fprintf (stderr, "meshctl: %s\n", mesh_cfg_error (cfg));
        status = MESHCTL_EXIT_USAGE;
    }
    else
        status = s_run (cfg, &expanded);
    mesh_cfg_destroy (&cfg);
    free (expanded.args);
    free (expanded.mays);
    return status;
}
