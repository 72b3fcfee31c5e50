/*  =========================================================================
    mesh_signal - shutdown signals as events a process waits for
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_signal.h"

#include <assert.h>
#include <pthread.h>

//  --------------------------------------------------------------------------
//  Block SIGTERM and SIGINT and return them as a set.
void
mesh_signal_block_shutdown (sigset_t *signals)
{
    assert (signals);
    sigemptyset (signals);
    sigaddset (signals, SIGTERM);
    sigaddset (signals, SIGINT);
    pthread_sigmask (SIG_BLOCK, signals, NULL);
}
