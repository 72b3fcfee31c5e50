/*  =========================================================================
    gateway_ratelimit - token buckets per caller, in a bounded table
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_ratelimit.h"

#include "mesh/mesh_alloc.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool used;
    uint64_t hash; //  Of the key: compared first
    double tokens; //  At `at_ms`
    int64_t at_ms; //  Monotonic: last refill, also the LRU order
    char key[GATEWAY_RATELIMIT_KEY_MAX + 1];
} s_bucket_t;

struct gateway_ratelimit_s {
    gateway_ratelimit_cfg_t cfg;
    s_bucket_t *buckets; //  sets * GATEWAY_RATELIMIT_WAYS, owned
    size_t sets;
    size_t used;
};

//  FNV-1a: spreads keys over sets; equal hashes are told apart by the key.
static uint64_t
s_hash (const char *key)
{
    uint64_t hash = 14695981039346656037ULL;
    for (; *key; key++)
        hash = (hash ^ (unsigned char)*key) * 1099511628211ULL;
    return hash;
}

//  --------------------------------------------------------------------------
//  A table for `cfg`.
gateway_ratelimit_t *
gateway_ratelimit_new (const gateway_ratelimit_cfg_t *cfg)
{
    assert (cfg);
    assert (cfg->rate > 0 && cfg->burst >= 1);
    gateway_ratelimit_t *self = mesh_alloc (sizeof (gateway_ratelimit_t));
    self->cfg = *cfg;
    self->sets = (cfg->entries + GATEWAY_RATELIMIT_WAYS - 1) / GATEWAY_RATELIMIT_WAYS;
    if (self->sets == 0)
        self->sets = 1;
    self->buckets = mesh_alloc (self->sets * GATEWAY_RATELIMIT_WAYS * sizeof (s_bucket_t));
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
gateway_ratelimit_destroy (gateway_ratelimit_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free ((*self_p)->buckets);
        free (*self_p);
        *self_p = NULL;
    }
}

//  The bucket of `key`: found in its set, or the set's free or least
//  recently used one, made full for it.
static s_bucket_t *
s_bucket (gateway_ratelimit_t *self, const char *key, int64_t now_ms)
{
    uint64_t hash = s_hash (key);
    s_bucket_t *set = &self->buckets[(hash % self->sets) * GATEWAY_RATELIMIT_WAYS];
    s_bucket_t *victim = &set[0];
    for (size_t way = 0; way < GATEWAY_RATELIMIT_WAYS; way++) {
        s_bucket_t *bucket = &set[way];
        if (bucket->used && bucket->hash == hash &&
            strncmp (bucket->key, key, GATEWAY_RATELIMIT_KEY_MAX) == 0)
            return bucket;
        if (!bucket->used)
            victim = bucket;
        else if (victim->used && bucket->at_ms < victim->at_ms)
            victim = bucket;
    }
    if (!victim->used)
        self->used++;
    victim->used = true;
    victim->hash = hash;
    victim->tokens = self->cfg.burst;
    victim->at_ms = now_ms;
    snprintf (victim->key, sizeof victim->key, "%s", key);
    return victim;
}

//  --------------------------------------------------------------------------
//  Take one token from the bucket of `key`.
bool
gateway_ratelimit_take (gateway_ratelimit_t *self, const char *key, int64_t now_ms,
                        gateway_ratelimit_result_t *result)
{
    assert (self);
    assert (key);
    assert (result);
    s_bucket_t *bucket = s_bucket (self, key, now_ms);
    double burst = self->cfg.burst;
    if (now_ms > bucket->at_ms) {
        bucket->tokens += (double)(now_ms - bucket->at_ms) / 1000.0 * self->cfg.rate;
        if (bucket->tokens > burst)
            bucket->tokens = burst;
    }
    bucket->at_ms = now_ms;
    result->allowed = bucket->tokens >= 1.0;
    if (result->allowed)
        bucket->tokens -= 1.0;
    result->remaining = (unsigned int)floor (bucket->tokens);
    result->reset_s = (unsigned int)ceil ((burst - bucket->tokens) / self->cfg.rate);
    result->retry_after_s = 0;
    if (!result->allowed) {
        double wait_s = ceil ((1.0 - bucket->tokens) / self->cfg.rate);
        result->retry_after_s = wait_s < 1 ? 1 : (unsigned int)wait_s;
    }
    return result->allowed;
}

//  --------------------------------------------------------------------------
//  The RateLimit-Policy and RateLimit header values.
void
gateway_ratelimit_headers (const gateway_ratelimit_t *self,
                           const gateway_ratelimit_result_t *result, char *policy, char *state,
                           size_t size)
{
    assert (self);
    assert (result);
    //  The window is the time an empty bucket takes to fill: `burst`
    //  requests per `w` seconds is the quota the policy promises
    double window = ceil ((double)self->cfg.burst / self->cfg.rate);
    snprintf (policy, size, "\"gateway\";q=%u;w=%.0f", self->cfg.burst, window < 1 ? 1 : window);
    snprintf (state, size, "\"gateway\";r=%u;t=%u", result->remaining,
              result->allowed ? result->reset_s : result->retry_after_s);
}

//  --------------------------------------------------------------------------
//  Buckets in use.
size_t
gateway_ratelimit_used (const gateway_ratelimit_t *self)
{
    assert (self);
    return self->used;
}
