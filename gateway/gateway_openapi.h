/*  =========================================================================
    gateway_openapi - docs/openapi.yaml, embedded at build time
    The build turns the file into a C array (cmake/Embed.cmake), so the
    binary serves /openapi.yaml with no file to find at run time and the
    description served is always the one the binary was built with.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_OPENAPI_H_INCLUDED
#define GATEWAY_OPENAPI_H_INCLUDED

#include <stddef.h>

extern const unsigned char gateway_openapi_yaml[];
extern const size_t gateway_openapi_yaml_len;

#endif
