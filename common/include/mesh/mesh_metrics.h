/*  =========================================================================
    mesh_metrics - Prometheus metrics registry: counters, gauges, histograms
    A registry owns metric families; each family owns its series (one per
    label set). Looking a series up takes the registry's mutex and may
    allocate, so owners look up once and keep the pointer; updating a
    series is lock-free (C11 atomics) and safe from any thread. Rendering
    (text exposition format 0.0.4) may run on another thread, e.g. the admin
    HTTP thread, at the same time as updates.
    Series pointers stay valid until the registry is destroyed.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_METRICS_H_INCLUDED
#define MESH_METRICS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct mesh_metrics_s mesh_metrics_t;
typedef struct mesh_counter_s mesh_counter_t;
typedef struct mesh_gauge_s mesh_gauge_t;
typedef struct mesh_histogram_s mesh_histogram_t;

//  Create an empty registry.
mesh_metrics_t *
    mesh_metrics_new (void);

//  Destroy the registry and every series; nulls the caller's pointer.
void
    mesh_metrics_destroy (mesh_metrics_t **self_p);

//  Series `name` with the label pairs that follow ("service", "user",
//  "outcome", "ok", NULL): created on first use, the same pointer after.
//  `help` is used when the family is created. Label values may be any bytes;
//  they are escaped on output. Asserts on programmer errors: a name that is
//  not a valid metric name, or a family reused with another type or other
//  label names.
mesh_counter_t *
    mesh_metrics_counter (mesh_metrics_t *self, const char *name, const char *help, ...);
mesh_gauge_t *
    mesh_metrics_gauge (mesh_metrics_t *self, const char *name, const char *help, ...);

//  Histogram series. `bounds` are the bucket upper bounds in increasing
//  order (copied; +Inf is implied); NULL takes MESH_METRICS_LATENCY_BUCKETS.
mesh_histogram_t *
    mesh_metrics_histogram (mesh_metrics_t *self, const char *name, const char *help,
                            const double *bounds, size_t bound_count, ...);

//  Latency buckets in seconds, 25 µs to 10 s.
extern const double MESH_METRICS_LATENCY_BUCKETS[];
extern const size_t MESH_METRICS_LATENCY_BUCKET_COUNT;

//  Update a series. Thread-safe, lock-free.
void
    mesh_counter_add (mesh_counter_t *self, uint64_t amount);
void
    mesh_counter_inc (mesh_counter_t *self);
uint64_t
    mesh_counter_value (const mesh_counter_t *self);
void
    mesh_gauge_set (mesh_gauge_t *self, double value);
void
    mesh_gauge_add (mesh_gauge_t *self, double delta);
double
    mesh_gauge_value (const mesh_gauge_t *self);
void
    mesh_histogram_observe (mesh_histogram_t *self, double value);
uint64_t
    mesh_histogram_count (const mesh_histogram_t *self);

//  Render every family in the text exposition format. Returns a fresh
//  NUL-terminated string (caller frees) and its length in *len if len is
//  not NULL. Families appear in creation order, series in creation order.
char *
    mesh_metrics_render (mesh_metrics_t *self, size_t *len);

#endif
