/* SPDX-License-Identifier: MIT */
/* Unit tests of the `-machine help` parser (qemu/machines.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "qemu/machines.h"

/* The head of QEMU 7.2's list, as Debian 12 ships it. */
static const char qemu72[] =
    "Supported machines are:\n"
    "microvm              microvm (i386)\n"
    "pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)\n"
    "pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)\n"
    "pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)\n"
    "q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)\n"
    "pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)\n"
    "isapc                ISA-only PC\n"
    "none                 empty machine\n";

static void test_parse_qemu72(void **state)
{
    (void)state;
    struct qemu_machines m;
    struct ferr e = {0};
    assert_int_equal(qemu_machines_parse(qemu72, &m, &e), 0);
    assert_int_equal(m.n, 8);
    assert_string_equal(m.pc, "pc-i440fx-7.2");
    assert_true(qemu_machines_has(&m, "pc"));
    assert_true(qemu_machines_has(&m, "pc-i440fx-7.1"));
    assert_true(qemu_machines_has(&m, "q35"));
    assert_true(qemu_machines_has(&m, "none"));
    assert_false(qemu_machines_has(&m, "Supported"));
    assert_false(qemu_machines_has(&m, "pc-i440fx-7.3"));
    assert_false(qemu_machines_has(&m, ""));
}

static void test_parse_odd(void **state)
{
    (void)state;
    struct qemu_machines m;
    struct ferr e = {0};
    /* "pc" an alias of a type that is not listed: not trusted. No trailing newline. */
    assert_int_equal(qemu_machines_parse("Supported machines are:\n"
                                         "pc   Standard PC (alias of pc-i440fx-9.0)\n"
                                         "pc-i440fx-8.0   Standard PC",
                                         &m, &e),
                     0);
    assert_int_equal(m.n, 2);
    assert_string_equal(m.pc, "");
    /* Nothing that looks like a machine. */
    assert_int_equal(qemu_machines_parse("Supported machines are:\n\n", &m, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "lists no machine types"));
    assert_int_equal(qemu_machines_parse("", &m, &e), FERR_INVALID);
}

static void test_probe_missing_binary(void **state)
{
    (void)state;
    struct qemu_machines m;
    struct ferr e = {0};
    assert_true(qemu_machines_probe("/nonexistent/qemu-system-x86_64", &m, &e) < 0);
    assert_non_null(strstr(e.msg, "/nonexistent/qemu-system-x86_64"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_qemu72),
        cmocka_unit_test(test_parse_odd),
        cmocka_unit_test(test_probe_missing_binary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
