/* SPDX-License-Identifier: MIT */
/* The cluster's CA and its nodes' certificates (pki.h), with GnuTLS's X.509 functions. */
#include "cluster/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define NAME_MAX_LEN PKI_NAME_MAX
#define SKEW_S 3600 /* certificates start an hour back: the nodes' clocks are not in sync */

void pki_pair_free(struct pki_pair *p)
{
    if (!p)
        return;
    free(p->cert);
    free(p->key);
    p->cert = p->key = NULL;
}

static int tls_fail(struct ferr *e, const char *what, int rc)
{
    return ferr_set(e, FERR_INTERNAL, "%s: %s", what, gnutls_strerror(rc));
}

/* Names as ferry allows them for clusters and nodes: letters, digits, '-', '.', '_'. */
static bool good_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

static int load_crt(const char *pem, gnutls_x509_crt_t *out, const char *what, struct ferr *e)
{
    if (!pem || !*pem)
        return ferr_set(e, FERR_INVALID, "%s: no certificate", what);
    gnutls_x509_crt_t c;
    int rc = gnutls_x509_crt_init(&c);
    if (rc < 0)
        return tls_fail(e, "gnutls_x509_crt_init", rc);
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
    rc = gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        gnutls_x509_crt_deinit(c);
        return ferr_set(e, FERR_INVALID, "%s: not a PEM certificate (%s)", what,
                        gnutls_strerror(rc));
    }
    *out = c;
    return 0;
}

static int load_key(const char *pem, gnutls_x509_privkey_t *out, const char *what, struct ferr *e)
{
    if (!pem || !*pem)
        return ferr_set(e, FERR_INVALID, "%s: no private key", what);
    gnutls_x509_privkey_t k;
    int rc = gnutls_x509_privkey_init(&k);
    if (rc < 0)
        return tls_fail(e, "gnutls_x509_privkey_init", rc);
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
    rc = gnutls_x509_privkey_import2(k, &d, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
    if (rc < 0) {
        gnutls_x509_privkey_deinit(k);
        return ferr_set(e, FERR_INVALID, "%s: not a PEM private key (%s)", what,
                        gnutls_strerror(rc));
    }
    *out = k;
    return 0;
}

static int new_key(gnutls_x509_privkey_t *out, struct ferr *e)
{
    gnutls_x509_privkey_t k;
    int rc = gnutls_x509_privkey_init(&k);
    if (rc < 0)
        return tls_fail(e, "gnutls_x509_privkey_init", rc);
    rc = gnutls_x509_privkey_generate(k, GNUTLS_PK_ECDSA,
                                      GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
    if (rc < 0) {
        gnutls_x509_privkey_deinit(k);
        return tls_fail(e, "generating a key", rc);
    }
    *out = k;
    return 0;
}

/* Copies a GnuTLS datum into a NUL-terminated string and frees it. */
static char *take_text(gnutls_datum_t *d)
{
    char *s = malloc(d->size + 1);
    if (s) {
        memcpy(s, d->data, d->size);
        s[d->size] = '\0';
    }
    gnutls_free(d->data);
    d->data = NULL;
    return s;
}

/* Exports crt and key as PEM into out (PKCS#8 for the key: "BEGIN PRIVATE KEY"). */
static int export_pair(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, struct pki_pair *out,
                       struct ferr *e)
{
    gnutls_datum_t c = {NULL, 0}, k = {NULL, 0};
    int rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &c);
    if (rc < 0)
        return tls_fail(e, "exporting the certificate", rc);
    rc = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &k);
    if (rc < 0) {
        gnutls_free(c.data);
        return tls_fail(e, "exporting the key", rc);
    }
    char *cert = take_text(&c), *keytext = take_text(&k);
    if (!cert || !keytext) {
        free(cert);
        free(keytext);
        return ferr_set(e, -ENOMEM, "out of memory");
    }
    out->cert = cert;
    out->key = keytext;
    return 0;
}

/* The fields every certificate of ours has: version 3, a random positive 128-bit serial, the
 * validity, CN, the public key and its subject key id. */
