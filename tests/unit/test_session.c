/* SPDX-License-Identifier: MIT */
/* Unit tests of the dashboard's sessions (api/session.c): create, look up, expire, idle,
 * drop the oldest, cookies, CSRF and Origin checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/session.h"

static struct session_table t;

static void fill(uint8_t *r, uint8_t seed)
{
    for (size_t i = 0; i < 2 * SESSION_ID_BYTES; i++)
        r[i] = (uint8_t)(seed * 31 + i * 7);
}

static const struct session *make(uint8_t seed, uint64_t now_ms)
{
    uint8_t r[2 * SESSION_ID_BYTES];
    fill(r, seed);
    return session_create(&t, r, now_ms, 1000000 + now_ms / 1000);
}

static void test_create_and_lookup(void **state)
{
    session_table_init(&t, 3600, 1800);
    const struct session *s = make(1, 5000);
    assert_int_equal(strlen(s->id), 64);
    assert_int_equal(strlen(s->csrf), 64);
    assert_string_not_equal(s->id, s->csrf);
    assert_int_equal(s->expires_at, 1000005 + 3600);
    char id[SESSION_HEX];
    strcpy(id, s->id);
    const struct session *got;
    assert_int_equal(session_lookup(&t, id, 6000, &got), 0);
    assert_ptr_equal(got, s);
    assert_int_equal(session_count(&t), 1);
    /* Wrong ids: another one, a prefix, a longer one, empty, NULL. */
    char other[SESSION_HEX];
    strcpy(other, id);
    other[10] = other[10] == 'a' ? 'b' : 'a';
    assert_int_equal(session_lookup(&t, other, 6000, &got), SESSION_UNKNOWN);
    other[10] = id[10];
    other[63] = '\0';
    assert_int_equal(session_lookup(&t, other, 6000, &got), SESSION_UNKNOWN);
    char longer[SESSION_HEX + 1];
    snprintf(longer, sizeof(longer), "%sa", id);
    assert_int_equal(session_lookup(&t, longer, 6000, &got), SESSION_UNKNOWN);
    assert_int_equal(session_lookup(&t, "", 6000, &got), SESSION_UNKNOWN);
    assert_int_equal(session_lookup(&t, NULL, 6000, &got), SESSION_UNKNOWN);
    /* Removed: gone, and removing again says so. */
    assert_true(session_remove(&t, id));
    assert_false(session_remove(&t, id));
    assert_int_equal(session_lookup(&t, id, 6000, &got), SESSION_UNKNOWN);
    assert_int_equal(session_count(&t), 0);
}

static void test_expiry_and_idle(void **state)
{
    session_table_init(&t, 100, 30);
    char a[SESSION_HEX], b[SESSION_HEX];
    strcpy(a, make(1, 0)->id);
    strcpy(b, make(2, 0)->id);
    const struct session *got;
    /* Used every 20 s, a stays until its ttl; b, unused, ends after 30 s idle. */
    for (uint64_t now = 20000; now < 100000; now += 20000)
        assert_int_equal(session_lookup(&t, a, now, &got), 0);
    assert_int_equal(session_lookup(&t, b, 30000, &got), SESSION_IDLE);
    assert_int_equal(session_lookup(&t, b, 30001, &got), SESSION_UNKNOWN); /* removed */
    assert_int_equal(session_lookup(&t, a, 99999, &got), 0);
    assert_int_equal(session_lookup(&t, a, 100000, &got), SESSION_EXPIRED);
    assert_int_equal(session_lookup(&t, a, 100001, &got), SESSION_UNKNOWN);
    assert_int_equal(session_count(&t), 0);
}

static void test_full_table_drops_the_oldest(void **state)
{
    session_table_init(&t, 3600, 3600);
    char first[SESSION_HEX], second[SESSION_HEX];
    for (unsigned i = 0; i < SESSION_MAX; i++) {
        const struct session *s = make((uint8_t)i, 1000 + i);
        if (i == 0)
            strcpy(first, s->id);
        if (i == 1)
            strcpy(second, s->id);
    }
    assert_int_equal(session_count(&t), SESSION_MAX);
    uint8_t r[2 * SESSION_ID_BYTES];
    memset(r, 0xee, sizeof(r));
    const struct session *n = session_create(&t, r, 5000, 5);
    assert_int_equal(session_count(&t), SESSION_MAX);
    const struct session *got;
    assert_int_equal(session_lookup(&t, first, 5001, &got), SESSION_UNKNOWN);
    assert_int_equal(session_lookup(&t, second, 5001, &got), 0);
    char nid[SESSION_HEX];
    strcpy(nid, n->id);
    assert_int_equal(session_lookup(&t, nid, 5001, &got), 0);
}

