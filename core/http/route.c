/*
 * route.c - route matching (see route.h). Pure; any thread.
 */
#include "core/http/route.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t route_host_len(const char *host, size_t len)
{
	if (len && host[0] == '[') {
		const char *end = memchr(host, ']', len);
		return end ? (size_t)(end - host) + 1 : len;
	}
	const char *colon = memchr(host, ':', len);
	if (colon)
		len = (size_t)(colon - host);
	if (len && host[len - 1] == '.')
		len--; /* "example.com." names the same host */
	return len;
}

bool route_host_matches(const char *pattern, const char *host, size_t len)
{
	len = route_host_len(host, len);
	if (pattern[0] == '*' && pattern[1] == '.') {
		size_t plen = strlen(pattern + 1); /* ".suffix" */
		return len > plen && strncasecmp(host + len - plen, pattern + 1, plen) == 0;
	}
	return strlen(pattern) == len && strncasecmp(pattern, host, len) == 0;
}

bool route_path_implies_slash(const struct http_head *h, const char *buf)
{
	if (h->target_form != HTTP_TARGET_ABSOLUTE)
		return false;
	if (h->path.len == 0)
		return h->method_id != HTTP_M_OPTIONS;
	return buf[h->path.off] == '?';
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

size_t route_path_normalize(const char *path, size_t len, char *out)
{
	const char *q = memchr(path, '?', len);
	size_t plen = q ? (size_t)(q - path) : len;
	size_t n = 0;

	for (size_t i = 0; i < plen; i++) {
		int hi, lo;
		if (path[i] == '%' && i + 2 < plen && (hi = hex_digit(path[i + 1])) >= 0 &&
		    (lo = hex_digit(path[i + 2])) >= 0) {
			out[n++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[n++] = path[i];
		}
	}
	/* Segments, in place: the write index o never passes the read one. */
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		if (out[i] == '/') {
			if (o == 0 || out[o - 1] != '/')
				out[o++] = '/';
			i++;
			continue;
		}
		size_t start = i;
		while (i < n && out[i] != '/')
			i++;
		size_t seg = i - start;
		bool dot = seg == 1 && out[start] == '.';
		bool dotdot = seg == 2 && out[start] == '.' && out[start + 1] == '.';
		if (dot || dotdot) {
			if (dotdot && o > 1) {
				o--; /* the slash before the segment ".." removes */
				while (o > 0 && out[o - 1] != '/')
					o--;
			}
			if (i < n)
				i++; /* and the slash after the dots */
			continue;
		}
		memmove(out + o, out + start, seg);
		o += seg;
	}
	memcpy(out + o, path + plen, len - plen);
	return o + len - plen;
}

/* The request's path as a server reads it (route_path_normalize), made
 * once per request, when the first path route is tried; an absolute-form
 * target with no path as it is forwarded: "http://x?q" as "/?q". */
struct norm_path {
	char stack[2048];
	char *s; /* stack, or malloc'd for a longer path; NULL until made */
	size_t len;
	bool failed; /* no memory: no path route matches */
};

static bool norm_path_make(struct norm_path *np, const struct http_head *h, const char *buf)
{
	size_t len = h->path.len;

	if (np->s || np->failed)
		return np->s != NULL;
	np->s = len + 1 > sizeof(np->stack) ? malloc(len + 1) : np->stack;
	if (!np->s) {
		np->failed = true;
		return false;
	}
	size_t off = 0;
	if (route_path_implies_slash(h, buf))
		np->s[off++] = '/';
	np->len = off + route_path_normalize(buf + h->path.off, len, np->s + off);
	return true;
}

/* PREFIX is normalized and starts with "/" (the config sees to both). */
static bool path_matches(const char *prefix, struct norm_path *np, const struct http_head *h,
			 const char *buf)
{
	size_t plen = strlen(prefix);
	return norm_path_make(np, h, buf) && np->len >= plen && memcmp(np->s, prefix, plen) == 0;
}

static bool header_matches(const struct cfg_route *r, const struct http_head *h, const char *buf)
{
	size_t vlen = strlen(r->header_value);
	for (int i = http_header_find(h, buf, r->header_name, 0); i >= 0;
	     i = http_header_find(h, buf, r->header_name, (unsigned)i + 1)) {
		const struct http_header *hd = &h->headers[i];
		if (hd->value.len == vlen &&
		    memcmp(buf + hd->value.off, r->header_value, vlen) == 0)
			return true;
	}
	return false;
}

int route_http(const struct cfg *cfg, int listener, const struct http_head *head, const char *buf)
{
	struct http_slice host = http_request_host(head);
	struct norm_path np;
	int pool = cfg->listeners[listener].pool;

	np.s = NULL;
	np.failed = false;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct cfg_route *r = &cfg->routes[i];
		if (r->listener != listener)
			continue;
		if (r->host && !route_host_matches(r->host, buf + host.off, host.len))
			continue;
		if (r->path_prefix && !path_matches(r->path_prefix, &np, head, buf))
			continue;
		if (r->header_name && !header_matches(r, head, buf))
			continue;
		pool = r->pool;
		break;
	}
	if (np.s && np.s != np.stack)
		free(np.s);
	return pool;
}

int route_sni(const struct cfg *cfg, int listener, const char *sni, size_t len)
{
	/* A server name has no port (RFC 6066 §3): one with a colon is no
	 * name, and matches no host. */
	if (sni && memchr(sni, ':', len))
		sni = NULL;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct cfg_route *r = &cfg->routes[i];
		if (r->listener != listener)
			continue;
		if (r->host && (!sni || !route_host_matches(r->host, sni, len)))
			continue;
		return r->pool;
	}
	return cfg->listeners[listener].pool;
}