static int common_fields(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, const char *cn,
                         time_t not_after, struct ferr *e)
{
    unsigned char serial[16], kid[64];
    size_t kid_size = sizeof(kid);
    time_t now = time(NULL);
    int rc;
    if ((rc = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
        return tls_fail(e, "a random serial", rc);
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x01); /* positive, 16 bytes long */
    if ((rc = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
        (rc = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
        (rc = gnutls_x509_crt_set_activation_time(crt, now - SKEW_S)) < 0 ||
        (rc = gnutls_x509_crt_set_expiration_time(crt, not_after)) < 0 ||
        (rc = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
                                            (unsigned)strlen(cn))) < 0 ||
        (rc = gnutls_x509_crt_set_key(crt, key)) < 0 ||
        (rc = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, kid, &kid_size)) < 0 ||
        (rc = gnutls_x509_crt_set_subject_key_id(crt, kid, kid_size)) < 0)
        return tls_fail(e, "filling in the certificate", rc);
    return 0;
}

int pki_ca_create(const char *cluster, unsigned days, struct pki_pair *out, struct ferr *e)
{
    if (!good_name(cluster))
        return ferr_set(e, FERR_INVALID,
                        "cluster name \"%s\": 1 to %d letters, digits, '-', '.' or '_'",
                        cluster ? cluster : "", NAME_MAX_LEN);
    if (days < 1 || days > PKI_CA_DAYS)
        return ferr_set(e, FERR_INVALID, "a CA is valid for 1 to %d days, not %u", PKI_CA_DAYS,
                        days);
    char cn[128];
    snprintf(cn, sizeof(cn), "ferry cluster %s CA", cluster);
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    int rc = new_key(&key, e);
    if (rc < 0)
        return rc;
    if ((rc = gnutls_x509_crt_init(&crt)) < 0) {
        rc = tls_fail(e, "gnutls_x509_crt_init", rc);
        goto out;
    }
    if ((rc = common_fields(crt, key, cn, time(NULL) + (time_t)days * 86400, e)) < 0)
        goto out;
    if ((rc = gnutls_x509_crt_set_basic_constraints(crt, 1, 0)) < 0 ||
        (rc = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN |
                                                     GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
        (rc = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0) {
        rc = tls_fail(e, "signing the CA", rc);
        goto out;
    }
    rc = export_pair(crt, key, out, e);
out:
    if (crt)
        gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
    return rc;
}

/* The CA's certificate and key, checked to belong together and to be a CA. */
static int load_ca(const struct pki_pair *ca, gnutls_x509_crt_t *crt, gnutls_x509_privkey_t *key,
                   struct ferr *e)
{
    if (!ca)
        return ferr_set(e, FERR_INVALID, "no CA");
    int rc = load_crt(ca->cert, crt, "the CA", e);
    if (rc < 0)
        return rc;
    if ((rc = load_key(ca->key, key, "the CA", e)) < 0) {
        gnutls_x509_crt_deinit(*crt);
        return rc;
    }
    unsigned char a[64], b[64];
    size_t na = sizeof(a), nb = sizeof(b);
    unsigned critical = 0;
    if (gnutls_x509_crt_get_key_id(*crt, GNUTLS_KEYID_USE_SHA256, a, &na) < 0 ||
        gnutls_x509_privkey_get_key_id(*key, GNUTLS_KEYID_USE_SHA256, b, &nb) < 0 || na != nb ||
        memcmp(a, b, na) != 0)
        rc = ferr_set(e, FERR_INVALID, "the CA's key does not belong to its certificate");
    else if (gnutls_x509_crt_get_ca_status(*crt, &critical) <= 0)
        rc = ferr_set(e, FERR_INVALID, "the CA's certificate is not a CA");
    if (rc < 0) {
        gnutls_x509_crt_deinit(*crt);
        gnutls_x509_privkey_deinit(*key);
    }
    return rc;
}

/* Adds a subject alternative name: an IP literal as an address, anything else a DNS name. */
static int add_san(gnutls_x509_crt_t crt, const char *a, struct ferr *e)
{
    unsigned char ip[16];
    int rc;
    if (inet_pton(AF_INET, a, ip) == 1)
        rc = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip, 4,
                                                  GNUTLS_FSAN_APPEND);
    else if (inet_pton(AF_INET6, a, ip) == 1)
        rc = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip, 16,
                                                  GNUTLS_FSAN_APPEND);
    else if (good_name(a) && a[0] != '-' && a[0] != '.')
        rc = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, a, (unsigned)strlen(a),
                                                  GNUTLS_FSAN_APPEND);
    else
        return ferr_set(e, FERR_INVALID,
                        "address \"%s\": an IPv4 or IPv6 address or a host name expected", a);
    return rc < 0 ? tls_fail(e, "adding a subject alternative name", rc) : 0;
}

