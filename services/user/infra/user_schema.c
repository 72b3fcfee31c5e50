/*  =========================================================================
    user_schema - versioned schema migrations of the user service's database
    The migrations of the user service's tables; mesh_pg_migrate applies
    them (each in its own transaction, under an advisory lock). Append only:
    a released migration is never edited, a change is a new version.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_schema.h"

#include "mesh/mesh_pg.h"

#include <stdint.h>

//  Advisory lock key of the migrator: "zmeshusr" as a big-endian int64. A
//  single constant key for every schema of the database: migrations of two
//  schemas then also wait for each other, which costs nothing (they run once
//  at start-up) and keeps the key independent of search_path. The relay uses
//  its own key; keys of the one-int64 form never collide with the two-int32
//  form (PostgreSQL keeps the two key spaces apart).
#define USER_SCHEMA_LOCK_KEY INT64_C (8821818791436841842)


//  Migration 1: the initial schema. One string per statement: a statement
//  that fails is named in the error, and each literal stays under the 4095
//  characters ISO C guarantees.
static const char *const s_migration_1 [] = {
    //  users: the service's state, one row per user. The domain trims and
    //  lower-cases email before it gets here; the unique index on
    //  lower(email) is the backstop that makes "email unique
    //  case-insensitively" hold even for rows written by other means, and
    //  turns a concurrent duplicate into SQLSTATE 23505 (MESH_ECONFLICT,
    //  already_exists). The primary key on id serves user.get and the keyset
    //  pagination of user.list (WHERE id > $after ORDER BY id LIMIT $n).
    "CREATE TABLE users ("
    "    id uuid PRIMARY KEY,"
    "    name text NOT NULL,"
    "    email text NOT NULL,"
    "    created_at timestamptz NOT NULL,"
    "    updated_at timestamptz NOT NULL"
    ")",
    "CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email))",

    //  outbox: one row per event, written in the same transaction as the
    //  change it describes, so a rolled-back change leaves no event.
    //  - id orders rows by insertion only. It comes from a sequence, whose
    //    values have gaps and commit out of order, so it is NEVER the
    //    event's seq (DESIGN.md: a relay tracking "last id seen" would skip
    //    a row that commits late).
    //  - seq is given by the relay when it takes the row: last_seq + 1 from
    //    outbox_relay, in the same transaction, stored before it publishes;
    //    NULL until then. UNIQUE: no seq twice; its index also serves
    //    events.list (WHERE seq > $after_seq ORDER BY seq LIMIT $n).
    //  - data is the event payload as MessagePack, bytea: the mesh's bodies
    //    are MessagePack, so the relay and events.list send the stored bytes
    //    as they are, with no decode or re-encode, and the published event
    //    is byte for byte the one written with the change. jsonb would
    //    re-order keys, normalise numbers and cost a parse on every insert
    //    to make the payload queryable in SQL, which nothing here needs (the
    //    audit service keeps its own store).
    //  - trace is the W3C traceparent of the request that caused the event.
    "CREATE TABLE outbox ("
    "    id bigserial PRIMARY KEY,"
    "    event_id uuid NOT NULL UNIQUE,"
    "    type text NOT NULL,"
    "    subject uuid NOT NULL,"
    "    data bytea NOT NULL,"
    "    trace text,"
    "    created_at timestamptz NOT NULL DEFAULT now(),"
    "    seq bigint UNIQUE CHECK (seq > 0)"
    ")",
    //  The relay's query for rows still to number, oldest first:
    //  WHERE seq IS NULL ORDER BY id LIMIT $n FOR UPDATE. Partial, so it
    //  holds only the backlog and stays small however long the outbox is.
    "CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE seq IS NULL",

    //  outbox_relay: exactly one row, the last seq given. The relay numbers
    //  a batch with UPDATE outbox_relay SET last_seq = last_seq + $n
    //  RETURNING last_seq in the transaction that sets the rows' seq, so
    //  seqs are 1, 2, 3, ... with no gap (a rolled-back batch gives its
    //  numbers back) and the row lock serialises two relays that both
    //  believe they lead. The boolean primary key with CHECK allows one row.
    "CREATE TABLE outbox_relay ("
    "    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
    "    last_seq bigint NOT NULL CHECK (last_seq >= 0)"
    ")",
    "INSERT INTO outbox_relay (singleton, last_seq) VALUES (true, 0)",

    //  idempotency_keys: the first reply to a request made with an
    //  Idempotency-Key. Written in the transaction of the change, so a retry
    //  either finds the reply of a committed change or finds nothing and
    //  runs again; request_hash tells a retry (same hash: return reply) from
    //  a different request reusing the key (failed_precondition). The index
    //  on created_at lets old keys be purged without a full scan.
    "CREATE TABLE idempotency_keys ("
    "    key text PRIMARY KEY,"
    "    request_hash bytea NOT NULL,"
    "    reply bytea NOT NULL,"
    "    created_at timestamptz NOT NULL DEFAULT now()"
    ")",
    "CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at)",
    NULL
};

//  Migration 2: what the relay and idempotency keys need.
static const char *const s_migration_2 [] = {
    //  The relay wakes on NOTIFY mesh_outbox: one per inserting transaction
    //  (FOR EACH STATEMENT, and PostgreSQL folds identical notifications of
    //  a transaction into one), sent at commit, so the relay never wakes for
    //  a row it cannot see yet. The payload is the table's schema: several
    //  schemas of one database (tests, tenants) share the channel name, and
    //  a relay ignores the others' payloads. Constant channel: LISTEN needs
    //  no identifier built from data.
    "CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN PERFORM pg_notify('mesh_outbox', TG_TABLE_SCHEMA); RETURN NULL; END $$",
    "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox"
    " FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()",
    //  published_seq: the last seq the relay is known to have published. A
    //  new leader republishes from there (subscribers are idempotent on
    //  event id), so a leader that died between numbering and publishing
    //  loses nothing on the live stream either.
    "ALTER TABLE outbox_relay ADD COLUMN published_seq bigint NOT NULL DEFAULT 0"
    " CHECK (published_seq >= 0)",
    //  The key is claimed (row inserted, reply NULL) before the change runs
    //  in the same transaction: a concurrent request with the same key waits
    //  on the primary key until the first commits or rolls back, so one
    //  change happens whatever the timing. request holds the request itself
    //  (method and body, a few hundred bytes), not a hash: comparing bytes
    //  is exact and needs no hash function.
    "ALTER TABLE idempotency_keys RENAME COLUMN request_hash TO request",
    "ALTER TABLE idempotency_keys ALTER COLUMN reply DROP NOT NULL",
    NULL
};

//  Migration 3: who asked for each change.
static const char *const s_migration_3[] = {
    //  actor: the request's actor (a bus key's name, an HTTP caller's token
    //  subject or API key name), written with the event in the statement of
    //  the change; NULL when the request named none, and for every event
    //  written before this migration. Nullable with no default, so adding
    //  it rewrites no row and holds the table's lock only for an instant.
    //  IF NOT EXISTS: a column an operator added by hand ahead of the
    //  upgrade does not stop the service from starting.
    "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS actor text", NULL};

//  Every migration, in version order. Append only.
static const mesh_pg_migration_t s_migrations[] = {
    {1, "initial: users, outbox, outbox_relay, idempotency_keys", s_migration_1},
    {2, "relay notify and published_seq; idempotency claim", s_migration_2},
    {3, "outbox actor", s_migration_3},
};

#define S_MIGRATION_COUNT ((int) (sizeof s_migrations / sizeof s_migrations [0]))

//  --------------------------------------------------------------------------
//  Bring the schema up to date (mesh_pg_migrate with our table and key).
int
user_schema_migrate (PGconn *conn, int *applied, char *error, size_t error_size)
{
    return mesh_pg_migrate (conn, USER_SCHEMA_LOCK_KEY, s_migrations, S_MIGRATION_COUNT, applied,
                            error, error_size);
}


//  --------------------------------------------------------------------------
//  Newest compiled-in version.
int
user_schema_latest (void)
{
    return S_MIGRATION_COUNT;
}
