/* SPDX-License-Identifier: MIT */
/* Unit tests of volume leases (storage/lease.c): the slot's bytes, staleness on a fake clock,
 * the configuration check, and slots written and read in a real directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/lease.h"
#include "storage/volume.h"

static void test_slot_bytes(void **state)
{
    (void)state;
    char buf[LEASE_SLOT], node[64];
    uint64_t counter = 0;
    struct ferr e;
    assert_int_equal(lease_encode("host2", 41, 1700000000000ull, buf), 0);
    assert_int_equal(buf[LEASE_SLOT - 1], '\n');
    assert_int_equal(buf[LEASE_SLOT - 2], ' ');
    assert_int_equal(lease_decode(buf, LEASE_SLOT, node, &counter, &e), 0);
    assert_string_equal(node, "host2");
    assert_int_equal(counter, 41);
    /* torn or foreign bytes are not a lease */
    assert_int_equal(lease_decode(buf, 10, node, &counter, &e), FERR_INVALID);
    assert_int_equal(lease_decode("{\"node\":\"Bad Name\",\"counter\":1}", 31, node, &counter, &e),
                     FERR_INVALID);
    assert_int_equal(lease_decode("{\"node\":\"h\",\"counter\":-1}", 25, node, &counter, &e),
                     FERR_INVALID);
    assert_int_equal(lease_decode("\0\0\0\0", 4, node, &counter, &e), FERR_INVALID);
    assert_int_equal(lease_decode("{}", 2, node, &counter, &e), FERR_INVALID);
}

static void test_staleness_on_a_fake_clock(void **state)
{
    (void)state;
    struct lease_seen s = {0};
    assert_true(lease_stale(&s, 1000, 5000)); /* never seen */
    lease_observe(&s, 7, 1000);               /* first sight: a whole expiry from now */
    assert_int_equal(lease_age_ms(&s, 1000), 0);
    assert_false(lease_stale(&s, 6000, 5000));
    assert_true(lease_stale(&s, 6001, 5000));
    lease_observe(&s, 7, 3000); /* the same counter: no younger */
    assert_int_equal(lease_age_ms(&s, 3000), 2000);
    lease_observe(&s, 8, 4000); /* it moved */
    assert_int_equal(lease_age_ms(&s, 4500), 500);
    assert_false(lease_stale(&s, 9000, 5000));
    assert_true(lease_stale(&s, 9001, 5000));
    lease_observe(&s, 1, 9500); /* a restarted writer counts from 1: still a move */
    assert_false(lease_stale(&s, 9600, 5000));
    assert_int_equal(lease_age_ms(&s, 100), 0); /* a clock read before the change */
}

static void test_config(void **state)
{
    (void)state;
    struct ferr e;
    assert_int_equal(lease_config_check(1000, 5000, &e), 0);
    assert_int_equal(lease_config_check(100, 300, &e), 0);
    assert_int_equal(lease_config_check(99, 5000, &e), FERR_INVALID);
    assert_int_equal(lease_config_check(10001, 50000, &e), FERR_INVALID);
    assert_int_equal(lease_config_check(1000, 2999, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "3000..600000"));
    assert_int_equal(lease_config_check(1000, 600001, &e), FERR_INVALID);
}

static void test_slots_on_disk(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ferry-lease-XXXXXX", dir[PATH_MAX], id[VOLUME_ID_MAX], ldir[PATH_MAX + 32];
    struct ferr e;
    bool direct;
    assert_non_null(mkdtemp(tmpl));
    assert_non_null(realpath(tmpl, dir));
    snprintf(ldir, sizeof(ldir), "%s/%s", dir, LEASE_DIR);
    /* no volume there: nothing is written, nothing is left */
    assert_int_equal(lease_write(dir, "host1", 1, &direct, &e), FERR_NOTFOUND);
    assert_int_equal(access(ldir, F_OK), -1);
    assert_int_equal(volume_claim(dir, "c-1", "csv1", id, &e), 0);
    assert_int_equal(lease_write(dir, "host1", 1, &direct, &e), 0);
    assert_int_equal(lease_write(dir, "host2", 5, &direct, &e), 0);
    assert_int_equal(lease_write(dir, "host1", 2, &direct, &e), 0);
    char slot[PATH_MAX + 64];
    snprintf(slot, sizeof(slot), "%s/host1", ldir);
    struct stat st;
    assert_int_equal(stat(slot, &st), 0);
    assert_int_equal(st.st_size, LEASE_SLOT);
    /* a foreign file in the directory is not a slot */
    snprintf(slot, sizeof(slot), "%s/junk", ldir);
    FILE *f = fopen(slot, "w");
    fputs("not a lease", f);
    fclose(f);
    json_t *all = lease_read_all(dir);
    assert_int_equal(json_object_size(all), 2);
    assert_int_equal(json_integer_value(json_object_get(all, "host1")), 2);
    assert_int_equal(json_integer_value(json_object_get(all, "host2")), 5);
    json_decref(all);
    /* releasing the volume takes the leases with it */
    assert_int_equal(volume_release(dir, id, &e), 0);
    assert_int_equal(access(ldir, F_OK), -1);
    all = lease_read_all(dir);
    assert_int_equal(json_object_size(all), 0);
    json_decref(all);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_bytes),
        cmocka_unit_test(test_staleness_on_a_fake_clock),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_slots_on_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
