/*
 * validate.c - the checks that need the whole file: pools have servers,
 * listeners have binds and matching certificates and keys, names used by
 * listeners and routes exist, keys fit the listener's mode; warnings for
 * what loads but does nothing (keys nothing reads, a pool nothing uses or
 * whose servers all weigh 0, a route an earlier one hides); and the
 * defaults that depend on other keys (workers = auto, forwarded_headers).
 *
 * Runs on the main thread at the end of cfg_load(). Each problem is reported
 * at the line of the key concerned, or of the section header when a key is
 * missing.
 */
#include "config/config.h"
#include "config/loader.h"
#include "config/tls_files.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void validate_global(struct cfg_loader *ld, int workers_override)
{
	struct cfg_global *g = &ld->cfg->global;

	if (workers_override > 0)
		g->workers = workers_override;
	if (g->workers < 1) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		g->workers = n < 1 ? 1 : (int)n;
	}
}

/* Warns about KEY of section I when nothing reads it (READ false): the
 * loader accepts it, but an operator who set it expects it to do something.
 * WHY ends the message: "has no effect WHY". Callers pass READ true for a
 * key written with its default value: a file that spells its defaults out
 * (as SPEC's example does) asks for nothing that is not done. */
static bool is_empty(const char *s)
{
	return !s || !*s;
}

static void warn_unread(struct cfg_loader *ld, enum cfg_sec sec, size_t i, const char *key,
			bool read, const char *why)
{
	int line = cfg_key_line(ld, sec, i, key);
	if (line > 0 && !read)
		cfg_ld_warn_at(ld, line, "%s has no effect %s", key, why);
}

/* The balances that read hash_key. */
static bool balance_hashes(enum cfg_balance b)
{
	return b == BAL_SOURCE || b == BAL_MAGLEV || b == BAL_RING;
}

static void validate_pool(struct cfg_loader *ld, size_t i)
{
	const struct cfg_pool *p = &ld->cfg->pools[i];
	enum cfg_balance b = p->balance;
	bool hashing = balance_hashes(b);
	char why[512];

	snprintf(why, sizeof(why), "with balance = %s (only with source, maglev or ring)",
		 cfg_balance_name(b));
	warn_unread(ld, CFG_SEC_POOL, i, "hash_key", hashing || p->hash_key == HKEY_CLIENT_IP, why);
	snprintf(why, sizeof(why), "with balance = %s (only with maglev)", cfg_balance_name(b));
	warn_unread(ld, CFG_SEC_POOL, i, "maglev_table_size",
		    b == BAL_MAGLEV || p->maglev_table_size == 65537, why);
	snprintf(why, sizeof(why), "with balance = %s (only with maglev or ring)",
		 cfg_balance_name(b));
	warn_unread(ld, CFG_SEC_POOL, i, "hash_balance_factor",
		    b == BAL_MAGLEV || b == BAL_RING || p->hash_balance_factor == 0, why);
	/* A CA set for servers still spoken to in plain text is a mistake
	 * worth a word: the operator believes the traffic verified. */
	static const char *const server_tls[] = {"tls_verify", "tls_ca", "tls_sni"};
	bool server_tls_default[] = {p->tls_verify, is_empty(p->tls_ca), is_empty(p->tls_sni)};
	for (size_t k = 0; k < sizeof(server_tls) / sizeof(server_tls[0]); k++)
		warn_unread(ld, CFG_SEC_POOL, i, server_tls[k], p->tls || server_tls_default[k],
			    "without tls = on: the servers are spoken to in plain text");

	/* tls_verify checks a name: a unix server has none unless tls_sni
	 * gives one, and then only the chain is checked. */
	for (size_t k = 0; p->tls && p->tls_verify && is_empty(p->tls_sni) && k < p->n_servers; k++)
		if (p->servers[k].addr.ss.ss_family == AF_UNIX)
			cfg_ld_warn_at(
				ld, p->servers[k].line,
				"server \"%s\" is a unix socket: without tls_sni, tls_verify "
				"checks its certificate chain but no name",
				p->servers[k].name);

	if (cfg_key_line(ld, CFG_SEC_POOL, i, "server") == 0)
		cfg_ld_err_at(ld, p->line, "pool \"%s\" has no server", p->name);
	size_t weighted = 0;
	for (size_t k = 0; k < p->n_servers; k++)
		weighted += p->servers[k].weight > 0;
	if (p->n_servers > 0 && weighted == 0)
		cfg_ld_warn_at(ld, p->line,
			       "every server of pool \"%s\" has weight 0: it takes no new traffic",
			       p->name);
	if (p->tls_ca && cfg_tls_check_ca(p->tls_ca, why, sizeof(why)) < 0)
		cfg_ld_err_at(ld, cfg_key_line(ld, CFG_SEC_POOL, i, "tls_ca"), "%s", why);
}

