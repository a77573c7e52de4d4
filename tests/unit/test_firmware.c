/* SPDX-License-Identifier: MIT */
/* Unit tests of the EFI firmware files (src/vm/firmware.c): OVMF found or a missing one named
 * with its package, and a VM's variable store made once, kept, and refused when it is not one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "vm/firmware.h"

#define VARS_BYTES 540672 /* OVMF_VARS_4M.fd */

struct dirs {
    char root[64], ovmf[128], vars[160];
};

static void put(const char *path, size_t bytes, char fill)
{
    char *b = malloc(bytes);
    assert_non_null(b);
    memset(b, fill, bytes);
    struct ferr e = {0};
    assert_int_equal(file_write_atomic(path, b, bytes, &e), 0);
    free(b);
}

static int setup(void **state)
{
    struct dirs *d = calloc(1, sizeof(*d));
    if (!d)
        return -1;
    snprintf(d->root, sizeof(d->root), "/tmp/ferry-fw-XXXXXX");
    if (!mkdtemp(d->root)) {
        free(d);
        return -1;
    }
    snprintf(d->ovmf, sizeof(d->ovmf), "%s/OVMF", d->root);
    snprintf(d->vars, sizeof(d->vars), "%s/web-efivars.fd", d->root);
    mkdir(d->ovmf, 0755);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dirs *d = *state;
    rm_rf(d->root);
    free(d);
    return 0;
}

static void test_missing_ovmf_names_the_package(void **state)
{
    struct dirs *d = *state;
    char code[256], p[256];
    struct ferr e = {0};
    bool made = true;
    assert_int_equal(firmware_find(d->ovmf, code, sizeof(code), &e), FERR_UNAVAIL);
    assert_non_null(strstr(e.msg, "this host has no OVMF"));
    assert_non_null(strstr(e.msg, "/OVMF/OVMF_CODE_4M.fd: No such file or directory"));
    assert_non_null(strstr(e.msg, "install Debian's ovmf package (apt-get install ovmf)"));
    snprintf(p, sizeof(p), "%s/%s", d->ovmf, FIRMWARE_CODE);
    put(p, 4096, 'c');
    assert_int_equal(firmware_find(d->ovmf, code, sizeof(code), &e), FERR_UNAVAIL);
    assert_non_null(strstr(e.msg, "OVMF_VARS_4M.fd: No such file"));
    assert_int_equal(firmware_vars_ready(d->ovmf, d->vars, true, &made, &e), FERR_UNAVAIL);
    assert_false(made);
    assert_int_equal(access(d->vars, F_OK), -1); /* nothing made */
}

static void test_vars_made_once_and_kept(void **state)
{
    struct dirs *d = *state;
    char code[256], p[256];
    struct ferr e = {0};
    bool made = false;
    snprintf(p, sizeof(p), "%s/%s", d->ovmf, FIRMWARE_CODE);
    put(p, 4096, 'c');
    snprintf(p, sizeof(p), "%s/%s", d->ovmf, FIRMWARE_VARS);
    put(p, VARS_BYTES, 'v');
    assert_int_equal(firmware_find(d->ovmf, code, sizeof(code), &e), 0);
    snprintf(p, sizeof(p), "%s/%s", d->ovmf, FIRMWARE_CODE);
    assert_string_equal(code, p);
    /* an incoming migration never makes one: the source's must be there */
    assert_int_equal(firmware_vars_ready(d->ovmf, d->vars, false, &made, &e), FERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "does not exist here: this node does not see the volume"));
    /* the first start makes it from the template */
    assert_int_equal(firmware_vars_ready(d->ovmf, d->vars, true, &made, &e), 0);
    assert_true(made);
    struct stat st;
    assert_int_equal(stat(d->vars, &st), 0);
    assert_int_equal(st.st_size, VARS_BYTES);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* the guest wrote boot entries: the next start keeps them */
    int fd = open(d->vars, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "BOOT", 4, 100), 4);
    close(fd);
    assert_int_equal(firmware_vars_ready(d->ovmf, d->vars, true, &made, &e), 0);
    assert_false(made);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(file_read_all(d->vars, 1 << 20, &text, &len, &e), 0);
    assert_int_equal(len, VARS_BYTES);
    assert_memory_equal(text + 100, "BOOT", 4);
    free(text);
    /* no temporary file left behind */
    snprintf(p, sizeof(p), "%s.tmp.%d", d->vars, (int)getpid());
    assert_int_equal(access(p, F_OK), -1);
}

static void test_vars_of_another_size_or_kind_refused(void **state)
{
    struct dirs *d = *state;
    char p[256];
    struct ferr e = {0};
    bool made = false;
    snprintf(p, sizeof(p), "%s/%s", d->ovmf, FIRMWARE_CODE);
    put(p, 4096, 'c');
    snprintf(p, sizeof(p), "%s/%s", d->ovmf, FIRMWARE_VARS);
    put(p, VARS_BYTES, 'v');
    put(d->vars, 131072, 'x'); /* the 2 MiB build's store */
    assert_int_equal(firmware_vars_ready(d->ovmf, d->vars, true, &made, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "is 131072 bytes, but an OVMF_VARS_4M.fd variable store is "
                                  "540672 (another firmware's? move it away"));
    assert_false(made);
    unlink(d->vars);
    assert_int_equal(mkdir(d->vars, 0700), 0);
    assert_int_equal(firmware_vars_ready(d->ovmf, d->vars, true, &made, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "is not a regular file"));
    rmdir(d->vars);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_ovmf_names_the_package, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vars_made_once_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vars_of_another_size_or_kind_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
