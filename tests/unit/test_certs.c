/* SPDX-License-Identifier: MIT */
/* Unit tests of src/cluster/certs.c: a node's own CA and certificate made once and kept,
 * files 0600, a certificate issued anew when the addresses change or the files are damaged, a
 * cluster's CA adopted, and join tokens with the CA pinned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cluster/certs.h"
#include "common/util.h"

struct fixture {
    char dir[64];
    char tls[96];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-test-certs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->tls, sizeof(f->tls), "%s/tls", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rm_rf(f->dir);
    free(f);
    return 0;
}

static const char *ADDRS[] = {"10.70.0.11", "host1.lab"};

static void test_made_once_and_kept(void **state)
{
    struct fixture *f = *state;
    struct certs *c, *again;
    struct ferr e = {0};
    assert_int_equal(certs_open(f->tls, "host1", ADDRS, 2, &c, &e), 0);
    assert_int_equal(pki_verify(certs_ca(c), certs_node_cert(c), "10.70.0.11", &e), 0);
    assert_int_equal(pki_verify(certs_ca(c), certs_node_cert(c), "host1", &e), 0);
    const char *files[] = {"ca.crt", "ca.key", "node.crt", "node.key"};
    for (size_t i = 0; i < 4; i++) {
        char p[160];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", f->tls, files[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    struct stat st;
    assert_int_equal(stat(f->tls, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* a restart keeps both */
    assert_int_equal(certs_open(f->tls, "host1", ADDRS, 2, &again, &e), 0);
    assert_string_equal(certs_ca_fingerprint(again), certs_ca_fingerprint(c));
    assert_string_equal(certs_node_fingerprint(again), certs_node_fingerprint(c));
    assert_true(certs_node_not_after(again) > time(NULL) + 800L * 86400);
    certs_free(again);
    /* a new address: the same CA, a new certificate naming it */
    const char *moved[] = {"10.70.0.99"};
    assert_int_equal(certs_open(f->tls, "host1", moved, 1, &again, &e), 0);
    assert_string_equal(certs_ca_fingerprint(again), certs_ca_fingerprint(c));
    assert_string_not_equal(certs_node_fingerprint(again), certs_node_fingerprint(c));
    assert_int_equal(pki_verify(certs_ca(again), certs_node_cert(again), "10.70.0.99", &e), 0);
    certs_free(again);
    certs_free(c);
}

static void test_damaged_files_are_replaced(void **state)
{
    struct fixture *f = *state;
    struct certs *c;
    struct ferr e = {0};
    assert_int_equal(certs_open(f->tls, "host1", ADDRS, 2, &c, &e), 0);
    char fp[PKI_FINGERPRINT_SIZE];
    snprintf(fp, sizeof(fp), "%s", certs_ca_fingerprint(c));
    certs_free(c);
    char p[160];
    snprintf(p, sizeof(p), "%s/node.crt", f->tls);
    assert_int_equal(file_write_atomic(p, "garbage", 7, &e), 0);
    assert_int_equal(certs_open(f->tls, "host1", ADDRS, 2, &c, &e), 0);
    assert_string_equal(certs_ca_fingerprint(c), fp); /* the CA stays */
    assert_int_equal(pki_verify(certs_ca(c), certs_node_cert(c), "host1", &e), 0);
    certs_free(c);
    snprintf(p, sizeof(p), "%s/ca.crt", f->tls);
    assert_int_equal(file_write_atomic(p, "garbage", 7, &e), 0);
    assert_int_equal(certs_open(f->tls, "host1", ADDRS, 2, &c, &e), 0);
    assert_string_not_equal(certs_ca_fingerprint(c), fp); /* a CA of its own, anew */
    assert_int_equal(pki_verify(certs_ca(c), certs_node_cert(c), "host1", &e), 0);
    certs_free(c);
}

/* A certificate near its end (under CERTS_RENEW_DAYS left) or of another CA is issued anew at
 * the next start, from the CA kept. */
