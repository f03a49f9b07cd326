/*
 * keys_listener.c - the keys of [listener NAME] and [route NAME]: their
 * tables, defaults and parsers.
 *
 * Runs on the main thread inside cfg_load(). Checks that need other
 * sections (pool names, the listener's mode) wait for cfg_validate().
 */
#include "config/config.h"
#include "config/loader.h"
#include "core/acl.h"
#include "core/auth.h"
#include "core/http/route.h"
#include "config/tls_files.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

/* ---- [listener NAME] ---- */

static const char *const modes[] = {"tcp", "http", "forward", NULL};

/* Name of the listener already binding A (or an address it overlaps), or
 * NULL. */
static const char *bind_owner(const struct cfg *cfg, const struct cfg_addr *a)
{
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		for (size_t j = 0; j < cfg->listeners[i].n_binds; j++) {
			if (cfg_addr_overlaps(&cfg->listeners[i].binds[j], a))
				return cfg->listeners[i].name;
		}
	}
	return NULL;
}

static int l_bind(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;
	struct cfg_addr addr, *binds;
	const char *owner;
	char why[256];

	if (cfg_parse_bind_why(value, &addr, why, sizeof(why)) < 0) {
		cfg_ld_err(ld, "bad address \"%s\" for bind: %s", value, why);
		return -EINVAL;
	}
	if ((owner = bind_owner(ld->cfg, &addr))) {
		cfg_ld_err(ld, "bind \"%s\" overlaps a bind of listener \"%s\"", value, owner);
		cfg_addr_free(&addr);
		return -EINVAL;
	}
	binds = cfg_grow(l->binds, l->n_binds, sizeof(*l->binds));
	if (!binds) {
		ld->oom = true;
		cfg_addr_free(&addr);
		return -ENOMEM;
	}
	addr.line = ld->line;
	l->binds = binds;
	l->binds[l->n_binds++] = addr;
	return 0;
}

static int l_pool(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;

	if (*value == '\0')
		return 0;
	if (cfg_set_str(ld, &l->pool_name, value) < 0)
		return -ENOMEM;
	return cfg_add_ref(ld, CFG_REF_LISTENER_POOL, value);
}

/* Appends a copy of PATH to *V (N entries) after checking it can be read. */
static int add_file(struct cfg_loader *ld, const char *key, char ***v, size_t *n, const char *path)
{
	char *copy, **grown;
	const char *why = cfg_file_unreadable(path);

	/* Kept even when unreadable, so the cert/key pairing check stays quiet. */
	if (why)
		cfg_ld_err(ld, "cannot read %s \"%s\": %s", key, path, why);
	copy = cfg_ld_strdup(ld, path);
	grown = copy ? cfg_grow(*v, *n, sizeof(**v)) : NULL;
	if (!grown) {
		ld->oom = true;
		free(copy);
		return -ENOMEM;
	}
	*v = grown;
	(*v)[(*n)++] = copy;
	return why ? -EINVAL : 0;
}

/* Pair I of L once both halves are in (whichever line comes second): the
 * key must belong to the certificate. Reported at the current line. */
static int check_pair(struct cfg_loader *ld, const struct cfg_listener *l, size_t i)
{
	char why[512];

	if (i >= l->n_tls_certs || i >= l->n_tls_keys)
		return 0;
	/* Either half unreadable is reported on its own line already; and the
	 * check opens both as OpenSSL does, blocking on a FIFO. */
	if (cfg_file_unreadable(l->tls_certs[i]) || cfg_file_unreadable(l->tls_keys[i]))
		return -EINVAL;
	if (cfg_tls_check_pair(l->tls_certs[i], l->tls_keys[i], why, sizeof(why)) == 0)
		return 0;
	cfg_ld_err(ld, "%s", why);
	return -EINVAL;
}

/* A tls_cert or tls_key line: readable, loadable by OpenSSL (a key without
 * passphrase), and matching its other half. An expired certificate is only
 * warned about. */
