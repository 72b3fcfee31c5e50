/*  =========================================================================
    test_mesh_file - whole small files, and what a secret file holds
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#define _POSIX_C_SOURCE 200809L //  mkstemp
#include "mesh/mesh_file.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_path[64];

static void
s_setup (void)
{
    snprintf (s_path, sizeof s_path, "/tmp/test_mesh_file.XXXXXX");
    int fd = mkstemp (s_path);
    cr_assert_geq (fd, 0);
    close (fd);
}

static void
s_teardown (void)
{
    unlink (s_path);
}

TestSuite (mesh_file, .init = s_setup, .fini = s_teardown, .timeout = 10.);

//  Write `len` bytes of `data` to the test's file.
static void
s_write (const char *data, size_t len)
{
    FILE *file = fopen (s_path, "wb");
    cr_assert_not_null (file);
    cr_assert_eq (fwrite (data, 1, len, file), len);
    fclose (file);
}

Test (mesh_file, reads_a_whole_file_up_to_its_limit)
{
    s_write ("abc\0def", 7);
    char error[256] = "";
    size_t len = 0;
    char *data = mesh_file_read (s_path, 7, &len, error, sizeof error);
    cr_assert_not_null (data, "%s", error);
    cr_assert_eq (len, 7);
    cr_assert (memcmp (data, "abc\0def", 8) == 0, "NUL-terminated after the bytes");
    free (data);

    cr_assert_null (mesh_file_read (s_path, 6, &len, error, sizeof error));
    cr_assert (strstr (error, "too large"), "%s", error);
    cr_assert_null (mesh_file_read ("/nonexistent/mesh_file", 6, &len, error, sizeof error));
    cr_assert (strstr (error, "/nonexistent/mesh_file"), "%s", error);
}

Test (mesh_file, a_secret_loses_one_line_end_only)
{
    const char *cases[][2] = {
        {"secret\n", "secret"},
        {"secret\r\n", "secret"},
        {"secret", "secret"},
        {"secret\n\n", "secret\n"},
        {"\n", ""},
        {"", ""},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        char text[32];
        snprintf (text, sizeof text, "%s", cases[index][0]);
        size_t len = strlen (text);
        mesh_secret_trim (text, &len);
        cr_assert_str_eq (text, cases[index][1], "case %zu", index);
        cr_assert_eq (len, strlen (cases[index][1]));
    }
}
