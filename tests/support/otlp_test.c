/*  =========================================================================
    otlp_test - a stand-in OTLP/HTTP collector for tests, and its spans
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "otlp_test.h"

#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
void
otlp_test_start (otlp_test_t *self, int status)
{
    memset (self, 0, sizeof *self);
    self->port = mesh_test_free_port ();
    snprintf (self->file, sizeof self->file, "/tmp/otlp-test-%d-%d.jsonl", (int)getpid (),
              self->port);
    unlink (self->file);
    snprintf (self->endpoint, sizeof self->endpoint, "http://127.0.0.1:%d", self->port);
    char port[16], answer[16];
    snprintf (port, sizeof port, "%d", self->port);
    snprintf (answer, sizeof answer, "%d", status);
    const char *argv[] = {"/usr/bin/python3",
                          MESH_SOURCE_DIR "/tests/support/otlp_receiver.py",
                          port,
                          self->file,
                          answer,
                          NULL};
    self->proc = mesh_proc_start (argv, NULL);
    cr_assert_not_null (self->proc, "the OTLP receiver does not start");
    cr_assert (mesh_proc_wait_log (self->proc, "listening on", 10000),
               "the OTLP receiver is not listening");
}

//  --------------------------------------------------------------------------
void
otlp_test_stop (otlp_test_t *self)
{
    if (self->proc) {
        mesh_proc_signal (self->proc, SIGTERM);
        int status;
        mesh_proc_wait_exit (self->proc, 5000, &status);
        mesh_proc_destroy (&self->proc);
    }
    if (self->file[0])
        unlink (self->file);
}

//  --------------------------------------------------------------------------
json_t *
otlp_test_spans (otlp_test_t *self)
{
    json_t *spans = json_array ();
    FILE *file = fopen (self->file, "r");
    if (!file)
        return spans;
    char *line = NULL;
    size_t size = 0;
    while (getline (&line, &size, file) > 0) {
        //  The receiver writes whole lines; a line without its end is
        //  still being written and is read next time
        size_t len = strlen (line);
        if (len == 0 || line[len - 1] != '\n')
            break;
        json_error_t error;
        json_t *span = json_loads (line, 0, &error);
        cr_assert_not_null (span, "receiver line: %s", error.text);
        cr_assert_null (json_object_get (span, "error"), "the receiver refused a body: %s", line);
        json_array_append_new (spans, span);
    }
    free (line);
    fclose (file);
    return spans;
}

//  --------------------------------------------------------------------------
json_t *
otlp_test_wait (otlp_test_t *self, const char *trace_id, size_t count, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (true) {
        json_t *spans = otlp_test_spans (self);
        json_t *matching = json_array ();
        size_t index;
        json_t *span;
        json_array_foreach (spans, index, span)
        {
            const char *id = json_string_value (json_object_get (span, "traceId"));
            if (!trace_id || (id && strcmp (id, trace_id) == 0))
                json_array_append (matching, span);
        }
        json_decref (spans);
        if (json_array_size (matching) >= count)
            return matching;
        json_decref (matching);
        if (mesh_mono_ms () >= until)
            return NULL;
        //  Polling a file the receiver appends to: no event to wait on
        usleep (20 * 1000);
    }
}

//  --------------------------------------------------------------------------
json_t *
otlp_test_wait_spans (otlp_test_t *self, const char *trace_id, const char *const *wanted,
                      int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (true) {
        json_t *spans = otlp_test_wait (self, trace_id, 1, 0);
        bool all = spans != NULL;
        for (size_t index = 0; all && wanted[index]; index += 2)
            all = otlp_test_find (spans, wanted[index], wanted[index + 1]) != NULL;
        if (all)
            return spans;
        json_decref (spans);
        if (mesh_mono_ms () >= until)
            return NULL;
        usleep (20 * 1000);
    }
}

//  --------------------------------------------------------------------------
json_t *
otlp_test_find (json_t *spans, const char *service, const char *name)
{
    size_t index;
    json_t *span;
    json_array_foreach (spans, index, span)
    {
        const char *span_name = json_string_value (json_object_get (span, "name"));
        const char *span_service = json_string_value (json_object_get (span, "service"));
        if (span_name && strcmp (span_name, name) == 0 &&
            (!service || (span_service && strcmp (span_service, service) == 0)))
            return span;
    }
    return NULL;
}

//  --------------------------------------------------------------------------
const char *
otlp_test_attr (json_t *span, const char *key)
{
    size_t index;
    json_t *attr;
    json_array_foreach (json_object_get (span, "attributes"), index, attr)
    {
        const char *name = json_string_value (json_object_get (attr, "key"));
        if (name && strcmp (name, key) == 0) {
            json_t *value = json_object_get (attr, "value");
            const char *text = json_string_value (json_object_get (value, "stringValue"));
            return text ? text : json_string_value (json_object_get (value, "intValue"));
        }
    }
    return NULL;
}

//  Value of `name` in a NULL-terminated name, value array.
static const char *
s_lookup (void *arg, const char *name)
{
    const char *const *env = (const char *const *)arg;
    for (size_t index = 0; env && env[index]; index += 2)
        if (strcmp (env[index], name) == 0)
            return env[index + 1];
    return NULL;
}

//  --------------------------------------------------------------------------
int
otlp_test_config_read (const char *const *env, mesh_trace_config_t *config, char *error,
                       size_t error_size)
{
    return mesh_trace_config_read (config, "mesh-test", s_lookup, (void *)env, error, error_size);
}
