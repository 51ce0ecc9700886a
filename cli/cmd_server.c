/*
 * cmd_server.c - the server commands of the CLI (table cli_cmds_server).
 */
#include "cli.h"

const cli_command cli_cmds_server[] = {
    {0},
};
