/*  =========================================================================
    chaos_check - what must hold after a chaos run, with figures

    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */

#include "chaos_check.h"
#include "mesh/mesh_alloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SLOW_MS 1000 //  An answer this late counts as an outage

//  One number from SQL with up to two text parameters; -1 on error.
static long
s_sql_long (PGconn *pg, const char *sql, const char *first, const char *second)
{
    const char *params[] = {first, second};
    int count = second ? 2 : first ? 1 : 0;
    PGresult *result = PQexecParams (pg, sql, count, NULL, params, NULL, NULL, 0);
    long value = -1;
    if (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1 &&
        !PQgetisnull (result, 0, 0))
        value = strtol (PQgetvalue (result, 0, 0), NULL, 10);
    PQclear (result);
    return value;
}

static void
s_print (int number, const char *name, bool pass, const char *format, ...)
{
    char figures[12288];
    va_list args;
    va_start (args, format);
    vsnprintf (figures, sizeof figures, format, args);
    va_end (args);
    printf ("check %d %s: %s %s\n", number, name, pass ? "PASS" : "FAIL", figures);
    fflush (stdout);
}

//  The user row `id`: true with name and email when it exists.
static bool
s_user_row (PGconn *pg, const char *id, char *name, size_t name_size, char *email,
            size_t email_size)
{
    const char *params[] = {id};
    PGresult *result = PQexecParams (pg, "SELECT name, email FROM users WHERE id = $1::uuid", 1,
                                     NULL, params, NULL, NULL, 0);
    bool found = PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1;
    if (found) {
        snprintf (name, name_size, "%s", PQgetvalue (result, 0, 0));
        snprintf (email, email_size, "%s", PQgetvalue (result, 0, 1));
    }
    PQclear (result);
    return found;
}

static long
s_events_of (PGconn *pg, const char *id, const char *type)
{
    return s_sql_long (pg, "SELECT count(*) FROM outbox WHERE subject = $1::uuid AND type = $2", id,
                       type);
}

