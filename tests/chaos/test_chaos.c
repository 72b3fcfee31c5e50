/*  =========================================================================
    test_chaos - the whole mesh under steady careful load while its parts
    fail, on a seeded schedule; then six checks over the ledger, PostgreSQL,
    the audit log and the event stream (tests/chaos/chaos_check.h)

    Run by scripts/chaos, which makes the keys and tokens and a private
    PostgreSQL cluster, and sets:
      CHAOS_SECONDS   load duration (the faults fit in it)
      CHAOS_SEED      the schedule's and the clients' seed
      CHAOS_RATE      operations per second per client (default 15)
      CHAOS_DIR       keys/ (scripts/keys), client-N.jwt, burst.jwt, events.jwt;
                      the ledger goes to CHAOS_DIR/ledger.jsonl
      CHAOS_PG_DIR    the cluster (scripts/pg crash-restart restarts it)
      DATABASE_URL    its URL
      CHAOS_TAMPER    1: the checker's own test: after the run, corrupt
                      PostgreSQL (a user's name, an audit event gone, an
                      extra outbox event) and pass only if checks 1-4 see it
    Every fault kind runs once in a short run (seeded order); a longer run
    repeats rounds of them in new orders.

    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */

#include "chaos_check.h"
#include "chaos_client.h"
#include "chaos_mesh.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_CLIENTS 4
#define S_CLIENT_RATE 15    //  Operations per second per steady client (CHAOS_RATE)
#define S_RATE_LIMIT 100    //  Per caller per second, at least 4x a client's rate
#define S_HEARTBEAT_MS 1000 //  As scripts/run; liveness 3
#define S_LIVENESS 3
#define S_LEAD_MS 8000 //  Quiet load before the first fault: the baseline
#define S_TAIL_MS 6000 //  Quiet load after the last fault's window
#define S_BURST_MS 4000
#define S_BURST_THREADS 8

typedef enum {
    S_KILL_USER,
    S_KILL_AUDIT,
    S_KILL_GATEWAY,
    S_KILL_BROKER,
    S_STOP_USER,
    S_RESTART_PG,
    S_OVERLOAD,
    S_ROLLING_RESTART,
    S_FAULT_KINDS
} s_fault_kind_t;

static const char *const s_fault_names[S_FAULT_KINDS] = {
    "kill mesh-user", "kill mesh-audit",  "kill gateway", "kill broker",
    "stop mesh-user", "restart postgres", "overload 10x", "rolling restart"};

typedef struct {
    s_fault_kind_t kind;
    int64_t at_ms;
    int target; //  Which mesh-user, where it matters
} s_planned_t;

static void
s_sleep_until (int64_t epoch, int64_t at_ms)
{
    chaos_sleep_ms (epoch + at_ms - mesh_mono_ms ());
}

//  Read a token file (one line) into a fresh string.
static char *
s_read_token (const char *dir, const char *name)
{
    char path[512];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen (path, "r");
    cr_assert (file, "cannot read %s", path);
    char line[2048] = "";
    cr_assert (fgets (line, sizeof line, file), "%s is empty", path);
    fclose (file);
    line[strcspn (line, "\r\n")] = '\0';
    return mesh_strndup (line, strlen (line));
}

//  The schedule: rounds of every kind in a seeded order, spaced evenly
//  between the lead and the tail. Returns how many were planned.
static size_t
s_plan (uint64_t seed, int64_t load_ms, s_planned_t *plan, size_t capacity)
{
    uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    int64_t span = load_ms - S_LEAD_MS - S_TAIL_MS;
    size_t rounds = (size_t)(span / (S_FAULT_KINDS * 10000));
    if (rounds == 0)
        rounds = 1;
    size_t count = rounds * S_FAULT_KINDS;
    if (count > capacity)
        count = capacity - capacity % S_FAULT_KINDS;
    int64_t spacing = span / (int64_t)count;
    for (size_t round = 0; round * S_FAULT_KINDS < count; round++) {
        s_fault_kind_t order[S_FAULT_KINDS];
        for (int kind = 0; kind < S_FAULT_KINDS; kind++)
            order[kind] = (s_fault_kind_t)kind;
        for (int index = S_FAULT_KINDS - 1; index > 0; index--) {
            int other = (int)(chaos_random (&state) % (uint64_t)(index + 1));
            s_fault_kind_t swap = order[index];
            order[index] = order[other];
            order[other] = swap;
        }
        for (int index = 0; index < S_FAULT_KINDS; index++) {
            size_t slot = round * S_FAULT_KINDS + (size_t)index;
            plan[slot] = (s_planned_t){
                .kind = order[index],
                .at_ms = S_LEAD_MS + (int64_t)slot * spacing,
                .target = (int)(chaos_random (&state) % CHAOS_USERS),
            };
        }
    }
    return count;
}

