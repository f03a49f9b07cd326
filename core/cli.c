/*
 * cli.c - the command line (SPEC §1, see cli.h).
 */
#include "core/cli.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/opensslv.h>

#include "core/version.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: fulcrum [-c FILE] [-t] [-w N] [-p PIDFILE] [-v] [-h]\n"
		   "  -c FILE   configuration file (default: " DEFAULT_CONFIG ")\n"
		   "  -t        check the configuration and exit (0 valid, 1 invalid)\n"
		   "  -w N      override [global] workers (1-1024, or auto)\n"
		   "  -p FILE   write the master pid to FILE\n"
		   "  -v        print the version and build features and exit\n"
		   "  -h        print this help and exit\n");
}

static void print_version(void)
{
	printf("fulcrum %s\n", FULCRUM_VERSION);
	printf("features: TLS (%s)", OPENSSL_VERSION_TEXT);
#ifdef FULCRUM_JEMALLOC
	printf(" jemalloc");
#endif
	printf(" splice epoll SO_REUSEPORT\n");
}

/* -w's value: 1 to 1024 workers, or auto (one per online CPU). Returns the
 * count, or -1. */
static int parse_workers(const char *arg)
{
	char *end;

	if (strcmp(arg, "auto") == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		return cpus < 1 ? 1 : (int)(cpus > 1024 ? 1024 : cpus);
	}
	if (!isdigit((unsigned char)arg[0]))
		return -1; /* strtol would take " 2" and "+2" */
	long n = strtol(arg, &end, 10);
	return *end || n < 1 || n > 1024 ? -1 : (int)n;
}

/* -v or -h (or --version, --help) anywhere on the command line, but as the
 * value of -c, -w or -p: answered, and the process exits 0. Another long
 * option: one line on stderr and -1 (getopt would see "-" and letters). */
static int answer_version_or_help(int argc, char **argv)
{
	const char *unknown = NULL;

	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-c") == 0 || strcmp(a, "-w") == 0 || strcmp(a, "-p") == 0) {
			i++;
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
			print_version();
			exit(0);
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strncmp(a, "--", 2) == 0 && !unknown) {
			unknown = a;
		}
	}
	if (unknown) {
		fprintf(stderr, "fulcrum: unknown option %s (see fulcrum -h)\n", unknown);
		return -1;
	}
	return 0;
}

int cli_parse(int argc, char **argv, struct options *o)
{
	const char *workers = NULL;
	int ch;

	if (answer_version_or_help(argc, argv) < 0)
		return -1;
	o->config = DEFAULT_CONFIG;
	opterr = 0; /* our own one-line messages */
	while ((ch = getopt(argc, argv, ":c:tw:p:vh")) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 't':
			o->check_only = true;
			break;
		case 'w':
			workers = optarg;
			break;
		case 'p':
			o->pidfile = optarg;
			break;
		case 'v':
			print_version();
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			fprintf(stderr, "fulcrum: option -%c needs a value (see fulcrum -h)\n",
				optopt);
			return -1;
		default:
			fprintf(stderr, "fulcrum: unknown option -%c (see fulcrum -h)\n", optopt);
			return -1;
		}
	}
	if (!*o->config || (o->pidfile && !*o->pidfile)) {
		fprintf(stderr, "fulcrum: option -%c needs a value, got \"\" (see fulcrum -h)\n",
			*o->config ? 'p' : 'c');
		return -1;
	}
	if (optind < argc) {
		fprintf(stderr, "fulcrum: unexpected argument \"%s\" (see fulcrum -h)\n",
			argv[optind]);
		return -1;
	}
	if (workers) {
		o->workers = parse_workers(workers);
		if (o->workers < 0) {
			fprintf(stderr,
				"fulcrum: -w: bad worker count \"%s\" (1 to 1024, or auto)\n",
				workers);
			return -1;
		}
	}
	return 0;
}
