/* SPDX-License-Identifier: MIT */
/* Unit tests of src/api/promtext.c: the Prometheus text exposition format as /metrics writes
 * it, checked against the format's rules (escaping, cumulative buckets, +Inf = _count). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/promtext.h"

/* The text written by the calls between begin and end, owned by the test. */
static char *finish(struct promtext *o)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(promtext_take(o, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_help_and_samples(void **state)
{
    struct promtext o;
    assert_int_equal(promtext_init(&o), 0);
    promtext_help(&o, "ferry_node_vms", "gauge", "VMs defined on this node");
    promtext_sample(&o, "ferry_node_vms", NULL, 0, "%u", 3u);
    promtext_help(&o, "ferry_vm_cpu_seconds_total", "counter", "CPU time of the QEMU process");
    promtext_sample(&o, "ferry_vm_cpu_seconds_total", &(struct promtext_label){"vm", "web-1"}, 1,
                    "%.2f", 12.345);
    promtext_sample(&o, "ferry_vm_disk_read_bytes_total",
                    (struct promtext_label[]){{"vm", "web-1"}, {"disk", "disk0"}}, 2, "%llu",
                    18446744073709551615ull);
    char *text = finish(&o);
    assert_string_equal(text, "# HELP ferry_node_vms VMs defined on this node\n"
                              "# TYPE ferry_node_vms gauge\n"
                              "ferry_node_vms 3\n"
                              "# HELP ferry_vm_cpu_seconds_total CPU time of the QEMU process\n"
                              "# TYPE ferry_vm_cpu_seconds_total counter\n"
                              "ferry_vm_cpu_seconds_total{vm=\"web-1\"} 12.35\n"
                              "ferry_vm_disk_read_bytes_total{vm=\"web-1\",disk=\"disk0\"} "
                              "18446744073709551615\n");
    free(text);
}

static void test_label_values_are_escaped(void **state)
{
    struct promtext o;
    assert_int_equal(promtext_init(&o), 0);
    promtext_sample(&o, "m",
                    (struct promtext_label[]){{"a", "say \"hi\""},
                                              {"b", "C:\\dir\\"},
                                              {"c", "two\nlines"},
                                              {"d", ""},
                                              {"e", NULL},
                                              {"f", "ünï {},="}},
                    6, "1");
    char *text = finish(&o);
    assert_string_equal(text, "m{a=\"say \\\"hi\\\"\",b=\"C:\\\\dir\\\\\",c=\"two\\nlines\",d=\"\","
                              "e=\"\",f=\"ünï {},=\"} 1\n");
    free(text);
}

static void test_help_text_is_escaped(void **state)
{
    struct promtext o;
    assert_int_equal(promtext_init(&o), 0);
    /* in HELP, a backslash and a newline are escaped, a quote is not */
    promtext_help(&o, "m", "gauge", "a \"b\" c\\d\ne");
    char *text = finish(&o);
    assert_string_equal(text, "# HELP m a \"b\" c\\\\d\\ne\n# TYPE m gauge\n");
    free(text);
}

static void test_histogram_buckets_are_cumulative(void **state)
{
    static const double bounds[] = {0.01, 0.025, 0.1, 1, 60};
    /* observations: 2 at or under 10 ms, none up to 25 ms, 3 up to 100 ms, 1 up to 1 s, none
     * up to 60 s, and 4 over a minute (in +Inf only) */
    static const uint64_t buckets[] = {2, 0, 3, 1, 0, 4};
    struct promtext o;
    assert_int_equal(promtext_init(&o), 0);
    promtext_histogram(&o, "ferry_migration_blackout_seconds", "QEMU's downtime", bounds, buckets,
                       5, 10, 12.25);
    char *text = finish(&o);
    assert_string_equal(text, "# HELP ferry_migration_blackout_seconds QEMU's downtime\n"
                              "# TYPE ferry_migration_blackout_seconds histogram\n"
                              "ferry_migration_blackout_seconds_bucket{le=\"0.01\"} 2\n"
                              "ferry_migration_blackout_seconds_bucket{le=\"0.025\"} 2\n"
                              "ferry_migration_blackout_seconds_bucket{le=\"0.1\"} 5\n"
                              "ferry_migration_blackout_seconds_bucket{le=\"1\"} 6\n"
                              "ferry_migration_blackout_seconds_bucket{le=\"60\"} 6\n"
                              "ferry_migration_blackout_seconds_bucket{le=\"+Inf\"} 10\n"
                              "ferry_migration_blackout_seconds_sum 12.250\n"
                              "ferry_migration_blackout_seconds_count 10\n");
    free(text);
}

static void test_empty_histogram(void **state)
{
    static const double bounds[] = {0.5};
    static const uint64_t buckets[] = {0, 0};
    struct promtext o;
    assert_int_equal(promtext_init(&o), 0);
    promtext_histogram(&o, "h", "x", bounds, buckets, 1, 0, 0);
    char *text = finish(&o);
    assert_non_null(strstr(text, "h_bucket{le=\"0.5\"} 0\nh_bucket{le=\"+Inf\"} 0\n"
                                 "h_sum 0.000\nh_count 0\n"));
    free(text);
}

static void test_the_buffer_grows(void **state)
{
    struct promtext o;
    assert_int_equal(promtext_init(&o), 0);
    char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (unsigned i = 0; i < 3000; i++) {
        char vm[16];
        snprintf(vm, sizeof(vm), "vm%u", i);
        promtext_sample(&o, "ferry_vm_vcpus", &(struct promtext_label){"vm", vm}, 1, "%u", i);
    }
    promtext_sample(&o, "m", &(struct promtext_label){"big", big}, 1, "1");
    char *text = finish(&o);
    assert_non_null(strstr(text, "ferry_vm_vcpus{vm=\"vm0\"} 0\n"));
    assert_non_null(strstr(text, "\nferry_vm_vcpus{vm=\"vm2999\"} 2999\nm{big=\"xxx"));
    assert_int_equal(strlen(strstr(text, "m{big=")), strlen("m{big=\"\"} 1\n") + sizeof(big) - 1);
    free(text);
}

static void test_take_hands_over_and_empties(void **state)
{
    struct promtext o;
    assert_int_equal(promtext_init(&o), 0);
    promtext_sample(&o, "m", NULL, 0, "1");
    char *text = finish(&o);
    assert_null(o.buf); /* the caller owns it now */
    promtext_free(&o);  /* and freeing what is left is harmless */
    assert_string_equal(text, "m 1\n");
    free(text);
    /* a text a write failed on is not handed out half-written */
    assert_int_equal(promtext_init(&o), 0);
    o.failed = 1;
    char *t = (char *)"untouched";
    size_t len = 0;
    assert_int_equal(promtext_take(&o, &t, &len), -ENOMEM);
    assert_string_equal(t, "untouched");
    assert_null(o.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_samples),
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_help_text_is_escaped),
        cmocka_unit_test(test_histogram_buckets_are_cumulative),
        cmocka_unit_test(test_empty_histogram),
        cmocka_unit_test(test_the_buffer_grows),
        cmocka_unit_test(test_take_hands_over_and_empties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
