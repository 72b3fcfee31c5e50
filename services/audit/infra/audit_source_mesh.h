/*  =========================================================================
    audit_source_mesh - the audit source port on the mesh: events.list of
    service `user`, through the broker, with libmesh's client
    Used by the ingest thread only (the client belongs to one thread).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef AUDIT_SOURCE_MESH_H_INCLUDED
#define AUDIT_SOURCE_MESH_H_INCLUDED

#include "audit_store.h"

#include "mesh/mesh_client.h"

//  A source over `client` (borrowed; must outlive it). Each fetch waits at
//  most `timeout_ms` for the reply. Destroy with free ().
audit_source_t *
    audit_source_mesh_new (mesh_client_t *client, int timeout_ms);

#endif
