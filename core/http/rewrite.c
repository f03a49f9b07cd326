/*
 * rewrite.c - head rewriting (see rewrite.h). Pure; worker threads.
 */
#include "core/http/rewrite.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static bool is_forwarded(const struct http_header *hd, const char *buf)
{
	const char *n = buf + hd->name.off;
	return http_token_eq(n, hd->name.len, "x-forwarded-for") ||
	       http_token_eq(n, hd->name.len, "x-forwarded-proto") ||
	       http_token_eq(n, hd->name.len, "x-forwarded-host");
}

/* Fields of the authentication with a proxy, which concern the hop between
 * a client and the proxy it chose (RFC 9110 §11.7). */
static bool is_proxy_auth(const struct http_header *hd, const char *buf)
{
	const char *n = buf + hd->name.off;
	return http_token_eq(n, hd->name.len, "proxy-authorization") ||
	       http_token_eq(n, hd->name.len, "proxy-authenticate") ||
	       http_token_eq(n, hd->name.len, "proxy-authentication-info");
}

/* Whether HD is a Set-Cookie of the cookie NAME (RFC 6265 §5.2: the name
 * is what comes before the first '=', without surrounding whitespace). */
static bool sets_cookie(const struct http_header *hd, const char *buf, const char *name)
{
	if (!http_token_eq(buf + hd->name.off, hd->name.len, "set-cookie"))
		return false;
	const char *v = buf + hd->value.off, *eq = memchr(v, '=', hd->value.len);
	if (!eq)
		return false;
	size_t len = (size_t)(eq - v);
	while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	return len == strlen(name) && memcmp(v, name, len) == 0;
}

static bool keep_field(const char *buf, const struct http_head *h, const struct http_header *hd,
		       const struct rewrite_opts *o)
{
	if (hd->id == HTTP_H_UPGRADE)
		return o->keep_upgrade;
	if (http_header_is_hop_by_hop(hd))
		return false;
	if (o->drop_forwarded && is_forwarded(hd, buf))
		return false;
	if (o->drop_proxy_auth && is_proxy_auth(hd, buf))
		return false;
	if (o->drop_transfer_encoding && hd->id == HTTP_H_TRANSFER_ENCODING)
		return false;
	if (o->drop_framing &&
	    (hd->id == HTTP_H_CONTENT_LENGTH || hd->id == HTTP_H_TRANSFER_ENCODING))
		return false;
	if (o->drop_host && hd->id == HTTP_H_HOST)
		return false;
	if (o->drop_max_forwards && http_token_eq(buf + hd->name.off, hd->name.len, "max-forwards"))
		return false;
	if (o->drop_x_cache && http_token_eq(buf + hd->name.off, hd->name.len, "x-cache"))
		return false;
	if (o->via && http_token_eq(buf + hd->name.off, hd->name.len, "via"))
		return false;
	if (o->drop_cookie && sets_cookie(hd, buf, o->drop_cookie))
		return false;
	/* Fields named by Connection are hop-by-hop too (RFC 9110 §7.6.1),
	 * but never the ones that frame or address the message: dropping those
	 * on a client's say-so would let it desynchronise the server. */
	if (hd->id == HTTP_H_CONTENT_LENGTH || hd->id == HTTP_H_TRANSFER_ENCODING ||
	    hd->id == HTTP_H_HOST)
		return true;
	return !http_connection_lists(h, buf, buf + hd->name.off, hd->name.len);
}

/*
 * Transfer-Encoding goes on as fulcrum read it: the coding names in lower
 * case (RFC 9112 §7: a lenient peer that only knows "chunked" must frame
 * the body as fulcrum did), and without the empty list elements fulcrum
 * skipped (RFC 9110 §5.6.1) and a peer might not (",chunked"). Rewritten in
 * place: elements are joined by ", " where the gap before them had room for
 * it, else by ",", so none moves forward and the line never grows. Returns
 * its new end.
 */
static size_t clean_transfer_encoding(char *buf, const struct http_header *hd)
{
	char *v = buf + hd->value.off;
	const char *el;
	size_t el_len, pos = 0, n = 0;

	while (http_list_next(v, hd->value.len, &pos, &el, &el_len)) {
		if (n) {
			v[n++] = ',';
			if (el - (v + n) >= 1)
				v[n++] = ' ';
		}
		for (size_t k = 0; k < el_len; k++)
			v[n++] = (char)tolower((unsigned char)el[k]);
	}
	memcpy(v + n, "\r\n", 2);
	return hd->value.off + n + 2;
}

