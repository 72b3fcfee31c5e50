/*  =========================================================================
    meshctl_call - `meshctl call SERVICE METHOD JSON`
    JSON text -> jansson -> MessagePack body -> mesh_client_call -> reply
    body -> JSON line on stdout. An error reply (or no reply before the
    deadline, which the client reports as deadline_exceeded) becomes
    {"error":{"code","message"}} on stderr and exit status 10 + its code.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "meshctl.h"
#include "mesh/mdp.h"
#include "mesh/mesh_client.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_json.h"
#include "mesh/mesh_log.h"

#include <string.h>

//  The body sits inside the envelope map, and msgpack-c's unpacker stops at
//  MESH_ENVELOPE_MAX_DEPTH levels in all: the body gets one level less.
#define S_BODY_MAX_DEPTH (MESH_ENVELOPE_MAX_DEPTH - 1)

//  --------------------------------------------------------------------------
//  Parse the JSON argument ("-" = stdin). Returns a new value or NULL after
//  telling the user what is wrong with it.
static json_t *
s_parse_body (const char *json_text)
{
    json_error_t error;
    json_t *value = strcmp (json_text, "-") == 0
                  ? json_loadf (stdin, JSON_DECODE_ANY, &error)
                  : json_loads (json_text, JSON_DECODE_ANY, &error);
    if (!value)
        fprintf (stderr, "meshctl: JSON argument: %s (line %d, column %d)\n", error.text,
                 error.line, error.column);
    return value;
}

//  --------------------------------------------------------------------------
//  Check what the client would refuse, so the user hears why.
static int
s_check_args (const meshctl_opts_t *opts, const char *service, const char *method)
{
    if (!mdp_service_name_valid (service, strlen (service))) {
        fprintf (stderr, "meshctl: service name must be 1 to %d printable characters, no space\n",
                 MDP_MAX_SERVICE_NAME);
        return MESHCTL_EXIT_USAGE;
    }
    if (strncmp (service, "mmi.", 4) == 0) {
        //  The broker answers mmi.* itself with raw bodies, not envelopes
        fprintf (stderr, "meshctl: %s is answered by the broker: use meshctl services or "
                         "meshctl service NAME\n", service);
        return MESHCTL_EXIT_USAGE;
    }
    if (!*method) {
        fprintf (stderr, "meshctl: METHOD must not be empty\n");
        return MESHCTL_EXIT_USAGE;
    }
    if (opts->id && (!*opts->id || strlen (opts->id) > MESH_ENVELOPE_MAX_ID)) {
        fprintf (stderr, "meshctl: --id must be 1 to %d bytes\n", MESH_ENVELOPE_MAX_ID);
        return MESHCTL_EXIT_USAGE;
    }
    if (opts->actor && (!*opts->actor || strlen (opts->actor) > MESH_ENVELOPE_MAX_ACTOR)) {
        fprintf (stderr, "meshctl: --actor must be 1 to %d bytes\n", MESH_ENVELOPE_MAX_ACTOR);
        return MESHCTL_EXIT_USAGE;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Print an error reply on stderr; returns its exit status.
static int
s_report_error (const mesh_reply_t *reply)
{
    json_t *error = json_object ();
    json_object_set_new (error, "code", json_string (mesh_code_name (reply->code)));
    json_object_set_new (error, "message",
                         meshctl_json_text (reply->message.ptr, reply->message.len));
    json_t *report = json_object ();
    json_object_set_new (report, "error", error);
    meshctl_print_json (stderr, report, false);
    json_decref (report);
    return MESHCTL_EXIT_MESH_BASE + (int) reply->code;
}

//  --------------------------------------------------------------------------
//  Print a success reply's body on stdout; returns the exit status.
static int
s_report_body (const meshctl_opts_t *opts, const mesh_reply_t *reply)
{
    json_t *body = reply->body? mesh_msgpack_to_json (reply->body, 0): json_null ();
    if (!body) {
        mesh_log_error ("the reply body has no exact JSON form (ext, bin key, big integer, "
                        "bad UTF-8 or too deep)");
        return MESHCTL_EXIT_FAILURE;
    }
    int rc = meshctl_print_json (stdout, body, opts->pretty);
    json_decref (body);
    if (rc) {
        mesh_log_error ("cannot print the reply on stdout");
        return MESHCTL_EXIT_FAILURE;
    }
    return MESHCTL_EXIT_OK;
}

//  --------------------------------------------------------------------------
//  Run `call`.
int
meshctl_call (const meshctl_opts_t *opts, const char *service, const char *method,
              const char *json_text)
{
    int status = s_check_args (opts, service, method);
    if (status)
        return status;
    json_t *value = s_parse_body (json_text);
    if (!value)
        return MESHCTL_EXIT_USAGE;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    int rc = mesh_json_to_msgpack (value, &packer, S_BODY_MAX_DEPTH);
    json_decref (value);
    mesh_client_t *client = NULL;
    if (rc) {
        fprintf (stderr, "meshctl: JSON argument: %s (at most %d levels of nesting)\n",
                 mesh_strerror (rc), S_BODY_MAX_DEPTH);
        status = MESHCTL_EXIT_USAGE;
        goto done;
    }
    client = mesh_client_new_curve (NULL, opts->broker, opts->curve, &rc);
    if (!client) {
        mesh_log_error ("cannot connect to %s: %s", opts->broker, mesh_strerror (rc));
        status = rc == MESH_EINVAL? MESHCTL_EXIT_USAGE: MESHCTL_EXIT_FAILURE;
        goto done;
    }
    mesh_call_t call = {
        .service = service,
        .method = method,
        .body = buffer.data,
        .body_len = buffer.size,
        .timeout_ms = meshctl_reply_timeout_ms (opts),
        .id = opts->id,
        .idem = opts->idem,
        //  --actor wins; else, with CURVE, the key's name (the broker checks
        //  an actor against the key: say who we are)
        .actor = opts->actor                                         ? opts->actor
               : opts->curve && *mesh_curve_name (opts->curve)? mesh_curve_name (opts->curve)
                                                                : NULL,
    };
    mesh_reply_t reply;
    rc = mesh_client_call (client, &call, &reply);
    if (rc) {
        mesh_log_error ("call %s %s: %s", service, method, mesh_strerror (rc));
        status = rc == MESH_EINVAL? MESHCTL_EXIT_USAGE: MESHCTL_EXIT_FAILURE;
        goto done;
    }
    mesh_log_kv (MESH_LOG_DEBUG, "reply", "id", reply.id, "code", mesh_code_name (reply.code),
                 (const char *) NULL);
    status = reply.code == MESH_CODE_OK? s_report_body (opts, &reply): s_report_error (&reply);
done:
    mesh_client_destroy (&client);
    msgpack_sbuffer_destroy (&buffer);
    return status;
}
