/* SPDX-License-Identifier: MIT */
/* Who a TCP request comes from when its bearer token is not the API's own: a cluster member or a
 * node that joins. */
#include <string.h>

#include "api/api.h"
#include "api/http.h"
#include "cluster/cluster.h"

int api_authorize(const char *path, const char *bearer, void *data)
{
    const struct cluster *c = data;
    if (cluster_secret_matches(c, bearer))
        return HTTP_PRINCIPAL_PEER;
    if (strcmp(path, "/v1/internal/join") == 0 && cluster_join_token_matches(c, bearer))
        return HTTP_PRINCIPAL_JOINER;
    return HTTP_PRINCIPAL_NONE;
}