static void resolve_refs(struct cfg_loader *ld)
{
	struct cfg *cfg = ld->cfg;

	for (size_t i = 0; i < ld->n_refs; i++) {
		const struct cfg_ref *r = &ld->refs[i];
		bool want_pool = r->kind != CFG_REF_ROUTE_LISTENER;
		int found =
			want_pool ? cfg_find_pool(cfg, r->name) : cfg_find_listener(cfg, r->name);

		if (found < 0) {
			cfg_ld_err_at(ld, r->line, "unknown %s \"%s\"",
				      want_pool ? "pool" : "listener", r->name);
			continue;
		}
		switch (r->kind) {
		case CFG_REF_LISTENER_POOL:
			cfg->listeners[r->idx].pool = found;
			break;
		case CFG_REF_ROUTE_LISTENER:
			cfg->routes[r->idx].listener = found;
			break;
		case CFG_REF_ROUTE_POOL:
			cfg->routes[r->idx].pool = found;
			break;
		}
	}
}

/* Reports each key of KEYS set in listener I, whose mode does not use it. */
static void refuse_keys(struct cfg_loader *ld, size_t i, const char *const *keys, const char *modes)
{
	const struct cfg_listener *l = &ld->cfg->listeners[i];

	for (; *keys; keys++) {
		int line = cfg_key_line(ld, CFG_SEC_LISTENER, i, *keys);
		if (line > 0)
			cfg_ld_err_at(ld, line,
				      "%s is for %s listeners only; listener \"%s\" is %s", *keys,
				      modes, l->name, cfg_mode_name(l->mode));
	}
}

static void validate_tls_files(struct cfg_loader *ld, size_t i)
{
	const struct cfg_listener *l = &ld->cfg->listeners[i];
	int line;

	if (l->n_tls_certs == l->n_tls_keys)
		return;
	/* At the last line of the kind in excess: the one left without a pair
	 * when lines were added at the end. */
	line = cfg_key_line(ld, CFG_SEC_LISTENER, i,
			    l->n_tls_certs > l->n_tls_keys ? "tls_cert" : "tls_key");
	cfg_ld_err_at(ld, line,
		      "listener \"%s\" has %zu tls_cert and %zu tls_key lines; they go in pairs",
		      l->name, l->n_tls_certs, l->n_tls_keys);
}

/* An http or forward listener speaks HTTP/1.x: offering h2 (or h2c) in
 * ALPN would have HTTP/2 clients pick it and fail on every request. */
static void refuse_http2_alpn(struct cfg_loader *ld, size_t i)
{
	const char *list = ld->cfg->listeners[i].alpn;

	for (const char *p = list; p && *p;) {
		p += strspn(p, ", ");
		size_t n = strcspn(p, ", "); /* names are checked: no space within */
		if ((n == 2 && memcmp(p, "h2", 2) == 0) || (n == 3 && memcmp(p, "h2c", 3) == 0)) {
			cfg_ld_err_at(ld, cfg_key_line(ld, CFG_SEC_LISTENER, i, "alpn"),
				      "alpn lists %.*s, but an http or forward listener speaks "
				      "HTTP/1.x only: HTTP/2 clients would pick it and fail",
				      (int)n, p);
			return;
		}
		p += n;
	}
}

