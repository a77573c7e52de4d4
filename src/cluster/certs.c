/* SPDX-License-Identifier: MIT */
/* This node's CA and certificate on disk (certs.h). */
#include "cluster/certs.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

struct certs {
    char dir[1024];
    char node[PKI_NAME_MAX + 1];
    char addrs[PKI_MAX_ADDRS][64];
    size_t naddrs;
    struct pki_pair ca, mine;
    char ca_fp[PKI_FINGERPRINT_SIZE], node_fp[PKI_FINGERPRINT_SIZE];
    time_t not_after;
};

static const char *const FILES[4] = {"ca.crt", "ca.key", "node.crt", "node.key"};

static int path_of(const struct certs *c, const char *file, char *out, size_t size, struct ferr *e)
{
    if (snprintf(out, size, "%s/%s", c->dir, file) >= (int)size)
        return ferr_set(e, FERR_INVALID, "tls: path %s/%s too long", c->dir, file);
    return 0;
}

/* Reads a file into *out; a missing file is 0 with *out NULL. */
static int read_opt(const struct certs *c, const char *file, char **out, struct ferr *e)
{
    char p[1200];
    *out = NULL;
    int rc = path_of(c, file, p, sizeof(p), e);
    if (rc < 0)
        return rc;
    if (access(p, F_OK) != 0)
        return 0;
    return file_read_all(p, 65536, out, NULL, e);
}

static int write_one(const struct certs *c, const char *file, const char *text, struct ferr *e)
{
    char p[1200];
    int rc = path_of(c, file, p, sizeof(p), e);
    if (rc < 0)
        return rc;
    if ((rc = file_write_atomic(p, text, strlen(text), e)) < 0)
        ferr_prefix(e, "tls");
    return rc;
}

/* Whether mine is signed by ca, valid for CERTS_RENEW_DAYS more, and names the node and
 * every address. */
static bool node_cert_good(const struct certs *c, const struct pki_pair *ca,
                           const struct pki_pair *mine)
{
    struct ferr e = {0};
    time_t end;
    if (!mine->cert || !mine->key || pki_verify(ca->cert, mine->cert, c->node, &e) < 0 ||
        pki_not_after(mine->cert, &end, &e) < 0 ||
        end < time(NULL) + (time_t)CERTS_RENEW_DAYS * 86400)
        return false;
    for (size_t i = 0; i < c->naddrs; i++)
        if (pki_verify(ca->cert, mine->cert, c->addrs[i], &e) < 0)
            return false;
    return true;
}

/* Takes ca and mine (their strings move into c; the old ones are freed). */
static int install(struct certs *c, struct pki_pair *ca, struct pki_pair *mine, struct ferr *e)
{
    char ca_fp[PKI_FINGERPRINT_SIZE], node_fp[PKI_FINGERPRINT_SIZE];
    time_t end;
    int rc;
    if ((rc = pki_fingerprint(ca->cert, ca_fp, e)) < 0 ||
        (rc = pki_fingerprint(mine->cert, node_fp, e)) < 0 ||
        (rc = pki_not_after(mine->cert, &end, e)) < 0)
        return rc;
    pki_pair_free(&c->ca);
    pki_pair_free(&c->mine);
    c->ca = *ca;
    c->mine = *mine;
    *ca = (struct pki_pair){0};
    *mine = (struct pki_pair){0};
    memcpy(c->ca_fp, ca_fp, sizeof(ca_fp));
    memcpy(c->node_fp, node_fp, sizeof(node_fp));
    c->not_after = end;
    return 0;
}

static int issue(struct certs *c, const struct pki_pair *ca, struct pki_pair *out, struct ferr *e)
{
    const char *addrs[PKI_MAX_ADDRS];
    for (size_t i = 0; i < c->naddrs; i++)
        addrs[i] = c->addrs[i];
    int rc = pki_node_issue(ca, c->node, addrs, c->naddrs, PKI_NODE_DAYS, out, e);
    if (rc < 0)
        ferr_prefix(e, "tls: issuing this node's certificate");
    return rc;
}