//  --------------------------------------------------------------------------
//  Checks 1 and 4: the writes, and idempotency (bits 0 and 3).
static unsigned
s_check_writes (const chaos_check_input_t *input)
{
    PGconn *pg = input->pg;
    size_t acked[CHAOS_KINDS] = {0}, failed = 0, failed_present = 0, unknown = 0;
    size_t unknown_applied = 0, unknown_absent = 0, twice = 0, wrong = 0, stale = 0;
    size_t retried = 0, retried_twice = 0, users = 0, event_bounds = 0;
    char first_problem[512] = "";
#define S_PROBLEM(...)                                                                             \
    do {                                                                                           \
        if (!*first_problem)                                                                       \
            snprintf (first_problem, sizeof first_problem, __VA_ARGS__);                           \
    } while (0)

    for (size_t index = 0; index < chaos_clients_count (input->clients); index++) {
        const chaos_ledger_t *ledger = chaos_clients_ledger (input->clients, index);
        for (size_t number = 0; number < ledger->op_count; number++) {
            const chaos_op_t *op = &ledger->ops[number];
            stale += op->stale_read;
            if (op->stale_read)
                S_PROBLEM ("stale read of %s by %s", op->user_id, op->key);
            bool create = op->kind == CHAOS_CREATE || op->kind == CHAOS_CREATE_INVALID ||
                          op->kind == CHAOS_CREATE_DUPLICATE;
            bool write = create || op->kind == CHAOS_UPDATE || op->kind == CHAOS_UPDATE_DUPLICATE ||
                         op->kind == CHAOS_DELETE;
            if (!write)
                continue;
            if (op->result == CHAOS_OK)
                acked[op->kind]++;
            //  Rows that carry this operation's name: its own doing (names
            //  are unique per operation)
            long named =
                s_sql_long (pg, "SELECT count(*) FROM users WHERE name = $1", op->name, NULL);
            if (op->result == CHAOS_FAILED) {
                failed++;
                if (named > 0) {
                    failed_present++;
                    S_PROBLEM ("failed %s %s (status %ld) is in users", chaos_kind_name (op->kind),
                               op->key, op->status);
                }
            }
            else if (op->result == CHAOS_UNKNOWN && create) {
                unknown++;
                if (named == 1)
                    unknown_applied++;
                else if (named == 0)
                    unknown_absent++;
                else {
                    twice++;
                    S_PROBLEM ("unknown create %s applied %ld times", op->key, named);
                }
            }
            else if (op->result == CHAOS_UNKNOWN)
                unknown++; //  Counted against its user below
            if (op->attempts > 1 && create) {
                retried++;
                if (named > 1) {
                    retried_twice++;
                    S_PROBLEM ("retried create %s applied %ld times", op->key, named);
                }
            }
            else if (op->attempts > 1)
                retried++;
        }
        //  Each user the client created: its final state, and its events
        for (size_t number = 0; number < ledger->user_count; number++) {
            const chaos_user_t *user = &ledger->users[number];
            users++;
            char name[64], email[96];
            bool present = s_user_row (pg, user->id, name, sizeof name, email, sizeof email);
            bool acked_state = user->deleted ? !present
                                             : present && !strcmp (name, user->name) &&
                                                   !strcmp (email, user->email);
            bool pending_state = false;
            if (user->pending && user->pending_kind == CHAOS_DELETE)
                pending_state = !present;
            else if (user->pending)
                pending_state = present && !strcmp (name, user->pending_name) &&
                                !strcmp (email, user->pending_email);
            if (user->pending) {
                if (pending_state && !acked_state)
                    unknown_applied++;
                else if (acked_state)
                    unknown_absent++;
            }
            if (!acked_state && !pending_state) {
                wrong++;
                S_PROBLEM ("user %s is %s%s%s, acknowledged %s %s%s", user->id,
                           present ? name : "absent", present ? " " : "", present ? email : "",
                           user->name, user->email, user->deleted ? " (deleted)" : "");
            }
            //  Events: one create; updates between those acknowledged and
            //  those acknowledged plus one in doubt; at most one delete
            long created = s_events_of (pg, user->id, "user.created");
            long updated = s_events_of (pg, user->id, "user.updated");
            long deleted = s_events_of (pg, user->id, "user.deleted");
            long doubt_update = user->pending && user->pending_kind == CHAOS_UPDATE;
            long doubt_delete = user->pending && user->pending_kind == CHAOS_DELETE;
            long deleted_min = user->deleted ? 1 : 0;
            long deleted_max = user->deleted || doubt_delete ? 1 : 0;
            bool bounded = created == 1 && updated >= (long)user->updates_ok &&
                           updated <= (long)user->updates_ok + doubt_update &&
                           deleted >= deleted_min && deleted <= deleted_max;
            if (!bounded) {
                event_bounds++;
                S_PROBLEM ("user %s has events created %ld updated %ld deleted %ld,"
                           " acknowledged updates %zu%s%s",
                           user->id, created, updated, deleted, user->updates_ok,
                           user->deleted ? ", deleted" : "", user->pending ? ", one in doubt" : "");
            }
        }
    }
    size_t acked_total = 0;
    for (int kind = 0; kind < CHAOS_KINDS; kind++)
        acked_total += acked[kind];
    unsigned failures = 0;
    bool writes_pass = failed_present == 0 && twice == 0 && wrong == 0 && stale == 0;
    s_print (1, "writes", writes_pass,
             "acknowledged %zu (create %zu, update %zu, delete %zu) all in PostgreSQL with their"
             " values, %zu wrong; failed %zu, %zu present; unknown %zu: %zu applied once, %zu not"
             " applied, %zu applied twice; %zu users checked; stale reads %zu%s%s",
             acked_total, acked[CHAOS_CREATE], acked[CHAOS_UPDATE], acked[CHAOS_DELETE], wrong,
             failed, failed_present, unknown, unknown_applied, unknown_absent, twice, users, stale,
             *first_problem ? "; first problem: " : "", first_problem);
    failures |= writes_pass ? 0u : 1u;
    bool idem_pass = retried_twice == 0 && event_bounds == 0;
    s_print (4, "idempotency", idem_pass,
             "%zu writes retried under their key, %zu applied twice; %zu users' event counts"
             " within acknowledged..acknowledged+in-doubt, %zu outside",
             retried, retried_twice, users - event_bounds, event_bounds);
    failures |= idem_pass ? 0u : 8u;
    return failures;
#undef S_PROBLEM
}

