/*
 * keys.c - the keys of [global] and [pool NAME]: their tables, defaults and
 * parsers (server lines, health checks, hash keys); helpers every key
 * table uses (cfg_set_str, cfg_add_ref).
 *
 * Runs on the main thread inside cfg_load(). A key that is not marked
 * repeatable may appear once per section: a second line is an error (it is
 * almost always a mistake, and "last one wins" would hide it). Keys that add
 * entries (server, bind, tls_cert, tls_key, allow, deny) may repeat.
 * Timeouts must be more than 0, except graceful_timeout, fail_timeout and
 * slow_start, where 0 means "at once" or "off".
 */
#include "config/config.h"
#include "config/loader.h"
#include "core/http/parser.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

static_assert(sizeof(enum cfg_balance) == sizeof(int), "CFG_KT_ENUM writes an int");

int cfg_set_str(struct cfg_loader *ld, char **dst, const char *value)
{
	char *copy = NULL;

	if (*value && !(copy = cfg_ld_strdup(ld, value)))
		return -ENOMEM;
	free(*dst);
	*dst = copy;
	return 0;
}

int cfg_add_ref(struct cfg_loader *ld, enum cfg_ref_kind kind, const char *name)
{
	struct cfg_ref *r = cfg_grow(ld->refs, ld->n_refs, sizeof(*ld->refs));

	if (!r) {
		ld->oom = true;
		return -ENOMEM;
	}
	ld->refs = r;
	r = &ld->refs[ld->n_refs];
	r->name = cfg_ld_strdup(ld, name);
	if (!r->name)
		return -ENOMEM;
	r->kind = kind;
	r->idx = ld->idx;
	r->line = ld->line;
	ld->n_refs++;
	return 0;
}

/* ---- [global] ---- */

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

static int g_workers(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_global *g = obj;
	long long n;

	if (strcmp(value, "auto") == 0) {
		g->workers = -1; /* resolved by cfg_validate, after -w */
		return 0;
	}
	if (cfg_parse_int(value, 1, 1024, &n) < 0) {
		cfg_ld_err(ld, "bad workers \"%s\" (expected auto or 1 to 1024)", value);
		return -EINVAL;
	}
	g->workers = (int)n;
	return 0;
}

static int g_access_log(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_global *g = obj;

	if (*value == '\0') {
		cfg_ld_err(ld, "empty access_log (expected off, stderr, stdout or a path)");
		return -EINVAL;
	}
	g->access_log_line = ld->line;
	return cfg_set_str(ld, &g->access_log, value);
}

static int g_user(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_global *g = obj;

	if (*value && !getpwnam(value)) {
		cfg_ld_err(ld, "unknown user \"%s\"", value);
		return -EINVAL;
	}
	return cfg_set_str(ld, &g->user, value);
}

static int g_admin(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_global *g = obj;
	struct cfg_addr addr = {0};
	char why[256];

	if (*value && cfg_parse_bind_why(value, &addr, why, sizeof(why)) < 0) {
		cfg_ld_err(ld, "bad address \"%s\" for admin: %s", value, why);
		return -EINVAL;
	}
	cfg_addr_free(&g->admin_addr);
	g->admin_addr = addr;
	return cfg_set_str(ld, &g->admin, value);
}

static int g_cpu_affinity(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_global *g = obj;

	if (strcmp(value, "auto") == 0) {
		g->cpu_affinity = true;
		return 0;
	}
	if (cfg_parse_bool(value, &g->cpu_affinity) < 0) {
		cfg_ld_err(ld, "bad cpu_affinity \"%s\" (expected off or auto)", value);
		return -EINVAL;
	}
	return 0;
}

