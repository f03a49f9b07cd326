/*
 * reload.c - the next generation from the configuration file, and the
 * [global] settings a reload applies (see reload.h). Main thread.
 */
#include "core/reload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/binds.h"
#include "core/gen.h"
#include "core/log.h"
#include "core/stats.h"

/* *DST becomes a copy of SRC (both may be NULL); kept as it was if that
 * copy cannot be made. */
static void copy_str(char **dst, const char *src)
{
	char *c = src ? strdup(src) : NULL;

	if (src && !c)
		return;
	free(*dst);
	*dst = c;
}

/* The [global] settings that wait for a restart: the new generation carries
 * the running values, so that it describes what runs and the next reload
 * compares against it. */
static void keep_restart_values(const struct cfg_global *run, struct cfg_global *b)
{
	b->workers = run->workers;
	b->buffer_size = run->buffer_size;
	b->pipe_size = run->pipe_size;
	b->backlog = run->backlog;
	b->cpu_affinity = run->cpu_affinity;
	copy_str(&b->user, run->user);
	copy_str(&b->admin, run->admin);
	b->admin_addr.ss = run->admin_addr.ss;
	b->admin_addr.len = run->admin_addr.len;
	copy_str(&b->admin_addr.text, run->admin_addr.text);
}

void reload_apply_globals(const struct cfg *running, struct cfg *cfg)
{
	const struct cfg_global *a = &running->global;
	struct cfg_global *b = &cfg->global;

	log_set_level(b->log_level);
	if (strcmp(a->access_log, b->access_log) != 0) {
		int err = log_access_open(b->access_log, b->access_log_format);
		if (err < 0)
			log_error("reload: cannot open the access log %s (%s); still writing to "
				  "the old one",
				  b->access_log, strerror(-err));
	} else if (a->access_log_format != b->access_log_format) {
		log_access_set_format(b->access_log_format);
	}
	if (a->workers != b->workers)
		log_warn("reload: workers = %d needs a restart; %d keep running", b->workers,
			 a->workers);
	if (a->buffer_size != b->buffer_size || a->pipe_size != b->pipe_size ||
	    a->backlog != b->backlog || a->cpu_affinity != b->cpu_affinity ||
	    (a->user == NULL) != (b->user == NULL) || (a->user && strcmp(a->user, b->user) != 0))
		log_warn("reload: new buffer_size, pipe_size, backlog, cpu_affinity or user values "
			 "take effect at the next restart");
	if ((a->admin == NULL) != (b->admin == NULL) ||
	    (a->admin && strcmp(a->admin, b->admin) != 0))
		log_warn("reload: a new admin address needs a restart; the API stays on %s",
			 a->admin ? a->admin : "(none)");
	keep_restart_values(a, b);
}

/* A new access log that cannot be opened fails the reload, as a bad key
 * would, rather than leaving the old log with a reload reported good. */
static int check_access_log(const struct cfg *old, const struct cfg *cfg, struct cfg_errors *errs)
{
	const char *target = cfg->global.access_log;
	int r;

	if (strcmp(old->global.access_log, target) == 0 || (r = log_access_check(target)) == 0)
		return 0;
	cfg_errors_add(errs, "%s:%d: cannot open the access log %s: %s", cfg->path,
		       cfg->global.access_log_line, target, strerror(-r));
	return r;
}

/* A pipe (-c <(...)) would give nothing the second time, which reads as a
 * file with no listener, and opening a FIFO waits for a writer, holding up
 * the main thread (signals, the admin API). */
int reload_file_rereadable(const char *path, const char *what, struct cfg_errors *errs)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		cfg_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		cfg_errors_add(errs, "%s: is a directory", path);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		cfg_errors_add(errs,
			       "%s: not a regular file: a %s reads it again; restart to change it",
			       path, what);
		return -1;
	}
	return 0;
}

struct gen *reload_prepare(const struct cfg *running, const struct options *opt, uint64_t number,
			   struct cfg_errors *errs)
{
	if (reload_file_rereadable(opt->config, "reload", errs) < 0)
		return NULL;
	struct cfg *cfg = cfg_load(opt->config, opt->workers, errs);
	if (!cfg)
		return NULL;
	if (cfg->n_listeners == 0) {
		/* An emptied or cut file; HAProxy refuses one as well. */
		cfg_errors_add(errs,
			       "%s: no [listener] section: the reload would close every listener",
			       opt->config);
	} else if (!stats_listener_names_fit(cfg)) {
		cfg_errors_add(errs,
			       "%s: more than %d listener names since start-up; a restart "
			       "forgets the old ones",
			       opt->config, STATS_LISTENER_SLOTS);
	} else if (check_access_log(running, cfg, errs) == 0 && binds_prepare(cfg, errs) == 0) {
		struct gen *g = gen_new(cfg, number);
		if (g)
			return g;
		binds_abort();
		cfg_errors_add(errs, "%s: out of memory", opt->config);
	}
	cfg_free(cfg);
	return NULL;
}