static int add_tls_file(struct cfg_loader *ld, struct cfg_listener *l, bool cert, const char *value)
{
	char why[512];
	int rc = cert ? add_file(ld, "tls_cert", &l->tls_certs, &l->n_tls_certs, value)
		      : add_file(ld, "tls_key", &l->tls_keys, &l->n_tls_keys, value);

	if (rc < 0)
		return rc;
	rc = (cert ? cfg_tls_check_cert : cfg_tls_check_key)(value, why, sizeof(why));
	if (rc < 0) {
		cfg_ld_err(ld, "%s", why);
		return -EINVAL;
	}
	if (rc > 0)
		cfg_ld_warn(ld, "%s", why);
	return check_pair(ld, l, (cert ? l->n_tls_certs : l->n_tls_keys) - 1);
}

static int l_tls_cert(struct cfg_loader *ld, void *obj, const char *value)
{
	return add_tls_file(ld, obj, true, value);
}

static int l_tls_key(struct cfg_loader *ld, void *obj, const char *value)
{
	return add_tls_file(ld, obj, false, value);
}

static int l_tls_ciphers(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;
	char why[512];

	if (*value && cfg_tls_check_ciphers(value, why, sizeof(why)) < 0) {
		cfg_ld_err(ld, "%s", why);
		return -EINVAL;
	}
	return cfg_set_str(ld, &l->tls_ciphers, value);
}

/* Empty turns ALPN off. */
static int l_alpn(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;
	char why[512];

	if (*value && cfg_tls_check_alpn(value, why, sizeof(why)) < 0) {
		cfg_ld_err(ld, "%s", why);
		return -EINVAL;
	}
	return cfg_set_str(ld, &l->alpn, value);
}

static int l_tls_min_version(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;

	if (strcmp(value, "1.2") == 0)
		l->tls_min_version = 12;
	else if (strcmp(value, "1.3") == 0)
		l->tls_min_version = 13;
	else {
		cfg_ld_err(ld, "bad tls_min_version \"%s\" (expected 1.2 or 1.3)", value);
		return -EINVAL;
	}
	return 0;
}

static int l_proxy_protocol(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;

	if (strcmp(value, "accept") == 0)
		l->proxy_protocol_accept = true;
	else if (strcmp(value, "off") == 0)
		l->proxy_protocol_accept = false;
	else {
		cfg_ld_err(ld, "bad proxy_protocol \"%s\" (expected off or accept)", value);
		return -EINVAL;
	}
	return 0;
}

static int add_acl(struct cfg_loader *ld, const char *key, struct cfg_acl_entry **v, size_t *n,
		   const char *value)
{
	struct cfg_acl_entry *grown;
	char *copy;

	if (*value == '\0')
		return 0; /* "deny =" as in the documented defaults: nothing */
	if (value[strcspn(value, " \t")] != '\0') {
		cfg_ld_err(ld, "bad %s \"%s\" (one pattern per line)", key, value);
		return -EINVAL;
	}
	copy = cfg_ld_strdup(ld, value);
	grown = copy ? cfg_grow(*v, *n, sizeof(**v)) : NULL;
	if (!grown) {
		ld->oom = true;
		free(copy);
		return -ENOMEM;
	}
	*v = grown;
	(*v)[*n].pattern = copy;
	(*v)[*n].line = ld->line;
	(*n)++;
	return 0;
}

/* Compiles an allow or deny pattern into L's acl, so a bad one is an error
 * at its line and workers get it ready to match. */
static int compile_acl(struct cfg_loader *ld, struct cfg_listener *l, enum acl_list list,
		       const char *key, const char *value)
{
	const char *why = "";
	int rc;

	if (*value == '\0')
		return 0;
	if (!l->acl && !(l->acl = acl_new())) {
		ld->oom = true;
		return -ENOMEM;
	}
	rc = acl_add(l->acl, list, value, &why);
	if (rc == -ENOMEM)
		ld->oom = true;
	else if (rc < 0)
		cfg_ld_err(ld, "bad %s \"%s\": %s", key, value, why);
	return rc;
}

