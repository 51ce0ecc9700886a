/*
 * cmd_dp.c - the dp commands of the CLI (table cli_cmds_dp).
 */
#include "cli.h"

const cli_command cli_cmds_dp[] = {
    {0},
};