//  --------------------------------------------------------------------------
//  Check 2: the audit log is the outbox.
static int
s_check_audit (const chaos_check_input_t *input, long outbox)
{
    PGconn *pg = input->pg;
    char sql[512];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM %s.audit_events", input->audit_schema);
    long audited = s_sql_long (pg, sql, NULL, NULL);
    snprintf (sql, sizeof sql, "SELECT count(DISTINCT seq) FROM %s.audit_events",
              input->audit_schema);
    long distinct = s_sql_long (pg, sql, NULL, NULL);
    snprintf (sql, sizeof sql, "SELECT coalesce(max(seq), 0) FROM %s.audit_events",
              input->audit_schema);
    long max_seq = s_sql_long (pg, sql, NULL, NULL);
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM %s.audit_events a JOIN outbox o ON o.event_id = a.event_id"
              " AND o.seq = a.seq AND o.type = a.type AND o.subject = a.subject",
              input->audit_schema);
    long matching = s_sql_long (pg, sql, NULL, NULL);
    //  One event per committed change: every created user has its event,
    //  and no event names a user that was never stored
    long orphans = s_sql_long (pg,
                               "SELECT count(*) FROM outbox o WHERE o.type = 'user.created' AND"
                               " NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.subject) AND"
                               " NOT EXISTS (SELECT 1 FROM outbox d WHERE d.subject = o.subject"
                               " AND d.type = 'user.deleted')",
                               NULL, NULL);
    long silent = s_sql_long (pg,
                              "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM"
                              " outbox o WHERE o.subject = u.id AND o.type = 'user.created')",
                              NULL, NULL);
    bool pass = audited == outbox && distinct == outbox && max_seq == outbox &&
                matching == outbox && orphans == 0 && silent == 0;
    s_print (2, "audit", pass,
             "outbox %ld events, audit log %ld (%ld distinct seq, max seq %ld), %ld identical to"
             " the outbox's; created events for no stored change %ld, stored users without one %ld",
             outbox, audited, distinct, max_seq, matching, orphans, silent);
    return !pass;
}

//  --------------------------------------------------------------------------
//  Check 3: the SSE reader saw seq 1..N once, in order.
static int
s_check_events (const chaos_check_input_t *input, long outbox)
{
    size_t count = 0, connections = 0;
    const int64_t *seqs = chaos_clients_events (input->clients, &count, &connections);
    size_t out_of_order = 0, repeated = 0;
    for (size_t index = 0; index < count; index++) {
        if (index > 0 && seqs[index] == seqs[index - 1])
            repeated++;
        else if (seqs[index] != (int64_t)index + 1 - (int64_t)repeated)
            out_of_order++;
    }
    bool pass = (long)count == outbox && out_of_order == 0 && repeated == 0;
    s_print (3, "events", pass,
             "SSE reader saw %zu events of %ld over %zu connections (%zu resumed with"
             " Last-Event-ID); out of order or missing %zu, repeated %zu",
             count, outbox, connections, connections ? connections - 1 : 0, out_of_order, repeated);
    return !pass;
}

//  --------------------------------------------------------------------------
static bool
s_attempt_failed (const chaos_attempt_t *attempt)
{
    return attempt->status == 0 || attempt->status == 429 || attempt->status >= 500;
}

static int
s_compare_long (const void *left, const void *right)
{
    int64_t a = *(const int64_t *)left, b = *(const int64_t *)right;
    return (a > b) - (a < b);
}

//  The q-quantile of `count` values (sorted here), 0 when none.
static int64_t
s_quantile (int64_t *values, size_t count, double q)
{
    if (count == 0)
        return 0;
    qsort (values, count, sizeof *values, s_compare_long);
    size_t index = (size_t)(q * (double)(count - 1) + 0.5);
    return values[index];
}

//  The window in which fault `index` may disturb requests.
static void
s_window (const chaos_fault_t *fault, int64_t *from, int64_t *to)
{
    *from = fault->inject_ms;
    int64_t by_target = fault->inject_ms + fault->target_ms;
    *to = fault->end_ms > by_target ? fault->end_ms : by_target;
}

static bool
s_in_any_window (const chaos_check_input_t *input, const chaos_attempt_t *attempt)
{
    for (size_t index = 0; index < input->fault_count; index++) {
        int64_t from, to;
        s_window (&input->faults[index], &from, &to);
        if (attempt->end_ms >= from && attempt->start_ms <= to)
            return true;
    }
    return false;
}

