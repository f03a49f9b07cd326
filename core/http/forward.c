/*
 * forward.c - forward mode (see forward.h). Worker thread.
 *
 * A request's way: forward_begin() reads the destination, checks the
 * credentials and the ACL on the name as asked, and for an absolute-form
 * request builds the origin-form head at once (the parsed head lives in the
 * worker's scratch and would not survive a wait). Then the name is resolved:
 * an address literal or a cached answer goes on at once; otherwise the
 * connection waits in the RESOLVE phase for the worker's resolver to call
 * on_resolved(), or for the connect_timeout (forward_on_timer, 502). With
 * the addresses known, every one is checked against the deny list, the
 * origin is taken from the worker's table, and the proxy connects.
 *
 * Per connection, struct fwd_conn lives from the first request to the
 * close; it holds the origin of the last request (a reference, so the
 * lb_servers the proxy still points at stay valid) and the pending lookup.
 * Per worker, struct fwd_worker is made on the first forward request: the
 * resolver, the origin table and the credential cache.
 */
#include "core/http/forward.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/acl.h"
#include "core/auth.h"
#include "core/conn.h"
#include "core/dns.h"
#include "core/http/cache_http.h"
#include "core/http/origin.h"
#include "core/http/proxy_internal.h"
#include "core/stats.h"

#define FWD_KEEPALIVE 8 /* idle pooled connections per origin address per worker */
#define AUTH_HEADER   "Proxy-Authenticate: Basic realm=\"fulcrum\"\r\n"

/* A worker's forward state; made on first use, freed with the worker. */
struct fwd_worker {
	struct dns *dns; /* NULL until the first name is looked up */
	struct auth_cache *auth; /* NULL until the first credentials */
	struct origin_table origins;
};

/* A connection's forward state; owned by its http_conn. */
struct fwd_conn {
	struct conn *c;
	struct dns_wait wait; /* linked while the connection is in RESOLVE */
	struct auth_job *auth_job; /* the hasher's, while the connection is in AUTH */
	enum auth_result verdict; /* the hasher's, for the request it was asked for */
	bool has_verdict;
	/* The request (http_conn seq + 1; 0 = none) whose credentials passed:
	 * one that starts again (a cache waiter polling) is not hashed again. */
	uint32_t auth_passed;
	struct origin *origin; /* held, of the last request */
	struct cfg_pool pool_cfg; /* the listener's timeouts for the proxy */
	struct lb_pool pool; /* the origin's usable addresses */
	struct lb_server *servers[ORIGIN_MAX_ADDRS];
	bool tunnel; /* CONNECT */
	bool literal; /* host is an address literal: no lookup */
	uint16_t port;
	union dns_addr literal_addr;
	char host[DNS_NAME_MAX + 1]; /* lower-case, no brackets */
};

static char pool_name[] = "-";

static void on_resolved(struct dns_wait *wt, const struct dns_answer *a);

static struct fwd_worker *fwd_worker_get(struct worker *w)
{
	if (!w->fwd) {
		w->fwd = calloc(1, sizeof(*w->fwd));
		if (w->fwd)
			origin_table_init(&w->fwd->origins, w);
	}
	return w->fwd;
}

void forward_worker_free(struct worker *w)
{
	struct fwd_worker *fw = w->fwd;

	if (!fw)
		return;
	origin_table_deinit(&fw->origins);
	dns_free(fw->dns);
	auth_cache_free(fw->auth);
	free(fw);
	w->fwd = NULL;
}

static struct fwd_conn *fwd_conn_get(struct conn *c)
{
	struct http_conn *hc = c->http;
	struct fwd_conn *f = hc->fwd;

	if (f)
		return f;
	if (!fwd_worker_get(c->w) || !(f = calloc(1, sizeof(*f))))
		return NULL;
	f->c = c;
	dns_wait_init(&f->wait, on_resolved);
	f->pool_cfg.name = pool_name;
	f->pool_cfg.balance = BAL_SOURCE;
	f->pool.name = pool_name;
	f->pool.cfg = &f->pool_cfg;
	f->pool.balance = BAL_SOURCE;
	f->pool.servers = f->servers;
	f->pool.stats_slot = STATS_NO_SLOT;
	atomic_init(&f->pool.table, NULL);
	hc->fwd = f;
	return f;
}

