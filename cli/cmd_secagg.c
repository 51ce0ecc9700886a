/*
 * cmd_secagg.c - the secagg commands of the CLI (table cli_cmds_secagg).
 */
#include "cli.h"

const cli_command cli_cmds_secagg[] = {
    {0},
};
