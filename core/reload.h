/*
 * reload.h - reading the configuration file again (SIGHUP, POST /reload):
 * building the next generation from it, or the errors that keep the
 * running one, and the [global] settings a reload can apply. Publishing
 * the generation is main.c's (publish()).
 *
 * Thread: main only.
 */
#ifndef FULCRUM_RELOAD_H
#define FULCRUM_RELOAD_H

#include <stdint.h>

#include "config/config.h"
#include "core/cli.h"

struct gen;

/* Whether PATH can be read again: a regular file (a pipe would give
 * nothing the second time, and a FIFO would hold the main thread up). WHAT
 * names the reader ("reload", "binary upgrade") in the error. 0, or -1
 * with ERRS filled. */
int reload_file_rereadable(const char *path, const char *what, struct cfg_errors *errs);

/* Loads OPT's file into generation NUMBER, with its new listening sockets
 * prepared (binds_commit or binds_abort next), checked against RUNNING.
 * NULL with ERRS filled when it cannot run. */
struct gen *reload_prepare(const struct cfg *running, const struct options *opt, uint64_t number,
			   struct cfg_errors *errs);

/* Applies the [global] settings of CFG that a reload can change; the ones
 * that wait for a restart keep RUNNING's values in CFG, with a warning. */
void reload_apply_globals(const struct cfg *running, struct cfg *cfg);

#endif