//  Check 5: availability.
static int
s_check_availability (const chaos_check_input_t *input)
{
    size_t outside = 0, outside_failed = 0, total = 0, failed_total = 0;
    char first_problem[160] = "";
    for (size_t client = 0; client < chaos_clients_count (input->clients); client++) {
        const chaos_ledger_t *ledger = chaos_clients_ledger (input->clients, client);
        for (size_t index = 0; index < ledger->attempt_count; index++) {
            const chaos_attempt_t *attempt = &ledger->attempts[index];
            total++;
            failed_total += s_attempt_failed (attempt);
            if (s_in_any_window (input, attempt))
                continue;
            outside++;
            if (s_attempt_failed (attempt)) {
                outside_failed++;
                if (!*first_problem)
                    snprintf (first_problem, sizeof first_problem, "; first: status %ld at %.1f s",
                              attempt->status, (double)attempt->start_ms / 1000.0);
            }
        }
    }
    bool pass = outside_failed == 0;
    char recoveries[8192] = "";
    size_t length = 0;
    for (size_t fault = 0; fault < input->fault_count; fault++) {
        const chaos_fault_t *this = &input->faults[fault];
        int64_t next =
            fault + 1 < input->fault_count ? input->faults[fault + 1].inject_ms : input->run_end_ms;
        //  Requests succeed again once the last attempt of this fault's
        //  time that failed, or waited S_SLOW_MS or more (held by a process
        //  that died or froze), has ended. An attempt belongs to the fault
        //  in whose time it started; a failed one to the fault in whose
        //  time it ended, the latest that can have ended it (one in flight
        //  when the gateway is killed is the kill's, not the fault before)
        int64_t recovered = 0, slowest = 0;
        size_t failed = 0;
        char failures[256] = ""; //  The first failed attempts: status, start, duration
        size_t failures_length = 0;
        for (size_t client = 0; client < chaos_clients_count (input->clients); client++) {
            const chaos_ledger_t *ledger = chaos_clients_ledger (input->clients, client);
            for (size_t index = 0; index < ledger->attempt_count; index++) {
                const chaos_attempt_t *attempt = &ledger->attempts[index];
                //  The slowest answer of the fault's time: what a request
                //  held by a dead process waited
                if (attempt->end_ms >= this->inject_ms && attempt->start_ms < next &&
                    attempt->end_ms - attempt->start_ms > slowest)
                    slowest = attempt->end_ms - attempt->start_ms;
                int64_t at_ms = s_attempt_failed (attempt) ? attempt->end_ms : attempt->start_ms;
                if (at_ms < this->inject_ms || at_ms >= next)
                    continue;
                bool slow = attempt->end_ms - attempt->start_ms >= S_SLOW_MS;
                if ((slow || s_attempt_failed (attempt)) &&
                    attempt->end_ms - this->inject_ms > recovered)
                    recovered = attempt->end_ms - this->inject_ms;
                if (!s_attempt_failed (attempt))
                    continue;
                failed++;
                int wrote =
                    failed <= 6
                        ? snprintf (failures + failures_length, sizeof failures - failures_length,
                                    " %ld at +%.2f s for %.2f s", attempt->status,
                                    (double)(attempt->start_ms - this->inject_ms) / 1000.0,
                                    (double)(attempt->end_ms - attempt->start_ms) / 1000.0)
                        : 0;
                if (wrote > 0 && failures_length + (size_t)wrote < sizeof failures)
                    failures_length += (size_t)wrote;
            }
        }
        bool fault_pass = recovered <= this->target_ms && !this->failed;
        pass = pass && fault_pass;
        length += (size_t)snprintf (
            recoveries + length, length < sizeof recoveries ? sizeof recoveries - length : 0,
            "\n    %6.1f s %-16s %-15s %3zu failed attempts, ok again"
            " after %5.2f s (target %.1f s), slowest answer %5.2f s%s%s%s%s%s",
            (double)this->inject_ms / 1000.0, this->kind, this->target, failed,
            (double)recovered / 1000.0, (double)this->target_ms / 1000.0, (double)slowest / 1000.0,
            fault_pass ? "" : " MISSED", *this->note ? "; " : "", this->note,
            failed ? "; failed:" : "", failures);
        if (length >= sizeof recoveries)
            length = sizeof recoveries - 1;
    }
    s_print (5, "availability", pass,
             "%zu attempts (%zu failed) by the steady clients; outside the fault windows %zu, of"
             " which %zu failed%s; per fault:%s",
             total, failed_total, outside, outside_failed, first_problem, recoveries);
    return !pass;
}

