/*  =========================================================================
    mesh-bench - benchmark driver for the mesh (scripts/bench runs it)
    Commands, each a separate process:
      direct-server  bare ZeroMQ ROUTER echo: the no-broker baseline
      forwarder      bare MDP forwarder (no heartbeat expiry, deadlines,
                     metrics): what mesh-broker is compared with
      client         one asynchronous client, W requests in flight, through
                     the broker (libmesh) or straight to direct servers;
                     prints one key=value result line
      wait-service   wait until the broker reports N workers for a service
                     (mmi.services)
      free-port      print free loopback TCP ports
      pubsub         bare PUB/SUB of --count event-sized messages (the
                     baseline of scripts/bench events)
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "bench.h"
#include "mesh/mdp.h"
#include "mesh/mesh_cfg.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

static const mesh_cfg_option_t s_options[] = {
    { "endpoint", "MESH_BROKER", "tcp://127.0.0.1:5555",
      "client, wait-service: endpoint(s) to connect to, comma-separated (direct: one per "
      "server)" },
    { "bind", NULL, "tcp://127.0.0.1:*", "direct-server, forwarder: ROUTER endpoint" },
    { "mode", NULL, "broker", "client: broker (libmesh via mesh-broker) or direct (raw DEALER)" },
    { "service", NULL, "echo", "client, wait-service: MDP service" },
    { "method", NULL, "echo", "client: envelope method" },
    { "window", NULL, "1", "client: requests kept in flight" },
    { "requests", NULL, "0", "client: timed requests at most (0: bounded by --duration-ms)" },
    { "duration-ms", NULL, "2000", "client: timed part at most this long (0: by --requests)" },
    { "warmup", NULL, "1000", "client: completions before the timed part" },
    { "body-size", NULL, "100", "client: bytes of the msgpack bin body" },
    { "timeout-ms", NULL, "10000",
      "client: request deadline; wait-service: how long to wait" },
    { "broker-pid", NULL, "", "client: PIDs (comma-separated) whose CPU counts as broker" },
    { "worker-pids", NULL, "", "client: PIDs (comma-separated) whose CPU counts as workers" },
    { "label", NULL, "-", "client: label echoed in the result line" },
    { "workload", NULL, "echo",
      "client, broker mode: echo (bin body back), user-get ({id} from --ids-file) or "
      "user-create ({name, email}, fresh emails)" },
    { "ids-file", NULL, "", "client: user ids for user-get, one per line" },
    { "workers", NULL, "1", "wait-service: workers the service must have" },
    { "count", NULL, "1", "free-port: how many ports; pubsub: messages" },
    { "rate", NULL, "0", "pubsub: messages per second (0: as fast as possible)" },
    MESH_CFG_CURVE_OPTIONS,
    MESH_CFG_LOG_OPTIONS,
};

//  Split comma-separated `text` into at most `max` items of `items`, in a
//  copy kept in `storage`. Returns the count.
static int
s_split (const char *text, char *storage, size_t storage_size, const char **items, int max)
{
    snprintf (storage, storage_size, "%s", text);
    int count = 0;
    char *save = NULL;
    for (char *item = strtok_r (storage, ",", &save); item && count < max;
         item = strtok_r (NULL, ",", &save))
        items[count++] = item;
    return count;
}

//  Parse comma-separated PIDs. Returns the count, or -1 on a bad PID.
static int
s_parse_pids (const char *text, int *pids)
{
    char storage[512];
    const char *items[BENCH_MAX_PIDS];
    int count = s_split (text, storage, sizeof storage, items, BENCH_MAX_PIDS);
    for (int index = 0; index < count; index++) {
        char *end = NULL;
        long pid = strtol (items[index], &end, 10);
        if (*end || pid <= 0 || pid > 4194304)
            return -1;
        pids[index] = (int) pid;
    }
    return count;
}

//  --------------------------------------------------------------------------
//  direct-server: ROUTER that sends every message back unchanged (routing
//  id included). Single thread; frames move out as they came in (zero
//  copy), a batch per wake-up. Runs until killed.
static int
s_direct_server (const char *bind)
{
    void *context = zmq_ctx_new ();
    void *router = zmq_socket (context, ZMQ_ROUTER);
    int linger = 0, hwm = 100000;
    zmq_setsockopt (router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind (router, bind) != 0) {
        fprintf (stderr, "mesh-bench: cannot bind %s: %s\n", bind, zmq_strerror (errno));
        zmq_close (router);
        zmq_ctx_term (context);
        return 1;
    }
    char endpoint[256];
    size_t endpoint_size = sizeof endpoint;
    zmq_getsockopt (router, ZMQ_LAST_ENDPOINT, endpoint, &endpoint_size);
    printf ("ready %s\n", endpoint);
    fflush (stdout);
    while (true) {
        zmq_pollitem_t item = { router, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int batch = 0; batch < 256; batch++) {
            zmq_msg_t part;
            zmq_msg_init (&part);
            if (zmq_msg_recv (&part, router, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&part);
                break;
            }
            while (true) {
                bool more = zmq_msg_more (&part);
                if (zmq_msg_send (&part, router, more? ZMQ_SNDMORE: 0) < 0)
                    zmq_msg_close (&part);
                if (!more)
                    break;
                zmq_msg_init (&part);
                if (zmq_msg_recv (&part, router, 0) < 0) {
                    zmq_msg_close (&part);
                    break;
                }
            }
        }
    }
    zmq_close (router);
    zmq_ctx_term (context);
    return 1;
}

//  Workers registered for `service` in an mmi.services reply body, or -1.
static long
s_workers_in (const void *data, size_t size, const char *service)
{
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    long workers = -1;
    size_t offset = 0;
    if (msgpack_unpack_next (&result, data, size, &offset) != MSGPACK_UNPACK_SUCCESS
        || result.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy (&result);
        return -1;
    }
    size_t name_len = strlen (service);
    const msgpack_object_map *root = &result.data.via.map;
    for (uint32_t index = 0; index < root->size; index++) {
        const msgpack_object *list = &root->ptr[index].val;
        if (list->type != MSGPACK_OBJECT_ARRAY)
            continue;
        for (uint32_t entry = 0; entry < list->via.array.size; entry++) {
            const msgpack_object *item = &list->via.array.ptr[entry];
            if (item->type != MSGPACK_OBJECT_MAP)
                continue;
            bool match = false;
            long count = -1;
            for (uint32_t field = 0; field < item->via.map.size; field++) {
                const msgpack_object *key = &item->via.map.ptr[field].key;
                const msgpack_object *value = &item->via.map.ptr[field].val;
                if (key->type != MSGPACK_OBJECT_STR)
                    continue;
                if (key->via.str.size == 4 && memcmp (key->via.str.ptr, "name", 4) == 0
                    && value->type == MSGPACK_OBJECT_STR && value->via.str.size == name_len
                    && memcmp (value->via.str.ptr, service, name_len) == 0)
                    match = true;
                if (key->via.str.size == 7 && memcmp (key->via.str.ptr, "workers", 7) == 0
                    && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                    count = (long) value->via.u64;
            }
            if (match)
                workers = count;
        }
    }
    msgpack_unpacked_destroy (&result);
    return workers;
}

//  --------------------------------------------------------------------------
//  wait-service: ask mmi.services every 50 ms until `service` has at least
//  `workers` workers or `timeout_ms` passes. Returns 0 or 1.
static int
s_wait_service (const char *endpoint, const mesh_curve_t *curve, const char *service,
                long workers, long timeout_ms)
{
    void *context = zmq_ctx_new ();
    void *dealer = zmq_socket (context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    int rc = 1;
    if (mesh_curve_connect (curve, dealer, endpoint) != 0) {
        fprintf (stderr, "mesh-bench: cannot connect to %s\n", endpoint);
        goto done;
    }
    int64_t until_ms = mesh_mono_ms () + timeout_ms;
    long seen = -1;
    while (mesh_mono_ms () < until_ms) {
        //  RFC 7 client request: "", MDPC01, service, body (one empty frame)
        const void *parts[] = { "", MDP_CLIENT, "mmi.services", "" };
        size_t sizes[] = { 0, strlen (MDP_CLIENT), strlen ("mmi.services"), 0 };
        mdp_send_parts (dealer, ZMQ_DONTWAIT, 4, parts, sizes);
        //  Replies to earlier asks may arrive late: read whatever comes
        //  within 50 ms, then ask again.
        int64_t ask_until_ms = mesh_mono_ms () + 50;
        while (true) {
            int64_t left_ms = ask_until_ms - mesh_mono_ms ();
            if (left_ms <= 0)
                break;
            zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
            if (zmq_poll (&item, 1, (long) left_ms) <= 0)
                continue;
            mdp_frames_t frames;
            if (mdp_frames_recv (&frames, dealer, ZMQ_DONTWAIT))
                continue;
            if (frames.count == 4)
                seen = s_workers_in (zmq_msg_data (&frames.frame[3]),
                                     zmq_msg_size (&frames.frame[3]), service);
            mdp_frames_close (&frames);
            if (seen >= workers) {
                printf ("ready service=%s workers=%ld\n", service, seen);
                rc = 0;
                goto done;
            }
        }
    }
    fprintf (stderr, "mesh-bench: service %s has %ld of %ld workers after %ld ms\n", service,
             seen < 0? 0: seen, workers, timeout_ms);
done:
    zmq_close (dealer);
    zmq_ctx_term (context);
    return rc;
}

//  --------------------------------------------------------------------------
//  free-port: bind `count` loopback sockets to port 0 at once (so the ports
//  differ), print the ports the kernel chose, close them.
static int
s_free_port (long count)
{
    int sockets[64];
    int rc = 0;
    long opened = 0;
    for (; opened < count; opened++) {
        sockets[opened] = socket (AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = { .sin_family = AF_INET };
        address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (sockets[opened] < 0
            || bind (sockets[opened], (struct sockaddr *) &address, sizeof address) != 0
            || getsockname (sockets[opened], (struct sockaddr *) &address, &length) != 0) {
            perror ("mesh-bench: free-port");
            rc = 1;
            if (sockets[opened] >= 0)
                opened++;
            break;
        }
        printf ("%s%d", opened? " ": "", ntohs (address.sin_port));
    }
    printf ("\n");
    for (long index = 0; index < opened; index++)
        close (sockets[index]);
    return rc;
}

//  Read user ids (one per line) for the user-get workload into client->ids
//  (fresh; the caller frees it). Returns 0, or 2 when the file is missing
//  or holds no id.
static int
s_load_ids (const char *path, bench_client_cfg_t *client)
{
    FILE *file = *path? fopen (path, "r"): NULL;
    if (!file) {
        fprintf (stderr, "mesh-bench: user-get needs --ids-file\n");
        return 2;
    }
    size_t capacity = 1024;
    client->ids = malloc (capacity * sizeof *client->ids);
    char line[128];
    while (client->ids && fgets (line, sizeof line, file)) {
        line[strcspn (line, "\r\n")] = '\0';
        if (strlen (line) != 36)
            continue;
        if (client->id_count == capacity) {
            capacity *= 2;
            void *grown = realloc (client->ids, capacity * sizeof *client->ids);
            if (!grown)
                abort ();
            client->ids = grown;
        }
        memcpy (client->ids[client->id_count++], line, 37);
    }
    fclose (file);
    if (!client->ids)
        abort ();
    if (client->id_count == 0) {
        fprintf (stderr, "mesh-bench: no ids in %s\n", path);
        return 2;
    }
    return 0;
}

//  Fill the client settings from the options. Returns 0 or 2 (bad usage).
static int
s_client_cfg (mesh_cfg_t *cfg, bench_client_cfg_t *client, char *storage, size_t storage_size)
{
    long window, requests, duration_ms, warmup, body_size, timeout_ms;
    if (mesh_cfg_get_long (cfg, "window", 1, 100000, &window)
        || mesh_cfg_get_long (cfg, "requests", 0, 1000000000, &requests)
        || mesh_cfg_get_long (cfg, "duration-ms", 0, 3600000, &duration_ms)
        || mesh_cfg_get_long (cfg, "warmup", 0, 1000000000, &warmup)
        || mesh_cfg_get_long (cfg, "body-size", 4, 1000000, &body_size)
        || mesh_cfg_get_long (cfg, "timeout-ms", 1, 3600000, &timeout_ms)) {
        fprintf (stderr, "mesh-bench: %s\n", mesh_cfg_error (cfg));
        return 2;
    }
    const char *mode = mesh_cfg_get (cfg, "mode");
    if (strcmp (mode, "broker") != 0 && strcmp (mode, "direct") != 0) {
        fprintf (stderr, "mesh-bench: --mode is broker or direct\n");
        return 2;
    }
    if (requests == 0 && duration_ms == 0) {
        fprintf (stderr, "mesh-bench: give --requests or --duration-ms\n");
        return 2;
    }
    *client = (bench_client_cfg_t) {
        .broker = strcmp (mode, "broker") == 0,
        .service = mesh_cfg_get (cfg, "service"),
        .method = mesh_cfg_get (cfg, "method"),
        .window = (int) window,
        .requests = requests,
        .duration_ms = duration_ms,
        .warmup = warmup,
        .body_size = (int) body_size,
        .timeout_ms = (int) timeout_ms,
        .label = mesh_cfg_get (cfg, "label"),
    };
    const char *workload = mesh_cfg_get (cfg, "workload");
    if (strcmp (workload, "user-get") == 0)
        client->workload = BENCH_USER_GET;
    else if (strcmp (workload, "user-create") == 0)
        client->workload = BENCH_USER_CREATE;
    else if (strcmp (workload, "echo") != 0) {
        fprintf (stderr, "mesh-bench: --workload is echo, user-get or user-create\n");
        return 2;
    }
    if (client->workload == BENCH_USER_GET && s_load_ids (mesh_cfg_get (cfg, "ids-file"), client))
        return 2;
    client->endpoint_count = s_split (mesh_cfg_get (cfg, "endpoint"), storage, storage_size,
                                      client->endpoints, BENCH_MAX_ENDPOINTS);
    client->broker_pid_count = s_parse_pids (mesh_cfg_get (cfg, "broker-pid"),
                                             client->broker_pids);
    client->worker_pid_count = s_parse_pids (mesh_cfg_get (cfg, "worker-pids"),
                                             client->worker_pids);
    if (client->endpoint_count == 0 || (client->broker && client->endpoint_count != 1)
        || client->broker_pid_count < 0 || client->worker_pid_count < 0) {
        fprintf (stderr, "mesh-bench: bad --endpoint or PID list (broker mode: one endpoint)\n");
        return 2;
    }
    return 0;
}

int
main (int argc, char **argv)
{
    mesh_cfg_t *cfg = mesh_cfg_new (
        "mesh-bench", "COMMAND [options]",
        "Benchmark driver of zmesh (scripts/bench runs it). COMMAND is one of:\n"
        "  direct-server   bare ZeroMQ ROUTER echo (the no-broker baseline); prints\n"
        "                  'ready ENDPOINT', runs until killed\n"
        "  forwarder       bare MDP forwarder (credit, no expiry, deadlines or metrics):\n"
        "                  the reference the broker is compared with; like direct-server\n"
        "  client          one asynchronous client, --window requests in flight; prints\n"
        "                  one key=value result line\n"
        "  wait-service    wait until the broker has --workers workers for --service\n"
        "  free-port       print --count free loopback TCP ports\n"
        "  pubsub          bare PUB/SUB of --count messages of --body-size bytes",
        s_options, sizeof s_options / sizeof s_options[0]);
    int rc = mesh_cfg_parse (cfg, argc, argv);
    if (mesh_cfg_answer_builtin (cfg, rc, stdout)) {
        mesh_cfg_destroy (&cfg);
        return 0;
    }
    if (rc || mesh_cfg_argc (cfg) != 1
        || mesh_log_setup ("bench", mesh_cfg_get (cfg, "log-level"),
                           mesh_cfg_get (cfg, "log-format"))) {
        fprintf (stderr, "mesh-bench: %s\n",
                 rc? mesh_cfg_error (cfg): "give one COMMAND (see --help)");
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    const char *command = mesh_cfg_arg (cfg, 0);
    long workers = 1, timeout_ms = 10000, count = 1;
    mesh_curve_t *curve = NULL;
    char why[512];
    if (mesh_curve_from_cfg (cfg, true, &curve, why, sizeof why)) {
        fprintf (stderr, "mesh-bench: %s\n", why);
        mesh_cfg_destroy (&cfg);
        return 2;
    }
    if (strcmp (command, "direct-server") == 0)
        rc = s_direct_server (mesh_cfg_get (cfg, "bind"));
    else
    if (strcmp (command, "forwarder") == 0)
        rc = bench_forwarder_run (mesh_cfg_get (cfg, "bind"));
    else
    if (strcmp (command, "client") == 0) {
        bench_client_cfg_t client = {0};
        char storage[1024];
        rc = s_client_cfg (cfg, &client, storage, sizeof storage);
        client.curve = curve;
        if (rc == 0)
            rc = bench_client_run (&client);
        free (client.ids);
    }
    else
    if (strcmp (command, "wait-service") == 0) {
        if (mesh_cfg_get_long (cfg, "workers", 1, 100000, &workers)
            || mesh_cfg_get_long (cfg, "timeout-ms", 1, 3600000, &timeout_ms)) {
            fprintf (stderr, "mesh-bench: %s\n", mesh_cfg_error (cfg));
            rc = 2;
        }
        else
            rc = s_wait_service (mesh_cfg_get (cfg, "endpoint"), curve,
                                 mesh_cfg_get (cfg, "service"), workers, timeout_ms);
    }
    else
    if (strcmp (command, "free-port") == 0) {
        if (mesh_cfg_get_long (cfg, "count", 1, 64, &count)) {
            fprintf (stderr, "mesh-bench: %s\n", mesh_cfg_error (cfg));
            rc = 2;
        }
        else
            rc = s_free_port (count);
    }
    else
    if (strcmp (command, "pubsub") == 0) {
        long size = 0, rate = 0;
        if (mesh_cfg_get_long (cfg, "count", 1, 100000000, &count)
            || mesh_cfg_get_long (cfg, "body-size", 8, 65536, &size)
            || mesh_cfg_get_long (cfg, "rate", 0, 100000000, &rate)) {
            fprintf (stderr, "mesh-bench: %s\n", mesh_cfg_error (cfg));
            rc = 2;
        }
        else
            rc = bench_pubsub_run (count, (int) size, rate, mesh_cfg_get (cfg, "label"));
    }
    else {
        fprintf (stderr, "mesh-bench: unknown command '%s' (see --help)\n", command);
        rc = 2;
    }
    mesh_curve_destroy (&curve);
    mesh_cfg_destroy (&cfg);
    return rc;
}
