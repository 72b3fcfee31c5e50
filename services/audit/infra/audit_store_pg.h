/*  =========================================================================
    audit_store_pg - the audit store port on PostgreSQL (libpq)
    One connection, owned, used by one thread at a time: the ingest thread
    and each audit.list worker thread have their own store. The events of
    one append and the cursor move are ONE statement: the cursor moves only
    from the value the caller expects, and the events are inserted only when
    it did (ON CONFLICT DO NOTHING: each event once), so both happen or
    neither does. The events travel as one jsonb array parameter, so an
    append of a thousand events is one round trip. A lost connection is
    reset at the next call.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_STORE_PG_H_INCLUDED
#define AUDIT_STORE_PG_H_INCLUDED

#include "audit_store.h"

//  Connect with `conninfo` and use `schema` (already prepared by
//  audit_schema_prepare). Returns the port (audit_store_destroy), or NULL
//  with *err MESH_EUNAVAIL (no server) or MESH_EIO (schema missing).
audit_store_t *
    audit_store_pg_new (const char *conninfo, const char *schema, int *err);

#endif
