/* SPDX-License-Identifier: MIT */
/* Matches a method and path against a table of routes with {param} segments. Pure. */
#ifndef FERRY_API_ROUTER_H
#define FERRY_API_ROUTER_H

#include <stddef.h>

#define ROUTER_MAX_PARAMS 4
#define ROUTER_PARAM_MAX 128

struct route {
    const char *method;  /* "GET", "POST", "DELETE", ... */
    const char *pattern; /* "/v1/vms/{name}/start" */
    void *handler;       /* opaque to the router */
    const char *query;   /* the query argument names it takes, space-separated; NULL: none */
};

struct route_match {
    const struct route *route;
    size_t nparams;
    struct {
        char name[32];
        char value[ROUTER_PARAM_MAX]; /* percent-decoded */
    } params[ROUTER_MAX_PARAMS];
};

enum { ROUTER_OK = 0, ROUTER_NOT_FOUND = 1, ROUTER_BAD_METHOD = 2, ROUTER_BAD_PATH = 3 };

/*
 * Finds the route for method and path. Returns ROUTER_OK and fills m; ROUTER_NOT_FOUND if no
 * pattern matches the path; ROUTER_BAD_METHOD if a pattern matches but not with this method
 * (HTTP 405); ROUTER_BAD_PATH if a segment is too long, empty, or badly percent-encoded.
 */
int router_match(const struct route *routes, size_t n, const char *method, const char *path,
                 struct route_match *m);
/*
 * Checks the query argument names of a request (keys[0..n-1], in the order given) against what
 * route r takes: returns 0, or -1 with why filled ("unknown query argument \"x\" ... (it takes:
 * offset, max)") for a name it does not take or one given twice. A typo must not silently
 * turn into the default.
 */
int router_check_query(const struct route *r, const char *const *keys, size_t n, char *why,
                       size_t why_size);
/* Value of a named parameter in m, or NULL. */
const char *route_param(const struct route_match *m, const char *name);

#endif