/* Writes the CA (when write_ca) and the node's pair. */
static int write_all(struct certs *c, const struct pki_pair *ca, const struct pki_pair *mine,
                     bool write_ca, struct ferr *e)
{
    int rc = 0;
    if (write_ca && ((rc = write_one(c, FILES[1], ca->key, e)) < 0 ||
                     (rc = write_one(c, FILES[0], ca->cert, e)) < 0))
        return rc;
    if ((rc = write_one(c, FILES[3], mine->key, e)) < 0 ||
        (rc = write_one(c, FILES[2], mine->cert, e)) < 0)
        return rc;
    return 0;
}

int certs_open(const char *dir, const char *node, const char *const *addrs, size_t naddrs,
               struct certs **out, struct ferr *e)
{
    if (naddrs > PKI_MAX_ADDRS)
        return ferr_set(e, FERR_INVALID, "tls: at most %d addresses, not %zu", PKI_MAX_ADDRS,
                        naddrs);
    struct certs *c = calloc(1, sizeof(*c));
    if (!c)
        return ferr_set(e, -ENOMEM, "tls: out of memory");
    int rc;
    if (snprintf(c->dir, sizeof(c->dir), "%s", dir) >= (int)sizeof(c->dir) ||
        snprintf(c->node, sizeof(c->node), "%s", node) >= (int)sizeof(c->node)) {
        rc = ferr_set(e, FERR_INVALID, "tls: directory or node name too long");
        goto err_after_alloc;
    }
    for (size_t i = 0; i < naddrs; i++) {
        if (snprintf(c->addrs[i], sizeof(c->addrs[i]), "%s", addrs[i]) >=
            (int)sizeof(c->addrs[i])) {
            rc = ferr_set(e, FERR_INVALID, "tls: address %s too long", addrs[i]);
            goto err_after_alloc;
        }
    }
    c->naddrs = naddrs;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        rc = ferr_set(e, -errno, "tls: mkdir %s: %s", dir, strerror(errno));
        goto err_after_alloc;
    }
    struct pki_pair ca = {0}, mine = {0};
    bool new_ca = false;
    if ((rc = read_opt(c, FILES[0], &ca.cert, e)) < 0 ||
        (rc = read_opt(c, FILES[1], &ca.key, e)) < 0 ||
        (rc = read_opt(c, FILES[2], &mine.cert, e)) < 0 ||
        (rc = read_opt(c, FILES[3], &mine.key, e)) < 0)
        goto err_after_read;
    time_t ca_end;
    struct ferr e2 = {0};
    if (!ca.cert || !ca.key || pki_not_after(ca.cert, &ca_end, &e2) < 0 ||
        ca_end < time(NULL) + (time_t)CERTS_RENEW_DAYS * 86400) {
        /* No CA, a damaged one, or one about to expire: this node starts its own. */
        pki_pair_free(&ca);
        if ((rc = pki_ca_create(node, PKI_CA_DAYS, &ca, e)) < 0) {
            ferr_prefix(e, "tls: making this node's CA");
            goto err_after_read;
        }
        new_ca = true;
    }
    if (new_ca || !node_cert_good(c, &ca, &mine)) {
        pki_pair_free(&mine);
        if ((rc = issue(c, &ca, &mine, e)) < 0)
            goto err_after_read;
        if ((rc = write_all(c, &ca, &mine, new_ca, e)) < 0)
            goto err_after_read;
    }
    if ((rc = install(c, &ca, &mine, e)) < 0)
        goto err_after_read;
    *out = c;
    return 0;

err_after_read:
    pki_pair_free(&ca);
    pki_pair_free(&mine);
err_after_alloc:
    free(c);
    return rc;
}

void certs_free(struct certs *c)
{
    if (!c)
        return;
    pki_pair_free(&c->ca);
    pki_pair_free(&c->mine);
    free(c);
}

