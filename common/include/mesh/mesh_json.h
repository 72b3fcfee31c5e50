/*  =========================================================================
    mesh_json - JSON (jansson) to MessagePack and back
    The gateway and meshctl speak JSON to people and MessagePack to the
    mesh. Conversion is bounded: nesting deeper than the limit and oversize
    input are rejected, never recursed into without bound.
    Mapping: null/bool/integer/real/string/array/object <-> nil/bool/int/
    float64/str/array/map. MessagePack bin becomes a base64 string, ext is
    rejected, map keys must be strings.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_JSON_H_INCLUDED
#define MESH_JSON_H_INCLUDED

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

#define MESH_JSON_MAX_DEPTH 32

//  Depth counts containers: a scalar is 0, [] and {} are 1, [[1]] is 2; a
//  value exactly max_depth deep is accepted, one deeper is rejected.

//  Pack jansson value `value` into `packer`. Returns 0, or MESH_ETOODEEP
//  when nested deeper than max_depth (0 = MESH_JSON_MAX_DEPTH), MESH_EIO
//  when the packer's writer fails. Integers >= 0 pack as uint, negative as
//  int, reals as float64. On error the packer holds part of the value:
//  discard its buffer.
int
    mesh_json_to_msgpack (const json_t *value, msgpack_packer *packer, int max_depth);

//  Convert a msgpack object to a new jansson value (caller decrefs).
//  Returns NULL when the object cannot be expressed in JSON exactly:
//  non-string or repeated map key, ext type, nesting over max_depth, invalid
//  UTF-8 in a string or key, a uint above INT64_MAX (a JSON real would
//  round it), a NaN or infinite float. Bin becomes a padded base64 string.
json_t *
    mesh_msgpack_to_json (const msgpack_object *object, int max_depth);

#endif
