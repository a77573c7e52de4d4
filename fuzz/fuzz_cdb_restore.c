/* SPDX-License-Identifier: MIT */
/* A snapshot as another node sends it when this one falls behind (libraft's InstallSnapshot):
 * any bytes. Property: a refused snapshot leaves the database exactly as it was. */
#include <string.h>

#include "cluster/cdb.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cdb *db = cdb_new();
    FUZZ_ASSERT(db);
    struct ferr e;
    static const char meta[] = "{\"v\":1,\"op\":\"cluster_meta\",\"id\":\"0123456789abcdef\","
                               "\"name\":\"lab\",\"created_ms\":1}";
    FUZZ_ASSERT(cdb_apply(db, 1, meta, strlen(meta), 1, &e) == 0);
    char *before = NULL, *after = NULL;
    size_t lb = 0, la = 0;
    FUZZ_ASSERT(cdb_snapshot(db, &before, &lb, &e) == 0);
    int rc = cdb_restore(db, data, size, 7, &e);
    if (rc != 0) {
        FUZZ_ASSERT(rc == FERR_INVALID || rc == FERR_TOOBIG);
        FUZZ_ASSERT(cdb_snapshot(db, &after, &la, &e) == 0);
        FUZZ_ASSERT(la == lb && memcmp(before, after, lb) == 0);
        FUZZ_ASSERT(cdb_applied_index(db) == 1);
    }
    free(before);
    free(after);
    cdb_free(db);
    return 0;
}