//  --------------------------------------------------------------------------
//  Check 6: memory, and the overload burst.
static int
s_check_resources (const chaos_check_input_t *input)
{
    bool pass = true;
    char memory[1024] = "";
    size_t length = 0;
    for (int role = 0; role < CHAOS_ROLES; role++) {
        chaos_rss_t rss = chaos_mesh_rss (input->mesh, (chaos_role_t)role);
        //  Bounded: no growth past four times the first sample or 64 MiB
        //  over it, whichever is more
        long bound =
            rss.first_kb * 4 > rss.first_kb + 65536 ? rss.first_kb * 4 : rss.first_kb + 65536;
        bool bounded = rss.samples > 0 && rss.max_kb <= bound;
        pass = pass && bounded;
        length +=
            (size_t)snprintf (memory + length, length < sizeof memory ? sizeof memory - length : 0,
                              "%s%s %ld/%ld/%ld KiB (%zu starts)%s", role ? ", " : "",
                              chaos_role_name ((chaos_role_t)role), rss.first_kb, rss.max_kb,
                              rss.last_kb, rss.starts, bounded ? "" : " UNBOUNDED");
        if (length >= sizeof memory)
            length = sizeof memory - 1;
    }

    //  The burst: every answer fast, refusals with Retry-After
    size_t admitted = 0, refused = 0, refused_without = 0, other = 0;
    int64_t *refusal_ms = mesh_alloc ((input->burst_count + 1) * sizeof (int64_t));
    int64_t *admitted_ms = mesh_alloc ((input->burst_count + 1) * sizeof (int64_t));
    int64_t burst_from = INT64_MAX, burst_to = 0;
    for (size_t index = 0; index < input->burst_count; index++) {
        const chaos_attempt_t *attempt = &input->burst[index];
        int64_t took = attempt->end_ms - attempt->start_ms;
        if (attempt->start_ms < burst_from)
            burst_from = attempt->start_ms;
        if (attempt->end_ms > burst_to)
            burst_to = attempt->end_ms;
        if (attempt->status >= 200 && attempt->status < 300)
            admitted_ms[admitted++] = took;
        else if (attempt->status == 429 || attempt->status == 503) {
            refusal_ms[refused++] = took;
            refused_without += !attempt->retry_after;
        }
        else
            other++;
    }
    int64_t refusal_p99 = s_quantile (refusal_ms, refused, 0.99);
    int64_t admitted_p99 = s_quantile (admitted_ms, admitted, 0.99);
    free (refusal_ms);
    free (admitted_ms);

    //  The steady clients' successful first attempts: during the burst and
    //  outside every fault window
    size_t during = 0, quiet = 0, capacity = 0;
    for (size_t client = 0; client < chaos_clients_count (input->clients); client++)
        capacity += chaos_clients_ledger (input->clients, client)->attempt_count;
    int64_t *during_ms = mesh_alloc ((capacity + 1) * sizeof (int64_t));
    int64_t *quiet_ms = mesh_alloc ((capacity + 1) * sizeof (int64_t));
    for (size_t client = 0; client < chaos_clients_count (input->clients); client++) {
        const chaos_ledger_t *ledger = chaos_clients_ledger (input->clients, client);
        for (size_t index = 0; index < ledger->attempt_count; index++) {
            const chaos_attempt_t *attempt = &ledger->attempts[index];
            if (s_attempt_failed (attempt))
                continue;
            int64_t took = attempt->end_ms - attempt->start_ms;
            if (input->burst_count && attempt->start_ms >= burst_from &&
                attempt->end_ms <= burst_to)
                during_ms[during++] = took;
            else if (!s_in_any_window (input, attempt))
                quiet_ms[quiet++] = took;
        }
    }
    int64_t during_p99 = s_quantile (during_ms, during, 0.99);
    int64_t quiet_p99 = s_quantile (quiet_ms, quiet, 0.99);
    free (during_ms);
    free (quiet_ms);
    //  Fast: a refusal within 250 ms; kept latency: the steady p99 during
    //  the burst within three times the quiet p99 plus 50 ms
    bool burst_pass =
        input->burst_count == 0 || (refused > 0 && refused_without == 0 && other == 0 &&
                                    refusal_p99 <= 250 && during_p99 <= 3 * quiet_p99 + 50);
    pass = pass && burst_pass && input->unclean_exits == 0;
    s_print (
        6, "resources", pass,
        "RSS first/max/last: %s; overload burst %zu requests in %.1f s: %zu admitted (p99 %" PRId64
        " ms), %zu refused 429/503 (p99 %" PRId64 " ms, %zu without Retry-After),"
        " %zu other (timeouts, errors); steady clients' p99 %" PRId64
        " ms during the burst, %" PRId64 " ms outside faults; final stop: %s",
        memory, input->burst_count,
        input->burst_count ? (double)(burst_to - burst_from) / 1000.0 : 0.0, admitted, admitted_p99,
        refused, refusal_p99, refused_without, other, during_p99, quiet_p99, input->exits);
    return !pass;
}

//  --------------------------------------------------------------------------
unsigned
chaos_check_all (const chaos_check_input_t *input)
{
    long outbox = s_sql_long (input->pg, "SELECT count(*) FROM outbox", NULL, NULL);
    unsigned failures = s_check_writes (input);
    failures |= s_check_audit (input, outbox) ? 2u : 0u;
    failures |= s_check_events (input, outbox) ? 4u : 0u;
    failures |= s_check_availability (input) ? 16u : 0u;
    failures |= s_check_resources (input) ? 32u : 0u;
    return failures;
}
