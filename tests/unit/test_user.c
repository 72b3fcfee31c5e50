/*  =========================================================================
    test_user - the user domain: names, emails, ids, the value object, times
    Pure unit tests (no sockets, no database). Inputs are passed with an
    explicit length from exactly-sized heap copies, so a read past the end
    is an AddressSanitizer error in sanitized builds and embedded NULs are
    tested as the bytes they are. Times are cross-checked against libc's
    gmtime_r over a wide range.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#define _POSIX_C_SOURCE 200809L     //  gmtime_r, for the cross-check only

#include "user.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *s_copy;                //  Exactly-sized copy of the last input

static void
s_teardown (void)
{
    free (s_copy);
    s_copy = NULL;
}

TestSuite (user, .fini = s_teardown, .timeout = 30.);

//  An exactly-sized heap copy of `len` bytes (freed at the next call).
static const char *
s_exact (const char *input, size_t len)
{
    free (s_copy);
    s_copy = malloc (len? len: 1);
    cr_assert_not_null (s_copy);
    if (len)
        memcpy (s_copy, input, len);
    return s_copy;
}

//  Normalise `len` bytes of `input` as a name; on failure *why is set.
static int
s_name (const char *input, size_t len, char *out, const char **why)
{
    *why = NULL;
    return user_name_normalize (s_exact (input, len), len, out, USER_NAME_SIZE, why);
}

//  Normalise `len` bytes of `input` as an email; on failure *why is set.
static int
s_email (const char *input, size_t len, char *out, const char **why)
{
    *why = NULL;
    return user_email_normalize (s_exact (input, len), len, out, USER_EMAIL_SIZE, why);
}

//  `count` copies of the string `unit` followed by `tail`, in a static buffer.
static const char *
s_repeat (const char *unit, size_t count, const char *tail)
{
    static char buffer[4096];
    size_t unit_len = strlen (unit);
    cr_assert_lt (unit_len * count + strlen (tail), sizeof buffer);
    char *cursor = buffer;
    for (size_t index = 0; index < count; index++) {
        memcpy (cursor, unit, unit_len);
        cursor += unit_len;
    }
    strcpy (cursor, tail);
    return buffer;
}

//  --- Names ----------------------------------------------------------------

Test (user, name_normalize_keeps_valid_names_and_trims_white_space)
{
    static const struct {
        const char *input;
        const char *expected;
    } cases[] = {
        { "Alice", "Alice" },
        { "  Ada Lovelace \t\r\n", "Ada Lovelace" },
        { "Zo\u00eb \u00dcnal", "Zo\u00eb \u00dcnal" },             //  Two-byte characters
        { "\u5c71\u7530\u592a\u90ce", "\u5c71\u7530\u592a\u90ce" }, //  Three-byte
        { "\U0001F600", "\U0001F600" },                             //  Four-byte
        { "Jean  Luc", "Jean  Luc" },                               //  Inside: kept
        { "\u00a0\u3000Bob\u2003\u00a0", "Bob" },                   //  Unicode spaces trimmed
        { "Bob\u00a0Smith", "Bob\u00a0Smith" },                     //  Inside: kept
        { " \u2028Bob\u2029 ", "Bob" },                             //  Separators trimmed at ends
        { "x", "x" },
        { "O'Brien-Smith, Jr.", "O'Brien-Smith, Jr." },
        { "Robert'); DROP TABLE users;--", "Robert'); DROP TABLE users;--" },
        { "\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf", "\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        char out[USER_NAME_SIZE];
        const char *why = NULL;
        int rc = s_name (cases[index].input, strlen (cases[index].input), out, &why);
        cr_expect_eq (rc, 0, "case %zu: %s", index, why? why: "");
        if (rc == 0)
            cr_expect_str_eq (out, cases[index].expected, "case %zu", index);
    }
}

//  Expect `input` of `len` bytes to be refused as a name, because `reason`.
static void
s_expect_bad_name (const char *input, size_t len, const char *reason, int line)
{
    char out[USER_NAME_SIZE] = "untouched";
    const char *why = NULL;
    cr_expect_eq (s_name (input, len, out, &why), MESH_EINVAL, "line %d accepted", line);
    cr_expect_str_eq (why? why: "(null)", reason, "line %d", line);
    cr_expect_str_eq (out, "untouched", "line %d: out written on failure", line);
}

#define BAD_NAME(literal, reason) \
    s_expect_bad_name (literal, sizeof (literal) - 1, reason, __LINE__)

Test (user, name_normalize_refuses_empty_names)
{
    BAD_NAME ("", "name must not be empty");
    BAD_NAME (" ", "name must not be empty");
    BAD_NAME ("   \t\n\r\v\f", "name must not be empty");
    BAD_NAME ("\u00a0\u3000\u2028\xc2\x85", "name must not be empty");
}

Test (user, name_normalize_counts_code_points_not_bytes)
{
    char out[USER_NAME_SIZE];
    const char *why = NULL;
    const char *units[] = { "a", "\u00e9", "\u20ac", "\U0001F600" };  //  1 to 4 bytes
    for (size_t index = 0; index < 4; index++) {
        const char *name = s_repeat (units[index], USER_NAME_MAX, "");
        cr_expect_eq (s_name (name, strlen (name), out, &why), 0, "200 x unit %zu", index);
        cr_expect_str_eq (out, name);
        name = s_repeat (units[index], USER_NAME_MAX + 1, "");
        cr_expect_eq (s_name (name, strlen (name), out, &why), MESH_EINVAL, "201 x unit %zu",
                      index);
        cr_expect_str_eq (why? why: "(null)", "name must be at most 200 characters");
    }
    //  The largest valid name fills USER_NAME_SIZE exactly
    const char *name = s_repeat ("\U0001F600", USER_NAME_MAX, "");
    cr_expect_eq (strlen (name) + 1, (size_t) USER_NAME_SIZE);
    //  Trimmed white space does not count
    name = s_repeat ("\u00e9", USER_NAME_MAX, "   \u3000");
    cr_expect_eq (s_name (name, strlen (name), out, &why), 0);
    cr_expect_eq (strlen (out), 2 * USER_NAME_MAX);
}

Test (user, name_normalize_refuses_control_characters_and_separators)
{
    const char *control = "name must not contain control characters";
    BAD_NAME ("a\tb", control);                 //  Inside: not trimmed, refused
    BAD_NAME ("a\nb", control);
    BAD_NAME ("a\r\nb", control);
    BAD_NAME ("a\x01" "b", control);
    BAD_NAME ("a\x1f" "b", control);            //  Last C0 (unit separator)
    BAD_NAME ("\x1b[31mred", control);          //  Terminal escape
    BAD_NAME ("Alice\x01", control);            //  Not white space: not trimmed
    BAD_NAME ("a\x7f" "b", control);            //  DEL
    BAD_NAME ("a\xc2\x85" "b", control);        //  C1 NEL (white space, but inside)
    BAD_NAME ("a\xc2\x80" "b", control);        //  C1 PAD
    BAD_NAME ("a\xc2\x9f" "b", control);        //  C1 APC
    BAD_NAME ("a\0b", control);                 //  Embedded NUL
    BAD_NAME ("\0", control);
    const char *separator = "name must not contain line or paragraph separators";
    BAD_NAME ("a\u2028b", separator);
    BAD_NAME ("a\u2029b", separator);
}

Test (user, name_normalize_refuses_invalid_utf8)
{
    const char *utf8 = "name must be valid UTF-8";
    BAD_NAME ("\xff", utf8);
    BAD_NAME ("\xfe", utf8);
    BAD_NAME ("abc\x80", utf8);                 //  Lone continuation byte
    BAD_NAME ("\xbf" "abc", utf8);
    BAD_NAME ("\xc3", utf8);                    //  Truncated two-byte sequence
    BAD_NAME ("\xc3 ", utf8);                   //  Lead byte then a non-continuation
    BAD_NAME ("\xe2\x82", utf8);                //  Truncated three-byte sequence
    BAD_NAME ("\xe2\x82 x", utf8);
    BAD_NAME ("\xf0\x9f\x98", utf8);            //  Truncated four-byte sequence
    BAD_NAME ("\xf0\x9f\x98\x41", utf8);
    //  Overlong forms of '/' and of U+07FF, U+FFFF
    BAD_NAME ("\xc0\xaf", utf8);
    BAD_NAME ("\xc1\xbf", utf8);
    BAD_NAME ("\xe0\x80\xaf", utf8);
    BAD_NAME ("\xe0\x9f\xbf", utf8);
    BAD_NAME ("\xf0\x80\x80\xaf", utf8);
    BAD_NAME ("\xf0\x8f\xbf\xbf", utf8);
    BAD_NAME ("\xc0\x80", utf8);                //  "Modified UTF-8" NUL
    //  Surrogates, paired or not (CESU-8)
    BAD_NAME ("\xed\xa0\x80", utf8);
    BAD_NAME ("\xed\xbf\xbf", utf8);
    BAD_NAME ("\xed\xa0\xbd\xed\xb8\x80", utf8);
    //  Above U+10FFFF
    BAD_NAME ("\xf4\x90\x80\x80", utf8);
    BAD_NAME ("\xf5\x80\x80\x80", utf8);
    BAD_NAME ("\xf8\x88\x80\x80\x80", utf8);
    //  Invalid bytes in what would be trimmed still count
    BAD_NAME ("Alice \xff", utf8);
    BAD_NAME ("\xc3(  Bob", utf8);
}

Test (user, name_normalize_works_in_place_and_without_why)
{
    char buffer[USER_NAME_SIZE] = "  \u00c5sa  ";
    cr_assert_eq (user_name_normalize (buffer, strlen (buffer), buffer, sizeof buffer, NULL), 0);
    cr_expect_str_eq (buffer, "\u00c5sa");
    cr_expect_eq (user_name_normalize ("", 0, buffer, sizeof buffer, NULL), MESH_EINVAL);
    cr_expect_eq (user_name_normalize (NULL, 0, buffer, sizeof buffer, NULL), MESH_EINVAL);
    cr_expect_str_eq (buffer, "\u00c5sa");
}

//  --- Emails ---------------------------------------------------------------

Test (user, email_normalize_accepts_valid_addresses)
{
    static const struct {
        const char *input;
        const char *expected;
    } cases[] = {
        { "alice@example.com", "alice@example.com" },
        { "x@a.io", "x@a.io" },
        { "first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk" },
        { "o'brien@example.ie", "o'brien@example.ie" },
        { "!#$%&'*+/=?^_`{|}~-@example.com", "!#$%&'*+/=?^_`{|}~-@example.com" },
        { "user@xn--bcher-kva.example", "user@xn--bcher-kva.example" },
        { "a@1.example.com", "a@1.example.com" },       //  Digit-only inner label
        { "a@a-b--c.com", "a@a-b--c.com" },
        { "a@example.c0m", "a@example.c0m" },           //  TLD with some digits
        { "1234@example.com", "1234@example.com" },
        { "Alice.Smith@Example.COM", "alice.smith@example.com" },
        { "  BOB@EXAMPLE.ORG \t\r\n", "bob@example.org" },
        { "\u00a0carol@example.net\u3000", "carol@example.net" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        char out[USER_EMAIL_SIZE];
        const char *why = NULL;
        int rc = s_email (cases[index].input, strlen (cases[index].input), out, &why);
        cr_expect_eq (rc, 0, "case %zu (%s): %s", index, cases[index].input, why? why: "");
        if (rc == 0)
            cr_expect_str_eq (out, cases[index].expected, "case %zu", index);
    }
}

//  Expect the NUL-terminated `input` to be refused as an email, because `reason`.
static void
s_expect_bad_email_len (const char *input, size_t len, const char *reason, int line)
{
    char out[USER_EMAIL_SIZE] = "untouched";
    const char *why = NULL;
    cr_expect_eq (s_email (input, len, out, &why), MESH_EINVAL, "line %d accepted %s", line,
                  input);
    cr_expect_str_eq (why? why: "(null)", reason, "line %d (%s)", line, input);
    cr_expect_str_eq (out, "untouched", "line %d: out written on failure", line);
}

#define BAD_EMAIL(text, reason) s_expect_bad_email_len (text, strlen (text), reason, __LINE__)

//  Local part of `local_len` 'L's, then '@', then labels of `label_len`
//  'd's separated by dots, then ".com": in `buffer`, which is returned.
static const char *
s_address (char *buffer, size_t size, size_t local_len, const size_t *label_lens,
           size_t labels)
{
    char *cursor = buffer;
    char *limit = buffer + size - sizeof ".com";
    cr_assert_leq (local_len + 1, (size_t) (limit - cursor));
    memset (cursor, 'L', local_len);
    cursor += local_len;
    *cursor++ = '@';
    for (size_t index = 0; index < labels; index++) {
        cr_assert_leq (label_lens[index] + 1, (size_t) (limit - cursor));
        memset (cursor, 'd', label_lens[index]);
        cursor += label_lens[index];
        *cursor++ = '.';
    }
    memcpy (cursor, "com", sizeof "com");
    return buffer;
}

Test (user, email_normalize_enforces_lengths)
{
    char out[USER_EMAIL_SIZE];
    const char *why = NULL;
    char address[512];
    //  64 + 1 + (63 + 1 + 63 + 1 + 57 + 1 + 3) = 254 characters
    const size_t longest_labels[] = { 63, 63, 57 };
    s_address (address, sizeof address, 64, longest_labels, 3);
    cr_assert_eq (strlen (address), (size_t) USER_EMAIL_MAX);
    cr_expect_eq (s_email (address, strlen (address), out, &why), 0, "%s", why? why: "");
    cr_expect_eq (strlen (out), (size_t) USER_EMAIL_MAX);
    cr_expect_eq (out[0], 'l', "lower-cased");
    //  Trimmed white space does not count
    char padded[sizeof address + 8];
    snprintf (padded, sizeof padded, " \t %s \r\n", address);
    cr_expect_eq (s_email (padded, strlen (padded), out, &why), 0, "%s", why? why: "");
    cr_expect_eq (strlen (out), (size_t) USER_EMAIL_MAX);
    //  255 characters
    const size_t too_long_labels[] = { 63, 63, 58 };
    s_address (address, sizeof address, 64, too_long_labels, 3);
    cr_assert_eq (strlen (address), (size_t) USER_EMAIL_MAX + 1);
    BAD_EMAIL (address, "email must be at most 254 characters");

    //  Local part: 64 then 65
    const size_t example[] = { 7 };
    s_address (address, sizeof address, 64, example, 1);
    cr_expect_eq (s_email (address, strlen (address), out, &why), 0, "%s", why? why: "");
    s_address (address, sizeof address, 65, example, 1);
    BAD_EMAIL (address, "email local part must be at most 64 characters");

    //  Domain labels: 63 then 64, inside and as the top-level domain
    const size_t label_63[] = { 63 };
    s_address (address, sizeof address, 1, label_63, 1);
    cr_expect_eq (s_email (address, strlen (address), out, &why), 0, "%s", why? why: "");
    const size_t label_64[] = { 64 };
    s_address (address, sizeof address, 1, label_64, 1);
    BAD_EMAIL (address, "email domain labels must be at most 63 characters");
    char tld[128];
    snprintf (tld, sizeof tld, "a@example.%.64s", s_repeat ("t", 64, ""));
    cr_assert_eq (strlen (tld), 10 + 64);
    BAD_EMAIL (tld, "email domain labels must be at most 63 characters");
    snprintf (tld, sizeof tld, "a@example.%.63s", s_repeat ("t", 63, ""));
    cr_expect_eq (s_email (tld, strlen (tld), out, &why), 0, "%s", why? why: "");
}

Test (user, email_normalize_refuses_bad_addresses)
{
    BAD_EMAIL ("", "email must not be empty");
    BAD_EMAIL ("  \t ", "email must not be empty");
    BAD_EMAIL ("alice.example.com", "email must contain an '@'");
    BAD_EMAIL ("a@b@example.com", "email must contain exactly one '@' (quoted local parts are "
                                  "not supported)");
    BAD_EMAIL ("\"a@b\"@example.com", "email must contain exactly one '@' (quoted local parts "
                                      "are not supported)");
    BAD_EMAIL ("@example.com", "email must have a local part before the '@'");
    BAD_EMAIL ("alice@", "email must have a domain after the '@'");
    BAD_EMAIL ("@", "email must have a local part before the '@'");

    const char *dots = "email local part must not start or end with a dot or have two in a row";
    BAD_EMAIL ("a..b@example.com", dots);
    BAD_EMAIL (".alice@example.com", dots);
    BAD_EMAIL ("alice.@example.com", dots);
    BAD_EMAIL (".@example.com", dots);
    const char *local = "email local part may contain only letters, digits, dots and "
                        "!#$%&'*+/=?^_`{|}~-";
    BAD_EMAIL ("a b@example.com", local);
    BAD_EMAIL ("\"ab\"@example.com", local);     //  Quoted local parts: not supported
    BAD_EMAIL ("a(comment)@example.com", local);
    BAD_EMAIL ("a,b@example.com", local);
    BAD_EMAIL ("a\\b@example.com", local);
    BAD_EMAIL ("a\x01@example.com", local);
    BAD_EMAIL ("a<b>@example.com", local);
    s_expect_bad_email_len ("a\0b@example.com", 15, local, __LINE__);

    const char *two = "email domain must have at least two labels";
    BAD_EMAIL ("alice@localhost", two);
    BAD_EMAIL ("alice@123", two);
    const char *empty = "email domain must not have empty labels (two dots in a row, or a dot "
                        "first or last)";
    BAD_EMAIL ("alice@.example.com", empty);
    BAD_EMAIL ("alice@example..com", empty);
    BAD_EMAIL ("alice@example.com.", empty);
    BAD_EMAIL ("alice@.", empty);
    const char *hyphen = "email domain labels must not start or end with a hyphen";
    BAD_EMAIL ("alice@-example.com", hyphen);
    BAD_EMAIL ("alice@example-.com", hyphen);
    BAD_EMAIL ("alice@example.-com", hyphen);
    BAD_EMAIL ("alice@example.com-", hyphen);
    BAD_EMAIL ("alice@-.com", hyphen);
    const char *ldh = "email domain may contain only letters, digits, hyphens and dots";
    BAD_EMAIL ("alice@exa_mple.com", ldh);
    BAD_EMAIL ("alice@exa mple.com", ldh);
    BAD_EMAIL ("alice@example.com;drop", ldh);
    BAD_EMAIL ("alice@example.com/x", ldh);
    BAD_EMAIL ("alice@example.com\n.evil", ldh);    //  Header injection
    const char *numeric = "email top-level domain must not be all digits";
    BAD_EMAIL ("alice@example.123", numeric);
    BAD_EMAIL ("alice@192.168.0.1", numeric);
    BAD_EMAIL ("alice@[192.168.0.1]",
               "email domain must be a host name (IP literals are not supported)");
    BAD_EMAIL ("alice@[IPv6:2001:db8::1]",
               "email domain must be a host name (IP literals are not supported)");
}

Test (user, email_normalize_refuses_non_ascii)
{
    const char *ascii = "email must contain only ASCII characters";
    BAD_EMAIL ("j\u00f6rg@example.com", ascii);
    BAD_EMAIL ("jorg@ex\u00e4mple.com", ascii);
    BAD_EMAIL ("jorg\uff20example.com", ascii);     //  Fullwidth commercial at
    BAD_EMAIL ("\u0430lice@example.com", ascii);    //  Cyrillic a
    BAD_EMAIL ("alice@example.com\xff", ascii);     //  Not even UTF-8
    BAD_EMAIL ("\xc0\xa0" "alice@example.com", ascii);
    BAD_EMAIL ("alice@example.com\xed\xa0\x80", ascii);
}

Test (user, email_normalize_works_in_place_and_without_why)
{
    char buffer[USER_EMAIL_SIZE] = "   Mixed.Case@Example.ORG  ";
    cr_assert_eq (user_email_normalize (buffer, strlen (buffer), buffer, sizeof buffer, NULL),
                  0);
    cr_expect_str_eq (buffer, "mixed.case@example.org");
    cr_expect_eq (user_email_normalize ("nope", 4, buffer, sizeof buffer, NULL), MESH_EINVAL);
    cr_expect_eq (user_email_normalize (NULL, 0, buffer, sizeof buffer, NULL), MESH_EINVAL);
    cr_expect_str_eq (buffer, "mixed.case@example.org");
}

//  --- Ids ------------------------------------------------------------------

Test (user, id_valid_accepts_only_canonical_uuids)
{
    const char *valid[] = {
        "123e4567-e89b-12d3-a456-426614174000",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "0190c0a1-7b2e-7c3d-8e4f-a0b1c2d3e4f5",
    };
    for (size_t index = 0; index < sizeof valid / sizeof valid[0]; index++) {
        const char *text = s_exact (valid[index], USER_ID_LEN);
        cr_expect (user_id_valid (text, USER_ID_LEN), "%s", valid[index]);
    }
    const char *invalid[] = {
        "",
        "123E4567-E89B-12D3-A456-426614174000",     //  Upper case: not canonical
        "123e4567-e89b-12d3-a456-42661417400",      //  35
        "123e4567-e89b-12d3-a456-4266141740000",    //  37
        "123e4567e89b12d3a456426614174000",         //  No hyphens
        "123e4567-e89b12d3-a456-426614174000-",
        "123e4567-e89b-12d3-a456_426614174000",
        "123e4567-e89b-12d3-a456-42661417400g",
        "{23e4567-e89b-12d3-a456-426614174000}",
        "123e4567-e89b-12d3-a456-42661417400 ",
        " 123e4567-e89b-12d3-a456-426614174000",
        "123e4567--89b-12d3-a456-426614174000",
        "' OR 1=1 --                         ",
    };
    for (size_t index = 0; index < sizeof invalid / sizeof invalid[0]; index++) {
        size_t len = strlen (invalid[index]);
        cr_expect_not (user_id_valid (s_exact (invalid[index], len), len), "%s", invalid[index]);
    }
    //  Length is the caller's, not strlen's
    const char *id = "123e4567-e89b-12d3-a456-426614174000";
    cr_expect_not (user_id_valid (id, USER_ID_LEN - 1));
    cr_expect_not (user_id_valid (NULL, 0));
    cr_expect_not (user_id_valid (s_exact ("123e4567-e89b-12d3-a456-42661417\0" "000", 36), 36));
}

Test (user, id_normalize_lower_cases_and_refuses_the_rest)
{
    char out[USER_ID_SIZE];
    const char *why = NULL;
    const char *upper = "123E4567-E89B-12D3-A456-42661417400F";
    cr_assert_eq (user_id_normalize (s_exact (upper, USER_ID_LEN), USER_ID_LEN, out, sizeof out,
                                     &why),
                  0);
    cr_expect_str_eq (out, "123e4567-e89b-12d3-a456-42661417400f");
    cr_expect (user_id_valid (out, strlen (out)));

    const char *bad = "123e4567-e89b-12d3-a456-42661417400G";
    cr_expect_eq (user_id_normalize (s_exact (bad, USER_ID_LEN), USER_ID_LEN, out, sizeof out,
                                     &why),
                  MESH_EINVAL);
    cr_expect_str_eq (why, "id must be a UUID (8-4-4-4-12 hexadecimal digits)");
    cr_expect_str_eq (out, "123e4567-e89b-12d3-a456-42661417400f", "untouched on failure");
    cr_expect_eq (user_id_normalize ("", 0, out, sizeof out, NULL), MESH_EINVAL);

    char buffer[USER_ID_SIZE] = "ABCDEF01-2345-6789-ABCD-EF0123456789";
    cr_expect_eq (user_id_normalize (buffer, USER_ID_LEN, buffer, sizeof buffer, NULL), 0);
    cr_expect_str_eq (buffer, "abcdef01-2345-6789-abcd-ef0123456789");
}

//  --- The value object -----------------------------------------------------

#define ID "123e4567-e89b-12d3-a456-426614174000"
#define CREATED INT64_C (1795613611123456)      //  2026-11-25T13:33:31.123456Z
#define UPDATED INT64_C (1795613700000000)

Test (user, new_copies_values_in_normal_form)
{
    char id[] = ID;
    char name[] = "Zo\u00eb Ada";
    char email[] = "zoe@example.com";
    user_t *user = user_new (id, name, email, CREATED, UPDATED);
    cr_assert_not_null (user);
    //  Copies: the caller's buffers may change
    memset (id, 'x', USER_ID_LEN);
    memset (name, 'x', strlen (name));
    memset (email, 'x', strlen (email));
    cr_expect_str_eq (user_id (user), ID);
    cr_expect_str_eq (user_name (user), "Zo\u00eb Ada");
    cr_expect_str_eq (user_email (user), "zoe@example.com");
    cr_expect_eq (user_created_at_us (user), CREATED);
    cr_expect_eq (user_updated_at_us (user), UPDATED);

    user_t *copy = user_dup (user);
    cr_assert_not_null (copy);
    cr_expect_neq (copy, user);
    cr_expect_neq (user_name (copy), user_name (user));
    user_destroy (&user);
    cr_expect_null (user, "destroy nulls the pointer");
    user_destroy (&user);                       //  Safe on NULL
    cr_expect_str_eq (user_id (copy), ID);
    cr_expect_str_eq (user_name (copy), "Zo\u00eb Ada");
    cr_expect_str_eq (user_email (copy), "zoe@example.com");
    cr_expect_eq (user_created_at_us (copy), CREATED);
    cr_expect_eq (user_updated_at_us (copy), UPDATED);
    user_destroy (&copy);

    //  Largest values, times at the limits, updated before created (other hosts)
    const char *long_name = s_repeat ("\U0001F600", USER_NAME_MAX, "");
    user = user_new (ID, long_name, "a@b.co", USER_TIME_MAX_US, USER_TIME_MIN_US);
    cr_assert_not_null (user);
    cr_expect_str_eq (user_name (user), long_name);
    user_destroy (&user);
}

Test (user, new_refuses_values_not_in_normal_form)
{
    const char *name = "Ada";
    const char *email = "ada@example.com";
    //  Ids
    cr_expect_null (user_new ("123E4567-E89B-12D3-A456-426614174000", name, email, 0, 0));
    cr_expect_null (user_new ("123e4567-e89b-12d3-a456-42661417400", name, email, 0, 0));
    cr_expect_null (user_new ("", name, email, 0, 0));
    //  Names: invalid, or valid only after trimming
    cr_expect_null (user_new (ID, "", email, 0, 0));
    cr_expect_null (user_new (ID, " Ada", email, 0, 0));
    cr_expect_null (user_new (ID, "Ada\u00a0", email, 0, 0));
    cr_expect_null (user_new (ID, "A\nda", email, 0, 0));
    cr_expect_null (user_new (ID, "\xc0\xaf", email, 0, 0));
    cr_expect_null (user_new (ID, s_repeat ("a", USER_NAME_MAX + 1, ""), email, 0, 0));
    //  Emails: invalid, untrimmed or not lower-cased
    cr_expect_null (user_new (ID, name, "", 0, 0));
    cr_expect_null (user_new (ID, name, "ada", 0, 0));
    cr_expect_null (user_new (ID, name, " ada@example.com", 0, 0));
    cr_expect_null (user_new (ID, name, "Ada@example.com", 0, 0));
    cr_expect_null (user_new (ID, name, "ada@example.COM", 0, 0));
    //  Times RFC 3339 cannot write
    cr_expect_null (user_new (ID, name, email, USER_TIME_MIN_US - 1, 0));
    cr_expect_null (user_new (ID, name, email, 0, USER_TIME_MAX_US + 1));
    cr_expect_null (user_new (ID, name, email, INT64_MIN, INT64_MAX));
}

//  --- Times ----------------------------------------------------------------

//  Expect `us` to format as `expected`.
static void
s_expect_time (int64_t us, const char *expected)
{
    char buffer[USER_TIME_SIZE];
    cr_expect_eq (user_format_time (us, buffer, sizeof buffer), 0, "%" PRId64, us);
    cr_expect_str_eq (buffer, expected, "%" PRId64, us);
}

Test (user, format_time_writes_rfc3339_utc_with_milliseconds)
{
    s_expect_time (0, "1970-01-01T00:00:00.000Z");
    s_expect_time (CREATED, "2026-11-25T13:33:31.123Z");
    s_expect_time (INT64_C (1709208000000000), "2024-02-29T12:00:00.000Z");     //  Leap day
    s_expect_time (INT64_C (951782400000000), "2000-02-29T00:00:00.000Z");      //  400-year leap
    s_expect_time (INT64_C (951868799999999), "2000-02-29T23:59:59.999Z");
    s_expect_time (INT64_C (-2203891201000000), "1900-02-28T23:59:59.000Z");    //  1900: no leap
    s_expect_time (INT64_C (-2203891200000000), "1900-03-01T00:00:00.000Z");
    s_expect_time (INT64_C (4107542400000000), "2100-03-01T00:00:00.000Z");     //  2100: no leap
    s_expect_time (INT64_C (1735689599999999), "2024-12-31T23:59:59.999Z");
    s_expect_time (INT64_C (1735689600000000), "2025-01-01T00:00:00.000Z");
    s_expect_time (USER_TIME_MIN_US, "0000-01-01T00:00:00.000Z");
    s_expect_time (USER_TIME_MAX_US, "9999-12-31T23:59:59.999Z");
}

Test (user, format_time_truncates_toward_the_past)
{
    s_expect_time (999, "1970-01-01T00:00:00.000Z");        //  Not rounded up
    s_expect_time (1000, "1970-01-01T00:00:00.001Z");
    s_expect_time (999999, "1970-01-01T00:00:00.999Z");
    s_expect_time (1000000, "1970-01-01T00:00:01.000Z");
    s_expect_time (-1, "1969-12-31T23:59:59.999Z");         //  Floor, not toward zero
    s_expect_time (-999, "1969-12-31T23:59:59.999Z");
    s_expect_time (-1000, "1969-12-31T23:59:59.999Z");
    s_expect_time (-1001, "1969-12-31T23:59:59.998Z");
    s_expect_time (-1000000, "1969-12-31T23:59:59.000Z");
    s_expect_time (-1000001, "1969-12-31T23:59:58.999Z");
    s_expect_time (INT64_C (-86400000000), "1969-12-31T00:00:00.000Z");
}

Test (user, format_time_refuses_times_outside_four_digit_years)
{
    char buffer[USER_TIME_SIZE] = "untouched";
    cr_expect_eq (user_format_time (USER_TIME_MIN_US - 1, buffer, sizeof buffer), MESH_EINVAL);
    cr_expect_eq (user_format_time (USER_TIME_MAX_US + 1, buffer, sizeof buffer), MESH_EINVAL);
    cr_expect_eq (user_format_time (INT64_MIN, buffer, sizeof buffer), MESH_EINVAL);
    cr_expect_eq (user_format_time (INT64_MAX, buffer, sizeof buffer), MESH_EINVAL);
    cr_expect_str_eq (buffer, "untouched");
}

Test (user, format_time_agrees_with_gmtime)
{
    //  A fixed-seed walk over years 0000..9999, negative times included;
    //  glibc's gmtime_r (proleptic Gregorian too) is the reference.
    uint64_t state = 0x9e3779b97f4a7c15u;
    const int64_t low = USER_TIME_MIN_US / 1000000; //  0000-01-01
    const int64_t high = INT64_C (253402300799);    //  9999-12-31T23:59:59
    for (int round = 0; round < 200000; round++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        int64_t seconds = low + (int64_t) (state % (uint64_t) (high - low + 1));
        int64_t millis = (int64_t) ((state >> 40) % 1000);
        time_t clock = (time_t) seconds;
        struct tm parts;
        cr_assert_not_null (gmtime_r (&clock, &parts));
        char expected[64];
        snprintf (expected, sizeof expected, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                  parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
                  parts.tm_min, parts.tm_sec, (int) millis);
        char buffer[USER_TIME_SIZE];
        int64_t us = seconds * 1000000 + millis * 1000 + (int64_t) (state % 1000);
        cr_assert_eq (user_format_time (us, buffer, sizeof buffer), 0);
        cr_assert_str_eq (buffer, expected, "%" PRId64 " us", us);
    }
}

Test (user, actor_normalize_keeps_text_as_sent_and_refuses_the_rest)
{
    char out[USER_ACTOR_SIZE];
    const char *why = NULL;
    cr_assert_eq (user_actor_normalize ("", 0, out, sizeof out, &why), 0, "empty = none");
    cr_assert_str_eq (out, "");
    cr_assert_eq (user_actor_normalize (" Ops Alice ", 11, out, sizeof out, &why), 0);
    cr_assert_str_eq (out, " Ops Alice ", "no trimming, no case change");
    cr_assert_eq (user_actor_normalize ("jwt:Zoë", 8, out, sizeof out, &why), 0);
    cr_assert_str_eq (out, "jwt:Zoë");
    //  In place, as the other normalisers
    char buffer[USER_ACTOR_SIZE] = "key:gateway";
    cr_assert_eq (user_actor_normalize (buffer, 11, buffer, sizeof buffer, NULL), 0);
    cr_assert_str_eq (buffer, "key:gateway");

    strcpy (out, "untouched");
    cr_assert_eq (user_actor_normalize ("a\tb", 3, out, sizeof out, &why), MESH_EINVAL);
    cr_assert_str_eq (why, "actor must not contain control characters or line separators");
    cr_assert_eq (user_actor_normalize ("a\xc2\x85"
                                        "b",
                                        4, out, sizeof out, &why),
                  MESH_EINVAL, "C1 control (NEL)");
    cr_assert_eq (user_actor_normalize ("\xed\xa0\x80", 3, out, sizeof out, &why), MESH_EINVAL);
    cr_assert_str_eq (why, "actor must be valid UTF-8");
    char too_long[USER_ACTOR_MAX + 1];
    memset (too_long, 'a', sizeof too_long);
    cr_assert_eq (user_actor_normalize (too_long, sizeof too_long, out, sizeof out, &why),
                  MESH_EINVAL);
    cr_assert_str_eq (why, "actor must be at most 256 bytes");
    cr_assert_str_eq (out, "untouched", "out is not written on failure");
    cr_assert_eq (user_actor_normalize (too_long, USER_ACTOR_MAX, out, sizeof out, &why), 0);
    cr_assert_eq (strlen (out), USER_ACTOR_MAX);
}
