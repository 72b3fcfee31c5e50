/*  =========================================================================
    mesh_metrics - Prometheus metrics registry: counters, gauges, histograms
    Every mesh process keeps one registry; its owners look series up once
    (mutex, may allocate) and then update them lock-free from any thread.
    The admin HTTP thread renders the registry in the text exposition format
    0.0.4 while updates go on: the walk over families and series holds the
    registry mutex (so it never races a registration), values are read with
    relaxed atomic loads. Doubles (gauges, histogram sums) live in atomic
    uint64 words as their bit patterns, updated with a compare-and-swap loop.
    Numbers are printed the way Prometheus' Go client prints them (shortest
    round-trip form, +Inf/-Inf/NaN), assuming the C locale for LC_NUMERIC,
    which mesh processes never change.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_metrics.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_text.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Latency buckets in seconds: 1-2.5-5 steps from 25 µs to 10 s.
const double MESH_METRICS_LATENCY_BUCKETS[] = {
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10,
};
const size_t MESH_METRICS_LATENCY_BUCKET_COUNT
    = sizeof (MESH_METRICS_LATENCY_BUCKETS) / sizeof (MESH_METRICS_LATENCY_BUCKETS[0]);

typedef enum {
    S_COUNTER,
    S_GAUGE,
    S_HISTOGRAM,
} s_type_t;

static const char *const s_type_names[] = { "counter", "gauge", "histogram" };

struct mesh_counter_s {
    _Atomic uint64_t value;         //  Monotonic count
};

struct mesh_gauge_s {
    _Atomic uint64_t bits;          //  Bit pattern of the double value
};

struct mesh_histogram_s {
    const double *bounds;           //  Upper bounds, borrowed from the family
    size_t bound_count;             //  Entries in bounds (+Inf not included)
    _Atomic uint64_t *buckets;      //  Per-bucket counts, NOT cumulative; bound_count + 1
    _Atomic uint64_t sum_bits;      //  Bit pattern of the double sum
};

//  One series: a label value set and its metric.
typedef struct s_series_s s_series_t;
struct s_series_s {
    s_series_t *next;               //  Next series of the family, creation order
    char **values;                  //  Label values, one per family label name
    union {
        mesh_counter_t counter;
        mesh_gauge_t gauge;
        mesh_histogram_t histogram;
    } metric;                       //  The member the family type names
};

//  One family: a name, its type, label names and series.
typedef struct s_family_s s_family_t;
struct s_family_s {
    s_family_t *next;               //  Next family, creation order
    char *name;                     //  Metric name
    char *help;                     //  Help text, or NULL
    s_type_t type;                  //  Counter, gauge or histogram
    char **label_names;             //  Label names, in the order given
    size_t label_count;             //  Entries in label_names
    double *bounds;                 //  Histograms: bucket upper bounds
    size_t bound_count;             //  Histograms: entries in bounds
    s_series_t *series;             //  First series
    s_series_t *series_tail;        //  Last series, for appending
};

struct mesh_metrics_s {
    pthread_mutex_t lock;           //  Guards the family and series lists
    s_family_t *families;           //  First family
    s_family_t *families_tail;      //  Last family, for appending
};

//  Label pairs gathered from the caller's varargs (strings borrowed).
typedef struct {
    const char **names;             //  Label names
    const char **values;            //  Label values
    size_t count;                   //  Pairs gathered
} s_labels_t;


//  --------------------------------------------------------------------------
//  Create an empty registry.
mesh_metrics_t *
mesh_metrics_new (void)
{
    mesh_metrics_t *self = mesh_alloc (sizeof (mesh_metrics_t));
    //  A default mutex only fails to initialise when the system is out of
    //  resources: treated like out-of-memory, as mesh_alloc does.
    if (pthread_mutex_init (&self->lock, NULL) != 0)
        abort ();
    return self;
}

//  --------------------------------------------------------------------------
//  Free one family and its series.
static void
s_family_destroy (s_family_t *family)
{
    s_series_t *series = family->series;
    while (series) {
        s_series_t *next = series->next;
        for (size_t index = 0; index < family->label_count; index++)
            free (series->values[index]);
        free (series->values);
        if (family->type == S_HISTOGRAM)
            free (series->metric.histogram.buckets);
        free (series);
        series = next;
    }
    for (size_t index = 0; index < family->label_count; index++)
        free (family->label_names[index]);
    free (family->label_names);
    free (family->bounds);
    free (family->help);
    free (family->name);
    free (family);
}

//  --------------------------------------------------------------------------
//  Destroy the registry and every series; nulls the caller's pointer.
void
mesh_metrics_destroy (mesh_metrics_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mesh_metrics_t *self = *self_p;
        s_family_t *family = self->families;
        while (family) {
            s_family_t *next = family->next;
            s_family_destroy (family);
            family = next;
        }
        pthread_mutex_destroy (&self->lock);
        free (self);
        *self_p = NULL;
    }
}

#ifndef NDEBUG                  //  Only asserts call it
//  --------------------------------------------------------------------------
//  True when `name` matches [a-zA-Z_:][a-zA-Z0-9_:]* (metric names) or, with
//  colons false, [a-zA-Z_][a-zA-Z0-9_]* (label names).
static bool
s_valid_name (const char *name, bool colons)
{
    if (!name || !*name)
        return false;
    for (const char *cursor = name; *cursor; cursor++) {
        char c = *cursor;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
                  || (colons && c == ':') || (cursor > name && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}
#endif

//  --------------------------------------------------------------------------
//  Gather the NULL-terminated name, value pairs of `args`. Caller frees
//  names and values (not the strings, which stay the caller's).
static s_labels_t
s_labels_gather (va_list args)
{
    s_labels_t labels = { NULL, NULL, 0 };
    size_t size = 0;
    const char *name;
    while ((name = va_arg (args, const char *))) {
        const char *value = va_arg (args, const char *);
        assert (s_valid_name (name, false));
        assert (strncmp (name, "__", 2) != 0);      //  Reserved for Prometheus
        assert (value);
        for (size_t index = 0; index < labels.count; index++)
            assert (strcmp (labels.names[index], name) != 0);  //  Each name once
        if (labels.count == size) {
            size = size? size * 2: 4;
            labels.names = mesh_realloc (labels.names, size * sizeof (char *));
            labels.values = mesh_realloc (labels.values, size * sizeof (char *));
        }
        labels.names[labels.count] = name;
        labels.values[labels.count] = value;
        labels.count++;
    }
    return labels;
}

//  --------------------------------------------------------------------------
//  Create a family for the first series of `name` and append it.
static s_family_t *
s_family_new (mesh_metrics_t *self, s_type_t type, const char *name, const char *help,
              const s_labels_t *labels, const double *bounds, size_t bound_count)
{
    s_family_t *family = mesh_alloc (sizeof (s_family_t));
    family->name = mesh_strndup (name, strlen (name));
    family->help = help? mesh_strndup (help, strlen (help)): NULL;
    family->type = type;
    family->label_count = labels->count;
    family->label_names = mesh_alloc ((labels->count + 1) * sizeof (char *));
    for (size_t index = 0; index < labels->count; index++)
        family->label_names[index]
            = mesh_strndup (labels->names[index], strlen (labels->names[index]));
    if (type == S_HISTOGRAM) {
        family->bound_count = bound_count;
        family->bounds = mesh_alloc ((bound_count + 1) * sizeof (double));
        if (bound_count > 0)
            memcpy (family->bounds, bounds, bound_count * sizeof (double));
    }
    if (self->families_tail)
        self->families_tail->next = family;
    else
        self->families = family;
    self->families_tail = family;
    return family;
}

//  --------------------------------------------------------------------------
//  Create a series with the label values of `labels` and append it.
static s_series_t *
s_series_new (s_family_t *family, const s_labels_t *labels)
{
    s_series_t *series = mesh_alloc (sizeof (s_series_t));
    series->values = mesh_alloc ((labels->count + 1) * sizeof (char *));
    for (size_t index = 0; index < labels->count; index++)
        series->values[index]
            = mesh_strndup (labels->values[index], strlen (labels->values[index]));
    switch (family->type) {
        case S_COUNTER:
            atomic_init (&series->metric.counter.value, 0);
            break;
        case S_GAUGE:
            atomic_init (&series->metric.gauge.bits, 0);   //  All-zero bits are +0.0
            break;
        case S_HISTOGRAM: {
            mesh_histogram_t *histogram = &series->metric.histogram;
            histogram->bounds = family->bounds;
            histogram->bound_count = family->bound_count;
            histogram->buckets
                = mesh_alloc ((family->bound_count + 1) * sizeof (_Atomic uint64_t));
            for (size_t index = 0; index <= family->bound_count; index++)
                atomic_init (&histogram->buckets[index], 0);
            atomic_init (&histogram->sum_bits, 0);
            break;
        }
    }
    if (family->series_tail)
        family->series_tail->next = series;
    else
        family->series = series;
    family->series_tail = series;
    return series;
}

//  --------------------------------------------------------------------------
//  Find or create the series of family `name` with the label pairs in
//  `args`. Asserts on a name, type, label names or bounds that contradict
//  what the family was created with. Linear in families and series: owners
//  look up once and keep the pointer.
static s_series_t *
s_lookup (mesh_metrics_t *self, s_type_t type, const char *name, const char *help,
          const double *bounds, size_t bound_count, va_list args)
{
    assert (self);
    assert (s_valid_name (name, true));
    s_labels_t labels = s_labels_gather (args);
    if (type == S_HISTOGRAM) {
        for (size_t index = 0; index < labels.count; index++)
            assert (strcmp (labels.names[index], "le") != 0);   //  Ours, on every bucket
        for (size_t index = 0; index < bound_count; index++) {
            assert (isfinite (bounds[index]));                  //  +Inf is implied
            assert (index == 0 || bounds[index - 1] < bounds[index]);
        }
    }
    pthread_mutex_lock (&self->lock);
    s_family_t *family = self->families;
    while (family && strcmp (family->name, name) != 0)
        family = family->next;
    if (family) {
        assert (family->type == type);
        assert (family->label_count == labels.count);
        for (size_t index = 0; index < labels.count; index++)
            assert (strcmp (family->label_names[index], labels.names[index]) == 0);
        if (type == S_HISTOGRAM) {
            //  Series of one family share buckets, or they could not be aggregated
            assert (family->bound_count == bound_count);
            for (size_t index = 0; index < bound_count; index++)
                assert (family->bounds[index] == bounds[index]);
        }
    }
    else
        family = s_family_new (self, type, name, help, &labels, bounds, bound_count);

    s_series_t *series = family->series;
    while (series) {
        size_t index = 0;
        while (index < labels.count && strcmp (series->values[index], labels.values[index]) == 0)
            index++;
        if (index == labels.count)
            break;
        series = series->next;
    }
    if (!series)
        series = s_series_new (family, &labels);
    pthread_mutex_unlock (&self->lock);
    free (labels.names);
    free (labels.values);
    return series;
}

//  --------------------------------------------------------------------------
//  Counter series `name` with the label pairs that follow.
mesh_counter_t *
mesh_metrics_counter (mesh_metrics_t *self, const char *name, const char *help, ...)
{
    va_list args;
    va_start (args, help);
    s_series_t *series = s_lookup (self, S_COUNTER, name, help, NULL, 0, args);
    va_end (args);
    return &series->metric.counter;
}

//  --------------------------------------------------------------------------
//  Gauge series `name` with the label pairs that follow.
mesh_gauge_t *
mesh_metrics_gauge (mesh_metrics_t *self, const char *name, const char *help, ...)
{
    va_list args;
    va_start (args, help);
    s_series_t *series = s_lookup (self, S_GAUGE, name, help, NULL, 0, args);
    va_end (args);
    return &series->metric.gauge;
}

//  --------------------------------------------------------------------------
//  Histogram series `name` with the label pairs that follow.
mesh_histogram_t *
mesh_metrics_histogram (mesh_metrics_t *self, const char *name, const char *help,
                        const double *bounds, size_t bound_count, ...)
{
    if (!bounds) {
        bounds = MESH_METRICS_LATENCY_BUCKETS;
        bound_count = MESH_METRICS_LATENCY_BUCKET_COUNT;
    }
    va_list args;
    va_start (args, bound_count);
    s_series_t *series = s_lookup (self, S_HISTOGRAM, name, help, bounds, bound_count, args);
    va_end (args);
    return &series->metric.histogram;
}

//  --------------------------------------------------------------------------
//  Bit pattern of a double, and back (memcpy: no aliasing games).
static uint64_t
s_double_bits (double value)
{
    uint64_t bits;
    memcpy (&bits, &value, sizeof bits);
    return bits;
}

static double
s_bits_double (uint64_t bits)
{
    double value;
    memcpy (&value, &bits, sizeof value);
    return value;
}

//  --------------------------------------------------------------------------
//  Add `delta` to the double stored as bits in `target`, lock-free.
static void
s_atomic_add_double (_Atomic uint64_t *target, double delta)
{
    uint64_t old_bits = atomic_load_explicit (target, memory_order_relaxed);
    uint64_t new_bits;
    do
        new_bits = s_double_bits (s_bits_double (old_bits) + delta);
    while (!atomic_compare_exchange_weak_explicit (target, &old_bits, new_bits,
                                                   memory_order_relaxed, memory_order_relaxed));
}

//  --------------------------------------------------------------------------
//  Add `amount` to a counter.
void
mesh_counter_add (mesh_counter_t *self, uint64_t amount)
{
    assert (self);
    atomic_fetch_add_explicit (&self->value, amount, memory_order_relaxed);
}

//  --------------------------------------------------------------------------
//  Add one to a counter.
void
mesh_counter_inc (mesh_counter_t *self)
{
    mesh_counter_add (self, 1);
}

//  --------------------------------------------------------------------------
//  Current value of a counter.
uint64_t
mesh_counter_value (const mesh_counter_t *self)
{
    assert (self);
    return atomic_load_explicit (&self->value, memory_order_relaxed);
}

//  --------------------------------------------------------------------------
//  Set a gauge.
void
mesh_gauge_set (mesh_gauge_t *self, double value)
{
    assert (self);
    atomic_store_explicit (&self->bits, s_double_bits (value), memory_order_relaxed);
}

//  --------------------------------------------------------------------------
//  Add `delta` (may be negative) to a gauge.
void
mesh_gauge_add (mesh_gauge_t *self, double delta)
{
    assert (self);
    s_atomic_add_double (&self->bits, delta);
}

//  --------------------------------------------------------------------------
//  Current value of a gauge.
double
mesh_gauge_value (const mesh_gauge_t *self)
{
    assert (self);
    return s_bits_double (atomic_load_explicit (&self->bits, memory_order_relaxed));
}

//  --------------------------------------------------------------------------
//  Record one observation. Buckets are inclusive upper bounds (value <= le);
//  NaN falls in the +Inf bucket only, as in Prometheus' Go client.
void
mesh_histogram_observe (mesh_histogram_t *self, double value)
{
    assert (self);
    size_t low = 0;
    size_t high = self->bound_count;
    while (low < high) {        //  First bound >= value, or bound_count
        size_t middle = low + (high - low) / 2;
        if (self->bounds[middle] >= value)
            high = middle;
        else
            low = middle + 1;
    }
    atomic_fetch_add_explicit (&self->buckets[low], 1, memory_order_relaxed);
    s_atomic_add_double (&self->sum_bits, value);
}

//  --------------------------------------------------------------------------
//  Number of observations so far.
uint64_t
mesh_histogram_count (const mesh_histogram_t *self)
{
    assert (self);
    uint64_t count = 0;
    for (size_t index = 0; index <= self->bound_count; index++)
        count += atomic_load_explicit (&self->buckets[index], memory_order_relaxed);
    return count;
}

//  --------------------------------------------------------------------------
//  Append `text` escaped for the exposition format: backslash and newline
//  always, double quote too in label values. Bytes that are not UTF-8 become
//  U+FFFD, since Prometheus rejects the whole scrape on invalid UTF-8.
static void
s_buf_escaped (mesh_text_t *buf, const char *text, bool quotes)
{
    const unsigned char *cursor = (const unsigned char *) text;
    while (*cursor) {
        size_t length = mesh_utf8_length (cursor);
        const char *escape = NULL;
        if (length == 0)
            escape = "\xEF\xBF\xBD";
        else
        if (*cursor == '\\')
            escape = "\\\\";
        else
        if (*cursor == '\n')
            escape = "\\n";
        else
        if (*cursor == '"' && quotes)
            escape = "\\\"";
        if (escape) {
            mesh_text_puts (buf, escape);
            cursor++;
        }
        else {
            mesh_text_append (buf, (const char *) cursor, length);
            cursor += length;
        }
    }
}

//  --------------------------------------------------------------------------
//  Format a double as Prometheus' Go client does: the shortest form that
//  reads back as the same double, and +Inf, -Inf, NaN.
static void
s_format_double (char *out, size_t size, double value)
{
    if (isnan (value))
        snprintf (out, size, "NaN");
    else
    if (isinf (value))
        snprintf (out, size, "%s", value > 0? "+Inf": "-Inf");
    else {
        //  %.15g is exact for every value that has 15 or fewer significant
        //  digits (trailing zeros dropped); 17 digits always round-trip.
        for (int precision = 15; precision <= 17; precision++) {
            snprintf (out, size, "%.*g", precision, value);
            if (strtod (out, NULL) == value)
                break;
        }
    }
}

//  --------------------------------------------------------------------------
//  Append a series' label set, plus `le` when not NULL; nothing when empty.
static void
s_buf_labels (mesh_text_t *buf, const s_family_t *family, const s_series_t *series, const char *le)
{
    if (family->label_count == 0 && !le)
        return;
    mesh_text_puts (buf, "{");
    for (size_t index = 0; index < family->label_count; index++) {
        if (index > 0)
            mesh_text_puts (buf, ",");
        mesh_text_puts (buf, family->label_names[index]);
        mesh_text_puts (buf, "=\"");
        s_buf_escaped (buf, series->values[index], true);
        mesh_text_puts (buf, "\"");
    }
    if (le) {
        mesh_text_puts (buf, family->label_count > 0? ",le=\"": "le=\"");
        mesh_text_puts (buf, le);
        mesh_text_puts (buf, "\"");
    }
    mesh_text_puts (buf, "}");
}

//  --------------------------------------------------------------------------
//  Append one sample line: name + suffix, labels, value.
static void
s_buf_sample (mesh_text_t *buf, const s_family_t *family, const char *suffix,
              const s_series_t *series, const char *le, const char *value)
{
    mesh_text_puts (buf, family->name);
    mesh_text_puts (buf, suffix);
    s_buf_labels (buf, family, series, le);
    mesh_text_puts (buf, " ");
    mesh_text_puts (buf, value);
    mesh_text_puts (buf, "\n");
}

//  --------------------------------------------------------------------------
//  Append the sample lines of one histogram series. Buckets are read once
//  each and summed here, so the +Inf bucket and _count always agree even
//  while observations land; _sum may be a few observations ahead or behind.
static void
s_buf_histogram (mesh_text_t *buf, const s_family_t *family, const s_series_t *series)
{
    const mesh_histogram_t *histogram = &series->metric.histogram;
    char le[32];
    char value[32];
    uint64_t cumulative = 0;
    for (size_t index = 0; index < histogram->bound_count; index++) {
        cumulative += atomic_load_explicit (&histogram->buckets[index], memory_order_relaxed);
        s_format_double (le, sizeof le, histogram->bounds[index]);
        snprintf (value, sizeof value, "%" PRIu64, cumulative);
        s_buf_sample (buf, family, "_bucket", series, le, value);
    }
    cumulative += atomic_load_explicit (&histogram->buckets[histogram->bound_count],
                                        memory_order_relaxed);
    snprintf (value, sizeof value, "%" PRIu64, cumulative);
    s_buf_sample (buf, family, "_bucket", series, "+Inf", value);
    double sum = s_bits_double (atomic_load_explicit (&histogram->sum_bits, memory_order_relaxed));
    char sum_text[32];
    s_format_double (sum_text, sizeof sum_text, sum);
    s_buf_sample (buf, family, "_sum", series, NULL, sum_text);
    s_buf_sample (buf, family, "_count", series, NULL, value);
}

//  --------------------------------------------------------------------------
//  Render every family in the text exposition format; caller frees.
char *
mesh_metrics_render (mesh_metrics_t *self, size_t *len)
{
    assert (self);
    mesh_text_t buf = { NULL, 0, 0 };
    mesh_text_append (&buf, "", 0);             //  An empty registry renders ""
    pthread_mutex_lock (&self->lock);
    for (const s_family_t *family = self->families; family; family = family->next) {
        if (family->help) {
            mesh_text_puts (&buf, "# HELP ");
            mesh_text_puts (&buf, family->name);
            mesh_text_puts (&buf, " ");
            s_buf_escaped (&buf, family->help, false);
            mesh_text_puts (&buf, "\n");
        }
        mesh_text_puts (&buf, "# TYPE ");
        mesh_text_puts (&buf, family->name);
        mesh_text_puts (&buf, " ");
        mesh_text_puts (&buf, s_type_names[family->type]);
        mesh_text_puts (&buf, "\n");
        for (const s_series_t *series = family->series; series; series = series->next) {
            char value[32];
            if (family->type == S_COUNTER) {
                snprintf (value, sizeof value, "%" PRIu64,
                          mesh_counter_value (&series->metric.counter));
                s_buf_sample (&buf, family, "", series, NULL, value);
            }
            else
            if (family->type == S_GAUGE) {
                s_format_double (value, sizeof value, mesh_gauge_value (&series->metric.gauge));
                s_buf_sample (&buf, family, "", series, NULL, value);
            }
            else
                s_buf_histogram (&buf, family, series);
        }
    }
    pthread_mutex_unlock (&self->lock);
    if (len)
        *len = buf.len;
    return buf.data;
}
