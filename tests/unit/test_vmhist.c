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

#include "common/err.h"
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
    vmhist_set_sweep(s, 1000, 0); /* a was not seen, and nothing is kept: gone */
    assert_int_equal(vmhist_set_count(s), 1);
    assert_null(vmhist_set_get(s, "a", false));
    char longname[100];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_null(vmhist_set_get(s, longname, true));
    vmhist_set_free(s);
}

static bool drop_departed(const char *name, struct vmhist *x, uint64_t departed_s, void *data)
{
    (*(unsigned *)data)++;
    return departed_s == 0;
}

/* n samples every 10 s from t0 with cpu growing 1 s per step: points of 0.1 CPUs. */
static void fill(struct vmhist *x, uint64_t t0, unsigned n, double cpu)
{
    struct vmhist_counters c = {.memory_bytes = 1 << 20};
    for (unsigned i = 0; i < n; i++) {
        c.cpu_s = cpu * 10 * i;
        vmhist_sample(x, t0 + 10 * i, &c);
    }
}

static json_t *points(const struct vmhist *x, bool day, uint64_t now)
{
    json_t *j = vmhist_json(x, day, now);
    json_t *p = json_incref(json_object_get(j, "points"));
    json_decref(j);
    return p;
}

/* The destination's history after a migration: the source's points, then its own. */
static void test_merge(void **state)
{
    static struct vmhist src, dst;
    uint64_t t0 = 3000 * 300; /* the start of 5 minutes */
    vmhist_init(&src);
    vmhist_init(&dst);
    fill(&src, t0, 40, 0.1);      /* 39 points: t0+10 .. t0+390 */
    fill(&dst, t0 + 405, 5, 0.5); /* 4 points: t0+415 .. t0+445, same 5 minutes as src's last */
    vmhist_merge(&dst, &src);
    json_t *p = points(&dst, false, t0 + 450);
    assert_int_equal(json_array_size(p), 39 + 4);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(p, 0), "t")), t0 + 10);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(p, 39), "t")), t0 + 415);
    assert_true(fabs(num(json_array_get(p, 38), "cpu") - 0.1) < 1e-4);
    assert_true(fabs(num(json_array_get(p, 42), "cpu") - 0.5) < 1e-4);
    json_decref(p);
    /* The day: src's first 5 minutes closed (30 points of 0.1); the next 5 minutes sum both. */
    p = points(&dst, true, t0 + 450);
    assert_int_equal(json_array_size(p), 1);
    assert_true(fabs(num(json_array_get(p, 0), "cpu") - 0.1) < 1e-4);
    json_decref(p);
    assert_int_equal(dst.acc_n, 9 + 4);
    /* Its own samples go on: the counters are the destination's. */
    struct vmhist_counters c = {.cpu_s = 0.5 * 10 * 5, .memory_bytes = 1 << 20};
    vmhist_sample(&dst, t0 + 455, &c);
    p = points(&dst, false, t0 + 460);
    assert_int_equal(json_array_size(p), 44);
    json_decref(p);
    /* Merging the same again changes nothing (both answered, or asked twice). */
    vmhist_merge(&dst, &src);
    p = points(&dst, false, t0 + 460);
    assert_int_equal(json_array_size(p), 44);
    json_decref(p);
    /* A full hour from each: the newest hour is kept. */
    vmhist_init(&src);
    vmhist_init(&dst);
    fill(&src, t0, VMHIST_FINE_N + 1, 0.1);
    fill(&dst, t0 + 10 * VMHIST_FINE_N + 5, 3, 0.2);
    vmhist_merge(&dst, &src);
    assert_int_equal(dst.fine_n, VMHIST_FINE_N);
    p = points(&dst, false, t0 + 10 * VMHIST_FINE_N + 30);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(p, json_array_size(p) - 1), "t")),
        t0 + 10 * VMHIST_FINE_N + 25);
    json_decref(p);
}

