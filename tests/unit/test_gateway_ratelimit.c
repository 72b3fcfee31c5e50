/*  =========================================================================
    test_gateway_ratelimit - token buckets and CORS origins (pure modules)
    Buckets: a burst is served then refused with a Retry-After, refills at
    the rate, one caller's bucket leaves another's alone, the table never
    grows past its size, the draft-08 header values. CORS: exact origins,
    `*`, `null` never, nothing by default.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_cors.h"
#include "gateway_ratelimit.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

Test (gateway_ratelimit, burst_then_refused_then_refilled)
{
    gateway_ratelimit_cfg_t cfg = {.rate = 2, .burst = 4, .entries = 64};
    gateway_ratelimit_t *limit = gateway_ratelimit_new (&cfg);
    gateway_ratelimit_result_t result;
    for (unsigned int index = 0; index < 4; index++) {
        cr_assert (gateway_ratelimit_take (limit, "id:ann", 1000, &result), "request %u", index);
        cr_assert_eq (result.remaining, 3 - index);
    }
    cr_assert_not (gateway_ratelimit_take (limit, "id:ann", 1000, &result));
    cr_assert_eq (result.retry_after_s, 1);
    cr_assert_eq (result.remaining, 0);
    char policy[64], state[64];
    gateway_ratelimit_headers (limit, &result, policy, state, sizeof policy);
    cr_assert_str_eq (policy, "\"gateway\";q=4;w=2");
    cr_assert_str_eq (state, "\"gateway\";r=0;t=1");
    //  Another caller is not affected
    cr_assert (gateway_ratelimit_take (limit, "id:bob", 1000, &result));
    //  Half a second later: one token (rate 2/s)
    cr_assert (gateway_ratelimit_take (limit, "id:ann", 1500, &result));
    cr_assert_not (gateway_ratelimit_take (limit, "id:ann", 1500, &result));
    //  Long after: full again, never more than the burst
    for (unsigned int index = 0; index < 4; index++)
        cr_assert (gateway_ratelimit_take (limit, "id:ann", 60000, &result));
    cr_assert_not (gateway_ratelimit_take (limit, "id:ann", 60000, &result));
    gateway_ratelimit_destroy (&limit);
    cr_assert_null (limit);
}

Test (gateway_ratelimit, slow_rate_retry_after)
{
    gateway_ratelimit_cfg_t cfg = {.rate = 0.1, .burst = 1, .entries = 8};
    gateway_ratelimit_t *limit = gateway_ratelimit_new (&cfg);
    gateway_ratelimit_result_t result;
    cr_assert (gateway_ratelimit_take (limit, "ip:10.0.0.1", 0, &result));
    cr_assert_not (gateway_ratelimit_take (limit, "ip:10.0.0.1", 0, &result));
    cr_assert_eq (result.retry_after_s, 10);
    cr_assert_not (gateway_ratelimit_take (limit, "ip:10.0.0.1", 5000, &result));
    cr_assert_eq (result.retry_after_s, 5);
    cr_assert (gateway_ratelimit_take (limit, "ip:10.0.0.1", 10000, &result));
    gateway_ratelimit_destroy (&limit);
}

Test (gateway_ratelimit, table_is_bounded)
{
    gateway_ratelimit_cfg_t cfg = {.rate = 1, .burst = 1, .entries = 64};
    gateway_ratelimit_t *limit = gateway_ratelimit_new (&cfg);
    gateway_ratelimit_result_t result;
    char key[32];
    for (int index = 0; index < 100000; index++) {
        snprintf (key, sizeof key, "ip:10.%d.%d.%d", index >> 16, (index >> 8) & 255, index & 255);
        //  Each new address has a full bucket
        cr_assert (gateway_ratelimit_take (limit, key, index, &result));
    }
    cr_assert_leq (gateway_ratelimit_used (limit), 64);
    cr_assert_geq (gateway_ratelimit_used (limit), 32);
    //  A caller seen just now is still remembered (least recently used goes)
    cr_assert_not (gateway_ratelimit_take (limit, key, 100000, &result));
    gateway_ratelimit_destroy (&limit);
}

Test (gateway_cors, origins)
{
    gateway_cors_t *cors = gateway_cors_new (NULL);
    cr_assert_not (gateway_cors_enabled (cors));
    cr_assert_not (gateway_cors_allowed (cors, "https://app.example"));
    gateway_cors_destroy (&cors);
    cr_assert_null (cors);

    cors = gateway_cors_new (" https://app.example , http://localhost:3000,");
    cr_assert (gateway_cors_enabled (cors));
    cr_assert (gateway_cors_allowed (cors, "https://app.example"));
    cr_assert (gateway_cors_allowed (cors, "http://localhost:3000"));
    cr_assert_not (gateway_cors_allowed (cors, "http://localhost:3001"));
    cr_assert_not (gateway_cors_allowed (cors, "https://app.example.evil"));
    cr_assert_not (gateway_cors_allowed (cors, "http://app.example"));
    cr_assert_not (gateway_cors_allowed (cors, NULL));
    cr_assert_not (gateway_cors_allowed (cors, ""));
    gateway_cors_destroy (&cors);

    cors = gateway_cors_new ("*");
    cr_assert (gateway_cors_allowed (cors, "https://anything.example"));
    cr_assert_not (gateway_cors_allowed (cors, "null"));
    gateway_cors_destroy (&cors);
}