static void drop_origin(struct fwd_conn *f)
{
	if (f->origin) {
		origin_put(&f->c->w->fwd->origins, f->origin);
		f->origin = NULL;
	}
	f->pool.n_servers = 0;
}

void forward_conn_free(struct fwd_conn *f)
{
	if (!f)
		return;
	dns_cancel(&f->wait);
	if (f->auth_job)
		auth_cancel(f->auth_job);
	drop_origin(f);
	free(f);
}

/* ---- the destination -------------------------------------------------- */

static bool is_name_char(unsigned char ch)
{
	return isalnum(ch) || ch == '-' || ch == '.' || ch == '_';
}

/* Digits and dots that are not a plain dotted quad: "0177.0.0.1" (octal
 * 127 to curl and inet_aton, decimal 177 to c-ares), "127.1" or
 * "2130706433" (127.0.0.1 to inet_aton). No DNS name ends in a numeric
 * label, so these can only be addresses read differently by different
 * clients: refused rather than guessed at. HOST is NUL-terminated. */
static bool ambiguous_ipv4(const char *host)
{
	uint8_t a4[4];
	bool zero_led = false;

	for (size_t i = 0; host[i]; i++) {
		if (host[i] != '.' && !isdigit((unsigned char)host[i]))
			return false;
		if (host[i] == '0' && (i == 0 || host[i - 1] == '.') && host[i + 1] &&
		    host[i + 1] != '.')
			zero_led = true;
	}
	return zero_led || inet_pton(AF_INET, host, a4) != 1;
}

/* Copies HOST[0, LEN) into f->host and classifies it. BRACKETED: it was in
 * [ ], so it must be an IPv6 address (zone identifiers are not taken). */
static int set_host(struct fwd_conn *f, const char *host, size_t len, bool bracketed)
{
	uint8_t a4[4];
	/* The root's dot: "a.test." is the name a.test ("127.0.0.1." no
	 * address, as ambiguous as the other spellings below). */
	bool rooted = !bracketed && len > 1 && host[len - 1] == '.';

	if (rooted)
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return -EINVAL;
	memcpy(f->host, host, len);
	f->host[len] = '\0';
	if (!bracketed &&
	    (ambiguous_ipv4(f->host) || (rooted && inet_pton(AF_INET, f->host, a4) == 1)))
		return -EINVAL;
	memset(&f->literal_addr, 0, sizeof(f->literal_addr));
	if (bracketed) {
		f->literal_addr.in6.sin6_family = AF_INET6;
		f->literal = inet_pton(AF_INET6, f->host, &f->literal_addr.in6.sin6_addr) == 1;
		return f->literal ? 0 : -EINVAL;
	}
	if (inet_pton(AF_INET, f->host, a4) == 1) {
		f->literal_addr.in.sin_family = AF_INET;
		memcpy(&f->literal_addr.in.sin_addr, a4, 4);
		f->literal = true;
		return 0;
	}
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_name_char((unsigned char)f->host[i]))
			return -EINVAL;
		f->host[i] = (char)tolower((unsigned char)f->host[i]);
		label = f->host[i] == '.' ? 0 : label + 1;
		if (label > 63) /* RFC 1035 §2.3.4: no DNS server could answer */
			return -EINVAL;
	}
	return f->host[0] == '.' || f->host[len - 1] == '.' || strstr(f->host, "..") ? -EINVAL : 0;
}

/* host[:port] or [v6][:port], checked by the parser already for shape.
 * DEFAULT_PORT 0: the port is required. */
