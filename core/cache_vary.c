/*
 * cache_vary.c - cache keys and Vary (see cache.h): hashing a key, reading
 * the request fields a Vary names, recording them with an entry and
 * matching them later (RFC 9111 §4.1). Pure; any thread.
 *
 * A Vary record is a run of (name, value) pairs: one byte of name length,
 * the lower-case name, two bytes of value length (little-endian; 0xffff
 * when the request had no such field) and the value. Values are compared
 * byte for byte after joining repeated fields with ", ", which is what the
 * RFC asks for without any field-specific normalisation.
 */
#include "core/cache.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "balancer/lb.h"

#define ABSENT 0xffff

void cache_key_hash(struct cache_key *k)
{
	/* Odd multipliers keep each part's bits apart (XXH64's primes). */
	k->hash = lb_hash_local(k->target, k->target_len) ^
		  lb_hash_local(k->host, k->host_len) * UINT64_C(0x9E3779B185EBCA87) ^
		  k->scope * UINT64_C(0xC2B2AE3D27D4EB4F);
}

static int append_value(char *out, size_t cap, int len, const char *v, size_t n)
{
	size_t at = len < 0 ? 0 : (size_t)len;
	size_t sep = len < 0 ? 0 : 2;

	if (at + sep + n > cap)
		return -2;
	if (sep)
		memcpy(out + at, ", ", 2);
	memcpy(out + at + sep, v, n);
	return (int)(at + sep + n);
}

/* The field lines form: "Name: value\r\n", well formed (the parser saw
 * them), values with optional whitespace around them. */
static int field_from_lines(const char *p, size_t len, const char *name, size_t nlen, char *out,
			    size_t cap)
{
	const char *end = p + len;
	int got = -1;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = eol ? eol : end;
		const char *colon = memchr(p, ':', (size_t)(line_end - p));
		if (colon && (size_t)(colon - p) == nlen && strncasecmp(p, name, nlen) == 0) {
			const char *v = colon + 1, *ve = line_end;
			if (ve > v && ve[-1] == '\r')
				ve--;
			while (v < ve && http_is_ows((unsigned char)*v))
				v++;
			while (ve > v && http_is_ows((unsigned char)ve[-1]))
				ve--;
			got = append_value(out, cap, got, v, (size_t)(ve - v));
			if (got == -2)
				return -2;
		}
		p = eol ? eol + 1 : end;
	}
	return got;
}

int cache_req_field(const struct cache_req *rq, const char *name, size_t name_len, char *out,
		    size_t cap)
{
	int got = -1;

	if (!rq->h)
		return field_from_lines(rq->lines, rq->lines_len, name, name_len, out, cap);
	for (unsigned i = 0; i < rq->h->header_count; i++) {
		const struct http_header *hd = &rq->h->headers[i];
		if (hd->name.len != name_len || strncasecmp(rq->buf + hd->name.off, name, name_len))
			continue;
		got = append_value(out, cap, got, rq->buf + hd->value.off, hd->value.len);
		if (got == -2)
			return -2;
	}
	return got;
}

/* The value length stored at P (two bytes, little-endian). */
static size_t value_len_at(const char *p)
{
	return (size_t)(unsigned char)p[0] | (size_t)(unsigned char)p[1] << 8;
}

/* The size of the pair at P: name length, name, value length, value. */
static size_t pair_size(const char *p)
{
	size_t n = (unsigned char)p[0], v = value_len_at(p + 1 + n);
	return 3 + n + (v == ABSENT ? 0 : v);
}

/* Whether the record VARY[0, LEN) already names NAME (lower-case). */
static bool record_has(const char *vary, size_t len, const char *name, size_t nlen)
{
	for (size_t at = 0; at < len; at += pair_size(vary + at))
		if ((unsigned char)vary[at] == nlen && memcmp(vary + at + 1, name, nlen) == 0)
			return true;
	return false;
}

/* Appends one pair for the field named EL[0, N) to OUT at *AT. */
static int record_add(char *out, size_t cap, size_t *at, const char *el, size_t n,
		      const struct cache_req *rq)
{
	char name[256], value[CACHE_FIELD_MAX];

	if (n == 0 || n > 255)
		return -1;
	for (size_t i = 0; i < n; i++)
		name[i] = (char)tolower((unsigned char)el[i]);
	if (record_has(out, *at, name, n))
		return 0;
	int v = cache_req_field(rq, name, n, value, sizeof(value));
	if (v == -2)
		return -1;
	size_t vlen = v < 0 ? 0 : (size_t)v;
	if (*at + 3 + n + vlen > cap)
		return -1;
	out[*at] = (char)n;
	memcpy(out + *at + 1, name, n);
	out[*at + 1 + n] = (char)((v < 0 ? ABSENT : vlen) & 0xff);
	out[*at + 2 + n] = (char)((v < 0 ? ABSENT : vlen) >> 8);
	memcpy(out + *at + 3 + n, value, vlen);
	*at += 3 + n + vlen;
	return 0;
}

/* Fields fulcrum adds, replaces or removes on the way to the server: the
 * server saw values a later client's request does not carry, so a Vary on
 * one cannot be matched (X-Forwarded-For names each client's address). */
static bool written_by_fulcrum(const char *name, size_t len)
{
	static const char *const own[] = {"x-forwarded-for",  "x-forwarded-proto",
					  "x-forwarded-host", "via",
					  "max-forwards",     "proxy-authorization"};

	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strlen(own[i]) == len && strncasecmp(own[i], name, len) == 0)
			return true;
	return false;
}

int cache_vary_build(const struct http_head *resp, const char *buf, const struct cache_req *rq,
		     char *out, size_t cap)
{
	size_t at = 0;

	for (int i = http_header_find(resp, buf, "vary", 0); i >= 0;
	     i = http_header_find(resp, buf, "vary", (unsigned)i + 1)) {
		const struct http_header *hd = &resp->headers[i];
		const char *el;
		size_t pos = 0, el_len;
		while (http_list_next(buf + hd->value.off, hd->value.len, &pos, &el, &el_len)) {
			if ((el_len == 1 && el[0] == '*') || written_by_fulcrum(el, el_len))
				return -1;
			if (record_add(out, cap, &at, el, el_len, rq) < 0)
				return -1;
		}
	}
	return (int)at;
}

bool cache_vary_matches(const char *vary, size_t len, const struct cache_req *rq)
{
	char value[CACHE_FIELD_MAX];

	for (size_t at = 0; at < len; at += pair_size(vary + at)) {
		size_t n = (unsigned char)vary[at];
		const char *name = vary + at + 1;
		size_t v = value_len_at(name + n);
		int got = cache_req_field(rq, name, n, value, sizeof(value));
		if (v == ABSENT) {
			if (got != -1)
				return false;
		} else if (got < 0 || (size_t)got != v || memcmp(value, name + n + 2, v) != 0) {
			return false;
		}
	}
	return true;
}
