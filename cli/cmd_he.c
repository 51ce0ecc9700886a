/*
 * cmd_he.c - the he commands of the CLI (table cli_cmds_he).
 */
#include "cli.h"

const cli_command cli_cmds_he[] = {
    {0},
};
