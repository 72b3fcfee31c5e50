/*  =========================================================================
    test_user_schema - the user service's schema migrations on real PostgreSQL
    Each test works in a fresh schema of the DATABASE_URL database (search_path
    points there), dropped at teardown, so tests are independent and leave the
    database as they found it. Skipped when DATABASE_URL is not set.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_err.h"
#include "mesh_test.h"
#include "user_schema.h"

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MIGRATORS 8           //  Concurrent migrators in the race test

static mesh_test_pg_schema_t s_pg;     //  This test's schema

//  Skip the test when there is no database to test against.
static const char *
s_database_url (void)
{
    const char *url = getenv ("DATABASE_URL");
    if (!url || !*url)
        cr_skip_test ("DATABASE_URL is not set");
    return url;
}

//  A new connection whose search_path is this test's schema. Thread-safe
//  (no assertions): NULL on failure.
static PGconn *
s_connect (void)
{
    PGconn *conn = PQconnectdb (getenv ("DATABASE_URL"));
    if (PQstatus (conn) != CONNECTION_OK) {
        PQfinish (conn);
        return NULL;
    }
    char sql [128];
    snprintf (sql, sizeof sql, "SET search_path TO %s", s_pg.name);
    PGresult *result = PQexec (conn, sql);
    int ok = PQresultStatus (result) == PGRES_COMMAND_OK;
    PQclear (result);
    if (!ok) {
        PQfinish (conn);
        return NULL;
    }
    return conn;
}

static void
s_setup (void)
{
    mesh_test_pg_schema_new (&s_pg, "test_user_schema");   //  Without a database the test skips
}

static void
s_teardown (void)
{
    mesh_test_pg_schema_drop (&s_pg);
}

TestSuite (user_schema, .init = s_setup, .fini = s_teardown, .timeout = 60.);

Test (user_schema, fresh_schema_gets_every_migration)
{
    s_database_url ();
    PGconn *conn = s_connect ();
    cr_assert_not_null (conn);
    int applied = -1;
    char error [256] = "";
    int rc = user_schema_migrate (conn, &applied, error, sizeof error);
    cr_assert_eq (rc, 0, "rc %d: %s", rc, error);
    cr_assert_eq (applied, user_schema_latest ());
    cr_assert_str_empty (error);

    //  Every table is there, in this test's schema
    cr_assert_eq (mesh_test_pg_long (conn,
                                "SELECT count(*) FROM information_schema.tables"
                                " WHERE table_schema = $1 AND table_name IN ('schema_migrations',"
                                " 'users', 'outbox', 'outbox_relay', 'idempotency_keys')",
                                s_pg.name),
                  5);
    cr_assert_eq (mesh_test_pg_long (conn,
                                "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND"
                                " indexname IN ('users_email_lower_key', 'outbox_unpublished_idx')",
                                s_pg.name),
                  2);
    //  Each version recorded once, 1..latest
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(*) FROM schema_migrations", NULL),
                  user_schema_latest ());
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT max(version) FROM schema_migrations", NULL),
                  user_schema_latest ());
    //  The relay starts numbering from 1
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT last_seq FROM outbox_relay", NULL), 0);
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(*) FROM outbox_relay", NULL), 1);
    //  Nothing left open
    cr_assert_eq (PQtransactionStatus (conn), PQTRANS_IDLE);
    PQfinish (conn);
}

//  A connection to this test's schema, every migration applied (skips the
//  test without a database).
static PGconn *
s_migrated (void)
{
    s_database_url ();
    PGconn *conn = s_connect ();
    cr_assert_not_null (conn);
    int applied = -1;
    char error [256] = "";
    cr_assert_eq (user_schema_migrate (conn, &applied, error, sizeof error), 0, "%s", error);
    cr_assert_eq (applied, user_schema_latest ());
    return conn;
}

Test (user_schema, second_run_applies_nothing)
{
    PGconn *conn = s_migrated ();
    int applied = -1;
    char error[256] = "";
    cr_assert_eq (user_schema_migrate (conn, &applied, error, sizeof error), 0, "%s", error);
    cr_assert_eq (applied, 0);
    //  A new connection (another process starting later) sees the same
    PGconn *other = s_connect ();
    cr_assert_not_null (other);
    cr_assert_eq (user_schema_migrate (other, &applied, NULL, 0), 0);
    cr_assert_eq (applied, 0);
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(*) FROM schema_migrations", NULL),
                  user_schema_latest ());
    PQfinish (other);
    PQfinish (conn);
}

typedef struct {
    PGconn *conn;               //  The migrator's own connection
    pthread_barrier_t *start;   //  Released when every migrator is connected
    int rc;                     //  user_schema_migrate's result
    int applied;                //  Its *applied
    char error [256];           //  Its error text
} s_migrator_t;

static void *
s_migrator (void *args)
{
    s_migrator_t *self = (s_migrator_t *) args;
    pthread_barrier_wait (self->start);
    self->rc = user_schema_migrate (self->conn, &self->applied, self->error, sizeof self->error);
    return NULL;
}

Test (user_schema, concurrent_migrators_apply_once)
{
    s_database_url ();
    s_migrator_t migrators [S_MIGRATORS];
    pthread_t threads [S_MIGRATORS];
    pthread_barrier_t start;
    pthread_barrier_init (&start, NULL, S_MIGRATORS);
    memset (migrators, 0, sizeof migrators);
    for (int index = 0; index < S_MIGRATORS; index++) {
        migrators [index].conn = s_connect ();
        cr_assert_not_null (migrators [index].conn);
        migrators [index].start = &start;
        migrators [index].applied = -1;
    }
    for (int index = 0; index < S_MIGRATORS; index++)
        cr_assert_eq (pthread_create (&threads [index], NULL, s_migrator, &migrators [index]), 0);
    int total = 0;
    int appliers = 0;
    for (int index = 0; index < S_MIGRATORS; index++) {
        pthread_join (threads [index], NULL);
        cr_assert_eq (migrators [index].rc, 0, "migrator %d: rc %d: %s", index,
                      migrators [index].rc, migrators [index].error);
        total += migrators [index].applied;
        appliers += migrators [index].applied > 0;
    }
    pthread_barrier_destroy (&start);
    //  Each migration takes the lock on its own, so with several migrations
    //  different migrators may apply different ones: what must hold is that
    //  every migration was applied exactly once, by someone
    cr_assert_geq (appliers, 1, "no migrator applied anything");
    cr_assert_eq (total, user_schema_latest (), "%d applications of %d migrations", total,
                  user_schema_latest ());

    PGconn *conn = migrators [0].conn;
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(*) FROM schema_migrations", NULL),
                  user_schema_latest ());
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(DISTINCT version) FROM schema_migrations",
                                NULL),
                  user_schema_latest ());
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(*) FROM outbox_relay", NULL), 1);
    for (int index = 0; index < S_MIGRATORS; index++)
        PQfinish (migrators [index].conn);
}

Test (user_schema, email_is_unique_case_insensitively)
{
    s_database_url ();
    PGconn *conn = s_connect ();
    cr_assert_not_null (conn);
    char error [256] = "";
    cr_assert_eq (user_schema_migrate (conn, NULL, error, sizeof error), 0, "%s", error);
    const char *sql = "INSERT INTO users (id, name, email, created_at, updated_at)"
                      " VALUES ($1, 'Ann', $2, now(), now())";
    const char *first [2] = { "6f1c1d2e-0000-4000-8000-000000000001", "a@x.org" };
    PGresult *result = PQexecParams (conn, sql, 2, NULL, first, NULL, NULL, 0);
    cr_assert_eq (PQresultStatus (result), PGRES_COMMAND_OK, "%s", PQerrorMessage (conn));
    PQclear (result);

    const char *second [2] = { "6f1c1d2e-0000-4000-8000-000000000002", "A@x.org" };
    result = PQexecParams (conn, sql, 2, NULL, second, NULL, NULL, 0);
    cr_assert_eq (PQresultStatus (result), PGRES_FATAL_ERROR);
    const char *state = PQresultErrorField (result, PG_DIAG_SQLSTATE);
    cr_assert_not_null (state);
    cr_assert_str_eq (state, "23505");
    PQclear (result);
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(*) FROM users", NULL), 1);
    PQfinish (conn);
}

Test (user_schema, bad_connection_is_unavailable)
{
    //  Port 1 on loopback: refused at once, no database needed
    PGconn *conn = PQconnectdb ("host=127.0.0.1 port=1 dbname=none connect_timeout=2");
    cr_assert_eq (PQstatus (conn), CONNECTION_BAD);
    int applied = -1;
    char error [256] = "";
    cr_assert_eq (user_schema_migrate (conn, &applied, error, sizeof error), MESH_EUNAVAIL);
    cr_assert_eq (applied, 0);
    cr_assert_str_not_empty (error);
    cr_assert_null (strchr (error, '\n'), "one line: %s", error);
    PQfinish (conn);
}

Test (user_schema, failed_migration_leaves_nothing)
{
    s_database_url ();
    PGconn *conn = s_connect ();
    cr_assert_not_null (conn);
    //  A table in the way: migration 1's CREATE TABLE outbox fails after
    //  users was created, so the whole migration must roll back
    mesh_test_pg_exec (conn, "CREATE TABLE outbox (x int)");
    int applied = -1;
    char error [256] = "";
    int rc = user_schema_migrate (conn, &applied, error, sizeof error);
    cr_assert_eq (rc, MESH_EIO, "rc %d", rc);
    cr_assert_eq (applied, 0);
    cr_assert (strstr (error, "42P07"), "error names the SQLSTATE: %s", error);
    cr_assert_eq (PQtransactionStatus (conn), PQTRANS_IDLE, "rolled back");
    cr_assert_eq (mesh_test_pg_long (conn,
                                "SELECT count(*) FROM information_schema.tables WHERE"
                                " table_schema = $1 AND table_name IN ('users',"
                                " 'schema_migrations')",
                                s_pg.name),
                  0);
    //  Once the obstacle is gone, the same connection migrates
    mesh_test_pg_exec (conn, "DROP TABLE outbox");
    cr_assert_eq (user_schema_migrate (conn, &applied, error, sizeof error), 0, "%s", error);
    cr_assert_eq (applied, user_schema_latest ());
    PQfinish (conn);
}

Test (user_schema, refuses_to_run_inside_a_transaction)
{
    s_database_url ();
    PGconn *conn = s_connect ();
    cr_assert_not_null (conn);
    mesh_test_pg_exec (conn, "BEGIN");
    char error [256] = "";
    cr_assert_eq (user_schema_migrate (conn, NULL, error, sizeof error), MESH_EIO);
    cr_assert_str_not_empty (error);
    mesh_test_pg_exec (conn, "ROLLBACK");
    PQfinish (conn);
}

//  Migration 3 (outbox.actor): rows written before it have no actor, and a
//  column an operator added by hand ahead of the upgrade does not stop it.
Test (user_schema, actor_migration_is_nullable_and_tolerates_the_column)
{
    PGconn *conn = s_migrated ();
    int applied = -1;
    char error[256] = "";
    cr_assert_geq (user_schema_latest (), 3);
    //  An event as the service wrote them before: no actor given
    mesh_test_pg_exec (conn, "INSERT INTO outbox (event_id, type, subject, data)"
                             " VALUES (gen_random_uuid(), 'user.created', gen_random_uuid(),"
                             " '\\x80')");
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(*) FROM outbox WHERE actor IS NULL", NULL),
                  1);
    //  As if the column had come by hand, with migration 3 still to run
    mesh_test_pg_exec (conn, "DELETE FROM schema_migrations WHERE version = 3");
    cr_assert_eq (user_schema_migrate (conn, &applied, error, sizeof error), 0, "%s", error);
    cr_assert_eq (applied, 1);
    cr_assert_eq (mesh_test_pg_long (conn, "SELECT count(*) FROM outbox", NULL), 1,
                  "the rows stay");
    PQfinish (conn);
}
