/*  =========================================================================
    mesh_log - JSON-lines (or text) logger on stderr
    One line per event: {"ts","level","svc","msg", then key/value pairs such as
    request_id and trace_id}. Each line is one write(2), so lines from several
    threads or processes sharing stderr never interleave. The settings are
    process-wide and written once by main() through mesh_log_setup before any
    thread starts; afterwards they are only read, so logging is thread-safe.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_LOG_H_INCLUDED
#define MESH_LOG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    MESH_LOG_DEBUG = 0,
    MESH_LOG_INFO,
    MESH_LOG_WARN,
    MESH_LOG_ERROR,
} mesh_log_level_t;

//  Configure the logger: service name (copied, at most 63 bytes kept), level
//  name ("debug", "info", "warn", "error") and format ("json" or "text").
//  Returns 0 or MESH_EINVAL for an unknown level or format. Call from main()
//  only, before starting threads.
int
    mesh_log_setup (const char *svc, const char *level, const char *format);

//  True when a line at `level` would be written (skip costly formatting).
bool
    mesh_log_enabled (mesh_log_level_t level);

//  Write one line: `msg`, then NULL-terminated pairs of const char * key and
//  value ("request_id", id, NULL). A NULL value skips its key. Values are
//  escaped as JSON strings; keys must be plain identifiers.
void
    mesh_log_kv (mesh_log_level_t level, const char *msg, ...);

//  Same with `count` pairs from an array: pairs[2i] key, pairs[2i+1] value.
void
    mesh_log_pairs (mesh_log_level_t level, const char *msg, const char *const *pairs,
                    size_t count);

//  printf-style message with no extra fields.
void
    mesh_logf (mesh_log_level_t level, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

#define mesh_log_debug(...) mesh_logf (MESH_LOG_DEBUG, __VA_ARGS__)
#define mesh_log_info(...)  mesh_logf (MESH_LOG_INFO, __VA_ARGS__)
#define mesh_log_warn(...)  mesh_logf (MESH_LOG_WARN, __VA_ARGS__)
#define mesh_log_error(...) mesh_logf (MESH_LOG_ERROR, __VA_ARGS__)

#endif
