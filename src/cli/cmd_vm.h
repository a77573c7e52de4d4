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

/* HA options (cmd_vm_ha.c), shared by vm ha enable and vm create; values above any other
 * option's. */
enum {
    CLI_HA_PRIORITY = 600,
    CLI_HA_PREFERRED,
    CLI_HA_POSSIBLE,
    CLI_HA_ANTI,
    CLI_HA_ANTI_STRICT,
    CLI_HA_RESTART_MAX,
    CLI_HA_PERIOD,
    CLI_HA_FAILBACK,
};
#define CLI_HA_LONGOPTS                                                                            \
    {"preferred", required_argument, NULL, CLI_HA_PREFERRED},                                      \
        {"possible", required_argument, NULL, CLI_HA_POSSIBLE},                                    \
        {"anti-affinity", required_argument, NULL, CLI_HA_ANTI},                                   \
        {"anti-affinity-strict", no_argument, NULL, CLI_HA_ANTI_STRICT},                           \
        {"restart-max", required_argument, NULL, CLI_HA_RESTART_MAX},                              \
        {"restart-period", required_argument, NULL, CLI_HA_PERIOD},                                \
    {                                                                                              \
        "failback", required_argument, NULL, CLI_HA_FAILBACK                                       \
    }
/* Puts option c's value arg into the HA settings object ha. EXIT_OK or a usage error. */
int cli_ha_option(const char *cmd, int c, const char *arg, json_t *ha);
/* The help lines of CLI_HA_LONGOPTS. */
const char *cli_ha_options_help(void);
/* ferry vm ha ... */
int cmd_vm_ha(struct cli *cli, int argc, char **argv);
/* ferry vm failovers: the last failover of each VM (cmd_vm_ha.c). */
int cmd_vm_failovers(struct cli *cli, int argc, char **argv);

#endif