int pki_node_issue(const struct pki_pair *ca, const char *node, const char *const *addrs,
                   size_t naddrs, unsigned days, struct pki_pair *out, struct ferr *e)
{
    if (!good_name(node))
        return ferr_set(e, FERR_INVALID,
                        "node name \"%s\": 1 to %d letters, digits, '-', '.' or '_'",
                        node ? node : "", NAME_MAX_LEN);
    if (naddrs > PKI_MAX_ADDRS)
        return ferr_set(e, FERR_INVALID, "at most %d addresses in a node's certificate, not %zu",
                        PKI_MAX_ADDRS, naddrs);
    if (days < 1 || days > PKI_NODE_DAYS)
        return ferr_set(e, FERR_INVALID, "a node's certificate is valid for 1 to %d days, not %u",
                        PKI_NODE_DAYS, days);
    gnutls_x509_crt_t ca_crt = NULL, crt = NULL;
    gnutls_x509_privkey_t ca_key = NULL, key = NULL;
    int rc = load_ca(ca, &ca_crt, &ca_key, e);
    if (rc < 0)
        return rc;
    time_t not_after = time(NULL) + (time_t)days * 86400;
    time_t ca_end = gnutls_x509_crt_get_expiration_time(ca_crt);
    if (ca_end != (time_t)-1 && ca_end < not_after)
        not_after = ca_end;
    unsigned char akid[64];
    size_t akid_size = sizeof(akid);
    if ((rc = new_key(&key, e)) < 0)
        goto out;
    if ((rc = gnutls_x509_crt_init(&crt)) < 0) {
        rc = tls_fail(e, "gnutls_x509_crt_init", rc);
        goto out;
    }
    if ((rc = common_fields(crt, key, node, not_after, e)) < 0 || (rc = add_san(crt, node, e)) < 0)
        goto out;
    for (size_t i = 0; i < naddrs; i++)
        if ((rc = add_san(crt, addrs[i], e)) < 0)
            goto out;
    if ((rc = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
        (rc = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE |
                                                     GNUTLS_KEY_KEY_AGREEMENT)) < 0 ||
        (rc = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
        (rc = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0)) < 0 ||
        (rc = gnutls_x509_crt_get_subject_key_id(ca_crt, akid, &akid_size, NULL)) < 0 ||
        (rc = gnutls_x509_crt_set_authority_key_id(crt, akid, akid_size)) < 0 ||
        (rc = gnutls_x509_crt_sign2(crt, ca_crt, ca_key, GNUTLS_DIG_SHA256, 0)) < 0) {
        rc = tls_fail(e, "signing the node's certificate", rc);
        goto out;
    }
    rc = export_pair(crt, key, out, e);
out:
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (key)
        gnutls_x509_privkey_deinit(key);
    gnutls_x509_crt_deinit(ca_crt);
    gnutls_x509_privkey_deinit(ca_key);
    return rc;
}

/* A certificate that does not parse is refused like one that does not verify. */
static int as_auth(struct ferr *e, int rc)
{
    if (rc != FERR_INVALID)
        return rc;
    if (!e)
        return FERR_AUTH;
    char msg[FERR_MSG_MAX];
    snprintf(msg, sizeof(msg), "%s", e->msg);
    return ferr_set(e, FERR_AUTH, "certificate refused: %s", msg);
}

int pki_verify(const char *ca_cert, const char *cert, const char *peer, struct ferr *e)
{
    gnutls_x509_crt_t ca, c;
    int rc = load_crt(ca_cert, &ca, "the CA", e);
    if (rc < 0)
        return as_auth(e, rc);
    if ((rc = load_crt(cert, &c, "the certificate", e)) < 0) {
        gnutls_x509_crt_deinit(ca);
        return as_auth(e, rc);
    }
    unsigned status = 0;
    rc = gnutls_x509_crt_verify(c, &ca, 1, 0, &status);
    if (rc < 0 || status != 0) {
        gnutls_datum_t why = {NULL, 0};
        if (rc >= 0 &&
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) == 0)
            rc = ferr_set(e, FERR_AUTH, "certificate refused: %s", (const char *)why.data);
        else
            rc = ferr_set(e, FERR_AUTH, "certificate refused: %s",
                          rc < 0 ? gnutls_strerror(rc) : "not trusted");
        gnutls_free(why.data);
        goto out;
    }
    rc = 0;
    if (peer) {
        unsigned char ip[16];
        bool ok;
        if (inet_pton(AF_INET, peer, ip) == 1)
            ok = gnutls_x509_crt_check_ip(c, ip, 4, 0);
        else if (inet_pton(AF_INET6, peer, ip) == 1)
            ok = gnutls_x509_crt_check_ip(c, ip, 16, 0);
        else
            ok = gnutls_x509_crt_check_hostname(c, peer);
        if (!ok)
            rc = ferr_set(e, FERR_AUTH, "certificate refused: it does not name %s", peer);
    }
out:
    gnutls_x509_crt_deinit(c);
    gnutls_x509_crt_deinit(ca);
    return rc;
}

int pki_fingerprint(const char *cert, char out[PKI_FINGERPRINT_SIZE], struct ferr *e)
{
    gnutls_x509_crt_t c;
    int rc = load_crt(cert, &c, "fingerprint", e);
    if (rc < 0)
        return rc;
    unsigned char fp[32];
    size_t n = sizeof(fp);
    rc = gnutls_x509_crt_get_fingerprint(c, GNUTLS_DIG_SHA256, fp, &n);
    gnutls_x509_crt_deinit(c);
    if (rc < 0 || n != sizeof(fp))
        return tls_fail(e, "the fingerprint", rc < 0 ? rc : GNUTLS_E_INTERNAL_ERROR);
    for (size_t i = 0; i < n; i++)
        snprintf(out + 3 * i, PKI_FINGERPRINT_SIZE - 3 * i, i + 1 < n ? "%02X:" : "%02X", fp[i]);
    return 0;
}

int pki_not_after(const char *cert, time_t *not_after, struct ferr *e)
{
    gnutls_x509_crt_t c;
    int rc = load_crt(cert, &c, "validity", e);
    if (rc < 0)
        return rc;
    *not_after = gnutls_x509_crt_get_expiration_time(c);
    gnutls_x509_crt_deinit(c);
    return 0;
}