typedef struct {
    chaos_mesh_t *mesh;
    const char *base;
    const char *pg_dir;
    const char *burst_token;
    int64_t epoch;
    long client_rate;
    chaos_attempt_t *burst; //  Every burst's answers
    size_t burst_count;
} s_run_t;

static int64_t
s_now (const s_run_t *run)
{
    return mesh_mono_ms () - run->epoch;
}

//  Restart `role`; a restart that fails marks the fault failed.
static void
s_restart (s_run_t *run, chaos_role_t role, chaos_fault_t *fault)
{
    char why[256];
    if (!chaos_mesh_start_role (run->mesh, role, why, sizeof why)) {
        fault->failed = true;
        snprintf (fault->note, sizeof fault->note, "restart failed: %.120s", why);
    }
}

//  Inject one fault and wait until it is over.
static void
s_inject (s_run_t *run, const s_planned_t *planned, chaos_fault_t *fault)
{
    chaos_role_t user = (chaos_role_t)(CHAOS_USER_0 + planned->target);
    fault->kind = s_fault_names[planned->kind];
    fault->inject_ms = s_now (run);
    fault->target_ms = 5000;
    switch (planned->kind) {
    case S_KILL_USER:
    case S_KILL_AUDIT:
    case S_KILL_GATEWAY:
    case S_KILL_BROKER: {
        //  SIGKILL, down a moment (the gateway not at all), then started
        //  again on its old ports
        chaos_role_t role = planned->kind == S_KILL_USER      ? user
                            : planned->kind == S_KILL_AUDIT   ? CHAOS_AUDIT
                            : planned->kind == S_KILL_GATEWAY ? CHAOS_GATEWAY
                                                              : CHAOS_BROKER;
        int64_t down_ms = planned->kind == S_KILL_GATEWAY  ? 0
                          : planned->kind == S_KILL_BROKER ? 500
                                                           : 1000;
        if (planned->kind == S_KILL_USER)
            fault->target_ms = S_HEARTBEAT_MS * S_LIVENESS + 1000;
        snprintf (fault->target, sizeof fault->target, "%s", chaos_role_name (role));
        chaos_mesh_kill (run->mesh, role);
        chaos_sleep_ms (down_ms);
        s_restart (run, role, fault);
        break;
    }
    case S_STOP_USER:
        //  Longer than heartbeat x liveness: the broker must give it up
        snprintf (fault->target, sizeof fault->target, "%s", chaos_role_name (user));
        fault->target_ms = S_HEARTBEAT_MS * S_LIVENESS + 1000;
        chaos_mesh_signal (run->mesh, user, SIGSTOP);
        chaos_sleep_ms (S_HEARTBEAT_MS * S_LIVENESS + 1500);
        chaos_mesh_signal (run->mesh, user, SIGCONT);
        break;
    case S_RESTART_PG: {
        snprintf (fault->target, sizeof fault->target, "postgres");
        char command[640];
        snprintf (command, sizeof command, "'%s/scripts/pg' crash-restart '%s' >&2",
                  MESH_SOURCE_DIR, run->pg_dir);
        int status = system (command);
        if (status != 0) {
            fault->failed = true;
            snprintf (fault->note, sizeof fault->note, "scripts/pg crash-restart: status %d",
                      status);
        }
        break;
    }
    case S_OVERLOAD: {
        snprintf (fault->target, sizeof fault->target, "gateway");
        fault->overload = true;
        chaos_attempt_t *answers = NULL;
        size_t count = 0;
        double rate = 10.0 * S_CLIENTS * run->client_rate;
        if (!chaos_burst_run (run->base, run->burst_token, S_BURST_THREADS, rate, S_BURST_MS,
                              run->epoch, &answers, &count))
            fault->failed = true;
        run->burst = realloc (run->burst, (run->burst_count + count + 1) * sizeof *answers);
        cr_assert (run->burst);
        memcpy (run->burst + run->burst_count, answers, count * sizeof *answers);
        run->burst_count += count;
        free (answers);
        snprintf (fault->note, sizeof fault->note, "%zu requests at %.0f/s", count, rate);
        break;
    }
    case S_ROLLING_RESTART: {
        //  Every mesh-user, one after the other: SIGTERM, exit 0, start
        snprintf (fault->target, sizeof fault->target, "every mesh-user");
        fault->target_ms = 0;
        size_t length = 0;
        for (int index = 0; index < CHAOS_USERS; index++) {
            chaos_role_t role = (chaos_role_t)(CHAOS_USER_0 + index);
            int status = -2;
            bool exited = chaos_mesh_stop_role (run->mesh, role, 15000, &status);
            if (!exited || status != 0)
                fault->failed = true;
            length +=
                (size_t)snprintf (fault->note + length, sizeof fault->note - length, "%s%s exit %d",
                                  index ? ", " : "", chaos_role_name (role), exited ? status : -2);
            s_restart (run, role, fault);
        }
        break;
    }
    case S_FAULT_KINDS:
        break;
    }
    fault->end_ms = s_now (run);
}

