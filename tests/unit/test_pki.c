/* SPDX-License-Identifier: MIT */
/* Unit tests of src/cluster/pki.c: a CA made, node certificates issued and checked the way a
 * TLS peer checks them (signature, time, name or address), and what is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/pki.h"

struct fixture {
    struct pki_pair ca, other_ca, node;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct ferr e;
    assert_int_equal(pki_ca_create("lab", PKI_CA_DAYS, &f->ca, &e), 0);
    assert_int_equal(pki_ca_create("elsewhere", 30, &f->other_ca, &e), 0);
    const char *addrs[] = {"10.70.0.11", "fd00::11", "host1.example.org"};
    assert_int_equal(pki_node_issue(&f->ca, "host1", addrs, 3, PKI_NODE_DAYS, &f->node, &e), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pki_pair_free(&f->ca);
    pki_pair_free(&f->other_ca);
    pki_pair_free(&f->node);
    free(f);
    return 0;
}

static void test_pem_text(void **state)
{
    struct fixture *f = *state;
    assert_non_null(strstr(f->ca.cert, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(f->ca.key, "-----BEGIN PRIVATE KEY-----"));
    assert_non_null(strstr(f->node.cert, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(f->node.key, "-----BEGIN PRIVATE KEY-----"));
    assert_string_not_equal(f->ca.key, f->node.key);
}

static void test_the_node_is_trusted_by_its_name_and_addresses(void **state)
{
    struct fixture *f = *state;
    struct ferr e;
    assert_int_equal(pki_verify(f->ca.cert, f->node.cert, NULL, &e), 0);
    assert_int_equal(pki_verify(f->ca.cert, f->node.cert, "host1", &e), 0);
    assert_int_equal(pki_verify(f->ca.cert, f->node.cert, "10.70.0.11", &e), 0);
    assert_int_equal(pki_verify(f->ca.cert, f->node.cert, "fd00::11", &e), 0);
    assert_int_equal(pki_verify(f->ca.cert, f->node.cert, "host1.example.org", &e), 0);
    /* the CA verifies itself (it is its own issuer) */
    assert_int_equal(pki_verify(f->ca.cert, f->ca.cert, NULL, &e), 0);
}

static void test_another_name_or_ca_is_refused(void **state)
{
    struct fixture *f = *state;
    struct ferr e;
    assert_int_equal(pki_verify(f->ca.cert, f->node.cert, "host2", &e), FERR_AUTH);
    assert_non_null(strstr(e.msg, "does not name host2"));
    assert_int_equal(pki_verify(f->ca.cert, f->node.cert, "10.70.0.12", &e), FERR_AUTH);
    assert_int_equal(pki_verify(f->other_ca.cert, f->node.cert, NULL, &e), FERR_AUTH);
    assert_non_null(strstr(e.msg, "certificate refused"));
    assert_int_equal(pki_verify(f->ca.cert, "garbage", NULL, &e), FERR_AUTH);
    assert_int_equal(pki_verify("", f->node.cert, NULL, &e), FERR_AUTH);
    /* a node certificate cannot sign: what it "issues" is not trusted */
    struct pki_pair fake;
    assert_int_equal(pki_node_issue(&f->node, "host9", NULL, 0, 30, &fake, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "not a CA"));
}

static void test_bad_input_is_refused(void **state)
{
    struct fixture *f = *state;
    struct ferr e;
    struct pki_pair out = {NULL, NULL};
    assert_int_equal(pki_ca_create("", 30, &out, &e), FERR_INVALID);
    assert_int_equal(pki_ca_create("a b", 30, &out, &e), FERR_INVALID);
    assert_int_equal(pki_ca_create("lab", 0, &out, &e), FERR_INVALID);
    assert_int_equal(pki_ca_create("lab", PKI_CA_DAYS + 1, &out, &e), FERR_INVALID);
    assert_int_equal(pki_node_issue(&f->ca, "host/1", NULL, 0, 30, &out, &e), FERR_INVALID);
    assert_int_equal(pki_node_issue(&f->ca, "host1", NULL, 0, PKI_NODE_DAYS + 1, &out, &e),
                     FERR_INVALID);
    const char *bad[] = {"10.0.0.1", "-rf"};
    assert_int_equal(pki_node_issue(&f->ca, "host1", bad, 2, 30, &out, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "\"-rf\""));
    const char *many[PKI_MAX_ADDRS + 1];
    for (size_t i = 0; i < PKI_MAX_ADDRS + 1; i++)
        many[i] = "10.0.0.1";
    assert_int_equal(pki_node_issue(&f->ca, "host1", many, PKI_MAX_ADDRS + 1, 30, &out, &e),
                     FERR_INVALID);
    /* a CA whose key is another's */
    struct pki_pair mixed = {f->ca.cert, f->other_ca.key};
    assert_int_equal(pki_node_issue(&mixed, "host1", NULL, 0, 30, &out, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "does not belong"));
    assert_null(out.cert);
    assert_null(out.key);
}

static void test_validity_and_fingerprint(void **state)
{
    struct fixture *f = *state;
    struct ferr e;
    time_t ca_end, node_end, now = time(NULL);
    assert_int_equal(pki_not_after(f->ca.cert, &ca_end, &e), 0);
    assert_int_equal(pki_not_after(f->node.cert, &node_end, &e), 0);
    assert_true(ca_end > now + (time_t)(PKI_CA_DAYS - 1) * 86400);
    assert_true(node_end > now + (time_t)(PKI_NODE_DAYS - 1) * 86400);
    /* never past its CA: one of a 30-day CA ends with it */
    struct pki_pair n2;
    assert_int_equal(pki_node_issue(&f->other_ca, "host2", NULL, 0, PKI_NODE_DAYS, &n2, &e), 0);
    time_t other_end, n2_end;
    assert_int_equal(pki_not_after(f->other_ca.cert, &other_end, &e), 0);
    assert_int_equal(pki_not_after(n2.cert, &n2_end, &e), 0);
    assert_true(n2_end <= other_end);
    assert_int_equal(pki_verify(f->other_ca.cert, n2.cert, "host2", &e), 0);
    pki_pair_free(&n2);

    char a[PKI_FINGERPRINT_SIZE], b[PKI_FINGERPRINT_SIZE];
    assert_int_equal(pki_fingerprint(f->ca.cert, a, &e), 0);
    assert_int_equal(strlen(a), 32 * 3 - 1);
    assert_int_equal(a[2], ':');
    assert_int_equal(pki_fingerprint(f->node.cert, b, &e), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(pki_fingerprint("nope", a, &e), FERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pem_text),
        cmocka_unit_test(test_the_node_is_trusted_by_its_name_and_addresses),
        cmocka_unit_test(test_another_name_or_ca_is_refused),
        cmocka_unit_test(test_bad_input_is_refused),
        cmocka_unit_test(test_validity_and_fingerprint),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
