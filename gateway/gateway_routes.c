/*  =========================================================================
    gateway_routes - the HTTP route table of the gateway
    The table is small and fixed, so matching is a scan of exact prefixes;
    there is no router to configure.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_routes.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define S_READ (GATEWAY_METHOD_GET | GATEWAY_METHOD_HEAD)

static const gateway_route_t s_routes[GATEWAY_ROUTE_COUNT_] = {
    { GATEWAY_ROUTE_USERS, "/v1/users", S_READ | GATEWAY_METHOD_POST, "GET, HEAD, POST" },
    { GATEWAY_ROUTE_USER, "/v1/users/{id}",
      S_READ | GATEWAY_METHOD_PATCH | GATEWAY_METHOD_DELETE, "GET, HEAD, PATCH, DELETE" },
    { GATEWAY_ROUTE_AUDIT, "/v1/audit", S_READ, "GET, HEAD" },
    { GATEWAY_ROUTE_EVENTS, "/v1/events", GATEWAY_METHOD_GET, "GET" },
    { GATEWAY_ROUTE_HEALTHZ, "/healthz", S_READ, "GET, HEAD" },
    { GATEWAY_ROUTE_READY, "/ready", S_READ, "GET, HEAD" },
    { GATEWAY_ROUTE_METRICS, "/metrics", S_READ, "GET, HEAD" },
    { GATEWAY_ROUTE_OPENAPI, "/openapi.yaml", S_READ, "GET, HEAD" },
    { GATEWAY_ROUTE_UNMATCHED, "unmatched", 0, "" },
};

//  --------------------------------------------------------------------------
//  The method for an HTTP method name.
gateway_method_t
gateway_method_parse (const char *name)
{
    assert (name);
    static const struct {
        const char *name;
        gateway_method_t method;
    } methods[] = {
        { "GET", GATEWAY_METHOD_GET },     { "HEAD", GATEWAY_METHOD_HEAD },
        { "POST", GATEWAY_METHOD_POST },   { "PATCH", GATEWAY_METHOD_PATCH },
        { "DELETE", GATEWAY_METHOD_DELETE },
    };
    for (size_t index = 0; index < sizeof methods / sizeof methods[0]; index++)
        if (strcmp (name, methods[index].name) == 0)
            return methods[index].method;
    return GATEWAY_METHOD_OTHER;
}

//  --------------------------------------------------------------------------
//  Label value for a method.
const char *
gateway_method_label (gateway_method_t method)
{
    switch (method) {
        case GATEWAY_METHOD_GET: return "GET";
        case GATEWAY_METHOD_HEAD: return "HEAD";
        case GATEWAY_METHOD_POST: return "POST";
        case GATEWAY_METHOD_PATCH: return "PATCH";
        case GATEWAY_METHOD_DELETE: return "DELETE";
        default: return "OTHER";
    }
}

//  --------------------------------------------------------------------------
//  The row for `path`.
const gateway_route_t *
gateway_route_match (const char *path, char *param, size_t param_size)
{
    assert (path);
    assert (param && param_size > 0);
    param[0] = '\0';
    static const char users_prefix[] = "/v1/users/";
    size_t prefix_len = sizeof users_prefix - 1;
    if (strncmp (path, users_prefix, prefix_len) == 0) {
        const char *segment = path + prefix_len;
        size_t len = strlen (segment);
        if (len == 0 || strchr (segment, '/'))
            return &s_routes[GATEWAY_ROUTE_UNMATCHED];
        if (len < param_size)
            memcpy (param, segment, len + 1);
        return &s_routes[GATEWAY_ROUTE_USER];
    }
    for (size_t index = 0; index < GATEWAY_ROUTE_COUNT_; index++)
        if (index != GATEWAY_ROUTE_USER && index != GATEWAY_ROUTE_UNMATCHED
            && strcmp (path, s_routes[index].template) == 0)
            return &s_routes[index];
    return &s_routes[GATEWAY_ROUTE_UNMATCHED];
}

//  --------------------------------------------------------------------------
//  The row of `id`.
const gateway_route_t *
gateway_route_get (gateway_route_id_t id)
{
    assert (id < GATEWAY_ROUTE_COUNT_);
    return &s_routes[id];
}

//  --------------------------------------------------------------------------
//  Canonical UUID check, lower-casing into `out`.
bool
gateway_uuid_parse (const char *text, char *out)
{
    assert (text);
    if (strlen (text) != 36)
        return false;
    for (size_t index = 0; index < 36; index++) {
        bool dash_here = index == 8 || index == 13 || index == 18 || index == 23;
        char c = text[index];
        if (dash_here? c != '-': !isxdigit ((unsigned char) c))
            return false;
    }
    if (out) {
        for (size_t index = 0; index < 36; index++)
            out[index] = (char) tolower ((unsigned char) text[index]);
        out[36] = '\0';
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Decimal integer in [min, max], nothing else.
bool
gateway_parse_long (const char *text, long min, long max, long *value)
{
    assert (text);
    assert (value);
    if (!text[0] || strspn (text, "-0123456789") != strlen (text))
        return false;
    errno = 0;
    char *end = NULL;
    long parsed = strtol (text, &end, 10);
    if (errno || *end || parsed < min || parsed > max)
        return false;
    *value = parsed;
    return true;
}
