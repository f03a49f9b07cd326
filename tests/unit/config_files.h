/*
 * config_files.h - what the config unit tests (test_config.c,
 * test_config_errors.c) share: configuration text written to a temporary
 * file and loaded, to succeed or to fail with a given FILE:LINE message.
 */
#ifndef FULCRUM_TEST_CONFIG_FILES_H
#define FULCRUM_TEST_CONFIG_FILES_H
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

/* Writes TEXT to a new temporary file; returns its path (caller frees and unlinks). */
static inline char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/fulcrum-test-cfg-XXXXXX");
	int fd;
	FILE *f;

	cr_assert_not_null(path);
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static inline void drop_tmp(char *path)
{
	unlink(path);
	free(path);
}

/* Loads TEXT; the cfg must be valid. The caller frees it. */
static inline struct cfg *load_ok(const char *text)
{
	struct cfg_errors errs = {0};
	char *path = write_tmp(text);
	struct cfg *cfg = cfg_load(path, 0, &errs);

	for (size_t i = 0; i < errs.len; i++)
		cr_log_error("%s", errs.msgs[i]);
	cr_assert_not_null(cfg, "expected a valid configuration");
	cr_assert_eq(errs.len, 0);
	cfg_errors_free(&errs);
	drop_tmp(path);
	return cfg;
}

/* Loads TEXT; it must fail with a message "PATH:LINE: ...WHAT...". */
static inline void expect_error(const char *text, int line, const char *what)
{
	struct cfg_errors errs = {0};
	char *path = write_tmp(text);
	struct cfg *cfg = cfg_load(path, 0, &errs);
	char prefix[256];
	bool found = false;

	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	cr_assert_null(cfg, "expected an error \"%s\" at line %d", what, line);
	for (size_t i = 0; i < errs.len; i++) {
		if (strncmp(errs.msgs[i], prefix, strlen(prefix)) == 0 &&
		    strstr(errs.msgs[i], what))
			found = true;
	}
	if (!found) {
		for (size_t i = 0; i < errs.len; i++)
			cr_log_error("got: %s", errs.msgs[i]);
	}
	cr_assert(found, "no message \"%s...%s\"", prefix, what);
	cfg_errors_free(&errs);
	drop_tmp(path);
}

#define MIN_POOL     "[pool p]\nserver = s1 127.0.0.1:9001\n"
#define MIN_LISTENER "[listener l]\nbind = 127.0.0.1:18080\npool = p\n"

#endif