static void test_expiring_or_foreign_certificate_is_renewed(void **state)
{
    struct fixture *f = *state;
    struct certs *c;
    struct ferr e = {0};
    assert_int_equal(certs_open(f->tls, "host1", ADDRS, 2, &c, &e), 0);
    struct pki_pair ca = {strdup(certs_ca(c)), strdup(certs_ca_key(c))}, soon = {0}, foreign = {0},
                    other = {0};
    certs_free(c);
    assert_int_equal(pki_node_issue(&ca, "host1", ADDRS, 2, CERTS_RENEW_DAYS - 1, &soon, &e), 0);
    char p[160];
    snprintf(p, sizeof(p), "%s/node.crt", f->tls);
    assert_int_equal(file_write_atomic(p, soon.cert, strlen(soon.cert), &e), 0);
    snprintf(p, sizeof(p), "%s/node.key", f->tls);
    assert_int_equal(file_write_atomic(p, soon.key, strlen(soon.key), &e), 0);
    assert_int_equal(certs_open(f->tls, "host1", ADDRS, 2, &c, &e), 0);
    assert_string_equal(certs_ca(c), ca.cert);
    assert_string_not_equal(certs_node_cert(c), soon.cert);
    assert_true(certs_node_not_after(c) > time(NULL) + (time_t)CERTS_RENEW_DAYS * 86400);
    certs_free(c);
    /* one signed by another CA */
    assert_int_equal(pki_ca_create("other", 30, &other, &e), 0);
    assert_int_equal(pki_node_issue(&other, "host1", ADDRS, 2, 30, &foreign, &e), 0);
    snprintf(p, sizeof(p), "%s/node.crt", f->tls);
    assert_int_equal(file_write_atomic(p, foreign.cert, strlen(foreign.cert), &e), 0);
    assert_int_equal(certs_open(f->tls, "host1", ADDRS, 2, &c, &e), 0);
    assert_int_equal(pki_verify(ca.cert, certs_node_cert(c), "host1", &e), 0);
    certs_free(c);
    pki_pair_free(&ca);
    pki_pair_free(&soon);
    pki_pair_free(&foreign);
    pki_pair_free(&other);
}

static void test_adopting_a_cluster_ca(void **state)
{
    struct fixture *f = *state;
    struct certs *c, *again;
    struct ferr e = {0};
    struct pki_pair cluster = {0}, other = {0};
    assert_int_equal(pki_ca_create("lab", 365, &cluster, &e), 0);
    assert_int_equal(pki_ca_create("other", 365, &other, &e), 0);
    assert_int_equal(certs_open(f->tls, "host2", ADDRS, 2, &c, &e), 0);
    char old[PKI_FINGERPRINT_SIZE];
    snprintf(old, sizeof(old), "%s", certs_node_fingerprint(c));
    /* a CA whose key is another's is refused and changes nothing */
    assert_int_equal(certs_adopt(c, cluster.cert, other.key, &e), FERR_INVALID);
    assert_string_equal(certs_node_fingerprint(c), old);
    assert_int_equal(certs_adopt(c, cluster.cert, cluster.key, &e), 0);
    assert_string_equal(certs_ca(c), cluster.cert);
    assert_int_equal(pki_verify(cluster.cert, certs_node_cert(c), "10.70.0.11", &e), 0);
    /* and kept over a restart */
    assert_int_equal(certs_open(f->tls, "host2", ADDRS, 2, &again, &e), 0);
    assert_string_equal(certs_ca(again), cluster.cert);
    assert_string_equal(certs_node_fingerprint(again), certs_node_fingerprint(c));
    certs_free(again);
    /* a new CA of its own (leaving the cluster) */
    assert_int_equal(certs_new_ca(c, "host2", &e), 0);
    assert_string_not_equal(certs_ca(c), cluster.cert);
    assert_int_equal(pki_verify(certs_ca(c), certs_node_cert(c), "host2", &e), 0);
    certs_free(c);
    pki_pair_free(&cluster);
    pki_pair_free(&other);
}

static void test_join_tokens(void **state)
{
    (void)state;
    const char *fp = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:"
                     "CD:EF:01:23:45:67:89";
    char pin[CERTS_PIN_HEX + 1], secret[100], got[CERTS_PIN_HEX + 1];
    certs_pin_hex(fp, pin);
    assert_string_equal(pin, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    assert_true(certs_pin_matches(pin, fp));
    char token[200];
    snprintf(token, sizeof(token), "0011aabb.%s", pin);
    struct ferr e = {0};
    assert_int_equal(certs_token_split(token, secret, sizeof(secret), got, &e), 0);
    assert_string_equal(secret, "0011aabb");
    assert_string_equal(got, pin);
    /* upper case is the same pin */
    snprintf(token, sizeof(token), "0011aabb.%s",
             "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789");
    assert_int_equal(certs_token_split(token, secret, sizeof(secret), got, &e), 0);
    assert_true(certs_pin_matches(got, fp));
    pin[0] = '0';
    assert_false(certs_pin_matches(pin, fp));
    /* refused, each with its reason */
    assert_int_equal(certs_token_split("0011aabb", secret, sizeof(secret), got, &e), FERR_INVALID);
    assert_non_null(strstr(e.msg, "no CA fingerprint"));
    assert_int_equal(certs_token_split("0011aabb.abcd", secret, sizeof(secret), got, &e),
                     FERR_INVALID);
    assert_non_null(strstr(e.msg, "64 hex digits"));
    snprintf(token, sizeof(token), ".%s", got);
    assert_int_equal(certs_token_split(token, secret, sizeof(secret), got, &e), FERR_INVALID);
    snprintf(token, sizeof(token), "0011aabb.%.63sz", got);
    assert_int_equal(certs_token_split(token, secret, sizeof(secret), got, &e), FERR_INVALID);
    assert_int_equal(certs_token_split(token, secret, 4, got, &e), FERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_made_once_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_files_are_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiring_or_foreign_certificate_is_renewed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_adopting_a_cluster_ca, setup, teardown),
        cmocka_unit_test(test_join_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