static void validate_listener(struct cfg_loader *ld, size_t i)
{
	static const char *const forward_only[] = {
		"allow", "deny", "connect_ports", "auth", "connect_timeout", "server_timeout", NULL,
	};
	static const char *const http_only[] = {
		"max_uri_size",
		"max_header_size",
		"max_body_size",
		"keepalive_timeout",
		"forwarded_headers",
		"cache",
		NULL,
	};
	struct cfg_listener *l = &ld->cfg->listeners[i];

	if (cfg_key_line(ld, CFG_SEC_LISTENER, i, "bind") == 0)
		cfg_ld_err_at(ld, l->line, "listener \"%s\" has no bind", l->name);
	validate_tls_files(ld, i);
	static const char *const listener_tls[] = {"tls_min_version", "tls_ciphers", "alpn"};
	bool listener_tls_default[] = {l->tls_min_version == 12, is_empty(l->tls_ciphers),
				       l->alpn && strcmp(l->alpn, "http/1.1") == 0};
	for (size_t k = 0; k < sizeof(listener_tls) / sizeof(listener_tls[0]); k++)
		warn_unread(ld, CFG_SEC_LISTENER, i, listener_tls[k],
			    l->n_tls_certs > 0 || listener_tls_default[k],
			    "without tls_cert: the listener does not terminate TLS");
	/* Timeouts of a phase this listener never has. A tcp listener without
	 * certificates may still peek at a ClientHello for SNI routes within
	 * handshake_timeout. */
	warn_unread(ld, CFG_SEC_LISTENER, i, "tunnel_timeout",
		    l->mode != MODE_TCP || l->tunnel_timeout_ms == CFG_TUNNEL_TIMEOUT_MS,
		    "with mode = tcp: client_timeout is a tcp connection's idle limit");
	warn_unread(ld, CFG_SEC_LISTENER, i, "request_timeout",
		    l->mode != MODE_TCP || l->proxy_protocol_accept ||
			    l->request_timeout_ms == CFG_REQUEST_TIMEOUT_MS,
		    "with mode = tcp, unless proxy_protocol = accept (then it bounds the "
		    "PROXY header)");
	warn_unread(ld, CFG_SEC_LISTENER, i, "handshake_timeout",
		    l->mode == MODE_TCP || l->n_tls_certs > 0 ||
			    l->handshake_timeout_ms == CFG_HANDSHAKE_TIMEOUT_MS,
		    "without tls_cert: the listener does not terminate TLS");
	if (cfg_key_line(ld, CFG_SEC_LISTENER, i, "forwarded_headers") == 0)
		l->forwarded_headers = l->mode == MODE_HTTP;
	if (l->mode != MODE_FORWARD)
		refuse_keys(ld, i, forward_only, "forward");
	if (l->mode == MODE_TCP)
		refuse_keys(ld, i, http_only, "http and forward");
	else
		refuse_http2_alpn(ld, i);
}

static void validate_route(struct cfg_loader *ld, size_t i)
{
	const struct cfg_route *r = &ld->cfg->routes[i];
	const struct cfg_listener *l;
	int line;

	if (cfg_key_line(ld, CFG_SEC_ROUTE, i, "listener") == 0)
		cfg_ld_err_at(ld, r->line, "route \"%s\" needs listener = NAME", r->name);
	if (cfg_key_line(ld, CFG_SEC_ROUTE, i, "pool") == 0)
		cfg_ld_err_at(ld, r->line, "route \"%s\" needs pool = NAME", r->name);
	if (r->listener < 0)
		return;
	l = &ld->cfg->listeners[r->listener];
	if (l->mode == MODE_FORWARD) {
		line = cfg_key_line(ld, CFG_SEC_ROUTE, i, "listener");
		cfg_ld_err_at(ld, line,
			      "routes are for http and tcp listeners; listener \"%s\" is "
			      "forward",
			      l->name);
		return;
	}
	if (l->mode != MODE_TCP)
		return;
	if ((line = cfg_key_line(ld, CFG_SEC_ROUTE, i, "path_prefix")) > 0)
		cfg_ld_err_at(ld, line,
			      "path_prefix needs an http listener; listener \"%s\" is tcp",
			      l->name);
	if ((line = cfg_key_line(ld, CFG_SEC_ROUTE, i, "header")) > 0)
		cfg_ld_err_at(ld, line, "header needs an http listener; listener \"%s\" is tcp",
			      l->name);
	/* RFC 6066 §3: a server name is never an address literal. */
	unsigned char addr[16];
	if (r->host && (r->host[0] == '[' || inet_pton(AF_INET, r->host, addr) == 1))
		cfg_ld_warn_at(ld, cfg_key_line(ld, CFG_SEC_ROUTE, i, "host"),
			       "host %s never matches on tcp listener \"%s\": TLS clients send no "
			       "address as their server name (SNI)",
			       r->host, l->name);
}

