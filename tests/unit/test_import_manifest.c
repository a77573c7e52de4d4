/* SPDX-License-Identifier: MIT */
/* Unit tests of OVF manifests (src/import/manifest.c): parsing, and checking real digests with
 * GnuTLS against known answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "import/manifest.h"

static struct mf m;

/* Digests of "abc" (FIPS 180 test vectors). */
#define SHA1_ABC "a9993e364706816aba3e25717850c26c9cd0d89d"
#define SHA256_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA512_ABC                                                                                 \
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3fe" \
    "ebbd454d4423643ce80e2a9ac94fa54ca49f"

static void expect_error(const char *text, const char *want)
{
    struct ferr e = {0};
    int rc = mf_parse("deb.mf", text, strlen(text), &m, &e);
    if (rc != FERR_INVALID || !strstr(e.msg, want)) {
        fprintf(stderr, "input:\n%s\nrc %d, message: %s\nwanted: %s\n", text, rc, e.msg, want);
        fail();
    }
    assert_int_equal(m.n, 0);
}

static int check(const char *file, const char *data, struct ferr *e)
{
    const struct mf_entry *en = mf_find(&m, file);
    assert_non_null(en);
    struct mf_hash *h;
    assert_int_equal(mf_hash_new(en, &h, e), 0);
    size_t n = strlen(data);
    mf_hash_update(h, data, n / 2); /* in two pieces, as a file is read */
    mf_hash_update(h, data + n / 2, n - n / 2);
    return mf_hash_finish(h, "deb.mf", e);
}

static void test_parse_and_check(void **state)
{
    struct ferr e = {0};
    const char text[] = "SHA256(deb.ovf)= " SHA256_ABC "\r\n"
                        "\n"
                        "SHA1(deb-disk1.vmdk)=" SHA1_ABC "\n"
                        "SHA512(name (1).vmdk)= " SHA512_ABC;
    assert_int_equal(mf_parse("deb.mf", text, strlen(text), &m, &e), 0);
    assert_int_equal(m.n, 3);
    assert_int_equal(m.entries[1].algo, MF_SHA1);
    assert_int_equal(m.entries[1].line, 3);
    assert_string_equal(m.entries[2].file, "name (1).vmdk");
    assert_null(mf_find(&m, "other.vmdk"));
    assert_int_equal(check("deb.ovf", "abc", &e), 0);
    assert_int_equal(check("deb-disk1.vmdk", "abc", &e), 0);
    assert_int_equal(check("name (1).vmdk", "abc", &e), 0);
    assert_int_equal(check("deb.ovf", "abd", &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "deb.mf:1: SHA256 of deb.ovf is "));
    assert_non_null(strstr(e.msg, "the manifest says ba7816bf8f01cfea...: the file is damaged"));
    /* upper-case hex is the same digest */
    char up[200];
    snprintf(up, sizeof up, "SHA1(x)= %s\n", "A9993E364706816ABA3E25717850C26C9CD0D89D");
    assert_int_equal(mf_parse("deb.mf", up, strlen(up), &m, &e), 0);
    assert_int_equal(check("x", "abc", &e), 0);
}

static void test_malformed(void **state)
{
    expect_error("garbage\n", "deb.mf:1: expected ALGO(FILE)= DIGEST");
    expect_error("MD5(a)= 900150983cd24fb0d6963f7d28e17f72\n",
                 "deb.mf:1: digest \"MD5\" is not SHA1, SHA256 or SHA512");
    expect_error("SHA1(a) " SHA1_ABC "\n", "expected ALGO(FILE)= DIGEST");
    expect_error("SHA1()= " SHA1_ABC "\n", "file name empty");
    expect_error("SHA1(../a)= " SHA1_ABC "\n",
                 "deb.mf:1: \"../a\" is outside the package's folder");
    expect_error("SHA1(/a)= " SHA1_ABC "\n", "is outside");
    expect_error("SHA1(a)= " SHA1_ABC "\nSHA256(a)= " SHA256_ABC "\n",
                 "deb.mf:2: \"a\" is listed twice (line 1)");
    expect_error("SHA1(a)= " SHA256_ABC "\n", "a SHA1 digest has 40 hex digits, this one 64");
    expect_error("SHA1(a)= a9993e364706816aba3e25717850c26c9cd0d89x\n", "not hexadecimal");
    expect_error("SHA1(a)=\n", "this one 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_check),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
