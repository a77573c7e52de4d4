/* SPDX-License-Identifier: MIT */
/* Unit tests of the route matcher: matches, parameters, 404 vs 405, bad paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/router.h"
#include "common/util.h"

static int h_list, h_create, h_get, h_delete, h_start, h_info, h_console, h_root;

static const struct route routes[] = {
    {"GET", "/", &h_root, NULL},
    {"GET", "/v1/vms", &h_list, NULL},
    {"POST", "/v1/vms", &h_create, NULL},
    {"GET", "/v1/vms/{name}", &h_get, NULL},
    {"DELETE", "/v1/vms/{name}", &h_delete, NULL},
    {"POST", "/v1/vms/{name}/start", &h_start, NULL},
    {"GET", "/v1/vms/{name}/console", &h_console, "offset max"},
    {"GET", "/v1/disks/info", &h_info, NULL},
    {"GET", "/v1/a/{x}/b/{y}", &h_info, NULL},
};

static int match(const char *method, const char *path, struct route_match *m)
{
    return router_match(routes, ARRAY_SIZE(routes), method, path, m);
}

static void test_literal_routes(void **state)
{
    struct route_match m;
    assert_int_equal(match("GET", "/v1/vms", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_list);
    assert_int_equal(m.nparams, 0);
    assert_int_equal(match("POST", "/v1/vms", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_create);
    assert_int_equal(match("GET", "/v1/disks/info", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_info);
    assert_int_equal(match("GET", "/", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_root);
}

static void test_params(void **state)
{
    struct route_match m;
    assert_int_equal(match("GET", "/v1/vms/web1", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_get);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(route_param(&m, "name"), "web1");
    assert_null(route_param(&m, "nope"));

    assert_int_equal(match("DELETE", "/v1/vms/db-2", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_delete);
    assert_string_equal(route_param(&m, "name"), "db-2");

    assert_int_equal(match("POST", "/v1/vms/web1/start", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_start);
    assert_string_equal(route_param(&m, "name"), "web1");

    assert_int_equal(match("GET", "/v1/a/one/b/two", &m), ROUTER_OK);
    assert_int_equal(m.nparams, 2);
    assert_string_equal(route_param(&m, "x"), "one");
    assert_string_equal(route_param(&m, "y"), "two");
}

static void test_percent_decoding(void **state)
{
    struct route_match m;
    assert_int_equal(match("GET", "/v1/vms/a%20b", &m), ROUTER_OK);
    assert_string_equal(route_param(&m, "name"), "a b");
    /* An encoded slash stays inside its segment. */
    assert_int_equal(match("GET", "/v1/vms/a%2Fb", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_get);
    assert_string_equal(route_param(&m, "name"), "a/b");
    assert_int_equal(match("GET", "/v1/vms/%c3%a9t%C3%A9", &m), ROUTER_OK);
    assert_string_equal(route_param(&m, "name"), "\xc3\xa9t\xc3\xa9");
    /* Literal segments compare decoded. */
    assert_int_equal(match("GET", "/v1/%76ms", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_list);
}

static void test_not_found_vs_bad_method(void **state)
{
    struct route_match m;
    assert_int_equal(match("GET", "/v1/nothing", &m), ROUTER_NOT_FOUND);
    assert_null(m.route);
    assert_int_equal(match("GET", "/v1/vms/web1/start/now", &m), ROUTER_NOT_FOUND);
    assert_int_equal(match("GET", "/v2/vms", &m), ROUTER_NOT_FOUND);
    assert_int_equal(match("GET", "/v1", &m), ROUTER_NOT_FOUND);

    assert_int_equal(match("PUT", "/v1/vms", &m), ROUTER_BAD_METHOD);
    assert_null(m.route);
    assert_int_equal(match("GET", "/v1/vms/web1/start", &m), ROUTER_BAD_METHOD);
    assert_int_equal(match("POST", "/v1/vms/web1", &m), ROUTER_BAD_METHOD);
    assert_int_equal(match("get", "/v1/vms", &m), ROUTER_BAD_METHOD); /* methods are exact */
}

static void test_bad_encodings(void **state)
{
    struct route_match m;
    assert_int_equal(match("GET", "/v1/vms/a%", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", "/v1/vms/a%2", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", "/v1/vms/a%zz", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", "/v1/vms/%g0", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", "/v1/vms/a%00b", &m), ROUTER_BAD_PATH);
    /* Bad encoding is reported even where no route would match. */
    assert_int_equal(match("GET", "/nowhere/%x", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", "", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", "v1/vms", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", NULL, &m), ROUTER_BAD_PATH);
    assert_null(m.route);
}

static void test_empty_segments_and_trailing_slash(void **state)
{
    struct route_match m;
    assert_int_equal(match("GET", "/v1/vms/", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", "/v1//vms", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("GET", "//", &m), ROUTER_BAD_PATH);
    assert_int_equal(match("POST", "/v1/vms/web1/start/", &m), ROUTER_BAD_PATH);
}

static void test_segment_limits(void **state)
{
    struct route_match m;
    char path[512];
    char name[ROUTER_PARAM_MAX + 1];

    /* The longest value that fits: ROUTER_PARAM_MAX - 1 bytes. */
    memset(name, 'a', ROUTER_PARAM_MAX - 1);
    name[ROUTER_PARAM_MAX - 1] = '\0';
    snprintf(path, sizeof(path), "/v1/vms/%s", name);
    assert_int_equal(match("GET", path, &m), ROUTER_OK);
    assert_string_equal(route_param(&m, "name"), name);

    /* One more byte is too long. */
    memset(name, 'a', ROUTER_PARAM_MAX);
    name[ROUTER_PARAM_MAX] = '\0';
    snprintf(path, sizeof(path), "/v1/vms/%s", name);
    assert_int_equal(match("GET", path, &m), ROUTER_BAD_PATH);

    /* Length is counted after decoding: 127 "%41" escapes decode to 127 bytes. */
    char *p = path + snprintf(path, sizeof(path), "/v1/vms/");
    _Static_assert(8 + 3 * (ROUTER_PARAM_MAX - 1) < sizeof(path) - 4, "path buffer too small");
    for (int i = 0; i < ROUTER_PARAM_MAX - 1; i++)
        p += snprintf(p, 4, "%%41");
    assert_int_equal(match("GET", path, &m), ROUTER_OK);
    assert_int_equal(strlen(route_param(&m, "name")), ROUTER_PARAM_MAX - 1);
    p += snprintf(p, 4, "%%41");
    assert_int_equal(match("GET", path, &m), ROUTER_BAD_PATH);

    /* Very deep paths match nothing. */
    p = path;
    for (int i = 0; i < 40; i++)
        p += snprintf(p, 4, "/a");
    assert_int_equal(match("GET", path, &m), ROUTER_NOT_FOUND);
}

static void test_first_route_wins(void **state)
{
    static const struct route r[] = {
        {"GET", "/v1/disks/info", &h_info, NULL},
        {"GET", "/v1/disks/{path}", &h_get, NULL},
    };
    struct route_match m;
    assert_int_equal(router_match(r, ARRAY_SIZE(r), "GET", "/v1/disks/info", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_info);
    assert_int_equal(router_match(r, ARRAY_SIZE(r), "GET", "/v1/disks/x", &m), ROUTER_OK);
    assert_ptr_equal(m.route->handler, &h_get);
    assert_int_equal(router_match(r, 0, "GET", "/v1/disks/x", &m), ROUTER_NOT_FOUND);
}

static void test_query_names(void **state)
{
    (void)state;
    struct route_match m;
    char why[256];
    assert_int_equal(match("GET", "/v1/vms/a/console", &m), ROUTER_OK);
    const char *ok[] = {"max", "offset"};
    assert_int_equal(router_check_query(m.route, ok, 2, why, sizeof(why)), 0);
    assert_int_equal(router_check_query(m.route, NULL, 0, why, sizeof(why)), 0);
    const char *typo[] = {"offset", "ofset"};
    assert_int_equal(router_check_query(m.route, typo, 2, why, sizeof(why)), -1);
    assert_string_equal(why, "unknown query argument \"ofset\" for GET /v1/vms/{name}/console "
                             "(it takes: offset, max)");
    const char *twice[] = {"max", "offset", "max"};
    assert_int_equal(router_check_query(m.route, twice, 3, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "given twice: \"max\""));
    /* A prefix or a longer name of a taken one is not taken. */
    const char *prefix[] = {"off"};
    assert_int_equal(router_check_query(m.route, prefix, 1, why, sizeof(why)), -1);
    const char *longer[] = {"maxx"};
    assert_int_equal(router_check_query(m.route, longer, 1, why, sizeof(why)), -1);
    const char *empty[] = {""};
    assert_int_equal(router_check_query(m.route, empty, 1, why, sizeof(why)), -1);
    /* A route that takes none says so. */
    assert_int_equal(match("GET", "/v1/vms", &m), ROUTER_OK);
    const char *any[] = {"offset"};
    assert_int_equal(router_check_query(m.route, any, 1, why, sizeof(why)), -1);
    assert_string_equal(why, "unknown query argument \"offset\" for GET /v1/vms (it takes none)");
    /* A short buffer still ends in a NUL. */
    char tiny[12];
    assert_int_equal(router_check_query(m.route, any, 1, tiny, sizeof(tiny)), -1);
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_routes),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_percent_decoding),
        cmocka_unit_test(test_not_found_vs_bad_method),
        cmocka_unit_test(test_bad_encodings),
        cmocka_unit_test(test_empty_segments_and_trailing_slash),
        cmocka_unit_test(test_segment_limits),
        cmocka_unit_test(test_first_route_wins),
        cmocka_unit_test(test_query_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
