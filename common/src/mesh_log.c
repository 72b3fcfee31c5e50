/*  =========================================================================
    mesh_log - JSON-lines (or text) logger on stderr
    Lines are built with jansson (correct escaping of any bytes) and written
    with a single write(2).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_log.h"
#include "mesh/mesh_err.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  Process-wide settings: written once by main() before threads start.
static struct {
    char svc[64];
    mesh_log_level_t level;
    bool text;
} s_log = { "mesh", MESH_LOG_INFO, false };

static const char *const s_level_names[] = { "debug", "info", "warn", "error" };

//  --------------------------------------------------------------------------
//  Configure the logger.
int
mesh_log_setup (const char *svc, const char *level, const char *format)
{
    int level_index = -1;
    for (int index = 0; index < 4; index++)
        if (level && strcmp (level, s_level_names[index]) == 0)
            level_index = index;
    if (level_index < 0)
        return MESH_EINVAL;
    if (!format || (strcmp (format, "json") != 0 && strcmp (format, "text") != 0))
        return MESH_EINVAL;
    if (svc)
        snprintf (s_log.svc, sizeof s_log.svc, "%s", svc);
    s_log.level = (mesh_log_level_t) level_index;
    s_log.text = strcmp (format, "text") == 0;
    return 0;
}

//  --------------------------------------------------------------------------
//  True when a line at `level` would be written.
bool
mesh_log_enabled (mesh_log_level_t level)
{
    return level >= s_log.level;
}

//  --------------------------------------------------------------------------
//  RFC 3339 UTC timestamp with milliseconds into buf (at least 32 bytes).
static void
s_timestamp (char *buf, size_t size)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r (&now.tv_sec, &tm);
    size_t len = strftime (buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (buf + len, size - len, ".%03ldZ", now.tv_nsec / 1000000);
}

//  --------------------------------------------------------------------------
//  Write `line` plus a newline to stderr in one write(2).
static void
s_write_line (char *line)
{
    size_t len = strlen (line);
    line[len] = '\n';           //  Caller left room for it
    ssize_t written = write (STDERR_FILENO, line, len + 1);
    (void) written;             //  Nowhere to report a failed log write
}

#define S_MAX_PAIRS 32

//  --------------------------------------------------------------------------
//  Emit one line with `msg` and `count` key/value pairs (values may be NULL).
void
mesh_log_pairs (mesh_log_level_t level, const char *msg, const char *const *pairs, size_t count)
{
    if (!mesh_log_enabled (level))
        return;
    char ts[40];
    s_timestamp (ts, sizeof ts);
    char *line = NULL;
    if (s_log.text) {
        //  Text: ts LEVEL svc: msg key=value ...
        size_t size = 0;
        FILE *stream = open_memstream (&line, &size);
        if (!stream)
            return;
        fprintf (stream, "%s %-5s %s: %s", ts, s_level_names[level], s_log.svc, msg);
        for (size_t index = 0; index < count; index++)
            if (pairs[2 * index + 1])
                fprintf (stream, " %s=%s", pairs[2 * index], pairs[2 * index + 1]);
        fputc (' ', stream);    //  Room for the newline s_write_line adds
        fclose (stream);
        line[strlen (line) - 1] = '\0';
    }
    else {
        json_t *object = json_object ();
        json_object_set_new (object, "ts", json_string (ts));
        json_object_set_new (object, "level", json_string (s_level_names[level]));
        json_object_set_new (object, "svc", json_string (s_log.svc));
        //  Invalid UTF-8 (e.g. a peer's bytes) must not lose the line
        json_t *text = json_string (msg);
        json_object_set_new (object, "msg", text? text: json_string ("(message not UTF-8)"));
        for (size_t index = 0; index < count; index++)
            if (pairs[2 * index + 1]) {
                json_t *field = json_string (pairs[2 * index + 1]);
                json_object_set_new (object, pairs[2 * index],
                                     field? field: json_string ("(not UTF-8)"));
            }
        char *json = json_dumps (object, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref (object);
        if (!json)
            return;
        size_t len = strlen (json);
        line = malloc (len + 2);
        if (line)
            memcpy (line, json, len + 1);
        free (json);
    }
    if (line) {
        s_write_line (line);
        free (line);
    }
}

//  --------------------------------------------------------------------------
//  Write one line with key/value pairs.
void
mesh_log_kv (mesh_log_level_t level, const char *msg, ...)
{
    if (!mesh_log_enabled (level))
        return;
    const char *pairs[2 * S_MAX_PAIRS];
    size_t count = 0;
    va_list args;
    va_start (args, msg);
    const char *key;
    while (count < S_MAX_PAIRS && (key = va_arg (args, const char *))) {
        pairs[2 * count] = key;
        pairs[2 * count + 1] = va_arg (args, const char *);
        count++;
    }
    va_end (args);
    mesh_log_pairs (level, msg, pairs, count);
}

//  --------------------------------------------------------------------------
//  printf-style message with no extra fields.
void
mesh_logf (mesh_log_level_t level, const char *format, ...)
{
    if (!mesh_log_enabled (level))
        return;
    char msg[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (msg, sizeof msg, format, args);
    va_end (args);
    mesh_log_pairs (level, msg, NULL, 0);
}
