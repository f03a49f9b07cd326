/*
 * rewrite.h - what a head looks like on its way through: fields that concern
 * one hop only are dropped (SPEC §3), the kept lines closed up in place in the
 * read buffer, and the lines fulcrum adds (X-Forwarded-*, Connection, ...)
 * written into a small separate buffer, so the head goes out as one writev
 * of two or three slices.
 */
#ifndef FULCRUM_HTTP_REWRITE_H
#define FULCRUM_HTTP_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/http/parser.h"

/* Which fields to drop besides the hop-by-hop ones. */
struct rewrite_opts {
	bool keep_upgrade; /* an upgrade is under way: keep the Upgrade field */
	bool drop_forwarded; /* X-Forwarded-For/-Proto/-Host (fulcrum writes its own) */
	bool drop_proxy_auth; /* Proxy-Authorization, -Authenticate, -Authentication-Info (forward
				 mode) */
	bool drop_transfer_encoding; /* the body goes out decoded */
	bool drop_host; /* Host: forward mode writes the absolute URI's authority instead */
	bool drop_max_forwards; /* Max-Forwards: forward mode writes it decremented */
	bool drop_x_cache; /* X-Cache: a caching listener writes its own */
	bool via; /* Via: forward mode writes one field, the old ones and its own */
	/* NULL, or a cookie name: a server's Set-Cookie of it is dropped (the
	 * pool's sticky_cookie, which fulcrum alone sets) */
	const char *drop_cookie;
	/* Content-Length and Transfer-Encoding: a 1xx or 204 has no body and
	 * must not frame one (RFC 9110 §8.6, RFC 9112 §6.1) */
	bool drop_framing;
};

/*
 * Closes up the kept lines of the head H (parsed from BUF) in place. On
 * return, BUF[*START, *END) holds the start line and the kept fields, each
 * with its CRLF, but not the empty line that ends the head. Slices of H other
 * than the start line's are invalid afterwards.
 */
void rewrite_compact(char *buf, const struct http_head *h, const struct rewrite_opts *o,
		     size_t *start, size_t *end);

/* A growable buffer for the added lines. */
struct rewrite_extra {
	char *data;
	size_t len, cap;
};

/* Appends N bytes at S. Returns 0 or -ENOMEM. */
int rewrite_put(struct rewrite_extra *x, const char *s, size_t n);
/* Appends printf-style text. Returns 0 or -ENOMEM. */
int rewrite_add(struct rewrite_extra *x, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends the values of every field NAME of H joined by ", " (no CRLF). */
int rewrite_add_joined(struct rewrite_extra *x, const struct http_head *h, const char *buf,
		       const char *name);

#endif
