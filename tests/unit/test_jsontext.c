/* SPDX-License-Identifier: MIT */
/* Unit tests of jsontext_valid(): the same verdict as jansson's parser, for the same reasons. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsontext.h"

struct text {
    const char *s;
    size_t len; /* 0: strlen(s) */
};

static size_t len_of(const struct text *t)
{
    return t->len ? t->len : strlen(t->s);
}

/* Asserts jsontext_valid(t) == want, and that jansson agrees. */
static void verdict(const struct text *t, bool want)
{
    size_t len = len_of(t);
    json_error_t jerr;
    json_t *j = json_loadb(t->s, len, 0, &jerr);
    bool jansson = j != NULL;
    json_decref(j);
    if (jsontext_valid(t->s, len) != want)
        fail_msg("jsontext_valid(\"%.60s\") is not %d", t->s, want);
    if (jansson != want)
        fail_msg("jansson says %d for \"%.60s\" (%s): the test is wrong", jansson, t->s, jerr.text);
}

/* The same verdict for each of the n texts. */
static void verdicts(const struct text *texts, size_t n, bool want)
{
    for (size_t i = 0; i < n; i++)
        verdict(&texts[i], want);
}

#define VERDICTS(texts, want) verdicts(texts, sizeof(texts) / sizeof(texts[0]), want)

static void test_valid(void **state)
{
    (void)state;
    static const struct text ok[] = {
        {"{}", 0},
        {"[]", 0},
        {" \t\r\n{ \"a\" : [ 1 , 2.5 , -0 , 1e10 , 1E-3 , true , false , null , \"x\" ] }\n", 0},
        {"[{\"a\":{\"b\":[[],{}]}}]", 0},
        {"{\"\":\"\"}", 0},
        {"[\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\u20AC\"]", 0},
        {"[\"\\ud83d\\ude00\"]", 0},                                          /* a surrogate pair */
        {"[\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"]", 0}, /* 2-4 bytes */
        {"[9223372036854775807, -9223372036854775808]", 0},
        {"[1e308, -1e308, 1e-400]", 0}, /* an underflow is no error */
        {"[0.000000000000000000000000000001]", 0},
        {"{\"a\":1}\0\0\0", 7}, /* the length stops before the NULs */
    };
    VERDICTS(ok, true);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct text bad[] = {
        {"[\"\xc3\x28\"]", 0},         /* a lead byte without its continuation */
        {"[\"\x80\"]", 0},             /* a lone continuation byte */
        {"[\"\xc0\xaf\"]", 0},         /* overlong, 2 bytes */
        {"[\"\xe0\x80\xaf\"]", 0},     /* overlong, 3 bytes */
        {"[\"\xf0\x80\x80\xaf\"]", 0}, /* overlong, 4 bytes */
        {"[\"\xed\xa0\x80\"]", 0},     /* a surrogate, encoded */
        {"[\"\xf4\x90\x80\x80\"]", 0}, /* above U+10FFFF */
        {"[\"\xf5\x80\x80\x80\"]", 0},
        {"[\"\xff\"]", 0},
        {"[\"\xe2\x82\"]", 0}, /* cut short */
    };
    VERDICTS(bad, false);
}

static void test_invalid_escapes(void **state)
{
    (void)state;
    static const struct text bad[] = {
        {"[\"\\u0000\"]", 0},        /* jansson refuses NUL in strings */
        {"[\"\\udc00\"]", 0},        /* a low surrogate alone */
        {"[\"\\ud800x\"]", 0},       /* a high surrogate alone */
        {"[\"\\ud800\\u0041\"]", 0}, /* followed by no low surrogate */
        {"[\"\\ud800\\ud800\"]", 0}, {"[\"\\q\"]", 0},       {"[\"\\u12\"]", 0},
        {"[\"\\u12g4\"]", 0},        {"[\"tab\there\"]", 0}, /* a raw control character */
        {"[\"nul\0\"]", 8},                                  /* a raw NUL */
        {"[\"unterminated]", 0},     {"[\"\\", 0},
    };
    VERDICTS(bad, false);
}

static void test_numbers(void **state)
{
    (void)state;
    static const struct text bad[] = {
        {"[9223372036854775808]", 0},  /* one above INT64_MAX */
        {"[-9223372036854775809]", 0}, /* one below INT64_MIN */
        {"[1000000000000000000000000]", 0},
        {"[1e999]", 0},
        {"[-1e999]", 0},
        {"[01]", 0},
        {"[1.]", 0},
        {"[.5]", 0},
        {"[+1]", 0},
        {"[-]", 0},
        {"[1e]", 0},
        {"[1e+]", 0},
        {"[0x10]", 0},
    };
    VERDICTS(bad, false);
    /* Huge integers, however long, are refused; a long real that fits is fine. */
    char text[1100];
    text[0] = '[';
    memset(text + 1, '7', 1000);
    strcpy(text + 1001, "]");
    verdict(&(struct text){text, 0}, false);
    memcpy(text + 1, "0.", 2);
    verdict(&(struct text){text, 0}, true);
}

static void test_structure(void **state)
{
    (void)state;
    static const struct text bad[] = {
        {"", 0},
        {"   ", 0},
        {"7", 0}, /* a scalar at the top */
        {"\"str\"", 0},
        {"null", 0},
        {"{", 0},
        {"{}x", 0},
        {"{} {}", 0},
        {"{\"a\" 1}", 0},
        {"{\"a\":1,}", 0},
        {"[1,]", 0},
        {"{1:2}", 0},
        {"[1 2]", 0},
        {"[tru]", 0},
        {"[nul]", 0},
        {"{\"a\":1}\0x", 9},
    };
    VERDICTS(bad, false);
}

/* Nesting: jansson's 2048 levels pass, one more does not. */
static void test_depth(void **state)
{
    (void)state;
    for (int depth = 2047; depth <= 2049; depth++) {
        char *text = malloc((size_t)depth * 2 + 1);
        assert_non_null(text);
        memset(text, '[', (size_t)depth);
        memset(text + depth, ']', (size_t)depth);
        text[depth * 2] = '\0';
        verdict(&(struct text){text, 0}, depth <= 2048);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),           cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_invalid_escapes), cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_structure),       cmocka_unit_test(test_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
