/*  =========================================================================
    meshctl_events - `meshctl events [TOPIC-PREFIX]`
    A SUB socket on the broker's XPUB. Each event (topic frame, MessagePack
    map frame) becomes one line {"topic":..., "event":{...}} on stdout,
    flushed at once so the command can feed a pipe. A malformed event is
    reported as one JSON line on stderr and the stream goes on: one bad
    publisher must not blind the operator to the rest.
    SIGINT and SIGTERM reach the poll loop through a self-pipe, so a signal
    that lands between two polls is not lost.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "meshctl.h"
#include "mesh/mdp.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_json.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

//  Write end of the self-pipe; -1 when no handler is installed.
static volatile sig_atomic_t s_signal_fd = -1;

//  --------------------------------------------------------------------------
//  Signal handler: wake the poll loop. write(2) is async-signal-safe.
static void
s_on_signal (int signum)
{
    int saved_errno = errno;
    if (s_signal_fd >= 0) {
        char byte = (char) signum;
        ssize_t written = write (s_signal_fd, &byte, 1);
        (void) written;         //  A full pipe already holds a wake-up
    }
    errno = saved_errno;
}

//  --------------------------------------------------------------------------
//  Create the self-pipe and install handlers. Returns 0 or -1.
static int
s_signals_open (int pipe_fds[2])
{
    if (pipe (pipe_fds) != 0)
        return -1;
    fcntl (pipe_fds[0], F_SETFL, O_NONBLOCK);
    fcntl (pipe_fds[1], F_SETFL, O_NONBLOCK);
    s_signal_fd = pipe_fds[1];
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  Restore default handlers and close the self-pipe.
static void
s_signals_close (int pipe_fds[2])
{
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    s_signal_fd = -1;
    close (pipe_fds[0]);
    close (pipe_fds[1]);
}

//  --------------------------------------------------------------------------
//  Report a malformed event on stderr as one JSON line.
static void
s_report_malformed (mdp_frames_t *frames, const char *why)
{
    json_t *error = json_object ();
    json_object_set_new (error, "code", json_string ("malformed_event"));
    json_object_set_new (error, "message", json_string (why));
    json_t *report = json_object ();
    json_object_set_new (report, "error", error);
    json_object_set_new (report, "frames", json_integer (frames->count));
    if (frames->count > 0)
        json_object_set_new (report, "topic",
                             meshctl_json_text (zmq_msg_data (&frames->frame[0]),
                                                zmq_msg_size (&frames->frame[0])));
    meshctl_print_json (stderr, report, false);
    json_decref (report);
}

//  --------------------------------------------------------------------------
//  Turn one received event into its JSON line on stdout. Returns 1 when it
//  printed an event, 0 when it reported a malformed one, -1 when stdout
//  failed.
static int
s_print_event (mdp_frames_t *frames)
{
    if (frames->overflow || frames->count != 2) {
        s_report_malformed (frames, "an event is 2 frames: topic, MessagePack map");
        return 0;
    }
    size_t topic_len = zmq_msg_size (&frames->frame[0]);
    const char *topic_data = topic_len? zmq_msg_data (&frames->frame[0]): "";
    json_t *topic = json_stringn (topic_data, topic_len);  //  NULL unless UTF-8
    msgpack_zone zone;
    msgpack_zone_init (&zone, 2048);
    msgpack_object object;
    size_t offset = 0;
    msgpack_unpack_return result = msgpack_unpack (zmq_msg_data (&frames->frame[1]),
                                                   zmq_msg_size (&frames->frame[1]), &offset,
                                                   &zone, &object);
    json_t *event = NULL;
    const char *why = NULL;
    if (!topic)
        why = "topic is not UTF-8";
    else
    if (result != MSGPACK_UNPACK_SUCCESS)
        why = "body is not one whole MessagePack object";
    else
    if (object.type != MSGPACK_OBJECT_MAP)
        why = "body is not a MessagePack map";
    else
    if (!(event = mesh_msgpack_to_json (&object, 0)))
        why = "body has no exact JSON form (ext, bin or repeated key, big integer, bad UTF-8)";
    msgpack_zone_destroy (&zone);
    int rc = 0;
    if (why)
        s_report_malformed (frames, why);
    else {
        json_t *line = json_object ();
        json_object_set (line, "topic", topic);
        json_object_set (line, "event", event);
        rc = meshctl_print_json (stdout, line, false) == 0? 1: -1;
        json_decref (line);
    }
    json_decref (event);
    json_decref (topic);
    return rc;
}

//  --------------------------------------------------------------------------
//  Receive and print events until a signal, --count or --timeout.
static int
s_event_loop (const meshctl_opts_t *opts, void *subscriber, int signal_fd)
{
    long printed = 0;
    int64_t last_ms = mesh_mono_ms ();
    while (true) {
        int wait_ms = -1;
        if (opts->timeout_ms > 0) {
            int64_t left_ms = last_ms + opts->timeout_ms - mesh_mono_ms ();
            if (left_ms <= 0) {
                mesh_log_error ("no event within %d ms", opts->timeout_ms);
                return MESHCTL_EXIT_TIMEOUT;
            }
            wait_ms = (int) left_ms;
        }
        zmq_pollitem_t items[] = {
            { subscriber, 0, ZMQ_POLLIN, 0 },
            { NULL, signal_fd, ZMQ_POLLIN, 0 },
        };
        if (zmq_poll (items, 2, wait_ms) < 0 && errno != EINTR) {
            mesh_log_error ("poll failed: %s", zmq_strerror (errno));
            return MESHCTL_EXIT_FAILURE;
        }
        if (items[1].revents & ZMQ_POLLIN)
            return MESHCTL_EXIT_OK;         //  SIGINT or SIGTERM: a normal end
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        mdp_frames_t frames;
        int rc = mdp_frames_recv (&frames, subscriber, ZMQ_DONTWAIT);
        if (rc == MESH_ETIMEDOUT || rc == MESH_EINTR)
            continue;
        if (rc) {
            mesh_log_error ("receive failed: %s", mesh_strerror (rc));
            return MESHCTL_EXIT_FAILURE;
        }
        last_ms = mesh_mono_ms ();  //  Any message, even a bad one, ends the silence
        rc = s_print_event (&frames);
        mdp_frames_close (&frames);
        if (rc < 0) {
            mesh_log_error ("cannot write to stdout");
            return MESHCTL_EXIT_FAILURE;
        }
        printed += rc;
        if (opts->count > 0 && printed >= opts->count)
            return MESHCTL_EXIT_OK;
    }
}

//  --------------------------------------------------------------------------
//  Run `events`.
int
meshctl_events (const meshctl_opts_t *opts, const char *prefix)
{
    int status = MESHCTL_EXIT_FAILURE;
    int pipe_fds[2] = { -1, -1 };
    void *context = zmq_ctx_new ();
    void *subscriber = context? zmq_socket (context, ZMQ_SUB): NULL;
    if (!subscriber) {
        mesh_log_error ("cannot create a ZeroMQ socket: %s", zmq_strerror (errno));
        goto done;
    }
    int linger = 0;
    zmq_setsockopt (subscriber, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (subscriber, ZMQ_SUBSCRIBE, prefix, strlen (prefix));
    if (mesh_curve_connect (opts->curve, subscriber, opts->events) != 0) {
        mesh_log_error ("cannot connect to %s: %s", opts->events, zmq_strerror (errno));
        status = MESHCTL_EXIT_USAGE;
        goto done;
    }
    if (s_signals_open (pipe_fds) != 0) {
        mesh_log_error ("cannot create a pipe: %s", strerror (errno));
        goto done;
    }
    mesh_log_kv (MESH_LOG_INFO, "subscribed", "endpoint", opts->events, "prefix", prefix,
                 (const char *) NULL);
    status = s_event_loop (opts, subscriber, pipe_fds[0]);
    s_signals_close (pipe_fds);
done:
    if (subscriber)
        zmq_close (subscriber);
    if (context)
        zmq_ctx_term (context);
    return status;
}