static int l_allow(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;
	if (*value == '\0') {
		/* Any allow line replaces "everything is allowed"; an empty one
		 * (a template's empty variable) must not silently keep it. */
		cfg_ld_err(ld, "empty allow pattern");
		return -EINVAL;
	}
	int rc = add_acl(ld, "allow", &l->allow, &l->n_allow, value);

	return rc < 0 ? rc : compile_acl(ld, l, ACL_ALLOW, "allow", value);
}

static int l_deny(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;
	int rc = add_acl(ld, "deny", &l->deny, &l->n_deny, value);

	return rc < 0 ? rc : compile_acl(ld, l, ACL_DENY, "deny", value);
}

/* One item of connect_ports: "443" or "8000-8100" (blanks around it allowed). */
static int parse_port_item(char *item, struct cfg_port_range *r)
{
	char *end = item + strlen(item);
	char *dash;
	long long lo, hi;

	while (isblank((unsigned char)*item))
		item++;
	while (end > item && isblank((unsigned char)end[-1]))
		*--end = '\0';
	dash = strchr(item, '-');
	if (dash)
		*dash = '\0';
	if (cfg_parse_int(item, 1, 65535, &lo) < 0)
		return -EINVAL;
	hi = lo;
	if (dash && (cfg_parse_int(dash + 1, 1, 65535, &hi) < 0 || hi < lo))
		return -EINVAL;
	r->lo = (uint16_t)lo;
	r->hi = (uint16_t)hi;
	return 0;
}

/* Parses the comma list in BUF (writable) into L's connect_ports. */
static int parse_port_list(struct cfg_loader *ld, struct cfg_listener *l, char *buf,
			   const char *value)
{
	struct cfg_port_range *grown;
	char *item, *rest = buf;

	free(l->connect_ports);
	l->connect_ports = NULL;
	l->n_connect_ports = 0;
	l->connect_ports_any = false;
	/* strsep, not strtok: "443,,80" has an empty item, which is an error. */
	while ((item = strsep(&rest, ","))) {
		struct cfg_port_range r;

		if (strspn(item, " \t*") == strlen(item) && strchr(item, '*')) {
			l->connect_ports_any = true;
			continue;
		}
		if (parse_port_item(item, &r) < 0) {
			cfg_ld_err(ld,
				   "bad connect_ports \"%s\" (expected ports and lo-hi ranges, "
				   "comma-separated, or *)",
				   value);
			return -EINVAL;
		}
		grown = cfg_grow(l->connect_ports, l->n_connect_ports, sizeof(r));
		if (!grown) {
			ld->oom = true;
			return -ENOMEM;
		}
		l->connect_ports = grown;
		l->connect_ports[l->n_connect_ports++] = r;
	}
	return 0;
}

static int l_connect_ports(struct cfg_loader *ld, void *obj, const char *value)
{
	char *buf = cfg_ld_strdup(ld, value);
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = parse_port_list(ld, obj, buf, value);
	free(buf);
	if (rc == 0 && ((struct cfg_listener *)obj)->n_connect_ports == 0 &&
	    !((struct cfg_listener *)obj)->connect_ports_any) {
		cfg_ld_err(ld, "empty connect_ports (expected ports, lo-hi ranges or *)");
		return -EINVAL;
	}
	return rc;
}

/* auth = basic /path/htpasswd (or off, or empty). */
static int l_auth(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_listener *l = obj;
	const char *path;
	int rc;

	if (*value == '\0' || strcmp(value, "off") == 0)
		return cfg_set_str(ld, &l->auth_file, "");
	if (strncmp(value, "basic", 5) != 0 || !isblank((unsigned char)value[5])) {
		cfg_ld_err(ld, "bad auth \"%s\" (expected basic /path/to/htpasswd)", value);
		return -EINVAL;
	}
	path = value + 5;
	path += strspn(path, " \t");
	if (*path == '\0' || path[strcspn(path, " \t")] != '\0') {
		cfg_ld_err(ld, "bad auth \"%s\" (expected basic /path/to/htpasswd)", value);
		return -EINVAL;
	}
	const char *unreadable = cfg_file_unreadable(path);
	if (unreadable) {
		cfg_ld_err(ld, "cannot read auth file \"%s\": %s", path, unreadable);
		return -EINVAL;
	}
	/* Loaded now, so every reload reads it again and -t checks it. */
	char why[512];
	auth_db_free(l->auth);
	l->auth = NULL;
	if ((rc = auth_db_load(path, &l->auth, why, sizeof(why))) < 0) {
		if (rc == -ENOMEM)
			ld->oom = true;
		cfg_ld_err(ld, "auth file \"%s\": %s", path, why);
		return -EINVAL;
	}
	return cfg_set_str(ld, &l->auth_file, path);
}

