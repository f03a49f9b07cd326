/*
 * config.c - cfg_load(): reads the INI file with inih into a struct cfg,
 * collecting every error as "FILE:LINE: message"; cfg_free() and lookups.
 *
 * Runs on the main thread (start-up, SIGHUP, POST /reload). inih's options
 * are process globals in Debian's build, so they are set before each parse;
 * only this file calls inih.
 *
 * inih's handler is not told the line number, and it is not called for a
 * section header. So lines reach inih through our own reader, which counts
 * them and opens sections itself: when the handler runs, ld->line and
 * ld->sec/ld->idx describe the key inih is handing over. That also makes
 * empty and duplicate sections visible.
 */
#include "config/config.h"
#include "config/loader.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/acl.h"
#include "core/auth.h"
#include "core/hosts.h"
#include "core/log.h"

/* Longest line accepted, newline included; longer ones are an error. */
#define CFG_MAX_LINE 4096
/* A configuration file is small; past this it is something else. */
#define CFG_MAX_FILE (16 << 20)

static void errs_vadd(struct cfg_errors *errs, const char *prefix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void errs_vadd(struct cfg_errors *errs, const char *prefix, const char *fmt, va_list ap)
{
	char body[1024];
	char *msg;

	vsnprintf(body, sizeof(body), fmt, ap);
	if (errs->len == errs->cap) {
		size_t cap = errs->cap ? errs->cap * 2 : 8;
		char **msgs = realloc(errs->msgs, cap * sizeof(*msgs));
		if (!msgs)
			return;
		errs->msgs = msgs;
		errs->cap = cap;
	}
	if (asprintf(&msg, "%s%s", prefix, body) < 0)
		return;
	errs->msgs[errs->len++] = msg;
}

void cfg_errors_add(struct cfg_errors *errs, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errs_vadd(errs, "", fmt, ap);
	va_end(ap);
}

void cfg_errors_free(struct cfg_errors *errs)
{
	for (size_t i = 0; i < errs->len; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->len = errs->cap = 0;
}

static void ld_verr(struct cfg_loader *ld, int line, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void ld_verr(struct cfg_loader *ld, int line, const char *fmt, va_list ap)
{
	char prefix[512];
	size_t before = ld->errs->len;

	snprintf(prefix, sizeof(prefix), "%s:%d: ", ld->cfg->path, line);
	errs_vadd(ld->errs, prefix, fmt, ap);
	if (ld->errs->len == before)
		ld->oom = true;
}

void cfg_ld_err(struct cfg_loader *ld, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_verr(ld, ld->line, fmt, ap);
	va_end(ap);
}

void cfg_ld_err_at(struct cfg_loader *ld, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_verr(ld, line, fmt, ap);
	va_end(ap);
}

static void ld_vwarn(struct cfg_loader *ld, int line, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_warn("%s:%d: warning: %s", ld->cfg->path, line, msg);
}

void cfg_ld_warn(struct cfg_loader *ld, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_vwarn(ld, ld->line, fmt, ap);
	va_end(ap);
}

void cfg_ld_warn_at(struct cfg_loader *ld, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_vwarn(ld, line, fmt, ap);
	va_end(ap);
}

char *cfg_ld_strdup(struct cfg_loader *ld, const char *s)
{
	char *d = strdup(s);

	if (!d)
		ld->oom = true;
	return d;
}

void *cfg_grow(void *arr, size_t n, size_t size)
{
	char *bigger = realloc(arr, (n + 1) * size);

	if (bigger)
		memset(bigger + n * size, 0, size);
	return bigger;
}

int cfg_find_pool(const struct cfg *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_pools; i++) {
		if (strcmp(cfg->pools[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

int cfg_find_listener(const struct cfg *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		if (strcmp(cfg->listeners[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

static int find_route(const struct cfg *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_routes; i++) {
		if (strcmp(cfg->routes[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

/* Adds a zeroed pool, listener or route, with its key-line table, and makes
 * it the current section. 0 or -ENOMEM. */
static int add_object(struct cfg_loader *ld, enum cfg_sec sec)
{
	struct cfg *cfg = ld->cfg;
	struct cfg_key_lines **keys;
	size_t *n;
	void *arr;

	if (sec == CFG_SEC_POOL) {
		n = &cfg->n_pools;
		keys = &ld->pool_keys;
		if ((arr = cfg_grow(cfg->pools, *n, sizeof(*cfg->pools))))
			cfg->pools = arr;
	} else if (sec == CFG_SEC_LISTENER) {
		n = &cfg->n_listeners;
		keys = &ld->listener_keys;
		if ((arr = cfg_grow(cfg->listeners, *n, sizeof(*cfg->listeners))))
			cfg->listeners = arr;
	} else {
		n = &cfg->n_routes;
		keys = &ld->route_keys;
		if ((arr = cfg_grow(cfg->routes, *n, sizeof(*cfg->routes))))
			cfg->routes = arr;
	}
	if (!arr || !(arr = cfg_grow(*keys, *n, sizeof(**keys))))
		return -ENOMEM;
	*keys = arr;
	ld->idx = (*n)++;
	ld->sec = sec;
	return 0;
}

/* Sets the new object's name, line and defaults. */
static int init_object(struct cfg_loader *ld, const char *name)
{
	char *copy = cfg_ld_strdup(ld, name);

	if (!copy)
		return -ENOMEM;
	switch (ld->sec) {
	case CFG_SEC_POOL:
		ld->cfg->pools[ld->idx].name = copy;
		ld->cfg->pools[ld->idx].line = ld->line;
		return cfg_defaults_pool(&ld->cfg->pools[ld->idx]);
	case CFG_SEC_LISTENER:
		ld->cfg->listeners[ld->idx].name = copy;
		ld->cfg->listeners[ld->idx].line = ld->line;
		return cfg_defaults_listener(&ld->cfg->listeners[ld->idx]);
	default:
		ld->cfg->routes[ld->idx].name = copy;
		ld->cfg->routes[ld->idx].line = ld->line;
		ld->cfg->routes[ld->idx].listener = -1;
		ld->cfg->routes[ld->idx].pool = -1;
		return 0;
	}
}

/* The line of the existing section SEC NAME, or 0. */
static int section_line(const struct cfg_loader *ld, enum cfg_sec sec, const char *name)
{
	int i;

	switch (sec) {
	case CFG_SEC_POOL:
		i = cfg_find_pool(ld->cfg, name);
		return i < 0 ? 0 : ld->cfg->pools[i].line;
	case CFG_SEC_LISTENER:
		i = cfg_find_listener(ld->cfg, name);
		return i < 0 ? 0 : ld->cfg->listeners[i].line;
	default:
		i = find_route(ld->cfg, name);
		return i < 0 ? 0 : ld->cfg->routes[i].line;
	}
}

static enum cfg_sec section_kind(const char *word)
{
	if (strcmp(word, "global") == 0)
		return CFG_SEC_GLOBAL;
	if (strcmp(word, "pool") == 0)
		return CFG_SEC_POOL;
	if (strcmp(word, "listener") == 0)
		return CFG_SEC_LISTENER;
	if (strcmp(word, "route") == 0)
		return CFG_SEC_ROUTE;
	return CFG_SEC_BAD;
}

/*
 * Opens the section whose header is the text TITLE between the brackets,
 * e.g. "pool web". On any error the section is CFG_SEC_BAD, so its keys
 * do not each add a message of their own.
 */
static void open_section(struct cfg_loader *ld, char *title)
{
	char *name = title + strcspn(title, " \t");
	enum cfg_sec sec;
	int prev;

	if (*name) {
		*name++ = '\0';
		name += strspn(name, " \t");
	}
	sec = section_kind(title);
	ld->sec = CFG_SEC_BAD;
	if (sec == CFG_SEC_BAD) {
		cfg_ld_err(ld, "unknown section [%s] (expected global, pool, listener or route)",
			   title);
	} else if (sec == CFG_SEC_GLOBAL) {
		if (*name)
			cfg_ld_err(ld, "[global] takes no name");
		else if (ld->global_seen)
			cfg_ld_err(ld, "duplicate section [global] (first at line %d)",
				   ld->global_line);
		else {
			ld->sec = CFG_SEC_GLOBAL;
			ld->global_seen = true;
			ld->global_line = ld->line;
		}
	} else if (!cfg_is_name(name)) {
		cfg_ld_err(ld, "bad section name \"%s\" in [%s ...] (use letters, digits, _ . -)",
			   name, title);
	} else if ((prev = section_line(ld, sec, name)) > 0) {
		cfg_ld_err(ld, "duplicate section [%s %s] (first at line %d)", title, name, prev);
	} else if (add_object(ld, sec) < 0 || init_object(ld, name) < 0) {
		ld->oom = true;
		ld->sec = CFG_SEC_BAD;
	}
}

/* Looks at a raw line for a section header "[...]" and opens that section. */
static void scan_header(struct cfg_loader *ld, const char *line)
{
	char title[CFG_MAX_LINE];
	const char *s = line + strspn(line, " \t");
	const char *end;
	size_t len;

	if (*s != '[')
		return;
	end = strchr(s, ']');
	if (!end) {
		cfg_ld_err(ld, "section header without ']'");
		ld->sec = CFG_SEC_BAD;
		return;
	}
	s++;
	s += strspn(s, " \t");
	len = (size_t)(end - s);
	while (len > 0 && isblank((unsigned char)s[len - 1]))
		len--;
	memcpy(title, s, len);
	title[len] = '\0';
	/* After the ']' only a comment may follow, which inih would drop
	 * whatever it said. */
	const char *rest = end + 1 + strspn(end + 1, " \t\r\n");
	if (*rest && *rest != '#' && *rest != ';') {
		cfg_ld_err(ld, "text after the section header: \"%.*s\"",
			   (int)strcspn(rest, "\r\n"), rest);
		ld->sec = CFG_SEC_BAD;
		return;
	}
	open_section(ld, title);
}

/*
 * inih's line reader (fgets-like): hands inih one whole line of the file,
 * counts it, and opens the section when it is a header. A line longer than
 * NUM is reported and replaced by an empty one; a file that goes on past
 * CFG_MAX_FILE bytes (/dev/zero, a log given by mistake) is reported and
 * read no further.
 */
static char *read_line(char *str, int num, void *stream)
{
	struct cfg_loader *ld = stream;
	size_t n = 0, len = 0; /* bytes kept in STR; bytes in the line */
	int ch = EOF;

	while (len == 0 || str[n - 1] != '\n') {
		ch = getc_unlocked(ld->file);
		if (ch == EOF)
			break;
		if (++ld->bytes > CFG_MAX_FILE) {
			ld->line++;
			cfg_ld_err(ld, "the file goes on past %d MiB: not a configuration file",
				   CFG_MAX_FILE >> 20);
			return NULL;
		}
		len++;
		if (n + 1 < (size_t)num)
			str[n++] = (char)ch;
		else if (ch == '\n')
			break;
	}
	if (len == 0) {
		ld->read_errno = errno;
		return NULL;
	}
	str[n] = '\0';
	ld->line++;
	if (ld->line == 1 && n >= 3 && memcmp(str, "\xEF\xBB\xBF", 3) == 0) {
		memmove(str, str + 3, n - 2);
		n -= 3;
		len -= 3;
	}
	if (len >= (size_t)num) {
		cfg_ld_err(ld, "line longer than %d characters", num - 2);
		snprintf(str, (size_t)num, "\n");
		return str;
	}
	if (memchr(str, '\0', n)) {
		/* inih would see the line end there and the rest would vanish. */
		cfg_ld_err(ld, "NUL byte in the line");
		snprintf(str, (size_t)num, "\n");
		return str;
	}
	scan_header(ld, str);
	return str;
}

/* inih's handler: every NAME = VALUE line. Always returns 1 (keep going). */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_loader *ld = user;

	(void)section; /* ld->sec is the truth, see the top of this file */
	if (!value) {
		cfg_ld_err(ld, "expected KEY = VALUE, got \"%s\"", name);
		return 1;
	}
	switch (ld->sec) {
	case CFG_SEC_NONE:
		cfg_ld_err(ld, "key \"%s\" outside of any section", name);
		break;
	case CFG_SEC_BAD:
		break;
	default:
		cfg_keys_apply(ld, name, value);
		break;
	}
	return 1;
}

/* Sets inih's process-wide options the way this reader expects them. */
static void ini_setup(void)
{
	ini_allow_multiline = false; /* an indented "key = value" is a key of its own */
	ini_allow_no_value = true; /* so a line without '=' reaches on_key and gets a line */
	ini_allow_inline_comments = true;
	ini_inline_comment_prefixes = ";#";
	ini_stop_on_first_error = false;
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_initial_alloc = CFG_MAX_LINE;
	ini_max_line = CFG_MAX_LINE;
}

static int line_of(const char *msg, size_t path_len)
{
	return atoi(msg + path_len + 1);
}

/* Orders this load's messages by line number, keeping the order within a line. */
static void sort_errors(struct cfg_loader *ld)
{
	char **m = ld->errs->msgs + ld->first_err;
	size_t n = ld->errs->len - ld->first_err;
	size_t plen = strlen(ld->cfg->path);

	for (size_t i = 1; i < n; i++) {
		char *cur = m[i];
		int line = line_of(cur, plen);
		size_t j = i;

		while (j > 0 && line_of(m[j - 1], plen) > line) {
			m[j] = m[j - 1];
			j--;
		}
		m[j] = cur;
	}
}

static void parse_file(struct cfg_loader *ld)
{
	int rc;

	ini_setup();
	rc = ini_parse_stream(read_line, ld, on_key, ld);
	if (rc == -2)
		ld->oom = true;
	else if (rc > 0 && ld->errs->len == ld->first_err)
		cfg_ld_err_at(ld, rc, "syntax error");
	if (ferror(ld->file))
		cfg_ld_err(ld, "read error: %s", strerror(ld->read_errno));
}

static void loader_free(struct cfg_loader *ld)
{
	for (size_t i = 0; i < ld->n_refs; i++)
		free(ld->refs[i].name);
	free(ld->refs);
	free(ld->pool_keys);
	free(ld->listener_keys);
	free(ld->route_keys);
}

/* The hosts file goes with a configuration that has a forward listener:
 * read here, on the main thread, not by c-ares on a worker's (hosts.h). */
static void load_hosts(struct cfg *cfg)
{
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		if (cfg->listeners[i].mode != MODE_FORWARD)
			continue;
		int err = hosts_load(&cfg->hosts);
		if (err < 0)
			log_warn("cannot read the hosts file: %s; forward listeners resolve "
				 "every name but localhost through DNS",
				 strerror(-err));
		return;
	}
}

struct cfg *cfg_load(const char *path, int workers_override, struct cfg_errors *errs)
{
	struct cfg_loader ld = {.errs = errs, .first_err = errs->len};
	struct cfg *cfg = calloc(1, sizeof(*cfg));

	if (!cfg || !(cfg->path = strdup(path)) || cfg_defaults_global(&cfg->global) < 0) {
		cfg_errors_add(errs, "%s: out of memory", path);
		cfg_free(cfg);
		return NULL;
	}
	ld.cfg = cfg;
	/* The file itself may be a pipe (fulcrum -c <(...)), but no directory. */
	ld.file = fopen(path, "re");
	struct stat st;
	int err = 0;
	if (!ld.file || fstat(fileno(ld.file), &st) < 0)
		err = -errno;
	else if (S_ISDIR(st.st_mode))
		err = -EISDIR;
	if (err < 0) {
		if (ld.file)
			fclose(ld.file);
		cfg_errors_add(errs, "%s: cannot open: %s", path, strerror(-err));
		cfg_free(cfg);
		return NULL;
	}
	parse_file(&ld);
	fclose(ld.file);
	cfg_validate(&ld, workers_override);
	sort_errors(&ld);
	if (ld.oom)
		cfg_errors_add(errs, "%s: out of memory", path);
	loader_free(&ld);
	if (ld.oom || errs->len > ld.first_err) {
		cfg_free(cfg);
		return NULL;
	}
	load_hosts(cfg);
	return cfg;
}

static void free_pool(struct cfg_pool *p)
{
	free(p->name);
	free(p->hash_key_name);
	free(p->sticky_cookie);
	for (size_t i = 0; i < p->n_servers; i++) {
		free(p->servers[i].name);
		free(p->servers[i].host);
		cfg_addr_free(&p->servers[i].addr);
	}
	free(p->servers);
	free(p->check_path);
	free(p->check_host);
	free(p->tls_ca);
	free(p->tls_sni);
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void free_acl(struct cfg_acl_entry *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i].pattern);
	free(a);
}

static void free_listener(struct cfg_listener *l)
{
	free(l->name);
	for (size_t i = 0; i < l->n_binds; i++)
		cfg_addr_free(&l->binds[i]);
	free(l->binds);
	free(l->pool_name);
	free_strv(l->tls_certs, l->n_tls_certs);
	free_strv(l->tls_keys, l->n_tls_keys);
	free(l->tls_ciphers);
	free(l->alpn);
	free_acl(l->allow, l->n_allow);
	free_acl(l->deny, l->n_deny);
	free(l->connect_ports);
	free(l->auth_file);
	acl_free(l->acl);
	auth_db_free(l->auth);
}

static void free_route(struct cfg_route *r)
{
	free(r->name);
	free(r->host);
	free(r->path_prefix);
	free(r->header_name);
	free(r->header_value);
}

void cfg_free(struct cfg *cfg)
{
	if (!cfg)
		return;
	hosts_free(cfg->hosts);
	free(cfg->global.access_log);
	free(cfg->global.user);
	free(cfg->global.admin);
	cfg_addr_free(&cfg->global.admin_addr);
	free(cfg->global.admin_token);
	for (size_t i = 0; i < cfg->n_pools; i++)
		free_pool(&cfg->pools[i]);
	free(cfg->pools);
	for (size_t i = 0; i < cfg->n_listeners; i++)
		free_listener(&cfg->listeners[i]);
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->n_routes; i++)
		free_route(&cfg->routes[i]);
	free(cfg->routes);
	free(cfg->path);
	free(cfg);
}
