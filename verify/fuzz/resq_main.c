/* SPDX-License-Identifier: Apache-2.0
 * The `resq` command's dispatcher (ref/cli/resq.c) with its main() renamed
 * resq_main, so that fuzz_cli.c can call the whole command in process. The
 * other ref/cli/ sources are compiled unchanged next to it. */
int resq_main(int argc, char **argv);
#define main resq_main
#include "../../ref/cli/resq.c"
