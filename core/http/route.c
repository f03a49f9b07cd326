/*
 * route.c - route matching (see route.h). Pure; any thread.
 */
#include "core/http/route.h"

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

/* PREFIX starts with "/" (the config sees to it). The path is matched as it
 * is forwarded: "http://x?q" as "/?q". */
static bool path_matches(const char *prefix, const struct http_head *h, const char *buf)
{
	if (route_path_implies_slash(h, buf))
		prefix++;
	size_t plen = strlen(prefix);
	return h->path.len >= plen && memcmp(buf + h->path.off, prefix, plen) == 0;
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

	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct cfg_route *r = &cfg->routes[i];
		if (r->listener != listener)
			continue;
		if (r->host && !route_host_matches(r->host, buf + host.off, host.len))
			continue;
		if (r->path_prefix && !path_matches(r->path_prefix, head, buf))
			continue;
		if (r->header_name && !header_matches(r, head, buf))
			continue;
		return r->pool;
	}
	return cfg->listeners[listener].pool;
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
