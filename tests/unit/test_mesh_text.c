/*  =========================================================================
    test_mesh_text - the writers' growing buffer and UTF-8 check
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_text.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

Test (mesh_text, appends_and_grows_nul_terminated)
{
    mesh_text_t text = {NULL, 0, 0};
    mesh_text_append (&text, "", 0);
    cr_assert_str_eq (text.data, "");
    mesh_text_puts (&text, "ab");
    mesh_text_append (&text, "cdef", 2);
    cr_assert_str_eq (text.data, "abcd");
    cr_assert_eq (text.len, 4);
    //  Past the first block: still whole and terminated
    char block[1000];
    memset (block, 'x', sizeof block);
    for (int index = 0; index < 10; index++)
        mesh_text_append (&text, block, sizeof block);
    cr_assert_eq (text.len, 4 + 10 * sizeof block);
    cr_assert_eq (strlen (text.data), text.len);
    cr_assert_geq (text.size, text.len + 1);
    free (text.data);
}

Test (mesh_text, utf8_length_takes_only_valid_sequences)
{
    cr_assert_eq (mesh_utf8_length ((const unsigned char *)"a"), 1);
    cr_assert_eq (mesh_utf8_length ((const unsigned char *)"\xc3\xa9"), 2);
    cr_assert_eq (mesh_utf8_length ((const unsigned char *)"\xe2\x82\xac"), 3);
    cr_assert_eq (mesh_utf8_length ((const unsigned char *)"\xf0\x9f\x98\x80"), 4);
    const char *bad[] = {
        "\x80",             //  a continuation byte alone
        "\xc0\xaf",         //  overlong
        "\xe2\x82",         //  cut by the end
        "\xed\xa0\x80",     //  a surrogate
        "\xf4\x90\x80\x80", //  above U+10FFFF
        "\xff",
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        cr_assert_eq (mesh_utf8_length ((const unsigned char *)bad[index]), 0, "case %zu", index);
}