/* A route after one of the same listener with no condition never matches:
 * the first match wins, and that one matches everything. */
static void warn_shadowed_routes(struct cfg_loader *ld)
{
	const struct cfg *cfg = ld->cfg;

	for (size_t k = 0; k < cfg->n_routes; k++) {
		const struct cfg_route *r = &cfg->routes[k];
		if (r->listener < 0)
			continue;
		for (size_t i = 0; i < k; i++) {
			const struct cfg_route *all = &cfg->routes[i];
			if (all->listener != r->listener || all->host || all->path_prefix ||
			    all->header_name)
				continue;
			cfg_ld_warn_at(ld, r->line,
				       "route \"%s\" never matches: route \"%s\" (line %d) comes "
				       "first and, with no condition, takes everything",
				       r->name, all->name, all->line);
			break;
		}
	}
}

/* A pool no listener or route names gets no traffic; one only tcp
 * listeners use never reads a hash_key (tcp hashes the client address). */
static void warn_pool_use(struct cfg_loader *ld)
{
	const struct cfg *cfg = ld->cfg;

	for (size_t p = 0; p < cfg->n_pools; p++) {
		bool used = false, by_http = false;
		for (size_t i = 0; i < cfg->n_listeners; i++)
			if (cfg->listeners[i].pool == (int)p) {
				used = true;
				by_http |= cfg->listeners[i].mode != MODE_TCP;
			}
		for (size_t i = 0; i < cfg->n_routes; i++)
			if (cfg->routes[i].pool == (int)p && cfg->routes[i].listener >= 0) {
				used = true;
				by_http |= cfg->listeners[cfg->routes[i].listener].mode != MODE_TCP;
			}
		const struct cfg_pool *pc = &cfg->pools[p];
		if (!used)
			cfg_ld_warn_at(ld, pc->line,
				       "pool \"%s\" gets no traffic: no listener or route names it",
				       pc->name);
		else if (balance_hashes(pc->balance))
			warn_unread(
				ld, CFG_SEC_POOL, p, "hash_key",
				by_http || pc->hash_key == HKEY_CLIENT_IP,
				"on a pool only tcp listeners use: tcp always hashes the client "
				"address");
	}
}

/* The admin listener cannot share an address with a listener's bind. */
static void validate_admin(struct cfg_loader *ld)
{
	const struct cfg *cfg = ld->cfg;
	const struct cfg_global *g = &cfg->global;

	if (!g->admin || !*g->admin)
		return;
	int line = cfg_key_line(ld, CFG_SEC_GLOBAL, 0, "admin");
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		for (size_t j = 0; j < l->n_binds; j++) {
			if (!cfg_addr_overlaps(&g->admin_addr, &l->binds[j]))
				continue;
			cfg_ld_err_at(
				ld, line > 0 ? line : cfg_key_line(ld, CFG_SEC_LISTENER, i, "bind"),
				"admin %s%s overlaps bind %s of listener \"%s\"", g->admin,
				line > 0 ? "" : " (the default)", l->binds[j].text, l->name);
			return;
		}
	}
}

void cfg_validate(struct cfg_loader *ld, int workers_override)
{
	struct cfg *cfg = ld->cfg;

	validate_global(ld, workers_override);
	for (size_t i = 0; i < cfg->n_pools; i++)
		validate_pool(ld, i);
	resolve_refs(ld);
	for (size_t i = 0; i < cfg->n_listeners; i++)
		validate_listener(ld, i);
	/* Workers keep their counters in fixed per-listener slots. */
	if (cfg->n_listeners > CFG_MAX_LISTENERS)
		cfg_ld_err_at(ld, cfg->listeners[CFG_MAX_LISTENERS].line,
			      "too many listeners (at most %d)", CFG_MAX_LISTENERS);
	for (size_t i = 0; i < cfg->n_routes; i++)
		validate_route(ld, i);
	warn_shadowed_routes(ld);
	warn_pool_use(ld);
	validate_admin(ld);
}