//  Corrupt what the checks read, as a lost or doubled write would: one
//  acknowledged user's name changed, the last audit event gone, an extra
//  update event in the outbox.
static void
s_tamper (PGconn *pg, const chaos_clients_t *clients)
{
    const chaos_ledger_t *ledger = chaos_clients_ledger (clients, 0);
    const char *id = NULL;
    for (size_t index = 0; !id && index < ledger->user_count; index++)
        if (!ledger->users[index].deleted && !ledger->users[index].pending)
            id = ledger->users[index].id;
    cr_assert (id, "no live user to tamper with");
    const char *params[] = {id};
    const char *statements[] = {
        "UPDATE users SET name = name || '-tampered' WHERE id = $1::uuid",
        "DELETE FROM audit.audit_events WHERE seq = (SELECT max(seq) FROM audit.audit_events)"
        " AND $1::text IS NOT NULL",
        "INSERT INTO outbox (event_id, type, subject, data) VALUES (gen_random_uuid(),"
        " 'user.updated', $1::uuid, '\\x80'::bytea)",
    };
    for (size_t index = 0; index < sizeof statements / sizeof statements[0]; index++) {
        PGresult *result = PQexecParams (pg, statements[index], 1, NULL, params, NULL, NULL, 0);
        cr_assert (PQresultStatus (result) == PGRES_COMMAND_OK, "tamper: %s",
                   PQresultErrorMessage (result));
        PQclear (result);
    }
    printf ("chaos: tampered with user %s, the last audit event and the outbox\n", id);
}

//  A number from the environment, `fallback` when unset.
static long
s_env_long (const char *name, long fallback)
{
    const char *text = getenv (name);
    return text && *text ? strtol (text, NULL, 10) : fallback;
}

