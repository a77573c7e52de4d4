/* SPDX-License-Identifier: MIT */
/* This node's TLS material in STATE_DIR/tls (files 0600): the CA it trusts and its own
 * certificate and key issued by that CA. Before the node is in a cluster the CA is one it
 * made for itself at its first start; `cluster init` replaces it with a new cluster CA, a
 * join with the cluster's (certs_adopt), and leaving with a fresh one of its own. */
#ifndef FERRY_CLUSTER_CERTS_H
#define FERRY_CLUSTER_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "cluster/pki.h"
#include "common/err.h"

/* A node certificate is issued anew at start when it has less than this left. */
#define CERTS_RENEW_DAYS 30
/* "<token>.<64 hex digits>": the join token with the CA's SHA-256 pinned. */
#define CERTS_PIN_HEX 64

struct certs;

/*
 * Loads dir/ca.crt, ca.key, node.crt and node.key (dir is created 0700 if missing). A missing
 * or unreadable CA is made anew (named after node); the node's certificate is issued anew
 * when missing, not signed by the CA, expiring within CERTS_RENEW_DAYS, or not naming node
 * and every one of addrs (at most PKI_MAX_ADDRS, copied). Returns 0 with *out (caller frees
 * with certs_free), or an error with nothing written that was not written before.
 */
int certs_open(const char *dir, const char *node, const char *const *addrs, size_t naddrs,
               struct certs **out, struct ferr *e);
void certs_free(struct certs *c);

/* PEM texts (borrowed, valid until the next certs_adopt/certs_renew or certs_free). */
const char *certs_ca(const struct certs *c);
const char *certs_ca_key(const struct certs *c);
const char *certs_node_cert(const struct certs *c);
const char *certs_node_key(const struct certs *c);
/* "AB:CD:..." of the CA and of the node's certificate (borrowed, as above). */
const char *certs_ca_fingerprint(const struct certs *c);
const char *certs_node_fingerprint(const struct certs *c);
/* When the node's certificate expires. */
time_t certs_node_not_after(const struct certs *c);

/*
 * Trusts the CA (ca_cert, ca_key: PEM, copied) from now on: issues this node's certificate
 * with it and writes all four files. Returns 0, or FERR_INVALID (the CA does not parse, its
 * key does not match) / an I/O error; on error the certificates in memory are unchanged (a
 * file written before a later write failed is put right by the next certs_open, which
 * reissues a node certificate the CA did not sign).
 */
int certs_adopt(struct certs *c, const char *ca_cert, const char *ca_key, struct ferr *e);

/* Makes a new CA named name (a cluster's name, or the node's for its own) and adopts it. */
int certs_new_ca(struct certs *c, const char *name, struct ferr *e);

/*
 * Join tokens with the CA pinned (pure). certs_pin_hex writes the lowercase hex of a
 * fingerprint "AB:CD:..." (CERTS_PIN_HEX + 1 bytes). certs_token_split splits
 * "SECRET.PIN" into its parts (secret into secret, size bytes; pin into pin), checking that
 * the pin is 64 hex digits; FERR_INVALID with a message saying what is wrong otherwise.
 * certs_pin_matches compares a pin with a fingerprint, ignoring case.
 */
void certs_pin_hex(const char *fingerprint, char out[CERTS_PIN_HEX + 1]);
int certs_token_split(const char *token, char *secret, size_t size, char pin[CERTS_PIN_HEX + 1],
                      struct ferr *e);
bool certs_pin_matches(const char *pin, const char *fingerprint);

#endif
