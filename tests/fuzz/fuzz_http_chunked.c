/*
 * fuzz_http_chunked.c - libFuzzer target for the chunked decoder
 * (core/http/chunked.c).
 *
 * Input: one byte choosing the piece size, one choosing the trailer limit
 * and whether payload is skipped (as the proxy does when it splices), then
 * the body. The body is decoded whole and in pieces (each piece in its own
 * allocation); both must agree on the result, the bytes consumed and the
 * payload bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "core/http/chunked.h"

struct outcome {
	enum http_result r;
	size_t used;
	size_t payload_len;
	char *payload; /* capacity: the body's length */
};

/* Feed one piece; payload runs (fed or skipped) are appended to o->payload. */
static size_t feed_piece(struct http_chunked *c, const char *piece, size_t n, bool skip,
			 struct outcome *o)
{
	size_t used, data, off = 0;

	while (off < n && o->r == HTTP_NEED_MORE) {
		uint64_t left = http_chunked_data_left(c);

		if (skip && left > 0) {
			size_t k = n - off < left ? n - off : (size_t)left;

			http_chunked_skip(c, k);
			memcpy(o->payload + o->payload_len, piece + off, k);
			o->payload_len += k;
			off += k;
			continue;
		}
		o->r = http_chunked_feed(c, piece + off, n - off, &used, &data);
		CHECK(used <= n - off && data <= used);
		memcpy(o->payload + o->payload_len, piece + off + used - data, data);
		o->payload_len += data;
		off += used;
	}
	return off;
}

static void decode(const char *body, size_t len, size_t piece, size_t max_trailer, bool skip,
		   struct outcome *o)
{
	struct http_chunked c;
	size_t off = 0;

	http_chunked_init(&c, max_trailer);
	o->r = HTTP_NEED_MORE;
	o->payload_len = 0;
	while (off < len && o->r == HTTP_NEED_MORE) {
		size_t n = len - off < piece ? len - off : piece;
		char *copy = malloc(n);
		size_t used;

		if (!copy)
			abort();
		memcpy(copy, body + off, n);
		used = feed_piece(&c, copy, n, skip, o);
		free(copy);
		off += used;
		if (used < n)
			break;
	}
	o->used = off;
	CHECK((unsigned int)o->r < HTTP_RESULT_COUNT);
	CHECK(http_is_error(o->r) || o->r == HTTP_DONE || off == len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, part;
	size_t len, piece, max_trailer;
	const char *body;

	if (size < 2)
		return 0;
	piece = (size_t)(data[0] % 64) + 1;
	max_trailer = (size_t)(data[1] & 0x7f) * 4;
	body = (const char *)data + 2;
	len = size - 2;
	whole.payload = malloc(len + 1);
	part.payload = malloc(len + 1);
	if (!whole.payload || !part.payload)
		abort();
	decode(body, len, len ? len : 1, max_trailer, false, &whole);
	decode(body, len, piece, max_trailer, data[1] & 0x80, &part);
	CHECK(whole.r == part.r && whole.used == part.used);
	CHECK(whole.payload_len == part.payload_len);
	CHECK(memcmp(whole.payload, part.payload, whole.payload_len) == 0);
	free(whole.payload);
	free(part.payload);
	return 0;
}
