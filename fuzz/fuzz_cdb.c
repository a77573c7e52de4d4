/* SPDX-License-Identifier: MIT */
/* The cluster database's commands as they come out of the Raft log: the input is a sequence of
 * entries separated by newlines, each decoded and applied at the next index. Properties: apply
 * never fails but with the documented codes, the applied index always moves, and the state's
 * snapshot restores into a fresh database that snapshots to the same bytes. */
#include <jansson.h>
#include <string.h>

#include "cluster/cdb.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cdb *db = cdb_new();
    FUZZ_ASSERT(db);
    uint64_t index = 0;
    struct ferr e;
    for (size_t off = 0; off < size && index < 64;) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t n = nl ? (size_t)(nl - (data + off)) : size - off;
        index++;
        int rc = cdb_apply(db, index, data + off, n, 1000 * index, &e);
        FUZZ_ASSERT(rc == 0 || rc == FERR_INVALID || rc == FERR_NOTFOUND || rc == FERR_EXISTS ||
                    rc == FERR_STATE || rc == FERR_TOOBIG);
        FUZZ_ASSERT(rc == 0 || e.msg[0]);
        FUZZ_ASSERT(cdb_applied_index(db) == index);
        off += n + 1;
    }
    char *snap = NULL, *snap2 = NULL;
    size_t len = 0, len2 = 0;
    FUZZ_ASSERT(cdb_snapshot(db, &snap, &len, &e) == 0);
    struct cdb *db2 = cdb_new();
    FUZZ_ASSERT(db2);
    if (cdb_restore(db2, snap, len, 5, &e) != 0) {
        fprintf(stderr, "a snapshot of this database does not restore: %s\n%.*s\n", e.msg, (int)len,
                snap);
        abort();
    }
    FUZZ_ASSERT(cdb_snapshot(db2, &snap2, &len2, &e) == 0);
    FUZZ_ASSERT(len == len2 && memcmp(snap, snap2, len) == 0);
    free(snap);
    free(snap2);
    cdb_free(db2);
    cdb_free(db);
    return 0;
}