const char *certs_ca(const struct certs *c)
{
    return c->ca.cert;
}

const char *certs_ca_key(const struct certs *c)
{
    return c->ca.key;
}

const char *certs_node_cert(const struct certs *c)
{
    return c->mine.cert;
}

const char *certs_node_key(const struct certs *c)
{
    return c->mine.key;
}

const char *certs_ca_fingerprint(const struct certs *c)
{
    return c->ca_fp;
}

const char *certs_node_fingerprint(const struct certs *c)
{
    return c->node_fp;
}

time_t certs_node_not_after(const struct certs *c)
{
    return c->not_after;
}

int certs_adopt(struct certs *c, const char *ca_cert, const char *ca_key, struct ferr *e)
{
    struct pki_pair ca = {ca_cert ? strdup(ca_cert) : NULL, ca_key ? strdup(ca_key) : NULL};
    struct pki_pair mine = {0};
    int rc;
    if (!ca.cert || !ca.key)
        rc = ca_cert && ca_key ? ferr_set(e, -ENOMEM, "tls: out of memory")
                               : ferr_set(e, FERR_INVALID, "tls: no CA given");
    else if ((rc = issue(c, &ca, &mine, e)) == 0 && (rc = write_all(c, &ca, &mine, true, e)) == 0)
        rc = install(c, &ca, &mine, e);
    /* install took the strings it keeps; what is left is freed */
    pki_pair_free(&ca);
    pki_pair_free(&mine);
    return rc;
}

int certs_new_ca(struct certs *c, const char *name, struct ferr *e)
{
    struct pki_pair ca = {0};
    int rc = pki_ca_create(name, PKI_CA_DAYS, &ca, e);
    if (rc < 0) {
        ferr_prefix(e, "tls: making a CA");
        return rc;
    }
    rc = certs_adopt(c, ca.cert, ca.key, e);
    pki_pair_free(&ca);
    return rc;
}

void certs_pin_hex(const char *fingerprint, char out[CERTS_PIN_HEX + 1])
{
    size_t n = 0;
    for (const char *p = fingerprint; *p && n < CERTS_PIN_HEX; p++)
        if (isxdigit((unsigned char)*p))
            out[n++] = (char)tolower((unsigned char)*p);
    out[n] = '\0';
}

int certs_token_split(const char *token, char *secret, size_t size, char pin[CERTS_PIN_HEX + 1],
                      struct ferr *e)
{
    const char *dot = token ? strrchr(token, '.') : NULL;
    if (!dot)
        return ferr_set(e, FERR_INVALID,
                        "token: it has no CA fingerprint (SECRET.SHA256); use the whole token "
                        "that ferry cluster init printed");
    size_t n = (size_t)(dot - token), pn = strlen(dot + 1);
    if (n == 0 || n >= size)
        return ferr_set(e, FERR_INVALID, "token: the part before '.' is empty or too long");
    if (pn != CERTS_PIN_HEX)
        return ferr_set(e, FERR_INVALID,
                        "token: the CA fingerprint after '.' must be %d hex digits, not %zu",
                        CERTS_PIN_HEX, pn);
    for (size_t i = 0; i < pn; i++)
        if (!isxdigit((unsigned char)dot[1 + i]))
            return ferr_set(e, FERR_INVALID,
                            "token: the CA fingerprint after '.' must be hex digits");
    memcpy(secret, token, n);
    secret[n] = '\0';
    for (size_t i = 0; i <= pn; i++)
        pin[i] = (char)tolower((unsigned char)dot[1 + i]);
    return 0;
}

bool certs_pin_matches(const char *pin, const char *fingerprint)
{
    char mine[CERTS_PIN_HEX + 1];
    certs_pin_hex(fingerprint, mine);
    return strlen(pin) == CERTS_PIN_HEX && strcasecmp(pin, mine) == 0;
}
