/* SPDX-License-Identifier: MIT */
/* A task record as another node writes it into the cluster database, and the filters of GET
 * /v1/tasks: any JSON. Properties: a record accepted by taskrec_check has a known kind and
 * state; the selection of a list holds only records that match, at most limit, each once. */
#include <jansson.h>
#include <string.h>

#include "cluster/taskrec.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!j)
        return 0;
    struct ferr e;
    json_t *recs = json_is_array(j) ? j : json_object_get(j, "tasks");
    json_t *one = json_is_object(j) ? j : json_array_get(j, 0);
    for (int gen = 0; gen < 2; gen++)
        if (json_is_object(one) && taskrec_check(one, gen, &e) == 0)
            FUZZ_ASSERT(taskrec_kind_valid(json_string_value(json_object_get(one, "kind"))) &&
                        taskrec_state_valid(json_string_value(json_object_get(one, "state"))));
    json_t *fj = json_object_get(j, "filter");
    struct taskrec_filter f = {json_string_value(json_object_get(fj, "state")),
                               json_string_value(json_object_get(fj, "kind")),
                               json_string_value(json_object_get(fj, "target")),
                               json_string_value(json_object_get(fj, "node")),
                               (unsigned)(json_integer_value(json_object_get(fj, "limit")) & 0x3ff)};
    if (!f.limit)
        f.limit = 500;
    if (taskrec_filter_check(&f, &e) == 0 && json_is_array(recs)) {
        json_t *sel = taskrec_select(recs, &f), *r;
        size_t i;
        FUZZ_ASSERT(sel && json_array_size(sel) <= f.limit);
        json_array_foreach(sel, i, r) FUZZ_ASSERT(taskrec_matches(r, &f));
        json_decref(sel);
    }
    json_decref(j);
    return 0;
}