static int parse_authority(struct fwd_conn *f, const char *s, size_t n, uint16_t default_port)
{
	const char *end = s + n, *host = s, *hend, *colon;
	bool bracketed = n && s[0] == '[';
	unsigned long port = 0;

	if (bracketed) {
		host = s + 1;
		hend = memchr(s, ']', n);
		if (!hend)
			return -EINVAL;
		colon = hend + 1 < end ? hend + 1 : NULL;
	} else {
		colon = memchr(s, ':', n);
		hend = colon ? colon : end;
	}
	if (colon && *colon != ':')
		return -EINVAL;
	for (const char *p = colon ? colon + 1 : end; p < end; p++) {
		if (!isdigit((unsigned char)*p) || port > 65535)
			return -EINVAL;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (!colon || colon + 1 == end)
		port = default_port; /* RFC 3986 §3.2.3: an empty port is the default */
	if (port == 0 || port > 65535)
		return -EINVAL;
	f->port = (uint16_t)port;
	return set_host(f, host, (size_t)(hend - host), bracketed);
}

/* CONNECT's authority, or an http:// absolute URI; anything else is not a
 * request for a proxy. */
static int parse_destination(struct fwd_conn *f, const struct http_head *h, const char *buf)
{
	const char *t = buf + h->target.off;

	f->literal = false;
	f->tunnel = h->method_id == HTTP_M_CONNECT;
	if (f->tunnel)
		return parse_authority(f, buf + h->authority.off, h->authority.len, 0);
	if (h->target_form != HTTP_TARGET_ABSOLUTE || h->target.len < 7 ||
	    strncasecmp(t, "http://", 7) != 0)
		return -EINVAL;
	return parse_authority(f, buf + h->authority.off, h->authority.len, 80);
}

/* ---- checks ----------------------------------------------------------- */

static bool port_allowed(const struct cfg_listener *lc, uint16_t port)
{
	if (lc->connect_ports_any)
		return true;
	for (size_t i = 0; i < lc->n_connect_ports; i++)
		if (port >= lc->connect_ports[i].lo && port <= lc->connect_ports[i].hi)
			return true;
	return false;
}

/* NULL when the request may pass, else the reason it may not (for the log). */
static const char *check_auth(struct conn *c, const struct http_head *h)
{
	struct fwd_worker *fw = c->w->fwd;
	const char *buf = c->http->rbuf;
	int i = http_header_find(h, buf, "proxy-authorization", 0);

	if (!c->lc->auth)
		return NULL;
	if (i < 0)
		return "auth_required";
	if (http_header_find(h, buf, "proxy-authorization", (unsigned int)i + 1) >= 0)
		return "duplicate_credentials"; /* one value (RFC 9110 §11.7.2): which? */
	if (!fw->auth && !(fw->auth = auth_cache_new(c->w->wake_fd)))
		return "no_memory";
	struct fwd_conn *f = c->http->fwd;
	if (f->auth_passed == c->http->seq + 1)
		return NULL;
	const struct http_header *hd = &h->headers[i];
	enum auth_result r = f->verdict;
	if (f->has_verdict)
		f->has_verdict = false; /* the hasher's answer to this very request */
	else
		r = auth_check(fw->auth, c->lc->auth, buf + hd->value.off, hd->value.len, c,
			       &f->auth_job);
	switch (r) {
	case AUTH_OK:
		f->auth_passed = c->http->seq + 1;
		break;
	case AUTH_WRONG:
		return "auth_failed";
	case AUTH_BUSY:
		return "auth_busy";
	case AUTH_PENDING:
		return "auth_pending";
	}
	return NULL;
}

/* ---- the head --------------------------------------------------------- */

/* RFC 9110 §7.6.2: the Max-Forwards of an OPTIONS or TRACE request, which
 * each intermediary decrements and, at 0, answers itself. -1 when absent,
 * not a number, or another method; a count past INT64_MAX is taken as
 * INT64_MAX. */
static int64_t max_forwards(const struct http_head *h, const char *buf)
{
	if (h->method_id != HTTP_M_OPTIONS && h->method_id != HTTP_M_TRACE)
		return -1;
	int i = http_header_find(h, buf, "max-forwards", 0);
	if (i < 0 || h->headers[i].value.len == 0)
		return -1;
	const char *v = buf + h->headers[i].value.off;
	int64_t n = 0;
	for (size_t k = 0; k < h->headers[i].value.len; k++) {
		if (v[k] < '0' || v[k] > '9')
			return -1;
		int d = v[k] - '0';
		n = n > (INT64_MAX - d) / 10 ? INT64_MAX : n * 10 + d;
	}
	return n;
}

/* MF: the request's Max-Forwards (max_forwards), decremented on the way. */
static int build_head(struct conn *c, const struct http_head *h, int64_t mf)
{
	struct http_conn *hc = c->http;
	struct rewrite_opts more = {.drop_proxy_auth = true,
				    .drop_host = true,
				    .drop_max_forwards = mf > 0,
				    .via = true};
	char lines[DNS_NAME_MAX + 96];

	/* The authority is the one the parser checked, at most a bracketed
	 * name or address and a port: it fits. */
	int n = snprintf(lines, sizeof(lines), "Host: %.*s\r\n", (int)h->authority.len,
			 hc->rbuf + h->authority.off);
	if (mf > 0 && n > 0 && (size_t)n < sizeof(lines))
		snprintf(lines + n, sizeof(lines) - (size_t)n, "Max-Forwards: %lld\r\n",
			 (long long)(mf - 1));
	if (http_build_request_head(c, h, &more, lines) < 0)
		return -ENOMEM;
	http_origin_form(hc, h);
	return 0;
}

/* ---- resolving and connecting ----------------------------------------- */

/* The servers the proxy may try: the origin's addresses, minus those whose
 * last connect failed while another one has not (so a dead address of a
 * name is not tried first again and again), in the resolver's order. */
static void fill_pool(struct fwd_conn *f)
{
	struct origin *o = f->origin;
	size_t n = 0;

	for (unsigned i = 0; i < o->n; i++)
		if (atomic_load_explicit(&o->servers[i]->fails, memory_order_relaxed) == 0)
			f->servers[n++] = o->servers[i];
	if (n == 0)
		for (unsigned i = 0; i < o->n; i++)
			f->servers[n++] = o->servers[i];
	f->pool.n_servers = n;
	f->pool_cfg.retries = (int)n - 1;
	f->pool_cfg.keepalive = o->listed ? FWD_KEEPALIVE : 0;
}

bool forward_denies_origin(const struct conn *c, const struct sockaddr *sa)
{
	return acl_denies_addr(c->lc->acl, sa, c->http->fwd->port);
}

/* The IPv4 address SA holds (an IPv4-mapped IPv6 one too), or false. */
static bool ipv4_of(const struct sockaddr *sa, uint32_t *out)
{
	if (sa->sa_family == AF_INET) {
		*out = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
		return true;
	}
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (sa->sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(a6)) {
		memcpy(out, a6->s6_addr + 12, 4);
		*out = ntohl(*out);
		return true;
	}
	return false;
}

/* Loopback or unspecified: this host. */
static bool sockaddr_is_local(const struct sockaddr *sa)
{
	uint32_t v4;
	if (ipv4_of(sa, &v4))
		return v4 >> 24 == 127 || v4 == 0;
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	return sa->sa_family == AF_INET6 &&
	       (IN6_IS_ADDR_LOOPBACK(a6) || IN6_IS_ADDR_UNSPECIFIED(a6));
}

static bool sockaddr_equal_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	uint32_t x, y;
	if (ipv4_of(a, &x) && ipv4_of(b, &y))
		return x == y;
	return a->sa_family == AF_INET6 && b->sa_family == AF_INET6 &&
	       memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* Whether SA (port PORT) reaches fulcrum's own admin listener: its address,
 * or, when the admin listens on loopback or a wildcard, any loopback or
 * unspecified address (a wildcard admin is also reachable through the
 * host's other addresses, which this does not know: README says to deny
 * them). Proxy clients never get there, whatever the ACL says: the admin
 * API can drain servers and reload. */
static bool is_admin_address(const struct conn *c, const struct sockaddr *sa, uint16_t port)
{
	const struct cfg_addr *ad = &c->gen->cfg->global.admin_addr;
	const struct sockaddr *as = (const struct sockaddr *)&ad->ss;

	uint16_t admin_port;

	if (!c->gen->cfg->global.admin || !*c->gen->cfg->global.admin)
		return false;
	if (as->sa_family == AF_INET)
		admin_port = ntohs(((const struct sockaddr_in *)as)->sin_port);
	else if (as->sa_family == AF_INET6)
		admin_port = ntohs(((const struct sockaddr_in6 *)as)->sin6_port);
	else
		return false; /* a unix socket: not reachable by TCP */
	return admin_port == port &&
	       (sockaddr_equal_addr(sa, as) || (sockaddr_is_local(as) && sockaddr_is_local(sa)));
}

static void connect_origin(struct conn *c, struct fwd_conn *f, const struct dns_answer *a)
{
	struct http_conn *hc = c->http;

	/* The name is part of reaching the origin: a failed or slow lookup
	 * is a connect that failed, 502 (SPEC §2 connect_timeout), as in
	 * nginx. */
	if (a->err) {
		http_reply_ex(c, 502,
			      a->err == -ENOENT	     ? "unknown_host"
			      : a->err == -ETIMEDOUT ? "resolve_timeout"
						     : "resolve_failed",
			      false, NULL);
		return;
	}
	/* More addresses than an answer holds: not every one can be checked,
	 * so none is trusted while there are deny patterns to check. */
	if (a->truncated && acl_has_addr_deny(c->lc->acl, f->port)) {
		http_reply_ex(c, 403, "denied_address", false, NULL);
		return;
	}
	for (unsigned i = 0; i < a->n; i++) {
		if (acl_denies_addr(c->lc->acl, &a->addrs[i].sa, f->port)) {
			http_reply_ex(c, 403, "denied_address", false, NULL);
			return;
		}
		if (is_admin_address(c, &a->addrs[i].sa, f->port)) {
			http_reply_ex(c, 403, "denied_admin", false, NULL);
			return;
		}
	}
	f->origin = origin_get(&c->w->fwd->origins, f->host, f->port, a->addrs,
			       a->n < ORIGIN_MAX_ADDRS ? a->n : ORIGIN_MAX_ADDRS);
	if (!f->origin) {
		http_reply_ex(c, 500, "no_memory", true, NULL);
		return;
	}
	fill_pool(f);
	hc->server = NULL;
	hc->key = 0; /* with one name for all addresses, source hashing keeps their order */
	hc->connect_tunnel = f->tunnel;
	http_connect_server(c);
}

static void on_resolved(struct dns_wait *wt, const struct dns_answer *a)
{
	struct fwd_conn *f = container_of(wt, struct fwd_conn, wait);
	struct conn *c = f->c;

	connect_origin(c, f, a);
	conn_resume(c);
}

static void resolve(struct conn *c, struct fwd_conn *f)
{
	struct fwd_worker *fw = c->w->fwd;
	struct dns_answer a;

	if (f->literal) {
		a.err = 0;
		a.n = 1;
		a.truncated = false;
		a.addrs[0] = f->literal_addr;
		connect_origin(c, f, &a);
		return;
	}
	if (!fw->dns && !(fw->dns = dns_new(c->w))) {
		http_reply_ex(c, 502, "resolver_unavailable", false, NULL);
		return;
	}
	int r = dns_lookup(fw->dns, c->gen->cfg->hosts, f->host, &f->wait, &a);
	if (r < 0)
		http_reply_ex(c, 500, "no_memory", true, NULL);
	else if (r == 1)
		connect_origin(c, f, &a);
	else
		http_set_phase(c, HP_RESOLVE);
}

void forward_on_timer(struct conn *c)
{
	struct fwd_conn *f = c->http->fwd;

	dns_cancel(&f->wait);
	http_reply_ex(c, 502, "resolve_timeout", false, NULL);
}

/* The hasher's verdict on connection OWNER's credentials: its request is
 * looked at again from the start, and check_auth takes the verdict. */
static void on_auth(void *owner, enum auth_result r)
{
	struct conn *c = owner;
	struct fwd_conn *f = c->http->fwd;

	f->auth_job = NULL;
	f->verdict = r;
	f->has_verdict = true;
	http_set_phase(c, HP_HEAD);
	http_start_request(c);
	conn_resume(c);
}

void forward_collect(struct worker *w)
{
	if (w->fwd && w->fwd->auth)
		auth_collect(w->fwd->auth, on_auth);
}

void forward_auth_timeout(struct conn *c)
{
	struct fwd_conn *f = c->http->fwd;

	auth_cancel(f->auth_job);
	f->auth_job = NULL;
	http_reply_ex(c, 503, "auth_busy", true, "Retry-After: 1\r\n");
}

void forward_established(struct conn *c)
{
	static const char ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
	struct http_conn *hc = c->http;

	memcpy(hc->reply, ok, sizeof(ok) - 1);
	hc->resp_out.iov[0] = (struct iovec){hc->reply, sizeof(ok) - 1};
	hc->resp_out.n = 1;
	hc->resp_out.i = 0;
	hc->status = 200;
	hc->ttfb_ms = (int64_t)(c->w->now_ms - hc->req_start_ms);
	hc->resp_started = true;
	hc->reply_close = false;
	http_set_phase(c, HP_REPLY);
}

/* Answers a request check_auth stopped for WHY. Missing credentials are
 * the first step of a normal exchange; wrong ones end the connection, so
 * guesses cannot be pipelined on it. */
static void answer_auth(struct conn *c, const char *why)
{
	if (strcmp(why, "auth_pending") == 0)
		http_set_phase(c, HP_AUTH); /* on_auth resumes it */
	else if (strcmp(why, "no_memory") == 0)
		http_reply_ex(c, 500, why, true, NULL);
	else if (strcmp(why, "duplicate_credentials") == 0)
		http_reply_ex(c, 400, why, true, NULL);
	else if (strcmp(why, "auth_busy") == 0)
		http_reply_ex(c, 503, why, true, "Retry-After: 1\r\n");
	else
		http_reply_ex(c, 407, why, strcmp(why, "auth_failed") == 0, AUTH_HEADER);
}

/* The listener's rules for where F goes and what it carries, before any
 * name is resolved. Returns true after answering a request they refuse. */
static bool refused(struct conn *c, const struct fwd_conn *f)
{
	const struct http_conn *hc = c->http;
	const struct cfg_listener *lc = c->lc;

	if (f->tunnel && !port_allowed(lc, f->port)) {
		http_reply_ex(c, 403, "port_denied", false, NULL);
		return true;
	}
	if (!acl_allows(lc->acl, f->host, f->port)) {
		http_reply_ex(c, 403, "denied", false, NULL);
		return true;
	}
	if (f->tunnel && hc->req_body != HTTP_BODY_NONE) {
		http_reply_ex(c, 400, "connect_with_body", true, NULL);
		return true;
	}
	if (!f->tunnel && lc->max_body_size && hc->req_body == HTTP_BODY_LENGTH &&
	    hc->req_left > lc->max_body_size) {
		http_reply_ex(c, 413, "body_too_large", true, NULL);
		return true;
	}
	return false;
}

void forward_begin(struct conn *c, const struct http_head *h)
{
	struct http_conn *hc = c->http;
	const struct cfg_listener *lc = c->lc;
	struct fwd_conn *f = fwd_conn_get(c);
	const char *why;

	if (!f) {
		http_reply_ex(c, 500, "no_memory", true, NULL);
		return;
	}
	drop_origin(f);
	hc->pool = &f->pool;
	hc->connect_tunnel = false;
	f->pool_cfg.connect_timeout_ms = lc->connect_timeout_ms;
	f->pool_cfg.server_timeout_ms = lc->server_timeout_ms;
	if (parse_destination(f, h, hc->rbuf) < 0) {
		http_reply_ex(c, 400,
			      h->target_form == HTTP_TARGET_ORIGIN ? "not_a_proxy_request"
								   : "bad_target",
			      true, NULL);
		return;
	}
	if ((why = check_auth(c, h))) {
		answer_auth(c, why);
		return;
	}
	if (refused(c, f))
		return;
	int64_t mf = max_forwards(h, hc->rbuf);
	if (mf == 0) {
		/* The last hop: answered here. fulcrum does not reflect requests
		 * (TRACE), as nginx does not. */
		http_reply_ex(c, h->method_id == HTTP_M_OPTIONS ? 200 : 405, "max_forwards", false,
			      "Allow: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS\r\n");
		return;
	}
	if (!f->tunnel && cache_http_request(c, h))
		return; /* answered from the cache (cache_http.c) */
	if (!f->tunnel && build_head(c, h, mf) < 0) {
		http_reply_ex(c, 500, "no_memory", true, NULL);
		return;
	}
	resolve(c, f);
}