static void test_dump_undump(void **state)
{
    static struct vmhist a, b;
    uint64_t t0 = 3000 * 300;
    vmhist_init(&a);
    fill(&a, t0, 100, 0.25);
    json_t *d = vmhist_dump(&a);
    assert_non_null(d);
    char *text = json_dumps(d, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(d);
    json_t *back = json_loads(text, 0, NULL);
    free(text);
    struct ferr e = {0};
    assert_int_equal(vmhist_undump(&b, back, t0 + 1000, &e), 0);
    json_decref(back);
    for (int day = 0; day < 2; day++) {
        json_t *pa = points(&a, day, t0 + 1000), *pb = points(&b, day, t0 + 1000);
        assert_int_equal(json_array_size(pa), json_array_size(pb));
        for (size_t i = 0; i < json_array_size(pa); i++) {
            assert_int_equal(json_integer_value(json_object_get(json_array_get(pa, i), "t")),
                             json_integer_value(json_object_get(json_array_get(pb, i), "t")));
            assert_true(
                fabs(num(json_array_get(pa, i), "cpu") - num(json_array_get(pb, i), "cpu")) < 1e-5);
        }
        json_decref(pa);
        json_decref(pb);
    }
    assert_int_equal(b.acc_n, a.acc_n);
    assert_int_equal(b.acc_bucket, a.acc_bucket);
    assert_false(b.has_last); /* the loader samples a QEMU of its own */
}

/* Loads text into a set holding one history, expecting failure with a message containing
 * what; the set is untouched. */
static void load_bad(const char *text, const char *what)
{
    struct vmhist_set *s;
    static struct vmhist node;
    assert_int_equal(vmhist_set_new(&s), 0);
    assert_non_null(vmhist_set_get(s, "keep", true));
    vmhist_init(&node);
    node.fine_n = 1;
    struct ferr e = {0};
    int rc = vmhist_file_load(s, &node, text, strlen(text), 2000000000, &e);
    if (rc != FERR_INVALID || !strstr(e.msg, what))
        fail_msg("%s: rc %d, message \"%s\", expected one with \"%s\"", text, rc, e.msg, what);
    assert_int_equal(vmhist_set_count(s), 1);
    assert_non_null(vmhist_set_get(s, "keep", false));
    assert_int_equal(node.fine_n, 1);
    vmhist_set_free(s);
}

#define EMPTY "{\"fine\": [], \"coarse\": []}"
#define HEAD "{\"format\": \"ferry-vm-history\", \"version\": 1, \"saved_s\": 1000, "

static void test_file(void **state)
{
    struct vmhist_set *s, *t;
    static struct vmhist node, node2;
    uint64_t t0 = 3000 * 300;
    assert_int_equal(vmhist_set_new(&s), 0);
    fill(vmhist_set_get(s, "here", true), t0, 50, 0.1);
    fill(vmhist_set_get(s, "left", true), t0, 20, 0.2);
    vmhist_set_mark(s);
    vmhist_set_get(s, "here", true);
    vmhist_set_sweep(s, t0 + 500, 3600); /* left departs, kept */
    assert_int_equal(vmhist_set_count(s), 2);
    vmhist_init(&node);
    fill(&node, t0, 10, 1.5);
    size_t len;
    char *text = vmhist_file_text(s, &node, t0 + 500, &len);
    assert_non_null(text);
    assert_true(len < 50 * 1024); /* two VMs and the node: a few kB each */
    assert_int_equal(vmhist_set_new(&t), 0);
    struct ferr e = {0};
    assert_int_equal(vmhist_file_load(t, &node2, text, len, t0 + 600, &e), 0);
    assert_int_equal(vmhist_set_count(t), 2);
    assert_int_equal(vmhist_set_get(t, "here", false)->fine_n, 49);
    assert_int_equal(node2.fine_n, 9);
    /* here is here again, not arrived; left is still departed: taken back, it arrives */
    assert_false(vmhist_set_take_arrived(t, "here"));
    vmhist_set_mark(t);
    vmhist_set_get(t, "here", true);
    vmhist_set_get(t, "left", true);
    assert_false(vmhist_set_take_arrived(t, "here"));
    assert_true(vmhist_set_take_arrived(t, "left"));
    assert_false(vmhist_set_take_arrived(t, "left"));
    /* Cut short anywhere: refused, never a crash. */
    for (size_t cut = 0; cut < len; cut += 97) {
        struct ferr ce = {0};
        assert_int_equal(vmhist_file_load(t, &node2, text, cut, t0 + 600, &ce), FERR_INVALID);
    }
    assert_int_equal(vmhist_set_count(t), 2);
    free(text);
    vmhist_set_free(s);
    vmhist_set_free(t);

    load_bad("", "not JSON");
    load_bad("\x01\x02garbage", "not JSON");
    load_bad("[1, 2]", "expected an object");
    load_bad("{\"format\": \"rrd\", \"version\": 1}", "format \"rrd\"");
    load_bad("{\"format\": \"ferry-vm-history\", \"version\": 2, \"vms\": []}", "version 2");
    load_bad("{\"format\": \"ferry-vm-history\", \"version\": \"1\"}", "version: expected");
    load_bad(HEAD "\"node\": " EMPTY ", \"vms\": [], \"extra\": 1}", "extra: unknown");
    load_bad(HEAD "\"node\": " EMPTY "}", "vms: expected");
    load_bad(HEAD "\"node\": 3, \"vms\": []}", "node: expected an object");
    load_bad(HEAD "\"node\": {\"fine\": []}, \"vms\": []}", "node: coarse: expected an array");
    load_bad(HEAD "\"node\": " EMPTY ", \"vms\": [7]}", "vms[0]: expected an object");
    load_bad(HEAD "\"node\": " EMPTY ", \"vms\": [{\"name\": \"a\", \"departed_s\": 0}]}",
             "vms[0] (\"a\"): history: expected an object");
    load_bad(HEAD "\"node\": " EMPTY ", \"vms\": [{\"name\": \"\", \"departed_s\": 0, "
                  "\"history\": " EMPTY "}]}",
             "expected 1..");
    load_bad(HEAD "\"node\": " EMPTY ", \"vms\": [{\"name\": 5, \"departed_s\": 0, "
                  "\"history\": " EMPTY "}]}",
             "name: expected a string");
    load_bad(HEAD "\"node\": " EMPTY ", \"vms\": [{\"name\": \"a\", \"departed_s\": -1, "
                  "\"history\": " EMPTY "}]}",
             "departed_s: -1 is out of range");
    load_bad(HEAD "\"node\": " EMPTY ", \"vms\": [{\"name\": \"a\", \"departed_s\": 0, "
                  "\"history\": " EMPTY "}, {\"name\": \"a\", \"departed_s\": 0, "
                  "\"history\": " EMPTY "}]}",
             "\"a\" is there twice");
    load_bad(HEAD "\"node\": {\"fine\": [[100, 1, 2, 3]], \"coarse\": []}, \"vms\": []}",
             "fine[0]: expected an array of 7 numbers");
    load_bad(HEAD "\"node\": {\"fine\": [[100, 1, 2, 3, 4, 5, -6]], \"coarse\": []}, \"vms\": []}",
             "fine[0][6]: expected a number");
    load_bad(HEAD "\"node\": {\"fine\": [[100, 1, 2, 3, 4, 5, \"6\"]], \"coarse\": []}, "
                  "\"vms\": []}",
             "fine[0][6]: expected a number in 0..1e18, not a string");
    load_bad(HEAD "\"node\": {\"fine\": [[100, 1, 2, 3, 4, 5, 1e300]], \"coarse\": []}, "
                  "\"vms\": []}",
             "fine[0][6]");
    load_bad(HEAD "\"node\": {\"fine\": [[200, 1, 2, 3, 4, 5, 6], [100, 1, 2, 3, 4, 5, 6]], "
                  "\"coarse\": []}, \"vms\": []}",
             "fine[1]: its time is not after");
    load_bad(HEAD "\"node\": {\"fine\": [[9000000000, 1, 2, 3, 4, 5, 6]], \"coarse\": []}, "
                  "\"vms\": []}",
             "fine[0]: 9000000000 is out of range");
    load_bad(HEAD "\"node\": {\"fine\": [], \"coarse\": [], \"acc\": [5, 0, 1, 2, 3, 4, 5, 6]}, "
                  "\"vms\": []}",
             "acc[0]: 0 is out of range");
    /* More points than a ring holds. */
    char *big = malloc(64 * 1024);
    size_t n = (size_t)sprintf(big, HEAD "\"node\": {\"coarse\": [], \"fine\": [");
    for (unsigned i = 0; i <= VMHIST_FINE_N; i++)
        n += (size_t)sprintf(big + n, "%s[%u, 0, 0, 0, 0, 0, 0]", i ? "," : "", 100 + i);
    sprintf(big + n, "]}, \"vms\": []}");
    load_bad(big, "fine: 361 points, more than the 360");
    free(big);
}

static void test_set_departed(void **state)
{
    struct vmhist_set *s;
    assert_int_equal(vmhist_set_new(&s), 0);
    struct vmhist *a = vmhist_set_get(s, "a", true);
    assert_true(vmhist_set_take_arrived(s, "a"));
    vmhist_set_mark(s);
    vmhist_set_sweep(s, 1000, 600); /* a left at 1000: kept until 1600 */
    assert_ptr_equal(vmhist_set_get(s, "a", false), a);
    assert_false(vmhist_set_take_arrived(s, "a"));
    vmhist_set_mark(s);
    vmhist_set_sweep(s, 1599, 600);
    assert_int_equal(vmhist_set_count(s), 1);
    /* it comes back: taken back, and arrived (its newer past is elsewhere) */
    assert_ptr_equal(vmhist_set_get(s, "a", true), a);
    assert_true(vmhist_set_take_arrived(s, "a"));
    vmhist_set_sweep(s, 1700, 600);
    assert_int_equal(vmhist_set_count(s), 1);
    vmhist_set_mark(s);
    vmhist_set_sweep(s, 1800, 600);
    vmhist_set_mark(s);
    vmhist_set_sweep(s, 2400, 600);
    assert_int_equal(vmhist_set_count(s), 0);
    /* A full set makes room by dropping the one that left longest ago; VMs here stay. */
    char name[16];
    for (unsigned i = 0; i < VMHIST_VMS_MAX; i++) {
        snprintf(name, sizeof(name), "v%u", i);
        assert_non_null(vmhist_set_get(s, name, true));
    }
    assert_null(vmhist_set_get(s, "more", true));
    vmhist_set_mark(s);
    for (unsigned i = 2; i < VMHIST_VMS_MAX; i++) {
        snprintf(name, sizeof(name), "v%u", i);
        vmhist_set_get(s, name, true);
    }
    vmhist_set_sweep(s, 5000, 600); /* v0 and v1 left */
    assert_non_null(vmhist_set_get(s, "more", true));
    assert_int_equal(vmhist_set_count(s), VMHIST_VMS_MAX);
    /* each drops those it answers false for */
    unsigned seen = 0;
    vmhist_set_each(s, drop_departed, &seen);
    assert_int_equal(seen, VMHIST_VMS_MAX);
    assert_int_equal(vmhist_set_count(s), VMHIST_VMS_MAX - 1);
    vmhist_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates),          cmocka_unit_test(test_hour_ring_and_day_averages),
        cmocka_unit_test(test_day_ring_wraps), cmocka_unit_test(test_set),
        cmocka_unit_test(test_merge),          cmocka_unit_test(test_dump_undump),
        cmocka_unit_test(test_file),           cmocka_unit_test(test_set_departed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
