/*
 * cmd_model.c - the model commands of the CLI (table cli_cmds_model).
 */
#include "cli.h"

const cli_command cli_cmds_model[] = {
    {0},
};
