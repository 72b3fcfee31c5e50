/*  =========================================================================
    mesh_signal - shutdown signals as events a process waits for
    Every mesh process stops on SIGTERM or SIGINT by draining, not by a
    handler that interrupts arbitrary code: main() blocks both signals
    before it starts any thread (threads inherit the mask), then either
    waits for them (sigwait) or polls a signalfd of the same set.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_SIGNAL_H_INCLUDED
#define MESH_SIGNAL_H_INCLUDED

#include <signal.h>

//  Block SIGTERM and SIGINT in the calling thread and fill *signals with
//  them (for sigwait or signalfd). Call from main() before any thread starts.
void
    mesh_signal_block_shutdown (sigset_t *signals);

#endif
