/* SPDX-License-Identifier: MIT */
/* The cluster's certificate authority and its nodes' TLS certificates, as PEM text (GnuTLS).
 * Pure: no files, no clock but the current time for validity. ECDSA P-256 keys, SHA-256
 * signatures (what GnuTLS, OpenSSL and every browser accept). */
#ifndef FERRY_CLUSTER_PKI_H
#define FERRY_CLUSTER_PKI_H

#include <stddef.h>
#include <time.h>

#include "common/err.h"

#define PKI_MAX_ADDRS 8
#define PKI_NAME_MAX 64         /* bytes of a cluster or node name */
#define PKI_FINGERPRINT_SIZE 96 /* "AB:CD:...", 32 bytes */
#define PKI_CA_DAYS 3650        /* ten years: a CA outlives its clusters' hardware */
#define PKI_NODE_DAYS 825       /* what browsers accept for a server certificate */

/* A certificate and its private key, PEM, NUL-terminated; pki_pair_free frees both. */
struct pki_pair {
    char *cert;
    char *key;
};
void pki_pair_free(struct pki_pair *p);

/* Creates the cluster's CA: a new key and a self-signed certificate "CN=ferry cluster NAME CA"
 * valid for days (1..PKI_CA_DAYS) from an hour ago (clock skew between nodes). Returns 0 with
 * *out, or FERR_INVALID (name empty or over 64 bytes, days out of range) / FERR_INTERNAL
 * (GnuTLS failed) with *out untouched. */
int pki_ca_create(const char *cluster, unsigned days, struct pki_pair *out, struct ferr *e);

/* Issues node's certificate, signed by the CA (ca.cert, ca.key): "CN=NODE", subject
 * alternative names the node's name and each of addrs (IPv4 or IPv6 literals become IP
 * addresses, anything else a DNS name; at most PKI_MAX_ADDRS), usable as a TLS server and
 * client, valid for days (1..PKI_NODE_DAYS) but never past the CA. Returns 0 with *out, or
 * FERR_INVALID (a bad name, address or count, a CA that does not parse or whose key does not
 * match its certificate, days out of range) / FERR_INTERNAL with *out untouched. */
int pki_node_issue(const struct pki_pair *ca, const char *node, const char *const *addrs,
                   size_t naddrs, unsigned days, struct pki_pair *out, struct ferr *e);

/* Checks that cert is signed by the CA ca_cert, valid now, and (when peer is not NULL) names
 * peer (a host name or an IP literal). Returns 0, or FERR_AUTH with the reason. */
int pki_verify(const char *ca_cert, const char *cert, const char *peer, struct ferr *e);

/* The SHA-256 fingerprint of a certificate as "AB:CD:..." (what `ferry cluster status` shows so
 * an operator can compare it with what a browser shows). Returns 0, or FERR_INVALID. */
int pki_fingerprint(const char *cert, char out[PKI_FINGERPRINT_SIZE], struct ferr *e);

/* The end of a certificate's validity. Returns 0 with *not_after, or FERR_INVALID. */
int pki_not_after(const char *cert, time_t *not_after, struct ferr *e);

#endif
