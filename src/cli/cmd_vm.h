/* SPDX-License-Identifier: MIT */
/* What the files of ferry vm (cmd_vm.c, cmd_vm_create.c) share: a VM's API path, its state. */
#ifndef FERRY_CLI_CMD_VM_H
#define FERRY_CLI_CMD_VM_H

#include <jansson.h>

#include "cli/cmd.h"

/* "/v1/vms/NAME" + suffix, with NAME percent-escaped. Caller frees; NULL on ENOMEM. */
char *cmd_vm__path(const char *name, const char *suffix);

/* Prints vm as JSON with -o json, else "NAME: STATE" (and the reason of a failed VM).
 * Returns EXIT_FAIL if the VM's state is "failed", else EXIT_OK. */
int cmd_vm__print_state(struct cli *cli, const json_t *vm);

#endif