Test (chaos, whole_mesh_under_faults)
{
    const char *dir = getenv ("CHAOS_DIR");
    const char *pg_dir = getenv ("CHAOS_PG_DIR");
    const char *database_url = getenv ("DATABASE_URL");
    if (!dir || !pg_dir || !database_url)
        cr_skip_test ("CHAOS_DIR, CHAOS_PG_DIR and DATABASE_URL are set by scripts/chaos");
    long seconds = s_env_long ("CHAOS_SECONDS", 90);
    long client_rate = s_env_long ("CHAOS_RATE", S_CLIENT_RATE);
    cr_assert (client_rate >= 1 && client_rate <= 500, "CHAOS_RATE must be 1 to 500");
    uint64_t seed = (uint64_t)s_env_long ("CHAOS_SEED", 1);
    cr_assert (seconds >= 40, "CHAOS_SECONDS must be 40 or more");
    curl_global_init (CURL_GLOBAL_DEFAULT);

    s_planned_t plan[512];
    size_t planned = s_plan (seed, seconds * 1000, plan, sizeof plan / sizeof plan[0]);
    printf ("chaos: seed %" PRIu64
            ", %ld s of load by %d clients at %.0f ops/s each, %zu faults:\n",
            seed, seconds, S_CLIENTS, (double)client_rate, planned);
    for (size_t index = 0; index < planned; index++)
        printf ("  %6.1f s  %s%s\n", (double)plan[index].at_ms / 1000.0,
                s_fault_names[plan[index].kind],
                plan[index].kind == S_KILL_USER || plan[index].kind == S_STOP_USER
                    ? (plan[index].target ? " (mesh-user-1)" : " (mesh-user-0)")
                    : "");
    fflush (stdout);

    char keys[512];
    snprintf (keys, sizeof keys, "%s/keys", dir);
    chaos_mesh_config_t config = {
        .keys_dir = keys,
        .database_url = database_url,
        .heartbeat_ms = S_HEARTBEAT_MS,
        .rate_limit = client_rate * 4 > S_RATE_LIMIT ? (int)client_rate * 4 : S_RATE_LIMIT,
    };
    chaos_mesh_t *mesh = chaos_mesh_new (&config);
    cr_assert (mesh);
    char why[512];
    cr_assert (chaos_mesh_start (mesh, why, sizeof why), "the mesh did not start: %s", why);

    char *tokens[S_CLIENTS];
    for (int index = 0; index < S_CLIENTS; index++) {
        char name[32];
        snprintf (name, sizeof name, "client-%d.jwt", index);
        tokens[index] = s_read_token (dir, name);
    }
    char *burst_token = s_read_token (dir, "burst.jwt");
    char *events_token = s_read_token (dir, "events.jwt");

    s_run_t run = {
        .mesh = mesh,
        .base = chaos_mesh_base (mesh),
        .pg_dir = pg_dir,
        .burst_token = burst_token,
        .client_rate = client_rate,
        .epoch = mesh_mono_ms (),
    };
    chaos_clients_t *clients = chaos_clients_new (run.base, (const char *const *)tokens, S_CLIENTS,
                                                  (double)client_rate, seed, run.epoch);
    cr_assert (clients);
    cr_assert (chaos_clients_start (clients, events_token));

    chaos_fault_t *faults = mesh_alloc ((planned + 1) * sizeof (chaos_fault_t));
    for (size_t index = 0; index < planned; index++) {
        s_sleep_until (run.epoch, plan[index].at_ms);
        s_inject (&run, &plan[index], &faults[index]);
        printf ("chaos: %6.1f s %s %s: over after %.1f s%s%s\n",
                (double)faults[index].inject_ms / 1000.0, faults[index].kind, faults[index].target,
                (double)(faults[index].end_ms - faults[index].inject_ms) / 1000.0,
                *faults[index].note ? "; " : "", faults[index].note);
        fflush (stdout);
    }
    s_sleep_until (run.epoch, seconds * 1000);
    chaos_clients_stop (clients);
    int64_t run_end = s_now (&run);

    //  Let the relay, mesh-audit and the event reader catch up, bounded
    PGconn *pg = PQconnectdb (database_url);
    cr_assert (PQstatus (pg) == CONNECTION_OK, "PostgreSQL: %s", PQerrorMessage (pg));
    int64_t until = mesh_mono_ms () + 60000;
    long outbox = -1, audited = -2;
    while (mesh_mono_ms () < until) {
        PGresult *result = PQexec (pg, "SELECT (SELECT count(*) FROM outbox),"
                                       " (SELECT count(*) FROM outbox WHERE seq IS NULL),"
                                       " (SELECT count(*) FROM audit.audit_events)");
        bool read = PQresultStatus (result) == PGRES_TUPLES_OK;
        long unnumbered = read ? strtol (PQgetvalue (result, 0, 1), NULL, 10) : 1;
        outbox = read ? strtol (PQgetvalue (result, 0, 0), NULL, 10) : -1;
        audited = read ? strtol (PQgetvalue (result, 0, 2), NULL, 10) : -2;
        PQclear (result);
        if (read && unnumbered == 0 && audited == outbox)
            break;
        chaos_sleep_ms (200);
    }
    chaos_clients_events_until (clients, outbox, 30000);
    char exits[256];
    size_t unclean = chaos_mesh_stop_all (mesh, exits, sizeof exits);

    char ledger[512];
    snprintf (ledger, sizeof ledger, "%s/ledger.jsonl", dir);
    cr_expect (chaos_clients_write_ledger (clients, ledger), "cannot write %s", ledger);
    size_t ops = 0;
    size_t results[3] = {0};
    for (size_t index = 0; index < chaos_clients_count (clients); index++) {
        const chaos_ledger_t *book = chaos_clients_ledger (clients, index);
        ops += book->op_count;
        for (size_t number = 0; number < book->op_count; number++)
            results[book->ops[number].result]++;
    }
    printf ("chaos: ledger %s: %zu operations: %zu ok, %zu failed, %zu unknown\n", ledger, ops,
            results[CHAOS_OK], results[CHAOS_FAILED], results[CHAOS_UNKNOWN]);

    chaos_check_input_t input = {
        .pg = pg,
        .audit_schema = "audit",
        .clients = clients,
        .faults = faults,
        .fault_count = planned,
        .burst = run.burst,
        .burst_count = run.burst_count,
        .mesh = mesh,
        .run_end_ms = run_end,
        .exits = exits,
        .unclean_exits = unclean,
    };
    bool tamper = s_env_long ("CHAOS_TAMPER", 0) == 1;
    if (tamper)
        s_tamper (pg, clients);
    unsigned failed = chaos_check_all (&input);
    int failures = __builtin_popcount (failed);
    if (tamper)
        printf ("chaos: tampered: checks 1-4 must fail: %s\n",
                (failed & 15u) == 15u ? "they did" : "NOT ALL DID");
    else
        printf ("chaos: %s: %d of 6 checks failed (seed %" PRIu64 "; repeat with --seed %" PRIu64
                ")\n",
                failed ? "FAIL" : "PASS", failures, seed, seed);
    fflush (stdout);

    PQfinish (pg);
    chaos_clients_destroy (&clients);
    chaos_mesh_destroy (&mesh);
    for (int index = 0; index < S_CLIENTS; index++)
        free (tokens[index]);
    free (burst_token);
    free (events_token);
    free (faults);
    free (run.burst);
    curl_global_cleanup ();
    if (tamper)
        cr_assert_eq (failed & 15u, 15u, "the checker missed tampering (failed bits %#x)", failed);
    else
        cr_assert_eq (failed, 0u, "%d chaos checks failed", failures);
}