#define L struct cfg_listener
const struct cfg_key_def cfg_listener_keys[] = {
	CFG_K_FN_REPEAT("bind", l_bind),
	CFG_K_ENUM(L, "mode", mode, modes),
	CFG_K_FN("pool", l_pool),
	CFG_K_FN_REPEAT("tls_cert", l_tls_cert),
	CFG_K_FN_REPEAT("tls_key", l_tls_key),
	CFG_K_FN("tls_min_version", l_tls_min_version),
	CFG_K_FN("tls_ciphers", l_tls_ciphers),
	CFG_K_DUR(L, handshake_timeout, 1),
	CFG_K_FN("alpn", l_alpn),
	CFG_K_FN("proxy_protocol", l_proxy_protocol),
	CFG_K_DUR(L, client_timeout, 1),
	CFG_K_DUR(L, tunnel_timeout, 1),
	CFG_K_DUR(L, request_timeout, 1),
	CFG_K_DUR(L, keepalive_timeout, 1),
	CFG_K_SIZE(L, "max_uri_size", max_uri_size, 16, 1 << 20),
	CFG_K_SIZE(L, "max_header_size", max_header_size, 64, 1 << 20),
	CFG_K_SIZE(L, "max_body_size", max_body_size, 0, 0),
	CFG_K_BOOL(L, forwarded_headers),
	CFG_K_SIZE(L, "cache", cache_size, 0, 0),
	CFG_K_FN_REPEAT("allow", l_allow),
	CFG_K_FN_REPEAT("deny", l_deny),
	CFG_K_FN("connect_ports", l_connect_ports),
	CFG_K_FN("auth", l_auth),
	CFG_K_DUR(L, connect_timeout, 1),
	CFG_K_DUR(L, server_timeout, 1),
	CFG_K_END,
};
#undef L
static_assert(sizeof(cfg_listener_keys) / sizeof(cfg_listener_keys[0]) <= CFG_MAX_KEYS, "many");

int cfg_defaults_listener(struct cfg_listener *l)
{
	l->mode = MODE_HTTP;
	l->pool = -1;
	l->tls_min_version = 12;
	l->handshake_timeout_ms = CFG_HANDSHAKE_TIMEOUT_MS;
	l->client_timeout_ms = 30 * 1000;
	l->tunnel_timeout_ms = CFG_TUNNEL_TIMEOUT_MS;
	l->request_timeout_ms = CFG_REQUEST_TIMEOUT_MS;
	l->keepalive_timeout_ms = 60 * 1000;
	l->max_uri_size = 8 << 10;
	l->max_header_size = 16 << 10;
	l->forwarded_headers = true; /* cfg_validate turns it off for forward */
	l->connect_timeout_ms = 3000;
	l->server_timeout_ms = 30 * 1000;
	l->alpn = strdup("http/1.1");
	l->connect_ports = calloc(1, sizeof(*l->connect_ports));
	if (!l->alpn || !l->connect_ports)
		return -ENOMEM;
	l->connect_ports[0].lo = l->connect_ports[0].hi = 443;
	l->n_connect_ports = 1;
	return 0;
}

/* ---- [route NAME] ---- */

static int r_listener(struct cfg_loader *ld, void *obj, const char *value)
{
	(void)obj;
	return cfg_add_ref(ld, CFG_REF_ROUTE_LISTENER, value);
}

static int r_pool(struct cfg_loader *ld, void *obj, const char *value)
{
	(void)obj;
	return cfg_add_ref(ld, CFG_REF_ROUTE_POOL, value);
}

