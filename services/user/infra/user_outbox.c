/*  =========================================================================
    user_outbox - reading outbox rows on PostgreSQL
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "user_outbox.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_err.h"

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

//  A binary int8 column (8 bytes, network order).
static bool
s_int8 (const PGresult *result, int row, int column, int64_t *value)
{
    if (PQgetisnull (result, row, column) || PQgetlength (result, row, column) != 8)
        return false;
    uint64_t raw;
    memcpy (&raw, PQgetvalue (result, row, column), 8);
    *value = (int64_t) be64toh (raw);
    return true;
}

//  A binary text column into a NUL-terminated buffer of `size` bytes.
static bool
s_text (const PGresult *result, int row, int column, char *buffer, size_t size)
{
    if (PQgetisnull (result, row, column))
        return false;
    size_t len = (size_t) PQgetlength (result, row, column);
    if (len >= size)
        return false;
    memcpy (buffer, PQgetvalue (result, row, column), len);
    buffer[len] = '\0';
    return true;
}

int
user_outbox_event_from_row (const PGresult *result, int row, user_stored_event_t *event)
{
    memset (event, 0, sizeof *event);
    int64_t seq = 0;
    if (!s_int8 (result, row, 0, &seq) || seq <= 0 ||
        !s_text (result, row, 1, event->id, sizeof event->id) ||
        !s_text (result, row, 2, event->type, sizeof event->type) ||
        !s_text (result, row, 3, event->subject, sizeof event->subject) ||
        !s_text (result, row, 4, event->trace, sizeof event->trace) ||
        !s_int8 (result, row, 5, &event->time_us) || PQgetisnull (result, row, 6) ||
        !s_text (result, row, 7, event->actor, sizeof event->actor))
        return MESH_EIO;
    event->seq = (uint64_t) seq;
    event->data_len = (size_t) PQgetlength (result, row, 6);
    if (event->data_len) {
        event->data = mesh_alloc (event->data_len);
        memcpy (event->data, PQgetvalue (result, row, 6), event->data_len);
    }
    return 0;
}
