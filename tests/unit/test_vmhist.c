/* SPDX-License-Identifier: MIT */
/* Unit tests of a VM's resource history (vm/vmhist.c): rates, the hour's ring at 10 s, the
 * day's 5-minute averages, counters that go back, and the set of histories. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vm/vmhist.h"

static struct vmhist h;

static double num(json_t *p, const char *k)
{
    return json_number_value(json_object_get(p, k));
}

static void test_rates(void **state)
{
    vmhist_init(&h);
    struct vmhist_counters c = {.cpu_s = 10,
                                .memory_bytes = 1000,
                                .disk_read_bytes = 0,
                                .disk_write_bytes = 100,
                                .net_rx_bytes = 5,
                                .net_tx_bytes = 7};
    vmhist_sample(&h, 1000, &c); /* the first: no point */
    json_t *j = vmhist_json(&h, false, 1000);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "range")), "hour");
    assert_int_equal(json_integer_value(json_object_get(j, "step_s")), 10);
    json_decref(j);
    c.cpu_s = 15; /* 5 s of CPU in 10 s: half a CPU */
    c.memory_bytes = 2000;
    c.disk_read_bytes = 10240; /* 1 KiB/s */
    c.disk_write_bytes = 100;
    c.net_rx_bytes = 105;
    c.net_tx_bytes = 207;
    vmhist_sample(&h, 1010, &c);
    j = vmhist_json(&h, false, 1010);
    json_t *pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), 1);
    json_t *p = json_array_get(pts, 0);
    assert_int_equal(json_integer_value(json_object_get(p, "t")), 1010);
    assert_true(fabs(num(p, "cpu") - 0.5) < 1e-6);
    assert_true(fabs(num(p, "memory_bytes") - 2000) < 1e-3);
    assert_true(fabs(num(p, "disk_read_bps") - 1024) < 1e-3);
    assert_true(fabs(num(p, "disk_write_bps")) < 1e-6);
    assert_true(fabs(num(p, "net_rx_bps") - 10) < 1e-6);
    assert_true(fabs(num(p, "net_tx_bps") - 20) < 1e-6);
    json_decref(j);
    /* A new QEMU: its counters start at 0; no point, then rates from there. */
    struct vmhist_counters z = {.cpu_s = 1};
    vmhist_sample(&h, 1020, &z);
    z.cpu_s = 3;
    vmhist_sample(&h, 1030, &z);
    j = vmhist_json(&h, false, 1030);
    pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(pts, 1), "t")), 1030);
    assert_true(fabs(num(json_array_get(pts, 1), "cpu") - 0.2) < 1e-6);
    json_decref(j);
    /* Paused (the VM stopped): the next sample makes no point. */
    vmhist_pause(&h);
    z.cpu_s = 100;
    vmhist_sample(&h, 1040, &z);
    j = vmhist_json(&h, false, 1040);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 2);
    json_decref(j);
}

static void test_hour_ring_and_day_averages(void **state)
{
    vmhist_init(&h);
    struct vmhist_counters c = {0};
    uint64_t t0 = 3000 * 300; /* on a 5-minute boundary */
    /* Two hours at 10 s: CPU busy 0.1 in the first 5 minutes, then 0.3. */
    for (uint64_t t = t0; t <= t0 + 7200; t += 10) {
        vmhist_sample(&h, t, &c);
        c.cpu_s += t < t0 + 300 ? 1.0 : 3.0;
    }
    uint64_t now = t0 + 7200;
    json_t *j = vmhist_json(&h, false, now);
    json_t *pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), VMHIST_FINE_N);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(pts, 0), "t")), now - 3590);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(pts, VMHIST_FINE_N - 1), "t")), now);
    json_decref(j);
    j = vmhist_json(&h, true, now);
    pts = json_object_get(j, "points");
    assert_int_equal(json_integer_value(json_object_get(j, "step_s")), 300);
    /* 24 whole 5-minute buckets (the last one is still being summed). */
    assert_int_equal(json_array_size(pts), 23);
    json_t *first = json_array_get(pts, 0);
    assert_int_equal(json_integer_value(json_object_get(first, "t")), t0 + 300);
    assert_true(fabs(num(first, "cpu") - 0.1) < 1e-4);
    assert_true(fabs(num(json_array_get(pts, 1), "cpu") - 0.3) < 1e-4);
    json_decref(j);
    /* Looked at a day later, nothing is in range any more. */
    j = vmhist_json(&h, false, now + 86400 + 1);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 0);
    json_decref(j);
    j = vmhist_json(&h, true, now + 86400 + 1);
    assert_int_equal(json_array_size(json_object_get(j, "points")), 0);
    json_decref(j);
}

static void test_day_ring_wraps(void **state)
{
    vmhist_init(&h);
    struct vmhist_counters c = {0};
    uint64_t t0 = 1000 * 300;
    for (uint64_t t = t0; t <= t0 + 2 * 86400; t += 10)
        vmhist_sample(&h, t, &c);
    json_t *j = vmhist_json(&h, true, t0 + 2 * 86400);
    assert_int_equal(json_array_size(json_object_get(j, "points")), VMHIST_COARSE_N - 1);
    json_decref(j);
}

static void test_set(void **state)
{
    struct vmhist_set *s;
    assert_int_equal(vmhist_set_new(&s), 0);
    assert_null(vmhist_set_get(s, "a", false));
    struct vmhist *a = vmhist_set_get(s, "a", true);
    assert_non_null(a);
    assert_ptr_equal(vmhist_set_get(s, "a", false), a);
    assert_non_null(vmhist_set_get(s, "b", true));
    assert_int_equal(vmhist_set_count(s), 2);
    vmhist_set_mark(s);
    assert_ptr_equal(vmhist_set_get(s, "b", true), vmhist_set_get(s, "b", false));
    vmhist_set_sweep(s); /* a was not seen: gone */
    assert_int_equal(vmhist_set_count(s), 1);
    assert_null(vmhist_set_get(s, "a", false));
    char longname[100];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_null(vmhist_set_get(s, longname, true));
    vmhist_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates),
        cmocka_unit_test(test_hour_ring_and_day_averages),
        cmocka_unit_test(test_day_ring_wraps),
        cmocka_unit_test(test_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
