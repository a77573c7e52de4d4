/* SPDX-License-Identifier: MIT */
/* The TCP listener's authorizer: a cluster member's secret, or a joiner's token (api_authorize). */
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
