/* SPDX-License-Identifier: MIT */
/* Unit tests of reading a peer's answer (common/reply.c) and the error-code table both ways. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/err.h"
#include "common/reply.h"

static json_t *error_body(const char *code, const char *msg)
{
    return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
}

static void test_success(void **state)
{
    (void)state;
    struct ferr out = {0};
    json_t *b = json_pack("{s:s}", "uri", "tcp:10.0.0.1:4444");
    assert_int_equal(reply_failed(200, b, NULL, &out), 0);
    assert_int_equal(reply_failed(201, NULL, NULL, &out), 0);
    json_decref(b);
}

static void test_transport_error_wins(void **state)
{
    (void)state;
    struct ferr e = {0}, out = {0};
    ferr_set(&e, FERR_UNAVAIL, "peer http://10.0.0.2:7443: Couldn't connect to server");
    assert_int_equal(reply_failed(0, NULL, &e, &out), FERR_UNAVAIL);
    assert_string_equal(out.msg, e.msg);
}

static void test_error_answers(void **state)
{
    (void)state;
    struct ferr out = {0};
    /* The body's code name decides, whatever the status says. */
    json_t *b = error_body("not_found", "mv5 is not running here");
    assert_int_equal(reply_failed(404, b, NULL, &out), FERR_NOTFOUND);
    assert_string_equal(out.msg, "mv5 is not running here");
    json_decref(b);
    b = error_body("bad_state", "the compare-and-set failed");
    assert_int_equal(reply_failed(409, b, NULL, &out), FERR_STATE);
    json_decref(b);
    /* An unknown name (an errno name, a newer code): the status decides. */
    b = error_body("ENOSPC", "disk full");
    assert_int_equal(reply_failed(503, b, NULL, &out), FERR_UNAVAIL);
    assert_string_equal(out.msg, "disk full");
    json_decref(b);
    /* No JSON at all. */
    assert_int_equal(reply_failed(500, NULL, NULL, &out), FERR_INTERNAL);
    assert_non_null(strstr(out.msg, "HTTP 500"));
}

static void test_code_table_both_ways(void **state)
{
    (void)state;
    static const int codes[] = {
        FERR_INVALID,  FERR_NOTFOUND, FERR_EXISTS,  FERR_STATE, FERR_PROTO,  FERR_QEMU,  FERR_LIMIT,
        FERR_INTERNAL, FERR_UNAVAIL,  FERR_TIMEOUT, FERR_AUTH,  FERR_METHOD, FERR_TOOBIG};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        assert_int_equal(ferr_from_name(ferr_name(codes[i])), codes[i]);
    assert_int_equal(ferr_from_name("nonsense"), 0);
    assert_int_equal(ferr_from_name(NULL), 0);
    assert_int_equal(ferr_from_http_status(404), FERR_NOTFOUND);
    assert_int_equal(ferr_from_http_status(409), FERR_STATE);
    assert_int_equal(ferr_from_http_status(418), FERR_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_transport_error_wins),
        cmocka_unit_test(test_error_answers),
        cmocka_unit_test(test_code_table_both_ways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
