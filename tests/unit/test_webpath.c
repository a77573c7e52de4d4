/* SPDX-License-Identifier: MIT */
/* Unit tests of the dashboard's path mapping (api/webpath.c): what is served, and every way
 * out of the directory refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "api/webpath.h"

static int resolve(const char *path, char *rel)
{
    return webpath_resolve(path, rel, WEBPATH_MAX + 1);
}

static void test_served_paths(void **state)
{
    char rel[WEBPATH_MAX + 1];
    assert_int_equal(resolve("/", rel), 0);
    assert_string_equal(rel, "index.html");
    assert_int_equal(resolve("/ui/app.js", rel), 0);
    assert_string_equal(rel, "app.js");
    assert_int_equal(resolve("/ui/vendor/xterm/xterm.js", rel), 0);
    assert_string_equal(rel, "vendor/xterm/xterm.js");
    assert_int_equal(resolve("/ui/a%20b.css", rel), 0);
    assert_string_equal(rel, "a b.css");
    assert_int_equal(resolve("/ui/x.y..z.js", rel), 0); /* dots inside a name are fine */
    assert_string_equal(rel, "x.y..z.js");
    assert_true(webpath_is_static("/"));
    assert_true(webpath_is_static("/ui/x"));
    assert_false(webpath_is_static("/ui"));
    assert_false(webpath_is_static("/v1/vms"));
    assert_false(webpath_is_static(""));
}

static void test_refused_paths(void **state)
{
    static const char *bad[] = {
        "/ui/",
        "/ui/../etc/passwd",
        "/ui/a/../../x",
        "/ui/%2e%2e/x",
        "/ui/%2E%2e/x",
        "/ui/.%2e/x",
        "/ui/a/%2e/b",
        "/ui/./a",
        "/ui/..",
        "/ui/a/..",
        "/ui/a%2fb",
        "/ui/a%2F..%2Fb",
        "/ui/a%00.js",
        "/ui/a%0a.js",
        "/ui/a\\..\\b",
        "/ui/a%5c..%5cb",
        "/ui//etc/passwd",
        "/ui/a//b",
        "/ui/a/",
        "/ui/.hidden",
        "/ui/%zz",
        "/ui/a%2",
        "/ui/a%",
        "/index.html",
        "/uix/a",
        "",
        "/ui/a\x01.js",
        "/ui/a\x7f.js",
    };
    char rel[WEBPATH_MAX + 1];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(rel, 'X', sizeof(rel));
        if (resolve(bad[i], rel) == 0)
            fail_msg("\"%s\" resolved to \"%s\"", bad[i], rel);
    }
}

static void test_length_limits(void **state)
{
    char path[WEBPATH_MAX + 16], rel[WEBPATH_MAX + 1];
    memcpy(path, "/ui/", 4);
    memset(path + 4, 'a', WEBPATH_MAX);
    path[4 + WEBPATH_MAX] = '\0';
    assert_int_equal(resolve(path, rel), 0); /* WEBPATH_MAX characters exactly */
    path[4 + WEBPATH_MAX] = 'a';
    path[5 + WEBPATH_MAX] = '\0';
    assert_int_equal(resolve(path, rel), -1);
    char small[8];
    assert_int_equal(webpath_resolve("/ui/abcdefgh", small, sizeof(small)), -1);
    assert_int_equal(webpath_resolve("/ui/abc", small, sizeof(small)), 0);
    assert_int_equal(webpath_resolve("/", small, sizeof(small)), -1); /* "index.html" */
}

static void test_content_types(void **state)
{
    assert_string_equal(webpath_content_type("index.html"), "text/html; charset=utf-8");
    assert_string_equal(webpath_content_type("js/app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(webpath_content_type("a.CSS"), "text/css; charset=utf-8");
    assert_string_equal(webpath_content_type("i.svg"), "image/svg+xml");
    assert_string_equal(webpath_content_type("i.png"), "image/png");
    assert_string_equal(webpath_content_type("f.woff2"), "font/woff2");
    assert_string_equal(webpath_content_type("x.json"), "application/json");
    assert_string_equal(webpath_content_type("x.js.map"), "application/json");
    assert_string_equal(webpath_content_type("favicon.ico"), "image/x-icon");
    assert_null(webpath_content_type("README"));
    assert_null(webpath_content_type("x.sh"));
    assert_null(webpath_content_type("x.html.bak"));
    assert_null(webpath_content_type("x."));
    assert_null(webpath_content_type("dir.js/file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_served_paths),
        cmocka_unit_test(test_refused_paths),
        cmocka_unit_test(test_length_limits),
        cmocka_unit_test(test_content_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
