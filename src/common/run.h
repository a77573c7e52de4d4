/* SPDX-License-Identifier: MIT */
/* Running a helper program (qemu-img, qemu -machine help) without a shell, output captured. */
#ifndef FERRY_COMMON_RUN_H
#define FERRY_COMMON_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define RUN_STDOUT_MAX (1u << 20) /* stdout kept; the rest is drained and dropped */
#define RUN_STDERR_MAX 2048       /* enough for a message; the rest is drained and dropped */

/* Output of one run. */
struct run {
    int status; /* as from waitpid */
    char *out;  /* stdout, NUL-terminated; owned by the struct */
    size_t out_len;
    char err[RUN_STDERR_MAX]; /* stderr, trimmed, NUL-terminated */
    size_t err_len;
};

/*
 * Runs argv (argv[0] is looked up in PATH) with stdin from /dev/null and stdout/stderr captured.
 * Returns 0 once the child was reaped (its status is in r->status; the caller owns r->out and
 * frees it with run_free), or a negative code if it could not be started. Only this child is
 * waited for, so a libuv loop that reaps its own children by pid is not disturbed. Blocks:
 * call it from the thread pool, or at start-up.
 */
int run(char *const argv[], struct run *r, struct ferr *e);
void run_free(struct run *r);
/* The child exited with status 0. */
bool run_ok(const struct run *r);
/* A readable account of how the child ended, for messages: its stderr, or its exit status. */
const char *run_why(const struct run *r, char *buf, size_t size);

#endif
