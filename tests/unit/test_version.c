/* SPDX-License-Identifier: MIT */
/* Unit tests for src/qemu/version.c: QEMU's --version line and what it may be trusted with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "qemu/version.h"

static void test_debian_72(void **state)
{
    struct qemu_version v;
    struct ferr e = {0};
    assert_int_equal(qemu_version_parse("QEMU emulator version 7.2.22 (Debian "
                                        "1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 "
                                        "Fabrice Bellard and the QEMU Project developers\n",
                                        &v, &e),
                     0);
    assert_int_equal(v.major, 7);
    assert_int_equal(v.minor, 2);
    assert_int_equal(v.micro, 22);
    assert_string_equal(v.text, "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)");
    assert_false(qemu_version_tcg_migration_safe(&v));
    assert_true(qemu_version_at_least(&v, 7, 2));
    assert_false(qemu_version_at_least(&v, 7, 3));
}

static void test_backports_10(void **state)
{
    struct qemu_version v;
    struct ferr e = {0};
    assert_int_equal(qemu_version_parse("QEMU emulator version 10.0.2 (Debian "
                                        "1:10.0.2+ds-2+deb13u1~bpo12+1)\n",
                                        &v, &e),
                     0);
    assert_int_equal(v.major, 10);
    assert_int_equal(v.minor, 0);
    assert_int_equal(v.micro, 2);
    assert_true(qemu_version_tcg_migration_safe(&v));
}

static void test_boundaries(void **state)
{
    struct qemu_version v;
    struct ferr e = {0};
    assert_int_equal(qemu_version_parse("QEMU emulator version 9.0.0\n", &v, &e), 0);
    assert_true(qemu_version_tcg_migration_safe(&v));
    assert_int_equal(qemu_version_parse("QEMU emulator version 8.2.10\n", &v, &e), 0);
    assert_false(qemu_version_tcg_migration_safe(&v));
    /* No micro version, as a build from git may print. */
    assert_int_equal(qemu_version_parse("QEMU emulator version 9.1\n", &v, &e), 0);
    assert_int_equal(v.micro, 0);
    assert_true(qemu_version_tcg_migration_safe(&v));
    assert_string_equal(v.text, "9.1");
}

static void test_refused(void **state)
{
    struct qemu_version v;
    struct ferr e = {0};
    assert_int_equal(qemu_version_parse("", &v, &e), FERR_INVALID);
    assert_int_equal(qemu_version_parse(NULL, &v, &e), FERR_INVALID);
    assert_int_equal(qemu_version_parse("qemu-img version 7.2.22\n", &v, &e), FERR_INVALID);
    assert_int_equal(qemu_version_parse("QEMU emulator version x.2\n", &v, &e), FERR_INVALID);
    assert_int_equal(qemu_version_parse("QEMU emulator version 7\n", &v, &e), FERR_INVALID);
    assert_int_equal(qemu_version_parse("QEMU emulator version 99999999.1\n", &v, &e),
                     FERR_INVALID);
    assert_non_null(strstr(e.msg, "MAJOR.MINOR"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_debian_72),
        cmocka_unit_test(test_backports_10),
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
