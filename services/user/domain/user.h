/*  =========================================================================
    user - the user value object and the rules its fields obey
    The domain layer of mesh-user: pure C on libc, no I/O, no ZeroMQ, no
    libpq. Requests (app layer) run names, emails and ids through the
    *_normalize functions, which trim, canonicalise and check them and say
    which rule failed; a user_t is built only from values in normal form, so
    every user_t in the service is valid. Times are unix microseconds (the
    resolution of PostgreSQL's timestamptz) and go on the wire as RFC 3339
    UTC strings with milliseconds.

    Rules
    - Name: trimmed of Unicode White_Space at both ends (U+0009..U+000D,
      U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029,
      U+202F, U+205F, U+3000); then 1 to 200 characters, where a character
      is a Unicode code point. The input must be valid UTF-8 (no overlong
      forms, no surrogates, nothing above U+10FFFF). Control characters (C0
      including NUL, DEL, C1) and the line and paragraph separators U+2028
      and U+2029 are rejected inside the name. No Unicode normalisation
      (NFC) is applied: the name is stored as sent.
    - Email: trimmed as a name is, then lower-cased as a whole (ASCII only:
      the local part is case-sensitive in RFC 5321, but no mail system in
      use treats it so, and one address must not register twice); at most
      254 characters, exactly one '@'. Local part: 1 to 64 characters of
      RFC 5322 atext (letters, digits, !#$%&'*+/=?^_`{|}~-) and dots, a dot
      neither first, last nor next to another. Domain: at most 253
      characters, two or more dot-separated labels of 1 to 63 letters,
      digits and hyphens, no label starting or ending with a hyphen, and a
      top-level label that is not all digits. Deliberately refused, though
      RFC 5322 allows them: quoted local parts ("a b"@example.com), IP
      literal domains (a@[192.0.2.1]), comments, and non-ASCII addresses
      (RFC 6531; send the domain as punycode, xn--...).
    - Id: a UUID in canonical text form, 36 characters 8-4-4-4-12 of
      lower-case hexadecimal digits. Any version is accepted.
    - Actor (who asked for a change: a key's name, a token's subject): at
      most 256 bytes of well-formed UTF-8 without control characters, kept
      exactly as sent (no trimming, no case change); empty means none.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef USER_H_INCLUDED
#define USER_H_INCLUDED

#include "mesh/mesh_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USER_NAME_MAX 200           //  Characters (code points) of a name
#define USER_NAME_SIZE (USER_NAME_MAX * 4 + 1)  //  Bytes for any valid name + NUL
#define USER_EMAIL_MAX 254          //  Characters (bytes: addresses are ASCII)
#define USER_EMAIL_SIZE (USER_EMAIL_MAX + 1)
#define USER_EMAIL_LOCAL_MAX 64     //  Characters before the '@'
#define USER_EMAIL_DOMAIN_MAX 253   //  Characters after the '@'
#define USER_EMAIL_LABEL_MAX 63     //  Characters of one domain label
#define USER_ID_LEN 36              //  "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
#define USER_ID_SIZE (USER_ID_LEN + 1)
#define USER_ACTOR_MAX 256 //  Bytes of an actor (MESH_ENVELOPE_MAX_ACTOR)
#define USER_ACTOR_SIZE (USER_ACTOR_MAX + 1)
#define USER_TIME_LEN 24            //  "2026-11-25T13:33:31.123Z"
#define USER_TIME_SIZE (USER_TIME_LEN + 1)
//  Times RFC 3339 can write (four-digit years): 0000-01-01T00:00:00Z up to
//  9999-12-31T23:59:59.999999Z, in unix microseconds.
#define USER_TIME_MIN_US (-INT64_C (62167219200000000))
#define USER_TIME_MAX_US (INT64_C (253402300799999999))

typedef struct user_s user_t;

//  Normalise a name of `len` bytes (not NUL-terminated; may hold NULs,
//  which are rejected as control characters) into `out`, NUL-terminated.
//  `out_size` must be at least USER_NAME_SIZE; `out` may be `input` itself.
//  Returns 0, or MESH_EINVAL with *why (when `why` is not NULL) set to a
//  static English sentence naming the rule ("name must not be empty");
//  `out` is untouched on failure. Thread-safe.
int
    user_name_normalize (const char *input, size_t len, char *out, size_t out_size,
                         const char **why);

//  Normalise an email address of `len` bytes into `out`, trimmed and
//  lower-cased, NUL-terminated. `out_size` must be at least USER_EMAIL_SIZE;
//  `out` may be `input` itself. Returns 0, or MESH_EINVAL with *why (when
//  `why` is not NULL) set to a static sentence naming the rule ("email must
//  contain exactly one '@'"); `out` is untouched on failure. Thread-safe.
int
    user_email_normalize (const char *input, size_t len, char *out, size_t out_size,
                          const char **why);

//  True when the `len` bytes of `text` are a canonical user id (lower-case
//  UUID text, exactly USER_ID_LEN bytes). Thread-safe.
bool
    user_id_valid (const char *text, size_t len);

//  Normalise an id from outside (a request, a URL): a UUID in 8-4-4-4-12
//  form with hexadecimal digits of either case, written to `out` in lower
//  case, NUL-terminated. No trimming, no braces, no "urn:uuid:" prefix.
//  `out_size` must be at least USER_ID_SIZE; `out` may be `input` itself.
//  Returns 0, or MESH_EINVAL with *why (when not NULL) set to "id must be a
//  UUID (8-4-4-4-12 hexadecimal digits)"; `out` is untouched on failure.
int
    user_id_normalize (const char *input, size_t len, char *out, size_t out_size,
                       const char **why);

//  Check an actor of `len` bytes (not NUL-terminated) and copy it into
//  `out`, NUL-terminated, unchanged; `out_size` must be at least
//  USER_ACTOR_SIZE. An empty actor (len 0) is valid and means none.
//  Returns 0, or MESH_EINVAL with *why (when not NULL) set to a static
//  sentence; `out` is untouched on failure. Thread-safe.
int user_actor_normalize (const char *input, size_t len, char *out, size_t out_size,
                          const char **why);

//  Create a user from values already in normal form: a canonical id, a name
//  and an email that their normalize functions return unchanged, and times
//  between USER_TIME_MIN_US and USER_TIME_MAX_US. Copies the strings.
//  Returns NULL when any value is not in that form (e.g. a row written under
//  other rules): the caller reports it, it is not a programmer error. The
//  times are not compared with each other (they may come from other hosts).
user_t *
    user_new (const char *id, const char *name, const char *email, int64_t created_at_us,
              int64_t updated_at_us);

//  Copy of a user; caller destroys it.
user_t *
    user_dup (const user_t *self);

//  Destroy the user. Safe on a NULL reference; nulls the caller's pointer.
void
    user_destroy (user_t **self_p);

//  Id, name and email. Borrowed: valid until the user is destroyed.
const char *
    user_id (const user_t *self);
const char *
    user_name (const user_t *self);
const char *
    user_email (const user_t *self);

//  Creation and last update times, unix microseconds.
int64_t
    user_created_at_us (const user_t *self);
int64_t
    user_updated_at_us (const user_t *self);

//  Write `us` (unix microseconds) as RFC 3339 UTC with milliseconds,
//  "2026-11-25T13:33:31.123Z", NUL-terminated, into `buffer` of at least
//  USER_TIME_SIZE bytes. Sub-millisecond digits are truncated toward the
//  past (floor), so 999 us after a second prints .000 and one microsecond
//  before the epoch prints 1969-12-31T23:59:59.999Z: a printed time is
//  never later than the stored one. Returns 0, or MESH_EINVAL (buffer
//  untouched) when `us` is outside USER_TIME_MIN_US..USER_TIME_MAX_US.
//  No time zone or locale is consulted. Thread-safe.
int
    user_format_time (int64_t us, char *buffer, size_t size);

#endif
