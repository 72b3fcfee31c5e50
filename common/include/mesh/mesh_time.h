/*  =========================================================================
    mesh_time - clocks: monotonic for timeouts, wall for envelope deadlines
    Heartbeats and local timeouts use the monotonic clock (immune to clock
    steps); envelope deadlines are unix milliseconds because they cross
    processes and hosts.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_TIME_H_INCLUDED
#define MESH_TIME_H_INCLUDED

#include <stdint.h>
#include <time.h>

//  Monotonic time in milliseconds.
static inline int64_t
mesh_mono_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  Monotonic time in microseconds.
static inline int64_t
mesh_mono_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

//  Wall-clock time in unix milliseconds (envelope deadlines).
static inline uint64_t
mesh_wall_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t) now.tv_sec * 1000 + (uint64_t) now.tv_nsec / 1000000;
}

#endif
