/* SPDX-License-Identifier: MIT */
/* api/sse.c: Server-Sent Events framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/sse.h"
#include "common/err.h"

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

struct got {
    char text[1024];
    int n;
};

static void on_ev(uint64_t id, const char *type, const char *data, void *arg)
{
    struct got *g = arg;
    size_t l = strlen(g->text);
    snprintf(g->text + l, sizeof(g->text) - l, "[%llu|%s|%s]", (unsigned long long)id, type, data);
    g->n++;
}

/* Fed byte by byte and all at once, the same events come out. */
static void read_all(const char *stream, const char *want, int n)
{
    for (int pass = 0; pass < 2; pass++) {
        struct sse_reader r = {0};
        struct got g = {{0}, 0};
        if (pass == 0)
            assert_int_equal(sse_reader_feed(&r, stream, strlen(stream), on_ev, &g), 0);
        else
            for (size_t i = 0; stream[i]; i++)
                assert_int_equal(sse_reader_feed(&r, stream + i, 1, on_ev, &g), 0);
        assert_string_equal(g.text, want);
        assert_int_equal(g.n, n);
        sse_reader_free(&r);
    }
}

static void test_reader(void **state)
{
    read_all("id: 1\nevent: a\ndata: x\n\n: keepalive\n\nid: 2\ndata: y\ndata: z\n\n",
             "[1|a|x][2||y\nz]", 2);
    /* \r\n and \r end lines too; the id is kept for an event without one; an event without
     * data is not dispatched; unknown fields are skipped; "data:x" needs no space. */
    read_all("id: 5\r\nevent: b\r\ndata:x\r\r\nevent: c\rretry: 10\r\rdata: w\n\n", "[5|b|x][5||w]",
             2);
    /* An event whose blank line has not come yet is not handed out. */
    read_all("id: 9\ndata: half\n", "", 0);
    /* What sse_event writes, sse_reader reads back. */
    size_t len;
    char *s = sse_event(77, "task.ended", "{\"a\":1}\nsecond", &len);
    read_all(s, "[77|task.ended|{\"a\":1}\nsecond]", 1);
    free(s);
    /* A line without end is refused past SSE_LINE_MAX. */
    struct sse_reader r = {0};
    char *big = malloc(SSE_LINE_MAX + 1);
    memset(big, 'a', SSE_LINE_MAX + 1);
    struct got g = {{0}, 0};
    assert_int_equal(sse_reader_feed(&r, big, SSE_LINE_MAX + 1, on_ev, &g), FERR_TOOBIG);
    sse_reader_free(&r);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event),
        cmocka_unit_test(test_comment),
        cmocka_unit_test(test_last_id),
        cmocka_unit_test(test_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
