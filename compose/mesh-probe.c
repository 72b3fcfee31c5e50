/*  =========================================================================
    mesh-probe - container health check: GET an admin path, exit 0 on 200
    The zmesh image has no shell, curl or wget, so Docker's HEALTHCHECK and
    compose's healthcheck run this instead: one GET to a local admin port
    (/healthz by default), exit status 0 when the status line says 200,
    1 otherwise. It reads only the status line, which is all a probe needs,
    and links nothing but libc; it is container tooling, built by the
    Dockerfile, not part of the mesh. Every step is bounded: alarm() kills
    the probe after 3 s.

    usage: mesh-probe [HOST:PORT [PATH]]
    HOST:PORT defaults to $MESH_ADMIN_ADDR, else $MESH_HTTP_ADDR (the
    gateway's), else 127.0.0.1:9100; a wildcard host (0.0.0.0, *, empty)
    means 127.0.0.1. Numeric IPv4 hosts and host names both work.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#define _POSIX_C_SOURCE 200809L
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PROBE_TIMEOUT_S 3

//  --------------------------------------------------------------------------
//  Connect to host:port; returns a socket or -1.
static int
s_connect (const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *result = NULL;
    if (getaddrinfo (host, port, &hints, &result) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *it = result; it && fd < 0; it = it->ai_next) {
        fd = socket (it->ai_family, it->ai_socktype, it->ai_protocol);
        if (fd >= 0 && connect (fd, it->ai_addr, it->ai_addrlen) != 0) {
            close (fd);
            fd = -1;
        }
    }
    freeaddrinfo (result);
    return fd;
}

int
main (int argc, char *argv[])
{
    alarm (PROBE_TIMEOUT_S); //  Default action: the probe dies, the check fails
    const char *address = argc > 1 ? argv[1] : getenv ("MESH_ADMIN_ADDR");
    if (!address || !*address)
        address = getenv ("MESH_HTTP_ADDR");
    if (!address || !*address)
        address = "127.0.0.1:9100";
    const char *path = argc > 2 ? argv[2] : "/healthz";

    char host[256];
    const char *colon = strrchr (address, ':');
    size_t host_len = colon ? (size_t)(colon - address) : 0;
    if (!colon || host_len >= sizeof host || path[0] != '/') {
        fprintf (stderr, "usage: mesh-probe [HOST:PORT [PATH]]\n");
        return 2;
    }
    memcpy (host, address, host_len);
    host[host_len] = '\0';
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        memmove (host, host + 1, host_len - 2); //  [::1] -> ::1
        host[host_len - 2] = '\0';
    }
    if (!*host || strcmp (host, "*") == 0 || strcmp (host, "0.0.0.0") == 0)
        strcpy (host, "127.0.0.1");
    else if (strcmp (host, "::") == 0)
        strcpy (host, "::1");

    int fd = s_connect (host, colon + 1);
    if (fd < 0) {
        fprintf (stderr, "mesh-probe: cannot connect to %s\n", address);
        return 1;
    }
    char request[512];
    int length =
        snprintf (request, sizeof request,
                  "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", path, address);
    if (length < 0 || (size_t)length >= sizeof request ||
        write (fd, request, (size_t)length) != length) {
        close (fd);
        return 1;
    }
    //  "HTTP/1.x 200 ..." is all we look at; read until it is complete.
    char reply[64];
    size_t have = 0;
    while (have < sizeof reply - 1) {
        ssize_t got = read (fd, reply + have, sizeof reply - 1 - have);
        if (got <= 0)
            break;
        have += (size_t)got;
        if (have >= 12)
            break;
    }
    close (fd);
    reply[have] = '\0';
    int healthy =
        have >= 12 && strncmp (reply, "HTTP/1.", 7) == 0 && strncmp (reply + 8, " 200", 4) == 0;
    if (!healthy)
        fprintf (stderr, "mesh-probe: %s%s: %.12s\n", address, path, have ? reply : "no reply");
    return healthy ? 0 : 1;
}
