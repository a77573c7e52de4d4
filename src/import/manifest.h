/* SPDX-License-Identifier: MIT */
/* The .mf manifest of an OVF package: `SHA256(file)= hex` lines, and their checking with
 * GnuTLS's hashes. The parser is pure; the hash is fed by the caller. */
#ifndef FERRY_IMPORT_MANIFEST_H
#define FERRY_IMPORT_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define MF_MAX_SIZE (1u << 20)
#define MF_MAX_ENTRIES 128
#define MF_DIGEST_MAX 64

enum mf_algo { MF_SHA1, MF_SHA256, MF_SHA512 };

struct mf_entry {
    char file[256]; /* inside the package's folder (text_path_inside) */
    enum mf_algo algo;
    uint8_t digest[MF_DIGEST_MAX];
    unsigned digest_len;
    unsigned line;
};

struct mf {
    unsigned n;
    struct mf_entry entries[MF_MAX_ENTRIES];
};

/*
 * Parses a manifest (len bytes) of the file name. Each non-empty line is ALGO(FILE)= HEX with
 * ALGO one of SHA1, SHA256, SHA512 (what ovftool and VirtualBox write) and HEX of the
 * algorithm's length. Refused with FERR_INVALID "NAME:LINE: ...": other lines, other
 * algorithms, files outside the folder, a file listed twice, wrong digest lengths.
 */
int mf_parse(const char *name, const char *text, size_t len, struct mf *out, struct ferr *e);

/* The entry for file, NULL if the manifest does not list it. */
const struct mf_entry *mf_find(const struct mf *m, const char *file);

/* A running hash for checking one entry. */
struct mf_hash;

/* Starts a hash for entry (borrowed; must outlive the hash). *out owned by the caller, freed
 * by mf_hash_finish. -ENOMEM or FERR_INTERNAL (GnuTLS refused the algorithm). */
int mf_hash_new(const struct mf_entry *entry, struct mf_hash **out, struct ferr *e);
/* Adds len bytes. */
void mf_hash_update(struct mf_hash *h, const void *data, size_t len);
/* Ends the hash (h freed) and compares: 0, or FERR_INVALID "MFNAME:LINE: SHA256 of FILE is
 * x..., the manifest says y...: the file is damaged or was changed". */
int mf_hash_finish(struct mf_hash *h, const char *mf_name, struct ferr *e);

#endif
