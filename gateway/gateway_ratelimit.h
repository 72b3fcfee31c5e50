/*  =========================================================================
    gateway_ratelimit - token buckets per caller, in a bounded table
    Each caller (an authenticated identity, or the client address of a
    request without one) has a bucket of `burst` tokens refilled at `rate`
    per second; a request takes one or is refused. The table is set-
    associative: a key's hash picks a set of 8 buckets, and a new key takes
    the set's least recently used one, so a flood of addresses can never
    grow it (it can only make buckets forget, which errs on the side of the
    caller). Headers follow draft-ietf-httpapi-ratelimit-headers-08:
    `RateLimit-Policy: "gateway";q=BURST;w=WINDOW` and
    `RateLimit: "gateway";r=REMAINING;t=SECONDS`. Pure: the caller gives the
    time. One thread.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_RATELIMIT_H_INCLUDED
#define GATEWAY_RATELIMIT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GATEWAY_RATELIMIT_KEY_MAX 300 //  Bytes of a bucket's key kept (longer: cut)
#define GATEWAY_RATELIMIT_WAYS 8      //  Buckets per set

typedef struct gateway_ratelimit_s gateway_ratelimit_t;

typedef struct {
    double rate;        //  Tokens per second (> 0)
    unsigned int burst; //  Bucket size (>= 1)
    size_t entries;     //  Buckets at most (rounded up to a multiple of the ways)
} gateway_ratelimit_cfg_t;

//  What one request got.
typedef struct {
    bool allowed;
    unsigned int remaining;     //  Whole tokens left after this request
    unsigned int reset_s;       //  Seconds until the bucket is full again (draft's `t`)
    unsigned int retry_after_s; //  When refused: seconds until a token is there (>= 1)
} gateway_ratelimit_result_t;

//  A table for `cfg` (copied).
gateway_ratelimit_t *gateway_ratelimit_new (const gateway_ratelimit_cfg_t *cfg);

//  Destroy; nulls the caller's pointer.
void gateway_ratelimit_destroy (gateway_ratelimit_t **self_p);

//  Take one token from the bucket of `key` at monotonic `now_ms`. Returns
//  result->allowed.
bool gateway_ratelimit_take (gateway_ratelimit_t *self, const char *key, int64_t now_ms,
                             gateway_ratelimit_result_t *result);

//  The RateLimit-Policy value into `policy` and the RateLimit value of
//  `result` into `state` (size bytes each).
void gateway_ratelimit_headers (const gateway_ratelimit_t *self,
                                const gateway_ratelimit_result_t *result, char *policy, char *state,
                                size_t size);

//  Buckets in use (for tests: never above the configured size).
size_t gateway_ratelimit_used (const gateway_ratelimit_t *self);

#endif
