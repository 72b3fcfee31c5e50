/*  =========================================================================
    meshctl - the operator's command line: shared declarations
    main.c reads the options and dispatches to one function per command:
    call (meshctl_call.c), services and service (meshctl_mmi.c), events
    (meshctl_events.c). Each returns the process exit status; the table of
    statuses is part of the interface (scripts test it) and --help prints it.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESHCTL_H_INCLUDED
#define MESHCTL_H_INCLUDED

#include "mesh/mesh_curve.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

//  Exit statuses. An error reply from a service exits with
//  MESHCTL_EXIT_MESH_BASE + its mesh_code_t (invalid_argument 11 ...
//  internal 21), so scripts can tell not_found from unavailable.
enum {
    MESHCTL_EXIT_OK = 0,
    MESHCTL_EXIT_NOT_FOUND = 1,     //  `service NAME`: the broker says 404
    MESHCTL_EXIT_USAGE = 2,         //  Bad command line or JSON argument
    MESHCTL_EXIT_TIMEOUT = 3,       //  No broker reply, or no event, in time
    MESHCTL_EXIT_FAILURE = 4,       //  Socket error or a reply we cannot read
    MESHCTL_EXIT_MESH_BASE = 10,    //  Plus the mesh_code_t of an error reply
};

//  Settings in force, read once by main.c.
typedef struct {
    const char *broker;         //  Broker ROUTER endpoint
    const char *events;         //  Broker XPUB endpoint
    int timeout_ms;             //  --timeout, or -1 when not given
    const char *id;             //  Request id, or NULL to generate
    const char *idem;           //  Idempotency key, or NULL
    const char *actor;          //  Envelope actor, or NULL
    bool pretty;                //  Indented JSON output
    bool json;                  //  `services`: JSON instead of a table
    long count;                 //  `events`: stop after this many, 0 = never
    const mesh_curve_t *curve;  //  CURVE keys, or NULL (plain); the name is call's actor
} meshctl_opts_t;

//  Timeout for commands that wait for a reply: --timeout or 5000 ms.
int
    meshctl_reply_timeout_ms (const meshctl_opts_t *opts);

//  `call SERVICE METHOD JSON`: JSON "-" reads the body from stdin.
int
    meshctl_call (const meshctl_opts_t *opts, const char *service, const char *method,
                  const char *json_text);

//  `services`: the broker's mmi.services listing as a table or JSON.
int
    meshctl_services (const meshctl_opts_t *opts);

//  `service NAME`: mmi.service; prints 200 or 404.
int
    meshctl_service (const meshctl_opts_t *opts, const char *name);

//  `events [PREFIX]`: one JSON line per event until a signal, --count or
//  --timeout of silence.
int
    meshctl_events (const meshctl_opts_t *opts, const char *prefix);

//  `keygen NAME --may ...`: write DIR/NAME.key and DIR/NAME.key_secret
//  (DIR "." when NULL) with the grants of `mays` (serve:LIST, call:LIST,
//  publish:PREFIXES, subscribe:PREFIXES, delegate). Never overwrites.
int
    meshctl_keygen (const char *name, const char *dir, const char *const *mays,
                    size_t may_count);

//  `apikey NAME --scopes S,S`: print a new API key and its keys-file line.
int
    meshctl_apikey (const char *name, const char *scopes);

//  `token SUBJECT --key-file F`: print a JWT signed with the key in F for
//  `ttl_s` seconds; scopes (comma list), issuer and audience may be NULL.
int
    meshctl_token (const char *subject, const char *scopes, const char *key_file, long ttl_s,
                   const char *issuer, const char *audience);

//  Write `value` to `stream` as one line (indented when `pretty`) and
//  flush. Returns 0 or -1 when the stream fails. Does not take the value.
int
    meshctl_print_json (FILE *stream, const json_t *value, bool pretty);

//  A new JSON string of `len` bytes at `text`; bytes that are not valid
//  UTF-8 (a peer's garbage) turn the copy into printable ASCII with '?'
//  for every other byte, so an error report is never lost.
json_t *
    meshctl_json_text (const char *text, size_t len);

#endif