/* The offset just past the CRLF that ends the field line of HD. */
static size_t line_end(const char *buf, const struct http_head *h, const struct http_header *hd)
{
	const char *v = buf + hd->value.off + hd->value.len;
	const char *lf = memchr(v, '\n', h->head_len - (size_t)(v - buf));
	return lf ? (size_t)(lf - buf) + 1 : h->head_len;
}

void rewrite_compact(char *buf, const struct http_head *h, const struct rewrite_opts *o,
		     size_t *start, size_t *end)
{
	/* A request may follow a few empty lines, which are not forwarded. */
	*start = h->method.len ? h->method.off : 0;
	size_t dst = h->header_count ? h->headers[0].name.off : h->head_len - 2;
	bool moved = false;

	int last_cl = -1;

	if (h->content_length_recast)
		for (unsigned i = 0; i < h->header_count; i++)
			if (h->headers[i].id == HTTP_H_CONTENT_LENGTH)
				last_cl = (int)i;
	for (unsigned i = 0; i < h->header_count; i++) {
		const struct http_header *hd = &h->headers[i];
		size_t from = hd->name.off, to = line_end(buf, h, hd);
		if (last_cl >= 0 && hd->id == HTTP_H_CONTENT_LENGTH && !o->drop_framing) {
			/* "5, 5", several equal fields or "005" go on as one
			 * field with the plain number (RFC 9110 §8.6), in place
			 * of the last one. The lines it replaces held more
			 * digits, so it fits in [dst, to). */
			moved = true;
			if ((int)i == last_cl) {
				char line[48];
				int n = snprintf(line, sizeof(line), "Content-Length: %lld\r\n",
						 (long long)h->content_length);
				BUG_ON(n <= 0 || (size_t)n > to - dst); /* never drop framing */
				if (n > 0 && (size_t)n <= to - dst) {
					memcpy(buf + dst, line, (size_t)n);
					dst += (size_t)n;
				}
			}
			continue;
		}
		if (!keep_field(buf, h, hd, o)) {
			moved = true;
			continue;
		}
		if (hd->id == HTTP_H_TRANSFER_ENCODING) {
			size_t clean_end = clean_transfer_encoding(buf, hd);
			moved |= clean_end != to;
			to = clean_end;
		}
		if (moved)
			memmove(buf + dst, buf + from, to - from);
		dst += to - from;
	}
	*end = dst;
}

/* Makes room for at least NEED bytes in all. Returns 0 or -ENOMEM. */
static int reserve(struct rewrite_extra *x, size_t need)
{
	if (need <= x->cap)
		return 0;
	size_t cap = x->cap ? x->cap : 256;
	while (cap < need)
		cap *= 2;
	char *d = realloc(x->data, cap);
	if (!d)
		return -ENOMEM;
	x->data = d;
	x->cap = cap;
	return 0;
}

int rewrite_put(struct rewrite_extra *x, const char *s, size_t n)
{
	if (reserve(x, x->len + n) < 0)
		return -ENOMEM;
	memcpy(x->data + x->len, s, n);
	x->len += n;
	return 0;
}

int rewrite_add(struct rewrite_extra *x, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(x->data ? x->data + x->len : NULL, x->data ? x->cap - x->len : 0,
				  fmt, ap);
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if (x->data && x->len + (size_t)n < x->cap) {
			x->len += (size_t)n;
			return 0;
		}
		/* vsnprintf needs room for its NUL too. */
		if (reserve(x, x->len + (size_t)n + 1) < 0)
			return -ENOMEM;
	}
}

int rewrite_add_joined(struct rewrite_extra *x, const struct http_head *h, const char *buf,
		       const char *name)
{
	bool first = true;
	for (int i = http_header_find(h, buf, name, 0); i >= 0;
	     i = http_header_find(h, buf, name, (unsigned)i + 1)) {
		const struct http_header *hd = &h->headers[i];
		if (hd->value.len == 0)
			continue;
		int err = rewrite_add(x, "%s%.*s", first ? "" : ", ", (int)hd->value.len,
				      buf + hd->value.off);
		if (err)
			return err;
		first = false;
	}
	return 0;
}