/* "name.example.com" or "*.example.com": letters, digits, - _ . only. */
static bool is_host_pattern(const char *s)
{
	if (strncmp(s, "*.", 2) == 0)
		s += 2;
	if (*s == '\0' || *s == '.')
		return false;
	for (; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return false;
	}
	return true;
}

/* "[2001:db8::1]": an IPv6 literal as a Host field carries it (RFC 3986
 * §3.2.2), matched as written. */
static bool is_bracketed_ipv6(const char *value)
{
	size_t len = strlen(value);
	char addr[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (len < 3 || value[0] != '[' || value[len - 1] != ']' || len - 2 >= sizeof(addr))
		return false;
	memcpy(addr, value + 1, len - 2);
	addr[len - 2] = '\0';
	return inet_pton(AF_INET6, addr, &a) == 1;
}

static int r_host(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_route *r = obj;

	if (*value == '\0')
		return cfg_set_str(ld, &r->host, value);
	if (!is_host_pattern(value) && !is_bracketed_ipv6(value)) {
		cfg_ld_err(ld, "bad host \"%s\" (expected a name, *.domain or [IPv6])", value);
		return -EINVAL;
	}
	if (cfg_set_str(ld, &r->host, value) < 0)
		return -ENOMEM;
	for (char *c = r->host; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	/* "example.com." names the same host; requests are compared without
	 * the dot, so the pattern is kept without it too. */
	size_t len = strlen(r->host);
	if (len && r->host[len - 1] == '.')
		r->host[--len] = '\0';
	return 0;
}

static int r_path_prefix(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_route *r = obj;

	if (!cfg_is_visible(value)) {
		cfg_ld_err(ld, "bad path_prefix \"%s\" (no blanks or controls)", value);
		return -EINVAL;
	}
	if (value[0] != '/') {
		cfg_ld_err(ld, "bad path_prefix \"%s\" (must start with /)", value);
		return -EINVAL;
	}
	/* Requests are matched normalized (route_path_normalize): so is the
	 * prefix, or "/a%20b/" and "/api//" could match nothing. */
	size_t len = strlen(value);
	char *norm = malloc(len + 1);
	if (!norm)
		return -ENOMEM;
	size_t n = route_path_normalize(value, len, norm);
	norm[n] = '\0';
	if (strlen(norm) != n) {
		/* %00: the stored prefix would end there and match more. */
		cfg_ld_err(ld, "bad path_prefix \"%s\" (%%00 in it)", value);
		free(norm);
		return -EINVAL;
	}
	int err = cfg_set_str(ld, &r->path_prefix, norm);
	free(norm);
	return err;
}

/* header = NAME: VALUE (the value may be empty; blanks around it are dropped). */
static int r_header(struct cfg_loader *ld, void *obj, const char *value)
{
	struct cfg_route *r = obj;
	const char *colon = strchr(value, ':');
	const char *v;
	char *name;
	bool ok;

	if (!colon) {
		cfg_ld_err(ld, "bad header \"%s\" (expected NAME: VALUE)", value);
		return -EINVAL;
	}
	name = strndup(value, (size_t)(colon - value));
	if (!name) {
		ld->oom = true;
		return -ENOMEM;
	}
	v = colon + 1 + strspn(colon + 1, " \t");
	ok = cfg_is_token(name) && cfg_is_field_value(v);
	if (!ok) {
		cfg_ld_err(ld, "bad header \"%s\" (expected NAME: VALUE)", value);
		free(name);
		return -EINVAL;
	}
	free(r->header_name);
	r->header_name = name;
	free(r->header_value);
	r->header_value = strdup(v);
	if (!r->header_value) {
		ld->oom = true;
		return -ENOMEM;
	}
	return 0;
}

const struct cfg_key_def cfg_route_keys[] = {
	CFG_K_FN("listener", r_listener),
	CFG_K_FN("host", r_host),
	CFG_K_FN("path_prefix", r_path_prefix),
	CFG_K_FN("header", r_header),
	CFG_K_FN("pool", r_pool),
	CFG_K_END,
};
