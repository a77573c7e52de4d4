/* SPDX-License-Identifier: MIT */
/* api/sse.c: Server-Sent Events framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/sse.h"

static void expect_event(uint64_t id, const char *type, const char *data, const char *want)
{
    size_t len = 0;
    char *s = sse_event(id, type, data, &len);
    assert_non_null(s);
    assert_string_equal(s, want);
    assert_int_equal(len, strlen(want));
    free(s);
}

static void test_event(void **state)
{
    expect_event(7, "vm.started", "{\"id\":7}", "id: 7\nevent: vm.started\ndata: {\"id\":7}\n\n");
    /* Every line of the data is a data line: no payload ends the event or adds a field. */
    expect_event(8, "t", "a\nid: 99\n\nb",
                 "id: 8\nevent: t\ndata: a\ndata: id: 99\ndata: \ndata: b\n\n");
    expect_event(9, "t", "a\r\nb\rc", "id: 9\nevent: t\ndata: a\ndata: b\ndata: c\n\n");
    /* A type with a line break is left out rather than injected. */
    expect_event(10, "x\ndata: evil", "d", "id: 10\ndata: d\n\n");
    expect_event(11, NULL, "", "id: 11\ndata: \n\n");
    expect_event(UINT64_MAX, "t", "d", "id: 18446744073709551615\nevent: t\ndata: d\n\n");
}

static void test_comment(void **state)
{
    size_t len;
    char *s = sse_comment("keepalive", &len);
    assert_string_equal(s, ": keepalive\n\n");
    assert_int_equal(len, 13);
    free(s);
    s = sse_comment("a\nb", &len);
    assert_string_equal(s, ": a b\n\n");
    free(s);
}

static void test_last_id(void **state)
{
    uint64_t v = 0;
    assert_int_equal(sse_last_id("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(sse_last_id(" 43 ", &v), 0);
    assert_int_equal(v, 43);
    assert_int_equal(sse_last_id("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sse_last_id("", &v), -1);
    assert_int_equal(sse_last_id("-1", &v), -1);
    assert_int_equal(sse_last_id("12a", &v), -1);
    assert_int_equal(sse_last_id("1 2", &v), -1);
    assert_int_equal(sse_last_id("12345678901234567890", &v), -1);
    assert_int_equal(sse_last_id(NULL, &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event),
        cmocka_unit_test(test_comment),
        cmocka_unit_test(test_last_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
