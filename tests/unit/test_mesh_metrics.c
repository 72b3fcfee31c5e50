/*  =========================================================================
    test_mesh_metrics - unit tests of the Prometheus metrics registry
    Values of each metric type, the exact text exposition format (HELP and
    TYPE lines, label escaping, cumulative buckets, +Inf), series identity,
    exact sums under concurrent updates while another thread renders, and,
    when promtool is installed, Prometheus' own linter on our output.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_metrics.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mesh_metrics_t *s_metrics;   //  Criterion forks per test: one per test

static void
s_setup (void)
{
    s_metrics = mesh_metrics_new ();
}

static void
s_teardown (void)
{
    mesh_metrics_destroy (&s_metrics);
}

TestSuite (mesh_metrics, .init = s_setup, .fini = s_teardown, .timeout = 30.);

//  Render the test registry and compare it with `expected`.
static void
s_assert_render (const char *expected)
{
    size_t len = 0;
    char *text = mesh_metrics_render (s_metrics, &len);
    cr_assert_not_null (text);
    cr_assert_eq (len, strlen (text));
    cr_assert_str_eq (text, expected);
    free (text);
}

Test (mesh_metrics, empty_registry_renders_empty_text)
{
    s_assert_render ("");
    char *text = mesh_metrics_render (s_metrics, NULL);     //  len is optional
    cr_assert_str_eq (text, "");
    free (text);
}

Test (mesh_metrics, destroy_nulls_the_pointer_and_accepts_null)
{
    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_counter_inc (mesh_metrics_counter (metrics, "x_total", "X.", NULL));
    mesh_metrics_destroy (&metrics);
    cr_assert_null (metrics);
    mesh_metrics_destroy (&metrics);
    cr_assert_null (metrics);
}

Test (mesh_metrics, counter_counts_and_renders_integers)
{
    mesh_counter_t *counter = mesh_metrics_counter (s_metrics, "mesh_requests_total",
                                                    "Requests handled.", NULL);
    cr_assert_eq (mesh_counter_value (counter), 0);
    mesh_counter_inc (counter);
    mesh_counter_add (counter, 41);
    cr_assert_eq (mesh_counter_value (counter), 42);
    s_assert_render ("# HELP mesh_requests_total Requests handled.\n"
                     "# TYPE mesh_requests_total counter\n"
                     "mesh_requests_total 42\n");
    mesh_counter_add (counter, UINT64_MAX - 42);
    s_assert_render ("# HELP mesh_requests_total Requests handled.\n"
                     "# TYPE mesh_requests_total counter\n"
                     "mesh_requests_total 18446744073709551615\n");
}

Test (mesh_metrics, gauge_sets_adds_and_renders_shortest_doubles)
{
    mesh_gauge_t *gauge = mesh_metrics_gauge (s_metrics, "mesh_queue_depth", "Queued.", NULL);
    cr_assert_eq (mesh_gauge_value (gauge), 0.0);
    mesh_gauge_set (gauge, 2.5);
    mesh_gauge_add (gauge, -4.0);
    cr_assert_eq (mesh_gauge_value (gauge), -1.5);
    s_assert_render ("# HELP mesh_queue_depth Queued.\n"
                     "# TYPE mesh_queue_depth gauge\n"
                     "mesh_queue_depth -1.5\n");

    //  Each case: value -> text Prometheus' Go client would print
    const struct {
        double value;
        const char *text;
    } cases[] = {
        { 0.0, "0" },
        { 0.1, "0.1" },
        { 1.0 / 3.0, "0.3333333333333333" },
        { 0.1 + 0.2, "0.30000000000000004" },
        { 1e-05, "1e-05" },
        { 123456789.0, "123456789" },
        { 1e300, "1e+300" },
        { (double) INFINITY, "+Inf" },
        { -(double) INFINITY, "-Inf" },
        { (double) NAN, "NaN" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        mesh_gauge_set (gauge, cases[index].value);
        char expected[256];
        snprintf (expected, sizeof expected,
                  "# HELP mesh_queue_depth Queued.\n"
                  "# TYPE mesh_queue_depth gauge\n"
                  "mesh_queue_depth %s\n", cases[index].text);
        s_assert_render (expected);
    }
}

Test (mesh_metrics, histogram_buckets_are_cumulative_with_inf)
{
    const double bounds[] = { 0.25, 0.5, 1 };
    mesh_histogram_t *histogram = mesh_metrics_histogram (
        s_metrics, "mesh_request_duration_seconds", "Request latency.", bounds, 3, NULL);
    cr_assert_eq (mesh_histogram_count (histogram), 0);
    mesh_histogram_observe (histogram, 0.125);
    mesh_histogram_observe (histogram, 0.25);       //  Bounds are inclusive
    mesh_histogram_observe (histogram, 0.5);
    mesh_histogram_observe (histogram, 2);          //  Only in +Inf
    cr_assert_eq (mesh_histogram_count (histogram), 4);
    s_assert_render ("# HELP mesh_request_duration_seconds Request latency.\n"
                     "# TYPE mesh_request_duration_seconds histogram\n"
                     "mesh_request_duration_seconds_bucket{le=\"0.25\"} 2\n"
                     "mesh_request_duration_seconds_bucket{le=\"0.5\"} 3\n"
                     "mesh_request_duration_seconds_bucket{le=\"1\"} 3\n"
                     "mesh_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                     "mesh_request_duration_seconds_sum 2.875\n"
                     "mesh_request_duration_seconds_count 4\n");
}

Test (mesh_metrics, histogram_puts_nan_in_inf_bucket_only)
{
    const double bounds[] = { 1 };
    mesh_histogram_t *histogram
        = mesh_metrics_histogram (s_metrics, "odd_seconds", "Odd.", bounds, 1, NULL);
    mesh_histogram_observe (histogram, (double) NAN);
    mesh_histogram_observe (histogram, -(double) INFINITY);
    s_assert_render ("# HELP odd_seconds Odd.\n"
                     "# TYPE odd_seconds histogram\n"
                     "odd_seconds_bucket{le=\"1\"} 1\n"
                     "odd_seconds_bucket{le=\"+Inf\"} 2\n"
                     "odd_seconds_sum NaN\n"
                     "odd_seconds_count 2\n");
}

Test (mesh_metrics, histogram_defaults_to_latency_buckets)
{
    cr_assert_geq (MESH_METRICS_LATENCY_BUCKET_COUNT, 15);
    cr_assert_leq (MESH_METRICS_LATENCY_BUCKET_COUNT, 20);
    cr_assert_eq (MESH_METRICS_LATENCY_BUCKETS[0], 0.000025);
    cr_assert_eq (MESH_METRICS_LATENCY_BUCKETS[MESH_METRICS_LATENCY_BUCKET_COUNT - 1], 10.0);
    for (size_t index = 1; index < MESH_METRICS_LATENCY_BUCKET_COUNT; index++)
        cr_assert_lt (MESH_METRICS_LATENCY_BUCKETS[index - 1], MESH_METRICS_LATENCY_BUCKETS[index]);

    mesh_histogram_t *histogram
        = mesh_metrics_histogram (s_metrics, "latency_seconds", "Latency.", NULL, 0, NULL);
    mesh_histogram_observe (histogram, 0.00003);
    char *text = mesh_metrics_render (s_metrics, NULL);
    cr_assert (strstr (text, "latency_seconds_bucket{le=\"2.5e-05\"} 0\n"), "%s", text);
    cr_assert (strstr (text, "latency_seconds_bucket{le=\"5e-05\"} 1\n"), "%s", text);
    cr_assert (strstr (text, "latency_seconds_bucket{le=\"10\"} 1\n"), "%s", text);
    cr_assert (strstr (text, "latency_seconds_bucket{le=\"+Inf\"} 1\n"), "%s", text);
    size_t buckets = 0;
    for (const char *line = text; (line = strstr (line, "_bucket{")); line++)
        buckets++;
    cr_assert_eq (buckets, MESH_METRICS_LATENCY_BUCKET_COUNT + 1);
    free (text);
}

Test (mesh_metrics, same_labels_give_same_series)
{
    mesh_counter_t *ok = mesh_metrics_counter (s_metrics, "calls_total", "Calls.", "service",
                                               "user", "outcome", "ok", NULL);
    mesh_counter_t *again = mesh_metrics_counter (s_metrics, "calls_total", "Ignored.", "service",
                                                  "user", "outcome", "ok", NULL);
    mesh_counter_t *error = mesh_metrics_counter (s_metrics, "calls_total", "Calls.", "service",
                                                  "user", "outcome", "error", NULL);
    cr_assert_eq (ok, again);
    cr_assert_neq (ok, error);
    mesh_gauge_t *gauge = mesh_metrics_gauge (s_metrics, "workers", "Workers.", NULL);
    cr_assert_eq (gauge, mesh_metrics_gauge (s_metrics, "workers", "Workers.", NULL));
    const double bounds[] = { 1, 2 };
    mesh_histogram_t *histogram
        = mesh_metrics_histogram (s_metrics, "size_bytes", "Sizes.", bounds, 2, "kind", "a", NULL);
    mesh_histogram_t *same
        = mesh_metrics_histogram (s_metrics, "size_bytes", "S.", bounds, 2, "kind", "a", NULL);
    mesh_histogram_t *other
        = mesh_metrics_histogram (s_metrics, "size_bytes", "S.", bounds, 2, "kind", "b", NULL);
    cr_assert_eq (histogram, same);
    cr_assert_neq (histogram, other);
    mesh_counter_add (ok, 3);
    mesh_counter_inc (again);
    mesh_counter_inc (error);
    cr_assert_eq (mesh_counter_value (ok), 4);
    cr_assert_eq (mesh_counter_value (error), 1);
}

Test (mesh_metrics, renders_families_and_series_in_creation_order)
{
    mesh_counter_t *ok = mesh_metrics_counter (s_metrics, "calls_total", "Calls made.", "service",
                                               "user", "outcome", "ok", NULL);
    mesh_gauge_t *up = mesh_metrics_gauge (s_metrics, "up", "Serving.", NULL);
    mesh_counter_t *error = mesh_metrics_counter (s_metrics, "calls_total", NULL, "service",
                                                  "user", "outcome", "error", NULL);
    const double bounds[] = { 0.5 };
    mesh_histogram_t *histogram = mesh_metrics_histogram (s_metrics, "wait_seconds", "Waits.",
                                                          bounds, 1, "queue", "q1", NULL);
    mesh_counter_add (ok, 7);
    mesh_counter_inc (error);
    mesh_gauge_set (up, 1);
    mesh_histogram_observe (histogram, 0.75);
    s_assert_render ("# HELP calls_total Calls made.\n"
                     "# TYPE calls_total counter\n"
                     "calls_total{service=\"user\",outcome=\"ok\"} 7\n"
                     "calls_total{service=\"user\",outcome=\"error\"} 1\n"
                     "# HELP up Serving.\n"
                     "# TYPE up gauge\n"
                     "up 1\n"
                     "# HELP wait_seconds Waits.\n"
                     "# TYPE wait_seconds histogram\n"
                     "wait_seconds_bucket{queue=\"q1\",le=\"0.5\"} 0\n"
                     "wait_seconds_bucket{queue=\"q1\",le=\"+Inf\"} 1\n"
                     "wait_seconds_sum{queue=\"q1\"} 0.75\n"
                     "wait_seconds_count{queue=\"q1\"} 1\n");
}

Test (mesh_metrics, family_without_help_has_no_help_line)
{
    mesh_counter_inc (mesh_metrics_counter (s_metrics, "bare_total", NULL, NULL));
    s_assert_render ("# TYPE bare_total counter\n"
                     "bare_total 1\n");
}

Test (mesh_metrics, escapes_label_values_and_help)
{
    mesh_counter_inc (mesh_metrics_counter (s_metrics, "odd_total", "Back\\slash\nnew \"quoted\".",
                                            "value", "a\"b\\c\nd", NULL));
    //  Non-UTF-8 bytes become U+FFFD; valid multi-byte characters pass
    mesh_counter_inc (mesh_metrics_counter (s_metrics, "odd_total", NULL, "value",
                                            "caf\xC3\xA9 \xFF \xC3 \xED\xA0\x80!", NULL));
    s_assert_render ("# HELP odd_total Back\\\\slash\\nnew \"quoted\".\n"
                     "# TYPE odd_total counter\n"
                     "odd_total{value=\"a\\\"b\\\\c\\nd\"} 1\n"
                     "odd_total{value=\"caf\xC3\xA9 \xEF\xBF\xBD \xEF\xBF\xBD "
                     "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!\"} 1\n");
}

Test (mesh_metrics, empty_label_value_is_a_series_of_its_own)
{
    mesh_counter_t *empty = mesh_metrics_counter (s_metrics, "e_total", "E.", "k", "", NULL);
    mesh_counter_t *full = mesh_metrics_counter (s_metrics, "e_total", "E.", "k", "v", NULL);
    cr_assert_neq (empty, full);
    s_assert_render ("# HELP e_total E.\n"
                     "# TYPE e_total counter\n"
                     "e_total{k=\"\"} 0\n"
                     "e_total{k=\"v\"} 0\n");
}

//  Programmer errors abort through assert; with NDEBUG there is nothing to test
#ifdef NDEBUG
#define S_ABORTS .disabled = true
#else
#define S_ABORTS .signal = SIGABRT
#endif

Test (mesh_metrics, invalid_metric_name_asserts, S_ABORTS)
{
    mesh_metrics_counter (s_metrics, "1bad-name", "Bad.", NULL);
}

Test (mesh_metrics, invalid_label_name_asserts, S_ABORTS)
{
    mesh_metrics_counter (s_metrics, "good_total", "Good.", "bad-label", "v", NULL);
}

Test (mesh_metrics, duplicate_label_name_asserts, S_ABORTS)
{
    mesh_metrics_counter (s_metrics, "good_total", "Good.", "a", "1", "a", "2", NULL);
}

Test (mesh_metrics, le_label_on_histogram_asserts, S_ABORTS)
{
    mesh_metrics_histogram (s_metrics, "good_seconds", "Good.", NULL, 0, "le", "1", NULL);
}

Test (mesh_metrics, unsorted_bounds_assert, S_ABORTS)
{
    const double bounds[] = { 1, 0.5 };
    mesh_metrics_histogram (s_metrics, "good_seconds", "Good.", bounds, 2, NULL);
}

Test (mesh_metrics, family_reused_with_other_type_asserts, S_ABORTS)
{
    mesh_metrics_counter (s_metrics, "thing", "Thing.", NULL);
    mesh_metrics_gauge (s_metrics, "thing", "Thing.", NULL);
}

Test (mesh_metrics, family_reused_with_other_labels_asserts, S_ABORTS)
{
    mesh_metrics_counter (s_metrics, "thing_total", "Thing.", "a", "1", NULL);
    mesh_metrics_counter (s_metrics, "thing_total", "Thing.", "b", "1", NULL);
}

Test (mesh_metrics, valid_names_with_colons_and_digits_are_accepted)
{
    mesh_counter_inc (mesh_metrics_counter (s_metrics, "job:requests:rate5m", "R.", "_a1", "x",
                                            NULL));
    mesh_counter_inc (mesh_metrics_counter (s_metrics, "_x9", "X.", NULL));
    s_assert_render ("# HELP job:requests:rate5m R.\n"
                     "# TYPE job:requests:rate5m counter\n"
                     "job:requests:rate5m{_a1=\"x\"} 1\n"
                     "# HELP _x9 X.\n"
                     "# TYPE _x9 counter\n"
                     "_x9 1\n");
}

//  Shared by the concurrency test's threads.
typedef struct {
    mesh_counter_t *counter;
    mesh_gauge_t *gauge;
    mesh_histogram_t *histogram;
    atomic_bool done;           //  Updaters finished: renderer stops
} s_shared_t;

#define S_THREADS 4
#define S_ITERATIONS 100000

//  Updater thread body: hammer every series.
static void *
s_updater (void *args)
{
    s_shared_t *shared = (s_shared_t *) args;
    for (int index = 0; index < S_ITERATIONS; index++) {
        mesh_counter_inc (shared->counter);
        mesh_gauge_add (shared->gauge, 1.0);
        mesh_histogram_observe (shared->histogram, 0.5);
    }
    return NULL;
}

//  Renderer thread body: render (and register new series) until updaters end.
static void *
s_renderer (void *args)
{
    s_shared_t *shared = (s_shared_t *) args;
    int round = 0;
    while (!atomic_load (&shared->done)) {
        char value[32];
        snprintf (value, sizeof value, "%d", round++ % 50);
        mesh_counter_inc (mesh_metrics_counter (s_metrics, "renders_total", "R.", "round", value,
                                                NULL));
        free (mesh_metrics_render (s_metrics, NULL));
    }
    return NULL;
}

//  Run 4 updaters and a renderer on s_metrics, then check the sums. Returns
//  NULL when every sum is exact, else what is wrong (caller frees). Plain C,
//  no Criterion, so that the TSAN build below can run it too.
static char *
s_run_concurrent (void)
{
    s_shared_t shared;
    shared.counter = mesh_metrics_counter (s_metrics, "hits_total", "Hits.", NULL);
    shared.gauge = mesh_metrics_gauge (s_metrics, "level", "Level.", NULL);
    shared.histogram = mesh_metrics_histogram (s_metrics, "took_seconds", "Took.", NULL, 0, NULL);
    atomic_init (&shared.done, false);

    pthread_t renderer;
    pthread_t updaters[S_THREADS];
    if (pthread_create (&renderer, NULL, s_renderer, &shared) != 0)
        return strdup ("cannot start the renderer");
    int started = 0;
    while (started < S_THREADS
           && pthread_create (&updaters[started], NULL, s_updater, &shared) == 0)
        started++;
    for (int index = 0; index < started; index++)
        pthread_join (updaters[index], NULL);
    atomic_store (&shared.done, true);
    pthread_join (renderer, NULL);
    if (started < S_THREADS)
        return strdup ("cannot start the updaters");

    const unsigned long long total = (unsigned long long) S_THREADS * S_ITERATIONS;
    char expected[4][128];
    snprintf (expected[0], sizeof expected[0], "hits_total %llu\n", total);
    snprintf (expected[1], sizeof expected[1], "took_seconds_sum %llu\n", total / 2);
    snprintf (expected[2], sizeof expected[2], "took_seconds_bucket{le=\"0.5\"} %llu\n", total);
    snprintf (expected[3], sizeof expected[3], "took_seconds_count %llu\n", total);
    char *problem = NULL;
    char *text = mesh_metrics_render (s_metrics, NULL);
    if (mesh_counter_value (shared.counter) != total
        || mesh_gauge_value (shared.gauge) != (double) total
        || mesh_histogram_count (shared.histogram) != total) {
        if (asprintf (&problem, "counter %llu, gauge %.17g, histogram count %llu; want %llu",
                      (unsigned long long) mesh_counter_value (shared.counter),
                      mesh_gauge_value (shared.gauge),
                      (unsigned long long) mesh_histogram_count (shared.histogram), total) < 0)
            problem = NULL;
    }
    for (int index = 0; index < 4 && !problem; index++)
        if (!strstr (text, expected[index])
            && asprintf (&problem, "no line '%s' in:\n%s", expected[index], text) < 0)
            problem = NULL;
    free (text);
    return problem;
}

Test (mesh_metrics, concurrent_updates_sum_exactly_while_rendering)
{
    char *problem = s_run_concurrent ();
    cr_assert_null (problem, "%s", problem);
}

#define S_PROMTOOL "/usr/bin/promtool"

Test (mesh_metrics, promtool_accepts_the_output)
{
    if (access (S_PROMTOOL, X_OK) != 0)
        cr_skip_test (S_PROMTOOL " is not installed (Debian package prometheus)");

    mesh_counter_t *counter
        = mesh_metrics_counter (s_metrics, "mesh_requests_total", "Requests, \\ \"all\".\n",
                                "service", "us\"er\\x\ny", "outcome", "ok", NULL);
    mesh_counter_add (counter, 12);
    mesh_counter_inc (mesh_metrics_counter (s_metrics, "mesh_requests_total", NULL, "service",
                                            "bytes \xFF\xFE", "outcome", "", NULL));
    mesh_gauge_t *gauge = mesh_metrics_gauge (s_metrics, "mesh_workers", "Workers by state.",
                                              "state", "idle", NULL);
    mesh_gauge_set (gauge, -0.1);
    mesh_gauge_set (mesh_metrics_gauge (s_metrics, "mesh_workers", NULL, "state", "inf", NULL),
                    (double) INFINITY);
    mesh_gauge_set (mesh_metrics_gauge (s_metrics, "mesh_workers", NULL, "state", "nan", NULL),
                    (double) NAN);
    mesh_histogram_t *histogram = mesh_metrics_histogram (
        s_metrics, "mesh_request_duration_seconds", "Latency.", NULL, 0, "method", "user.get",
        NULL);
    mesh_histogram_observe (histogram, 0.0031);
    mesh_histogram_observe (histogram, 42);
    const double bounds[] = { 1e-9, 0.1, 1e6 };
    mesh_histogram_observe (mesh_metrics_histogram (s_metrics, "mesh_payload_bytes", "Sizes.",
                                                    bounds, 3, NULL),
                            512);

    char path[] = "/tmp/test_mesh_metrics_XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    size_t len = 0;
    char *text = mesh_metrics_render (s_metrics, &len);
    cr_assert_eq (write (fd, text, len), (ssize_t) len);
    close (fd);

    char command[256];
    snprintf (command, sizeof command, "timeout 20 " S_PROMTOOL " check metrics < %s 2>&1", path);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    char output[4096] = "";
    size_t got = fread (output, 1, sizeof output - 1, pipe);
    output[got] = '\0';
    int status = pclose (pipe);
    unlink (path);
    cr_assert_eq (status, 0, "promtool said (status %d):\n%s\non:\n%s", status, output, text);
    free (text);
}

//  Criterion cannot start under ThreadSanitizer: its BoxFort arena, mapped at
//  a random fixed address, collides with TSAN's memory layout (upstream issue
//  Snaipe/Criterion#274). A TSAN build of this file is therefore a plain
//  program that runs the thread-heavy scenario; any race TSAN reports makes
//  it exit non-zero (TSAN's exitcode, 66), and so does a wrong sum.
#if defined (__SANITIZE_THREAD__)
#define S_TSAN_MAIN
#elif defined (__has_feature)
#if __has_feature (thread_sanitizer)
#define S_TSAN_MAIN
#endif
#endif

#ifdef S_TSAN_MAIN
int
main (void)
{
    s_metrics = mesh_metrics_new ();
    char *problem = s_run_concurrent ();
    mesh_metrics_destroy (&s_metrics);
    fprintf (stderr, "test_mesh_metrics (TSAN, no Criterion): concurrent scenario %s%s\n",
             problem? "FAILED: ": "passed", problem? problem: "");
    int rc = problem? 1: 0;
    free (problem);
    return rc;
}
#endif
