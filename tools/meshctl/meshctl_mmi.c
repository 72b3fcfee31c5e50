/*  =========================================================================
    meshctl_mmi - `meshctl services` and `meshctl service NAME`
    The broker answers mmi.* services itself (RFC 8) with raw bodies, not
    request/reply envelopes, so these commands talk MDP/0.1 on their own
    DEALER socket instead of going through mesh_client: send "", "MDPC01",
    service, body; read "", "MDPC01", service, body within --timeout.
    mmi.services (our extension) replies with one MessagePack map:
    {"services":[{"name","workers","idle_credit","queued","in_flight"}...]}.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "meshctl.h"
#include "mesh/mdp.h"
#include "mesh/mesh_alloc.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_json.h"
#include "mesh/mesh_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

//  Columns of the services table, in order, with the map key of each.
static const char *const s_columns[] = { "workers", "idle_credit", "queued", "in_flight" };
#define S_COLUMN_COUNT (sizeof s_columns / sizeof s_columns[0])

//  --------------------------------------------------------------------------
//  Send one MMI request and wait for its reply body. Returns 0 with *body
//  (caller frees) and *size, or an exit status after logging why.
static int
s_mmi_request (const meshctl_opts_t *opts, const char *service, const char *request,
               char **body, size_t *size)
{
    int timeout_ms = meshctl_reply_timeout_ms (opts);
    int status = MESHCTL_EXIT_FAILURE;
    void *context = zmq_ctx_new ();
    void *dealer = context? zmq_socket (context, ZMQ_DEALER): NULL;
    if (!dealer) {
        mesh_log_error ("cannot create a ZeroMQ socket: %s", zmq_strerror (errno));
        goto done;
    }
    int linger = 0;             //  An unanswered request must not hold up exit
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    if (mesh_curve_connect (opts->curve, dealer, opts->broker) != 0) {
        mesh_log_error ("cannot connect to %s: %s", opts->broker, zmq_strerror (errno));
        status = MESHCTL_EXIT_USAGE;        //  Only a bad endpoint fails here
        goto done;
    }
    const void *parts[] = { "", MDP_CLIENT, service, request };
    size_t sizes[] = { 0, strlen (MDP_CLIENT), strlen (service), strlen (request) };
    if (mdp_send_parts (dealer, ZMQ_DONTWAIT, 4, parts, sizes) != 0) {
        mesh_log_error ("cannot send %s to %s", service, opts->broker);
        goto done;
    }
    zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
    int ready = zmq_poll (&item, 1, timeout_ms);
    if (ready == 0) {
        mesh_log_error ("no reply to %s from %s within %d ms", service, opts->broker,
                        timeout_ms);
        status = MESHCTL_EXIT_TIMEOUT;
        goto done;
    }
    mdp_frames_t frames;
    if (ready < 0 || mdp_frames_recv (&frames, dealer, ZMQ_DONTWAIT) != 0) {
        mesh_log_error ("cannot receive from %s: %s", opts->broker, zmq_strerror (errno));
        goto done;
    }
    if (frames.overflow || frames.count != 4 || !mdp_frame_empty (&frames.frame[0])
        || !mdp_frame_eq (&frames.frame[1], MDP_CLIENT)
        || !mdp_frame_eq (&frames.frame[2], service))
        mesh_log_error ("the reply to %s is not \"\", MDPC01, %s, body (%d frames)", service,
                        service, frames.count);
    else {
        *size = zmq_msg_size (&frames.frame[3]);
        *body = mesh_alloc (*size + 1);     //  NUL-terminated for text bodies
        memcpy (*body, zmq_msg_data (&frames.frame[3]), *size);
        status = MESHCTL_EXIT_OK;
    }
    mdp_frames_close (&frames);
done:
    if (dealer)
        zmq_close (dealer);
    if (context)
        zmq_ctx_term (context);
    return status;
}

//  --------------------------------------------------------------------------
//  True when `object` is a str equal to `text`.
static bool
s_str_is (const msgpack_object *object, const char *text)
{
    size_t len = strlen (text);
    return object->type == MSGPACK_OBJECT_STR && object->via.str.size == len
        && memcmp (object->via.str.ptr, text, len) == 0;
}

//  --------------------------------------------------------------------------
//  Value of key `key` in map `map`, or NULL.
static const msgpack_object *
s_map_get (const msgpack_object *map, const char *key)
{
    for (uint32_t index = 0; index < map->via.map.size; index++)
        if (s_str_is (&map->via.map.ptr[index].key, key))
            return &map->via.map.ptr[index].val;
    return NULL;
}

//  Name string of a service row; empty when missing (rows are checked
//  before sorting, so that only keeps the compiler's null analysis happy).
static mesh_slice_t
s_name_of (const msgpack_object *row)
{
    const msgpack_object *name = s_map_get (row, "name");
    mesh_slice_t slice = { "", 0 };
    if (name && name->type == MSGPACK_OBJECT_STR) {
        slice.ptr = name->via.str.ptr;
        slice.len = name->via.str.size;
    }
    return slice;
}

//  --------------------------------------------------------------------------
//  Order services by name for a stable table (qsort comparator).
static int
s_compare_by_name (const void *left, const void *right)
{
    mesh_slice_t name_left = s_name_of (*(const msgpack_object *const *) left);
    mesh_slice_t name_right = s_name_of (*(const msgpack_object *const *) right);
    int order = memcmp (name_left.ptr, name_right.ptr,
                        name_left.len < name_right.len? name_left.len: name_right.len);
    return order? order: (name_left.len > name_right.len) - (name_left.len < name_right.len);
}

//  --------------------------------------------------------------------------
//  Print one table cell: a uint, or "-" when missing or not a uint.
static void
s_print_count (const msgpack_object *value, int width)
{
    if (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        printf ("  %*" PRIu64, width, value->via.u64);
    else
        printf ("  %*s", width, "-");
}

//  --------------------------------------------------------------------------
//  Print the services list as a table. Returns an exit status.
static int
s_print_table (const msgpack_object *list)
{
    uint32_t count = list->via.array.size;
    const msgpack_object **rows = mesh_alloc ((count + 1) * sizeof (msgpack_object *));
    int name_width = 4;         //  strlen ("NAME")
    for (uint32_t index = 0; index < count; index++) {
        const msgpack_object *row = &list->via.array.ptr[index];
        const msgpack_object *name =
            row->type == MSGPACK_OBJECT_MAP? s_map_get (row, "name"): NULL;
        if (!name || name->type != MSGPACK_OBJECT_STR || name->via.str.size > 255) {
            mesh_log_error ("mmi.services entry %u has no name string", (unsigned) index);
            free (rows);
            return MESHCTL_EXIT_FAILURE;
        }
        if ((int) name->via.str.size > name_width)
            name_width = (int) name->via.str.size;
        rows[index] = row;
    }
    qsort (rows, count, sizeof (msgpack_object *), s_compare_by_name);
    printf ("%-*s  %7s  %11s  %6s  %9s\n", name_width, "NAME", "WORKERS", "IDLE_CREDIT",
            "QUEUED", "IN_FLIGHT");
    static const int widths[S_COLUMN_COUNT] = { 7, 11, 6, 9 };
    for (uint32_t index = 0; index < count; index++) {
        mesh_slice_t name = s_name_of (rows[index]);
        //  Names come from the network: print them, never control bytes
        for (size_t byte = 0; byte < name.len; byte++) {
            unsigned char c = (unsigned char) name.ptr[byte];
            putchar (c >= 0x20 && c < 0x7F? c: '?');
        }
        printf ("%*s", name_width - (int) name.len, "");
        for (size_t column = 0; column < S_COLUMN_COUNT; column++)
            s_print_count (s_map_get (rows[index], s_columns[column]), widths[column]);
        putchar ('\n');
    }
    free (rows);
    return fflush (stdout) == 0? MESHCTL_EXIT_OK: MESHCTL_EXIT_FAILURE;
}

//  --------------------------------------------------------------------------
//  Run `services`.
int
meshctl_services (const meshctl_opts_t *opts)
{
    char *body = NULL;
    size_t size = 0;
    int status = s_mmi_request (opts, "mmi.services", "", &body, &size);
    if (status)
        return status;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    msgpack_object object;
    size_t offset = 0;
    msgpack_unpack_return result = msgpack_unpack (body, size, &offset, &zone, &object);
    const msgpack_object *list = NULL;
    if (result == MSGPACK_UNPACK_SUCCESS && object.type == MSGPACK_OBJECT_MAP)
        list = s_map_get (&object, "services");
    if (!list || list->type != MSGPACK_OBJECT_ARRAY) {
        //  An RFC 8 broker without our extension answers "501"
        if (size == 3 && memcmp (body, "501", 3) == 0)
            mesh_log_error ("the broker does not implement mmi.services (501)");
        else
            mesh_log_error ("the mmi.services reply is not a map with a services array");
        status = MESHCTL_EXIT_FAILURE;
    }
    else
    if (opts->json) {
        json_t *value = mesh_msgpack_to_json (&object, 0);
        if (!value || meshctl_print_json (stdout, value, opts->pretty)) {
            mesh_log_error ("cannot print the mmi.services reply as JSON");
            status = MESHCTL_EXIT_FAILURE;
        }
        json_decref (value);
    }
    else
        status = s_print_table (list);
    msgpack_zone_destroy (&zone);
    free (body);
    return status;
}

//  --------------------------------------------------------------------------
//  Run `service NAME`.
int
meshctl_service (const meshctl_opts_t *opts, const char *name)
{
    char *body = NULL;
    size_t size = 0;
    int status = s_mmi_request (opts, "mmi.service", name, &body, &size);
    if (status)
        return status;
    if (size == 3 && (memcmp (body, "200", 3) == 0 || memcmp (body, "404", 3) == 0)) {
        printf ("%s\n", body);
        status = body[0] == '2'? MESHCTL_EXIT_OK: MESHCTL_EXIT_NOT_FOUND;
    }
    else {
        json_t *text = meshctl_json_text (body, size);
        mesh_log_error ("unexpected mmi.service reply %s", json_string_value (text));
        json_decref (text);
        status = MESHCTL_EXIT_FAILURE;
    }
    free (body);
    return status;
}
