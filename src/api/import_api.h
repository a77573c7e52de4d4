/* SPDX-License-Identifier: MIT */
/* POST /v1/vms/import: a VMware machine (.vmx, .ovf, .ova) planned, converted onto a cluster
 * shared volume as a task, and defined (src/import/). A handler routes.c's table names. */
#ifndef FERRY_API_IMPORT_API_H
#define FERRY_API_IMPORT_API_H

#include "api/api.h"
#include "api/http.h"
#include "api/router.h"

void api_vm_import(struct api_ctx *ctx, struct http_req *req, const struct route_match *m);
/* POST /v1/vms/import/cancel?name=NAME: cancels the import of NAME running here (its task). */
void api_vm_import_cancel(struct api_ctx *ctx, struct http_req *req, const struct route_match *m);

#endif