#define G struct cfg_global
const struct cfg_key_def cfg_global_keys[] = {
	CFG_K_FN("workers", g_workers),
	{"max_connections", CFG_KT_U64, false, offsetof(G, max_connections), 1, INT64_MAX, NULL,
	 NULL},
	CFG_K_ENUM(G, "log_level", log_level, log_levels),
	CFG_K_FN("access_log", g_access_log),
	CFG_K_ENUM(G, "access_log_format", access_log_format, log_formats),
	CFG_K_FN("user", g_user),
	CFG_K_FN("admin", g_admin),
	CFG_K_STR(G, admin_token),
	CFG_K_DUR(G, graceful_timeout, 0),
	CFG_K_FN("cpu_affinity", g_cpu_affinity),
	CFG_K_SIZE(G, "buffer_size", buffer_size, 1024, 64 << 20),
	CFG_K_SIZE(G, "pipe_size", pipe_size, 4096, 1 << 30),
	CFG_K_INT(G, backlog, 1, INT_MAX),
	CFG_K_END,
};
#undef G
static_assert(sizeof(cfg_global_keys) / sizeof(cfg_global_keys[0]) <= CFG_MAX_KEYS, "too many");

int cfg_defaults_global(struct cfg_global *g)
{
	g->workers = -1;
	g->max_connections = 100000;
	g->log_level = LOG_LVL_INFO;
	g->access_log_format = LOG_FMT_TEXT;
	g->graceful_timeout_ms = 30 * 1000;
	g->buffer_size = 16 << 10;
	g->pipe_size = 256 << 10;
	g->backlog = 4096;
	g->access_log = strdup("stderr");
	g->admin = strdup("127.0.0.1:9900");
	if (!g->access_log || !g->admin || cfg_parse_addr(g->admin, &g->admin_addr) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- [pool NAME] ---- */

static const char *const balances[] = {
	"roundrobin", "leastconn", "random", "p2c", "source", "maglev", "ring", NULL,
};

static int p_hash_key(struct cfg_loader *ld, void *obj, const char *value)
{
	static const struct {
		const char *word;
		enum cfg_hash_key key;
	} plain[] = {
		{"client_ip", HKEY_CLIENT_IP},
		{"uri", HKEY_URI},
		{"path", HKEY_PATH},
		{"host", HKEY_HOST},
	};
	struct cfg_pool *p = obj;

	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		if (strcmp(value, plain[i].word) == 0) {
			p->hash_key = plain[i].key;
			return 0;
		}
	}
	if (strncmp(value, "header:", 7) == 0 && cfg_is_token(value + 7)) {
		p->hash_key = HKEY_HEADER;
		return cfg_set_str(ld, &p->hash_key_name, value + 7);
	}
	if (strncmp(value, "cookie:", 7) == 0 && cfg_is_token(value + 7)) {
		p->hash_key = HKEY_COOKIE;
		return cfg_set_str(ld, &p->hash_key_name, value + 7);
	}
	cfg_ld_err(ld,
		   "bad hash_key \"%s\" (expected client_ip, header:NAME, cookie:NAME, uri, path "
		   "or host)",
		   value);
	return -EINVAL;
}

#define MAGLEV_MIN 65537
#define MAGLEV_MAX (1 << 24)

static int p_maglev_size(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_pool *p = obj;
	long long n;

	if (cfg_parse_int(value, MAGLEV_MIN, MAGLEV_MAX, &n) < 0 || !cfg_is_prime((uint64_t)n)) {
		cfg_ld_err(ld, "maglev_table_size must be a prime from %d to %d, got \"%s\"",
			   MAGLEV_MIN, MAGLEV_MAX, value);
		return -EINVAL;
	}
	p->maglev_table_size = (uint32_t)n;
	return 0;
}

static int p_balance_factor(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_pool *p = obj;
	long long n;

	if (cfg_parse_int(value, 0, 10000, &n) < 0 || (n > 0 && n < 100)) {
		cfg_ld_err(ld,
			   "bad hash_balance_factor \"%s\" (expected 0 for off, or 100 to 10000)",
			   value);
		return -EINVAL;
	}
	p->hash_balance_factor = (int)n;
	return 0;
}

static int p_sticky(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_pool *p = obj;

	if (*value && !cfg_is_token(value)) {
		cfg_ld_err(ld, "bad sticky_cookie \"%s\" (expected a cookie name)", value);
		return -EINVAL;
	}
	return cfg_set_str(ld, &p->sticky_cookie, value);
}

static int p_tls_ca(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_pool *p = obj;
	const char *why;

	if (*value && (why = cfg_file_unreadable(value))) {
		cfg_ld_err(ld, "cannot read tls_ca \"%s\": %s", value, why);
		return -EINVAL;
	}
	return cfg_set_str(ld, &p->tls_ca, value);
}

/* Parses "200" or "200-399" into the pool's expected status range. */
static int parse_expect(struct cfg_pool *p, const char *s)
{
	char lo_s[8];
	const char *dash = strchr(s, '-');
	size_t lo_len = dash ? (size_t)(dash - s) : strlen(s);
	long long lo, hi;

	if (lo_len >= sizeof(lo_s))
		return -EINVAL;
	memcpy(lo_s, s, lo_len);
	lo_s[lo_len] = '\0';
	if (cfg_parse_int(lo_s, 100, 599, &lo) < 0)
		return -EINVAL;
	hi = lo;
	if (dash && (cfg_parse_int(dash + 1, 100, 599, &hi) < 0 || hi < lo))
		return -EINVAL;
	p->check_expect_lo = (int)lo;
	p->check_expect_hi = (int)hi;
	return 0;
}

/* The words after "http": GET /path [expect=...] [host=...]. BUF is writable. */
static int parse_http_check(struct cfg_loader *ld, struct cfg_pool *p, char *buf)
{
	char *save = NULL;
	char *method = strtok_r(buf, " \t", &save);
	char *path = strtok_r(NULL, " \t", &save);
	char *opt;

	if (!method || strcmp(method, "GET") != 0 || !path || path[0] != '/' ||
	    !cfg_is_visible(path))
		return -EINVAL;
	if (cfg_set_str(ld, &p->check_path, path) < 0)
		return -ENOMEM;
	bool expect_seen = false, host_seen = false;
	while ((opt = strtok_r(NULL, " \t", &save))) {
		bool *seen = strncmp(opt, "expect=", 7) == 0 ? &expect_seen
			     : strncmp(opt, "host=", 5) == 0 ? &host_seen
							     : NULL;
		if (seen && *seen) {
			cfg_ld_err(ld, "check option \"%s\" repeats an earlier one", opt);
			return -EALREADY; /* reported */
		}
		if (strncmp(opt, "expect=", 7) == 0 && parse_expect(p, opt + 7) == 0) {
			expect_seen = true;
			continue;
		}
		/* Sent as the Host field: one the server would refuse (an IPv6
		 * address without brackets) is the file's mistake. */
		if (strncmp(opt, "host=", 5) == 0 && http_is_host_value(opt + 5, strlen(opt + 5))) {
			if (cfg_set_str(ld, &p->check_host, opt + 5) < 0)
				return -ENOMEM;
			host_seen = true;
			continue;
		}
		cfg_ld_err(ld,
			   "bad check option \"%s\" (expected expect=200-399, or host=NAME[:PORT] "
			   "with an IPv6 address in brackets)",
			   opt);
		return -EALREADY; /* reported */
	}
	p->check = CHECK_HTTP;
	return 0;
}

/* tls_sni: a DNS host name (RFC 6066 §3), or empty for the default. */
static int p_tls_sni(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_pool *p = obj;

	struct in_addr a;
	char bare[INET_ADDRSTRLEN];
	size_t n = strlen(value);

	/* RFC 6066 §3: an address is no server name (and gets none), with a
	 * trailing dot too. */
	if (n && value[n - 1] == '.')
		n--;
	bool is_addr = n < sizeof(bare) &&
		       snprintf(bare, sizeof(bare), "%.*s", (int)n, value) > 0 &&
		       inet_pton(AF_INET, bare, &a) == 1;
	if (*value && (!cfg_is_host_name(value) || is_addr)) {
		cfg_ld_err(ld, "bad tls_sni \"%s\" (expected a host name, not an address)", value);
		return -EINVAL;
	}
	/* The name is sent, and checked against the certificate, without its
	 * trailing dot (RFC 6066 §3), as curl does. */
	int rc = cfg_set_str(ld, &p->tls_sni, value);
	if (rc == 0 && p->tls_sni)
		p->tls_sni[n] = '\0';
	return rc;
}

static int p_check(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_pool *p = obj;
	char *buf;
	int rc;

	if (strcmp(value, "none") == 0 || strcmp(value, "tcp") == 0) {
		p->check = value[0] == 'n' ? CHECK_NONE : CHECK_TCP;
		return 0;
	}
	rc = -EINVAL;
	if (strncmp(value, "http", 4) == 0 && (value[4] == ' ' || value[4] == '\t')) {
		buf = cfg_ld_strdup(ld, value + 5);
		if (!buf)
			return -ENOMEM;
		rc = parse_http_check(ld, p, buf);
		free(buf);
	}
	if (rc == -EINVAL)
		cfg_ld_err(ld,
			   "bad check \"%s\" (expected none, tcp or http GET /path "
			   "[expect=200-399] [host=NAME])",
			   value);
	return rc < 0 ? -EINVAL : 0;
}

/* One option after "server = NAME HOST:PORT". 0, -EINVAL when unknown or
 * bad, -EEXIST when SEEN (a mask of the kinds met so far) has its kind. */
static int server_option(struct cfg_server *srv, const char *opt, unsigned *seen)
{
	enum { WEIGHT = 1, MAXCONN = 2, BACKUP = 4, DISABLED = 8, PROXY_PROTOCOL = 16 };
	unsigned kind;
	long long n;

	if (strncmp(opt, "weight=", 7) == 0 && cfg_parse_int(opt + 7, 0, 256, &n) == 0) {
		kind = WEIGHT;
		srv->weight = (int)n;
	} else if (strncmp(opt, "maxconn=", 8) == 0 &&
		   cfg_parse_int(opt + 8, 0, INT_MAX, &n) == 0) {
		kind = MAXCONN;
		srv->maxconn = (int)n;
	} else if (strcmp(opt, "backup") == 0) {
		kind = BACKUP;
		srv->backup = true;
	} else if (strcmp(opt, "disabled") == 0) {
		kind = DISABLED;
		srv->disabled = true;
	} else if (strcmp(opt, "proxy_protocol=v1") == 0) {
		kind = PROXY_PROTOCOL;
		srv->proxy_protocol = PROXY_PROTO_V1;
	} else if (strcmp(opt, "proxy_protocol=v2") == 0) {
		kind = PROXY_PROTOCOL;
		srv->proxy_protocol = PROXY_PROTO_V2;
	} else {
		return -EINVAL;
	}
	if (*seen & kind)
		return -EEXIST;
	*seen |= kind;
	return 0;
}

static uint16_t addr_port(const struct cfg_addr *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	return 1; /* unix: no port */
}

/* The HOST part of "HOST:PORT" or "[HOST]:PORT" as a new string; "localhost" for unix:. */
static char *server_host(const char *text)
{
	size_t len;

	if (strncmp(text, "unix:", 5) == 0)
		return strdup("localhost");
	if (text[0] == '[')
		return strndup(text + 1, strcspn(text + 1, "]"));
	len = (size_t)(strrchr(text, ':') - text);
	return strndup(text, len);
}

/* Checks a server's NAME (unique in P) and ADDR, and fills them into SRV. */
static int server_identity(struct cfg_loader *ld, const struct cfg_pool *p, struct cfg_server *srv,
			   const char *name, const char *addr)
{
	char why[256];

	if (!name || !addr) {
		cfg_ld_err(ld, "server needs NAME HOST:PORT [weight=N] [maxconn=N] [backup] "
			       "[disabled] [proxy_protocol=v1|v2]");
		return -EINVAL;
	}
	if (!cfg_is_name(name)) {
		cfg_ld_err(ld, "bad server name \"%s\" (use letters, digits, _ . -)", name);
		return -EINVAL;
	}
	for (size_t i = 0; i < p->n_servers; i++) {
		if (strcmp(p->servers[i].name, name) == 0) {
			cfg_ld_err(ld, "duplicate server \"%s\" in pool \"%s\" (first at line %d)",
				   name, p->name, p->servers[i].line);
			return -EINVAL;
		}
	}
	if (cfg_parse_addr_why(addr, &srv->addr, why, sizeof(why)) < 0) {
		cfg_ld_err(ld, "bad address \"%s\" for server %s: %s", addr, name, why);
		return -EINVAL;
	}
	if (addr_port(&srv->addr) == 0) {
		cfg_ld_err(ld, "bad address \"%s\" for server %s: port 0", addr, name);
		return -EINVAL;
	}
	srv->name = strdup(name);
	srv->host = server_host(addr);
	if (!srv->name || !srv->host) {
		ld->oom = true;
		return -ENOMEM;
	}
	return 0;
}

/* server = NAME HOST:PORT [weight=N] [maxconn=N] [backup] [disabled] [proxy_protocol=v1|v2] */
static int p_server(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_pool *p = obj;
	struct cfg_server srv = {.weight = 1, .line = ld->line};
	char *buf = cfg_ld_strdup(ld, value);
	char *save = NULL, *name, *addr, *opt;
	struct cfg_server *grown = NULL;
	int rc;

	if (!buf)
		return -ENOMEM;
	name = strtok_r(buf, " \t", &save);
	addr = strtok_r(NULL, " \t", &save);
	rc = server_identity(ld, p, &srv, name, addr);
	unsigned seen = 0;
	while (rc == 0 && (opt = strtok_r(NULL, " \t", &save))) {
		rc = server_option(&srv, opt, &seen);
		if (rc == -EEXIST)
			cfg_ld_err(ld, "server option \"%s\" repeats an earlier one for server %s",
				   opt, name);
		else if (rc < 0)
			cfg_ld_err(ld, "bad server option \"%s\" for server %s", opt, name);
	}
	if (rc == 0 && !(grown = cfg_grow(p->servers, p->n_servers, sizeof(*p->servers)))) {
		ld->oom = true;
		rc = -ENOMEM;
	}
	if (rc == 0) {
		p->servers = grown;
		p->servers[p->n_servers++] = srv;
	} else {
		free(srv.name);
		free(srv.host);
		cfg_addr_free(&srv.addr);
	}
	free(buf);
	return rc;
}

#define P struct cfg_pool
const struct cfg_key_def cfg_pool_keys[] = {
	CFG_K_ENUM(P, "balance", balance, balances),
	CFG_K_FN("hash_key", p_hash_key),
	CFG_K_FN("maglev_table_size", p_maglev_size),
	CFG_K_FN("hash_balance_factor", p_balance_factor),
	CFG_K_FN("sticky_cookie", p_sticky),
	CFG_K_FN_REPEAT("server", p_server),
	CFG_K_FN("check", p_check),
	CFG_K_DUR(P, check_interval, 1),
	CFG_K_DUR(P, check_timeout, 1),
	CFG_K_INT(P, rise, 1, 1000),
	CFG_K_INT(P, fall, 1, 1000),
	CFG_K_INT(P, max_fails, 0, 1000000),
	CFG_K_DUR(P, fail_timeout, 0),
	CFG_K_DUR(P, connect_timeout, 1),
	CFG_K_DUR(P, server_timeout, 1),
	CFG_K_INT(P, retries, 0, 100),
	CFG_K_INT(P, keepalive, 0, 1000000),
	CFG_K_DUR(P, slow_start, 0),
	CFG_K_BOOL(P, tls),
	CFG_K_BOOL(P, tls_verify),
	CFG_K_FN("tls_ca", p_tls_ca),
	CFG_K_FN("tls_sni", p_tls_sni),
	CFG_K_END,
};
#undef P
static_assert(sizeof(cfg_pool_keys) / sizeof(cfg_pool_keys[0]) <= CFG_MAX_KEYS, "too many");

int cfg_defaults_pool(struct cfg_pool *p)
{
	p->balance = BAL_ROUNDROBIN;
	p->hash_key = HKEY_CLIENT_IP;
	p->maglev_table_size = MAGLEV_MIN;
	p->check = CHECK_TCP;
	p->check_expect_lo = 200;
	p->check_expect_hi = 399;
	p->check_interval_ms = 2000;
	p->check_timeout_ms = 1000;
	p->rise = 2;
	p->fall = 3;
	p->max_fails = 5;
	p->fail_timeout_ms = 10 * 1000;
	p->connect_timeout_ms = 3000;
	p->server_timeout_ms = 30 * 1000;
	p->retries = 2;
	p->keepalive = 32;
	p->tls_verify = true;
	return 0;
}
