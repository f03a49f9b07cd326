/*
 * cli.h - the command line (SPEC §1):
 *   fulcrum [-c FILE] [-t] [-w N] [-p PIDFILE] [-v] [-h]
 * Main thread, at start-up.
 */
#ifndef FULCRUM_CLI_H
#define FULCRUM_CLI_H

#include <stdbool.h>

#define DEFAULT_CONFIG "/etc/fulcrum/fulcrum.ini"

struct options {
	const char *config;
	const char *pidfile;
	int workers; /* -w; 0 when not given */
	bool check_only; /* -t */
};

/* Reads the command line into O. -v and -h (and --version, --help) answer
 * on stdout and exit 0 whatever else is there; a bad command line gets one
 * line on stderr and -1. */
int cli_parse(int argc, char **argv, struct options *o);

#endif
