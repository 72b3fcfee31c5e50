/*  =========================================================================
    mesh_tracer - spans of one process and their OTLP/HTTP exporter
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_tracer.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_random.h"

#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mesh_tracer_s {
    mesh_trace_config_t config;
    pthread_mutex_t lock;       //  Guards everything below up to `stop`
    pthread_cond_t wake;        //  Signalled on a full batch and on stop
    mesh_span_record_t **queue; //  Ring of config.queue_size spans
    size_t head;                //  Oldest queued span
    size_t count;               //  Spans queued
    bool stop;                  //  Destroy asked the thread to finish
    mesh_random_t random;       //  Trace and span ids
    pthread_t thread;
    struct curl_slist *headers; //  Content-Type and OTEL_EXPORTER_OTLP_HEADERS
    mesh_counter_t *exported;
    mesh_counter_t *dropped_queue;
    mesh_counter_t *dropped_export;
};

//  --------------------------------------------------------------------------
uint64_t
mesh_trace_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

//  Discard what curl returns (the collector's ExportTraceServiceResponse).
static size_t
s_discard (char *data, size_t size, size_t count, void *unused)
{
    (void)data;
    (void)unused;
    return size * count;
}

//  POST one batch. Returns 0 when the collector answered 2xx.
static int
s_post (mesh_tracer_t *self, CURL *curl, mesh_span_record_t **batch, size_t count)
{
    char *body =
        mesh_trace_encode_json (&self->config, (const mesh_span_record_t *const *)batch, count);
    curl_easy_setopt (curl, CURLOPT_URL, self->config.endpoint);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, self->headers);
    curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE, (long)strlen (body));
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, (long)self->config.timeout_ms);
    curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, (long)self->config.timeout_ms);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_discard);
    long status = 0;
    CURLcode rc = curl_easy_perform (curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    free (body);
    return rc == CURLE_OK && status >= 200 && status < 300 ? 0 : MESH_EIO;
}

//  The exporter thread: wait for a full batch or the delay, export, repeat;
//  on stop, export what is left once.
static void *
s_exporter (void *arg)
{
    mesh_tracer_t *self = (mesh_tracer_t *)arg;
    CURL *curl = curl_easy_init ();
    mesh_span_record_t **batch = mesh_alloc (self->config.batch_size * sizeof *batch);
    pthread_mutex_lock (&self->lock);
    while (true) {
        if (!self->stop && self->count < self->config.batch_size) {
            struct timespec until;
            clock_gettime (CLOCK_MONOTONIC, &until);
            until.tv_sec += self->config.delay_ms / 1000;
            until.tv_nsec += (long)(self->config.delay_ms % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            while (!self->stop && self->count < self->config.batch_size) {
                if (pthread_cond_timedwait (&self->wake, &self->lock, &until) == ETIMEDOUT)
                    break;
            }
        }
        bool stopping = self->stop;
        size_t taken = 0;
        while (taken < self->config.batch_size && self->count) {
            batch[taken++] = self->queue[self->head];
            self->head = (self->head + 1) % self->config.queue_size;
            self->count--;
        }
        bool more = self->count > 0;
        pthread_mutex_unlock (&self->lock);
        if (taken) {
            int rc = curl ? s_post (self, curl, batch, taken) : MESH_EIO;
            mesh_counter_add (rc == 0 ? self->exported : self->dropped_export, taken);
            for (size_t index = 0; index < taken; index++)
                free (batch[index]);
        }
        pthread_mutex_lock (&self->lock);
        //  On stop, one pass over what was queued, then done
        if (stopping && !more)
            break;
    }
    //  Spans ended after the last pass are dropped, and counted
    while (self->count) {
        free (self->queue[self->head]);
        self->head = (self->head + 1) % self->config.queue_size;
        self->count--;
        mesh_counter_inc (self->dropped_export);
    }
    pthread_mutex_unlock (&self->lock);
    free (batch);
    curl_easy_cleanup (curl);
    return NULL;
}

//  --------------------------------------------------------------------------
mesh_tracer_t *
mesh_tracer_new (const mesh_trace_config_t *config, mesh_metrics_t *metrics)
{
    assert (config && metrics);
    if (!config->endpoint[0])
        return NULL;
    assert (config->queue_size && config->batch_size);
    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    mesh_tracer_t *self = mesh_alloc (sizeof *self);
    memset (self, 0, sizeof *self);
    self->config = *config;
    self->queue = mesh_alloc (config->queue_size * sizeof *self->queue);
    mesh_random_init (&self->random);
    const char *help = "Spans ended, by what became of them";
    self->exported =
        mesh_metrics_counter (metrics, "mesh_trace_spans_total", help, "outcome", "exported", NULL);
    self->dropped_queue = mesh_metrics_counter (metrics, "mesh_trace_spans_total", help, "outcome",
                                                "dropped_queue", NULL);
    self->dropped_export = mesh_metrics_counter (metrics, "mesh_trace_spans_total", help, "outcome",
                                                 "dropped_export", NULL);
    self->headers = curl_slist_append (NULL, "Content-Type: application/json");
    for (size_t index = 0; index < config->header_count; index++) {
        char line[sizeof config->headers[0].key + sizeof config->headers[0].value + 4];
        snprintf (line, sizeof line, "%s: %s", config->headers[index].key,
                  config->headers[index].value);
        self->headers = curl_slist_append (self->headers, line);
    }
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->wake, &attr);
    pthread_condattr_destroy (&attr);
    if (pthread_create (&self->thread, NULL, s_exporter, self) != 0) {
        pthread_cond_destroy (&self->wake);
        pthread_mutex_destroy (&self->lock);
        curl_slist_free_all (self->headers);
        free (self->queue);
        free (self);
        curl_global_cleanup ();
        return NULL;
    }
    return self;
}

//  --------------------------------------------------------------------------
void
mesh_tracer_destroy (mesh_tracer_t **self_p)
{
    assert (self_p);
    mesh_tracer_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->lock);
    curl_slist_free_all (self->headers);
    free (self->queue);
    free (self);
    curl_global_cleanup ();     //  Pairs with mesh_tracer_new's init (counted by libcurl)
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
mesh_span_record_t *
mesh_tracer_start (mesh_tracer_t *self, const char *name, mesh_span_kind_t kind,
                   const mesh_trace_ctx_t *parent, mesh_trace_ctx_t *ctx)
{
    if (!self)
        return NULL;
    assert (name && ctx);
    mesh_trace_ctx_t made;
    pthread_mutex_lock (&self->lock);
    if (parent)
        memcpy (made.trace_id, parent->trace_id, sizeof made.trace_id);
    else
        mesh_random_fill (&self->random, made.trace_id, sizeof made.trace_id);
    mesh_random_fill (&self->random, made.span_id, sizeof made.span_id);
    pthread_mutex_unlock (&self->lock);
    bool sampled = mesh_sampler_sample (&self->config.sampler, parent, made.trace_id);
    made.flags = sampled ? MESH_TRACE_FLAG_SAMPLED : 0;
    *ctx = made;
    if (!sampled)
        return NULL;
    mesh_span_record_t *span = mesh_alloc (sizeof *span);
    memset (span, 0, sizeof *span);
    span->ctx = made;
    if (parent)
        memcpy (span->parent_span_id, parent->span_id, sizeof span->parent_span_id);
    snprintf (span->name, sizeof span->name, "%s", name);
    span->kind = kind;
    span->start_ns = mesh_trace_now_ns ();
    return span;
}

//  --------------------------------------------------------------------------
mesh_span_record_t *
mesh_tracer_start_remote (mesh_tracer_t *self, const char *name, mesh_span_kind_t kind,
                          const char *traceparent, mesh_trace_ctx_t *ctx)
{
    if (!self)
        return NULL;
    mesh_trace_ctx_t parent;
    bool known = mesh_traceparent_parse (traceparent, &parent) == 0;
    return mesh_tracer_start (self, name, kind, known ? &parent : NULL, ctx);
}

//  --------------------------------------------------------------------------
void
mesh_tracer_end (mesh_tracer_t *self, mesh_span_record_t **span_p)
{
    assert (span_p);
    mesh_span_record_t *span = *span_p;
    if (!span)
        return;
    *span_p = NULL;
    if (!self) {
        free (span);
        return;
    }
    span->end_ns = mesh_trace_now_ns ();
    pthread_mutex_lock (&self->lock);
    bool queued = self->count < self->config.queue_size && !self->stop;
    if (queued) {
        self->queue[(self->head + self->count) % self->config.queue_size] = span;
        self->count++;
        if (self->count == self->config.batch_size)
            pthread_cond_signal (&self->wake);
    }
    pthread_mutex_unlock (&self->lock);
    if (!queued) {
        free (span);
        mesh_counter_inc (self->dropped_queue);
    }
}

//  The value of the cfg option for environment variable `name`: its flag is
//  the name in lower case with dashes.
static const char *
s_cfg_lookup (void *arg, const char *name)
{
    char flag[64];
    size_t len = strlen (name);
    assert (len < sizeof flag);
    for (size_t index = 0; index <= len; index++)
        flag[index] = name[index] == '_' ? '-' : (char)tolower ((unsigned char)name[index]);
    //  The signal-specific variables without an option read as unset
    if (strcmp (flag, "otel-exporter-otlp-traces-headers") == 0 ||
        strcmp (flag, "otel-exporter-otlp-traces-timeout") == 0)
        return NULL;
    return mesh_cfg_get ((const mesh_cfg_t *)arg, flag);
}

//  --------------------------------------------------------------------------
int
mesh_trace_config_from_cfg (const mesh_cfg_t *cfg, const char *service, mesh_trace_config_t *config,
                            char *why, size_t why_size)
{
    assert (cfg && service && config && why);
    return mesh_trace_config_read (config, service, s_cfg_lookup, (void *)cfg, why, why_size);
}
