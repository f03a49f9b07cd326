/*
 * pick.c - http mode: what a request tells the balancer about the server
 * it should go to: its hash key (source, maglev, ring) and its sticky
 * cookie (SPEC §4). Worker thread.
 */
#include "core/http/proxy_internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/conn.h"
#include "core/dns.h"
#include "core/http/route.h"

/* Where cookie_next is in the Cookie fields of a request head. */
struct cookie_iter {
	int field; /* index of the Cookie field being read, -1 before the first */
	const char *pos, *end;
};

static bool is_ows(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* The value of the next cookie NAME in the Cookie fields of H (*LEN bytes),
 * or NULL when there is no more. Browsers send "a=1; b=2", but spaces and
 * tabs around the ';' and the '=' are skipped as HAProxy and nginx do, so a
 * hand-made header pins the same way. IT starts zeroed with field = -1. */
static const char *cookie_next(const struct http_head *h, const char *buf, const char *name,
			       struct cookie_iter *it, size_t *len)
{
	size_t nlen = strlen(name);
	for (;;) {
		if (it->pos == it->end) {
			it->field = http_header_find(h, buf, "cookie", (unsigned)(it->field + 1));
			if (it->field < 0)
				return NULL;
			it->pos = buf + h->headers[it->field].value.off;
			it->end = it->pos + h->headers[it->field].value.len;
		}
		while (it->pos < it->end && (is_ows(*it->pos) || *it->pos == ';'))
			it->pos++;
		const char *pair = it->pos;
		while (it->pos < it->end && *it->pos != ';')
			it->pos++;
		const char *eq = memchr(pair, '=', (size_t)(it->pos - pair));
		if (!eq)
			continue;
		const char *key_end = eq;
		while (key_end > pair && is_ows(key_end[-1]))
			key_end--;
		if ((size_t)(key_end - pair) != nlen || memcmp(pair, name, nlen) != 0)
			continue;
		const char *v = eq + 1, *v_end = it->pos;
		while (v < v_end && is_ows(*v))
			v++;
		while (v_end > v && is_ows(v_end[-1]))
			v_end--;
		*len = (size_t)(v_end - v);
		return v;
	}
}

/* The value of the first cookie NAME in H, or NULL. */
static const char *find_cookie(const struct http_head *h, const char *buf, const char *name,
			       size_t *len)
{
	struct cookie_iter it = {.field = -1};
	return cookie_next(h, buf, name, &it, len);
}

uint64_t http_request_key(const struct conn *c, const struct http_head *h, const char *buf)
{
	const struct cfg_pool *pc = http_of(c)->pool->cfg;
	const char *v = NULL;
	size_t len = 0;
	int i;

	switch (pc->hash_key) {
	case HKEY_HEADER:
		i = http_header_find(h, buf, pc->hash_key_name, 0);
		if (i >= 0) {
			v = buf + h->headers[i].value.off;
			len = h->headers[i].value.len;
		}
		break;
	case HKEY_COOKIE:
		v = find_cookie(h, buf, pc->hash_key_name, &len);
		break;
	case HKEY_URI:
		v = buf + h->target.off;
		len = h->target.len;
		break;
	case HKEY_PATH:
		v = buf + h->path.off;
		len = h->path.len;
		if (memchr(v, '?', len))
			len = (size_t)((const char *)memchr(v, '?', len) - v);
		if (len == 0 && route_path_implies_slash(h, buf)) {
			v = "/"; /* "http://x" asks for "/" */
			len = 1;
		}
		break;
	case HKEY_HOST: {
		/* The host as routes see it: case and a :port do not matter
		 * (a longer, invalid one is hashed as sent). */
		char name[DNS_NAME_MAX + 1];
		v = buf + http_request_host(h).off;
		len = route_host_len(v, http_request_host(h).len);
		if (len == 0 || len > sizeof(name))
			break;
		for (size_t k = 0; k < len; k++)
			name[k] = (char)tolower((unsigned char)v[k]);
		return lb_hash(name, len);
	}
	case HKEY_CLIENT_IP:
		break;
	}
	/* SPEC §4: a key absent from the request falls back to the client. */
	return v && len ? lb_hash(v, len) : conn_client_hash(c);
}

/* The server of POOL named NAME (LEN bytes), or NULL. */
static struct lb_server *find_server(const struct lb_pool *pool, const char *name, size_t len)
{
	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];
		/* A server deleted through the API drains in the list; a new one
		 * may already carry its name. */
		if (atomic_load_explicit(&s->removed, memory_order_relaxed))
			continue;
		if (strlen(s->name) == len && memcmp(s->name, name, len) == 0)
			return s;
	}
	return NULL;
}

/* Whether a sticky cookie naming S is valid (SPEC §4): S is up (not down,
 * about to be marked down, draining or disabled), and a backup only while
 * no normal server can take traffic (usable, weight above 0), the same
 * tier rule lb_pick follows. A weight-0 server keeps its cookie's clients. */
static bool sticky_is_valid(const struct lb_pool *pool, const struct lb_server *s)
{
	if (atomic_load_explicit(&s->state, memory_order_relaxed) != SRV_UP ||
	    lb_server_is_failing(s))
		return false;
	if (!s->backup)
		return true;
	for (size_t i = 0; i < pool->n_servers; i++)
		if (!pool->servers[i]->backup && lb_server_is_usable(pool->servers[i]) &&
		    atomic_load_explicit(&pool->servers[i]->weight, memory_order_relaxed) > 0)
			return false;
	return true;
}

/*
 * The server the request's sticky cookie pins it to, or NULL for the
 * balancer to choose. Sets hc->set_cookie when the cookie is absent or not
 * valid, so the answer pins the client to the server that gives it. A valid
 * cookie whose server is at its maxconn gets NULL and no new cookie: this
 * request goes elsewhere, the client stays pinned.
 */
struct lb_server *http_sticky_server(struct conn *c, const struct http_head *h, const char *buf)
{
	struct http_conn *hc = http_of(c);
	const char *name = hc->pool->cfg->sticky_cookie;
	struct lb_server *s = NULL;
	size_t len;

	if (!name)
		return NULL;
	/* A browser may hold the cookie for the host and for its parent
	 * domain and send both: any one that names a valid server pins. */
	struct cookie_iter it = {.field = -1};
	const char *v;
	while ((v = cookie_next(h, buf, name, &it, &len))) {
		s = find_server(hc->pool, v, len);
		if (s && sticky_is_valid(hc->pool, s))
			break;
		s = NULL;
	}
	hc->set_cookie = !s;
	if (hc->set_cookie || !lb_server_is_usable(s))
		return NULL;
	return s;
}