static void test_cookie_parsing(void **state)
{
    char v[SESSION_HEX];
    assert_true(session_cookie_value("ferry_session=abc", "ferry_session", v, sizeof(v)));
    assert_string_equal(v, "abc");
    assert_true(session_cookie_value("a=1; ferry_session=abc; b=2", "ferry_session", v, sizeof(v)));
    assert_string_equal(v, "abc");
    assert_true(session_cookie_value("a=1;ferry_session=\"q\" ", "ferry_session", v, sizeof(v)));
    assert_string_equal(v, "q");
    /* The first of two wins (RFC 6265 sends the more specific path first). */
    assert_true(
        session_cookie_value("ferry_session=1; ferry_session=2", "ferry_session", v, sizeof(v)));
    assert_string_equal(v, "1");
    /* Names that only start or end alike, no value, absent, empty header, too long. */
    assert_false(session_cookie_value("xferry_session=1", "ferry_session", v, sizeof(v)));
    assert_false(session_cookie_value("ferry_session_x=1", "ferry_session", v, sizeof(v)));
    assert_false(session_cookie_value("ferry_session=", "ferry_session", v, sizeof(v)));
    assert_false(session_cookie_value("ferry_session", "ferry_session", v, sizeof(v)));
    assert_false(session_cookie_value("a=1", "ferry_session", v, sizeof(v)));
    assert_false(session_cookie_value("", "ferry_session", v, sizeof(v)));
    assert_false(session_cookie_value(";;; ", "ferry_session", v, sizeof(v)));
    char big[200];
    memset(big, 'a', sizeof(big));
    memcpy(big, "ferry_session=", 14);
    big[sizeof(big) - 1] = '\0';
    assert_false(session_cookie_value(big, "ferry_session", v, sizeof(v)));
}

static void test_csrf_and_origin(void **state)
{
    session_table_init(&t, 3600, 1800);
    const struct session *s = make(3, 0);
    char csrf[SESSION_HEX];
    strcpy(csrf, s->csrf);
    assert_true(session_csrf_ok(s, csrf));
    assert_false(session_csrf_ok(s, NULL));
    assert_false(session_csrf_ok(s, ""));
    assert_false(session_csrf_ok(s, s->id));
    csrf[5] ^= 1;
    assert_false(session_csrf_ok(s, csrf));

    assert_true(session_origin_ok(NULL, "10.0.0.1:7443", false));
    assert_true(session_origin_ok("http://10.0.0.1:7443", "10.0.0.1:7443", false));
    assert_true(session_origin_ok("HTTP://Node1:7443", "node1:7443", false));
    assert_false(session_origin_ok("https://10.0.0.1:7443", "10.0.0.1:7443", false));
    assert_true(session_origin_ok("https://10.0.0.1:7443", "10.0.0.1:7443", true));
    assert_false(session_origin_ok("http://evil.example", "10.0.0.1:7443", false));
    assert_false(session_origin_ok("http://10.0.0.1:7443.evil", "10.0.0.1:7443", false));
    assert_false(session_origin_ok("http://10.0.0.1", "10.0.0.1:7443", false));
    assert_false(session_origin_ok("null", "10.0.0.1:7443", false));
    assert_false(session_origin_ok("http://10.0.0.1:7443", NULL, false));
    assert_false(session_origin_ok("http://", "", false));
}

static void test_set_cookie(void **state)
{
    char c[256];
    assert_int_equal(session_set_cookie(c, sizeof(c), "ab", 60, false), 0);
    assert_string_equal(c, "ferry_session=ab; HttpOnly; SameSite=Strict; Path=/; Max-Age=60");
    assert_int_equal(session_set_cookie(c, sizeof(c), "", 0, true), 0);
    assert_string_equal(c, "ferry_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure");
    assert_int_equal(session_set_cookie(c, 10, "ab", 60, false), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_lookup),
        cmocka_unit_test(test_expiry_and_idle),
        cmocka_unit_test(test_full_table_drops_the_oldest),
        cmocka_unit_test(test_cookie_parsing),
        cmocka_unit_test(test_csrf_and_origin),
        cmocka_unit_test(test_set_cookie),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
