/*  =========================================================================
    mesh_cfg - settings from flags and MESH_* environment variables
    Each program declares a table of options; a value comes from its flag
    (--name=value or --name value) when given, else from its environment
    variable, else from the default. --help prints every option with its
    variable, default and the value in force; --version prints the version.
    Arguments that are not flags are kept, in order, as positional arguments.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_CFG_H_INCLUDED
#define MESH_CFG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    const char *name;           //  Flag name without dashes ("bind")
    const char *env;            //  Environment variable, or NULL
    const char *fallback;       //  Default value, or NULL for "required/none"
    const char *help;           //  One line for --help
} mesh_cfg_option_t;

//  The options every process has: log level and log format.
#define MESH_CFG_LOG_OPTIONS                                                              \
    { "log-level", "MESH_LOG_LEVEL", "info", "debug, info, warn or error" },              \
    { "log-format", "MESH_LOG_FORMAT", "json", "json (one object per line) or text" }

typedef struct mesh_cfg_s mesh_cfg_t;

//  Outcomes of mesh_cfg_parse besides 0 and MESH_EINVAL.
enum { MESH_CFG_HELP = 1, MESH_CFG_VERSION = 2 };

//  Create a configuration for `program` over `options` (borrowed: the table
//  must outlive the cfg; usually static const). `usage` is the line after
//  "usage: program" in --help, e.g. "[options] SERVICE METHOD JSON".
mesh_cfg_t *
    mesh_cfg_new (const char *program, const char *usage, const char *summary,
                  const mesh_cfg_option_t *options, size_t count);

//  Destroy; nulls the caller's pointer.
void
    mesh_cfg_destroy (mesh_cfg_t **self_p);

//  Read argv and the environment. Returns 0, MESH_CFG_HELP or
//  MESH_CFG_VERSION (caller prints mesh_cfg_print_help or the version and
//  exits 0), or MESH_EINVAL with mesh_cfg_error() telling why.
int
    mesh_cfg_parse (mesh_cfg_t *self, int argc, char **argv);

//  Why the last parse failed. Borrowed; valid until the next parse.
const char *
    mesh_cfg_error (const mesh_cfg_t *self);

//  Value in force for option `name`, or NULL when unset with no default.
//  Borrowed: valid while the cfg lives. Asserts that `name` is declared.
const char *
    mesh_cfg_get (const mesh_cfg_t *self, const char *name);

//  Value of `name` as an integer in [min, max]. Returns 0, or MESH_EINVAL
//  (with mesh_cfg_error set) when it is not a decimal integer in range.
int
    mesh_cfg_get_long (mesh_cfg_t *self, const char *name, long min, long max, long *value);

//  Positional arguments (not flags), in order. Borrowed from argv.
size_t
    mesh_cfg_argc (const mesh_cfg_t *self);
const char *
    mesh_cfg_arg (const mesh_cfg_t *self, size_t index);

//  Print usage, summary and every option (flag, variable, default, value).
void
    mesh_cfg_print_help (const mesh_cfg_t *self, FILE *stream);

//  Answer --help or --version: when `rc` (from mesh_cfg_parse) is
//  MESH_CFG_HELP or MESH_CFG_VERSION, print the help or "PROGRAM VERSION" on
//  `stream` and return true (the caller exits 0); otherwise return false.
bool
    mesh_cfg_answer_builtin (const mesh_cfg_t *self, int rc, FILE *stream);

//  Print the settings in force as one JSON log line at info level.
void
    mesh_cfg_log (const mesh_cfg_t *self);

#endif
