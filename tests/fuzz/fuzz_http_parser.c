/*
 * fuzz_http_parser.c - libFuzzer target for the head parser (core/http/parser.c).
 *
 * Input: one mode byte, two bytes of split point, then the message. The mode
 * picks request or response and one of four limit sets. Beyond "no crash, no
 * read past len", it checks what the parser promises:
 *  - a prefix answers HTTP_NEED_MORE or exactly what the whole answers;
 *  - a head the whole parse accepts parses alike on its own, and every
 *    shorter prefix of it needs more;
 *  - every slice lies inside the head;
 *  - the head closed up for the next hop (rewrite_compact) stays inside the
 *    original, parses again, and frames the body alike with at most one
 *    Content-Length.
 * Each parse of a prefix runs on its own allocation of exactly that size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "core/http/parser.h"
#include "core/http/rewrite.h"

typedef enum http_result (*parse_fn)(const char *, size_t, const struct http_limits *,
				     struct http_head *);

static const struct http_limits limit_sets[4] = {
	{0, 0}, /* the defaults */
	{32, 128},
	{16, 4096},
	{256, 64},
};

static void check_slice(struct http_slice s, size_t head_len)
{
	CHECK((size_t)s.off + s.len <= head_len);
}

/* Everything a DONE head holds must point inside it; walk the list helpers too. */
static void check_head(const char *buf, const struct http_head *h, bool request)
{
	CHECK(h->head_len >= 4 && h->header_count <= HTTP_MAX_HEADERS);
	CHECK(h->version_minor == 0 || h->version_minor == 1);
	CHECK(h->content_length >= -1);
	check_slice(h->host, h->head_len);
	if (request) {
		check_slice(h->method, h->head_len);
		check_slice(h->target, h->head_len);
		check_slice(h->authority, h->head_len);
		check_slice(h->path, h->head_len);
		CHECK(h->method.len > 0 && h->target.len > 0);
		CHECK(!h->has_te || h->chunked);
	} else {
		check_slice(h->reason, h->head_len);
		CHECK(h->status >= 100 && h->status <= 599);
	}
	CHECK(!(h->has_te && h->content_length >= 0));
	for (unsigned int i = 0; i < h->header_count; i++) {
		const struct http_header *hd = &h->headers[i];
		const char *el;
		size_t el_len, pos = 0, last = 0;

		check_slice(hd->name, h->head_len);
		check_slice(hd->value, h->head_len);
		CHECK(hd->name.len > 0);
		while (http_list_next(buf + hd->value.off, hd->value.len, &pos, &el, &el_len)) {
			CHECK(el_len > 0 && pos > last && pos <= hd->value.len);
			CHECK(el >= buf + hd->value.off &&
			      el + el_len <= buf + pos + hd->value.off);
			last = pos;
		}
		CHECK(http_header_find(h, buf, "host", 0) < (int)h->header_count);
		(void)http_connection_lists(h, buf, buf + hd->name.off, hd->name.len);
	}
	(void)http_response_body(h, HTTP_M_GET);
	(void)http_request_body(h);
	(void)http_is_keep_alive(h);
}

static enum http_result parse_copy(parse_fn parse, const char *buf, size_t len,
				   const struct http_limits *lim, struct http_head *out)
{
	char *copy = malloc(len ? len : 1);
	enum http_result r;

	if (!copy)
		abort();
	memcpy(copy, buf, len);
	r = parse(copy, len, lim, out);
	free(copy);
	return r;
}

static bool same_head(const struct http_head *a, const struct http_head *b)
{
	if (a->head_len != b->head_len || a->header_count != b->header_count ||
	    a->content_length != b->content_length || a->chunked != b->chunked)
		return false;
	for (unsigned int i = 0; i < a->header_count; i++)
		if (memcmp(&a->headers[i], &b->headers[i], sizeof(a->headers[i])) != 0)
			return false;
	return true;
}

/* Closes up a copy of the DONE head H (hop-by-hop fields out, KEEP_UPGRADE
 * or not) and parses the result, with its empty line, again. */
static void check_compacted(parse_fn parse, const char *buf, const struct http_head *h,
			    bool keep_upgrade)
{
	static struct http_head again;
	struct rewrite_opts o = {.keep_upgrade = keep_upgrade};
	size_t start, end;
	char *copy = malloc(h->head_len);

	if (!copy)
		abort();
	memcpy(copy, buf, h->head_len);
	rewrite_compact(copy, h, &o, &start, &end);
	CHECK(start <= end && end + 2 <= h->head_len);
	memcpy(copy + end, "\r\n", 2);
	CHECK(parse(copy + start, end + 2 - start, NULL, &again) == HTTP_DONE);
	CHECK(again.content_length == h->content_length && again.chunked == h->chunked);
	CHECK(!again.content_length_recast);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_head whole_head, part_head;
	const struct http_limits *lim;
	enum http_result whole, part;
	bool request;
	parse_fn parse;
	size_t len, split;
	const char *buf;

	if (size < 3)
		return 0;
	request = !(data[0] & 1);
	parse = request ? http_parse_request : http_parse_response;
	lim = (data[0] >> 1) & 3 ? &limit_sets[(data[0] >> 1) & 3] : NULL;
	buf = (const char *)data + 3;
	len = size - 3;
	split = ((size_t)data[1] | (size_t)data[2] << 8) % (len + 1);

	whole = parse(buf, len, lim, &whole_head);
	CHECK((unsigned int)whole < HTTP_RESULT_COUNT);
	part = parse_copy(parse, buf, split, lim, &part_head);
	CHECK(part == HTTP_NEED_MORE || part == whole);
	if (whole != HTTP_DONE)
		return 0;
	check_head(buf, &whole_head, request);
	CHECK(whole_head.head_len <= len);
	if (part == HTTP_DONE)
		CHECK(same_head(&whole_head, &part_head));
	else
		CHECK(split < whole_head.head_len);
	part = parse_copy(parse, buf, whole_head.head_len, lim, &part_head);
	CHECK(part == HTTP_DONE && same_head(&whole_head, &part_head));
	check_compacted(parse, buf, &whole_head, data[1] & 1);
	return 0;
}
