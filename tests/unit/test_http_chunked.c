/*
 * test_http_chunked.c - the chunked-body decoder (core/http/chunked.c).
 *
 * Table-driven: every row is decoded whole, one byte at a time, and in
 * pieces of a few sizes; each way must give the same result, the same number
 * of bytes consumed and the same payload bytes.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/http/chunked.h"

struct row {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen(text) */
	enum http_result want;
	const char *payload; /* the data bytes, for rows that end or need more */
	size_t used; /* 0: all of text (when want is DONE or NEED_MORE) */
};

/* What one way of feeding a body came to. */
struct outcome {
	enum http_result r;
	size_t used;
	size_t payload_len;
	char payload[8192];
};

/* Decode text in pieces of piece bytes (each copied to its own buffer). */
static void decode(const char *text, size_t len, size_t piece, size_t max_trailer,
		   struct outcome *o)
{
	struct http_chunked c;
	size_t off = 0;

	http_chunked_init(&c, max_trailer);
	o->r = HTTP_NEED_MORE;
	o->used = 0;
	o->payload_len = 0;
	while (off < len && o->r == HTTP_NEED_MORE) {
		size_t n = len - off < piece ? len - off : piece, used, data;
		char *copy = malloc(n);

		cr_assert_not_null(copy);
		memcpy(copy, text + off, n);
		o->r = http_chunked_feed(&c, copy, n, &used, &data);
		cr_assert_leq(used, n);
		cr_assert_leq(data, used);
		cr_assert_leq(o->payload_len + data, sizeof(o->payload));
		memcpy(o->payload + o->payload_len, copy + used - data, data);
		o->payload_len += data;
		free(copy);
		off += used;
		o->used = off;
	}
}

static void check_row(const struct row *w, size_t max_trailer)
{
	static struct outcome whole, part;
	static const size_t pieces[] = {1, 2, 3, 7, 64};
	size_t len = w->len ? w->len : strlen(w->text);

	decode(w->text, len, len ? len : 1, max_trailer, &whole);
	cr_expect_eq(whole.r, w->want, "%s: got %s, want %s", w->name, http_result_name(whole.r),
		     http_result_name(w->want));
	if (w->used)
		cr_expect_eq(whole.used, w->used, "%s: used %zu", w->name, whole.used);
	else if (!http_is_error(w->want))
		cr_expect_eq(whole.used, len, "%s: used %zu", w->name, whole.used);
	if (w->payload)
		cr_expect(whole.payload_len == strlen(w->payload) &&
				  memcmp(whole.payload, w->payload, whole.payload_len) == 0,
			  "%s: payload %.*s", w->name, (int)whole.payload_len, whole.payload);
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		decode(w->text, len, pieces[i], max_trailer, &part);
		cr_expect_eq(part.r, whole.r, "%s: pieces of %zu give %s", w->name, pieces[i],
			     http_result_name(part.r));
		cr_expect_eq(part.used, whole.used, "%s: pieces of %zu used %zu", w->name,
			     pieces[i], part.used);
		cr_expect(part.payload_len == whole.payload_len &&
				  memcmp(part.payload, whole.payload, part.payload_len) == 0,
			  "%s: pieces of %zu payload differs", w->name, pieces[i]);
	}
}

#define ROWS_RUN(a, trailer)                                                                       \
	for (size_t i = 0; i < sizeof(a) / sizeof((a)[0]); i++)                                    \
	check_row(&(a)[i], trailer)

static const struct row valid[] = {
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n", 0, HTTP_DONE, "hello", 0},
	{"two chunks", "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 0, HTTP_DONE, "abcde", 0},
	{"hex sizes", "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n", 0, HTTP_DONE,
	 "0123456789abcdefghijk", 0},
	{"crlf in data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", 0, HTTP_DONE, "\r\n\r\n", 0},
	{"empty body", "0\r\n\r\n", 0, HTTP_DONE, "", 0},
	{"zeros", "000\r\n\r\n", 0, HTTP_DONE, "", 0},
	{"sixteen digits", "0000000000000005\r\nhello\r\n0\r\n\r\n", 0, HTTP_DONE, "hello", 0},
	{"extension", "5;name\r\nhello\r\n0;last\r\n\r\n", 0, HTTP_DONE, "hello", 0},
	{"extension values", "5;a=b;c=\"x y\\\"z;\"\r\nhello\r\n0\r\n\r\n", 0, HTTP_DONE, "hello",
	 0},
	{"extension bws", "5 ;a = b ; c\t=\t\"d\"\r\nhello\r\n0\r\n\r\n", 0, HTTP_DONE, "hello", 0},
	{"trailers", "5\r\nhello\r\n0\r\nX-Sum: abc\r\nY:\r\nZ: a b\t\r\n\r\n", 0, HTTP_DONE,
	 "hello", 0},
	{"next message after", "2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 0, HTTP_DONE, "hi", 12},
	{"incomplete data", "5\r\nhel", 0, HTTP_NEED_MORE, "hel", 0},
	{"incomplete size", "5", 0, HTTP_NEED_MORE, "", 0},
	{"incomplete trailer", "0\r\nX: y\r\n", 0, HTTP_NEED_MORE, "", 0},
	{"largest size", "7fffffffffffffff\r\nabc", 0, HTTP_NEED_MORE, "abc", 0},
};

static const struct row invalid[] = {
	{"letters", "zz\r\n", 0, HTTP_E_BAD_CHUNK_SIZE, NULL, 0},
	{"negative", "-1\r\n", 0, HTTP_E_BAD_CHUNK_SIZE, NULL, 0},
	{"seventeen digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_SIZE,
	 NULL, 16},
	{"over 63 bits", "8000000000000000\r\n", 0, HTTP_E_BAD_CHUNK_SIZE, NULL, 15},
	{"leading space", " 5\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_SIZE, NULL, 0},
	{"trailing space", "5 \r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_SIZE, NULL, 2},
	{"empty size", "\r\n", 0, HTTP_E_BAD_CHUNK_SIZE, NULL, 0},
	{"hex prefix", "0x5\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_SIZE, NULL, 1},
	{"bare lf size", "5\nhello\r\n0\r\n\r\n", 0, HTTP_E_BARE_LF, NULL, 1},
	{"bare cr size", "5\rhello\r\n0\r\n\r\n", 0, HTTP_E_BARE_CR, NULL, 2},
	{"no crlf after data", "5\r\nhello0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_END, NULL, 8},
	{"data too long", "5\r\nhelloo\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_END, NULL, 8},
	{"bare lf after data", "5\r\nhello\n0\r\n\r\n", 0, HTTP_E_BARE_LF, NULL, 8},
	{"bare cr after data", "5\r\nhello\rx0\r\n\r\n", 0, HTTP_E_BARE_CR, NULL, 9},
	{"empty extension", "5;\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_EXT, NULL, 2},
	{"empty ext name", "5;=b\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_EXT, NULL, 2},
	{"empty ext value", "5;a=\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_EXT, NULL, 4},
	{"ext trailing space", "5;a \r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_EXT, NULL, 4},
	{"ext value trailing space", "5;a=b \r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_EXT, NULL,
	 6},
	{"ext unclosed quote", "5;a=\"b\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_EXT, NULL, 6},
	{"ext bare lf", "5;a\nhello\r\n0\r\n\r\n", 0, HTTP_E_BARE_LF, NULL, 3},
	{"ext ctl", "5;a\x01\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_EXT, NULL, 3},
	{"ext two values", "5;a=b=c\r\nhello\r\n0\r\n\r\n", 0, HTTP_E_BAD_CHUNK_EXT, NULL, 5},
	{"trailer space before colon", "0\r\nX : y\r\n\r\n", 0, HTTP_E_SPACE_BEFORE_COLON, NULL, 4},
	{"trailer obs-fold", "0\r\nX: y\r\n z\r\n\r\n", 0, HTTP_E_OBS_FOLD, NULL, 9},
	{"trailer no colon", "0\r\nX\r\n\r\n", 0, HTTP_E_BAD_TRAILER, NULL, 4},
	{"trailer nul", "0\r\nX: a\0\r\n\r\n", 12, HTTP_E_BAD_TRAILER, NULL, 7},
	{"trailer bare lf", "0\r\nX: y\n\r\n", 0, HTTP_E_BARE_LF, NULL, 7},
	{"final bare cr", "0\r\n\rX", 0, HTTP_E_BARE_CR, NULL, 4},
	{"final bare lf", "0\r\n\n", 0, HTTP_E_BARE_LF, NULL, 3},
};

Test(http_chunked, valid_streams)
{
	ROWS_RUN(valid, 0);
}

Test(http_chunked, invalid_streams)
{
	ROWS_RUN(invalid, 0);
}

Test(http_chunked, trailer_limit)
{
	static const struct row rows[] = {
		{"trailer at limit", "0\r\nX: 12345678\r\n\r\n", 0, HTTP_DONE, "", 0},
		{"trailer over limit", "0\r\nX: 123456789\r\n\r\n", 0, HTTP_E_TRAILER_TOO_LARGE,
		 NULL, 18},
	};

	/* The trailer section counts its field lines and the final CRLF. */
	ROWS_RUN(rows, 15);
}

Test(http_chunked, line_limit)
{
	static char buf[HTTP_CHUNK_LINE_MAX + 16];
	struct row w = {"long extension", buf, 0, HTTP_E_BAD_CHUNK_EXT, NULL, HTTP_CHUNK_LINE_MAX};

	memset(buf, 'a', sizeof(buf) - 1);
	memcpy(buf, "5;", 2);
	check_row(&w, 0);
	buf[HTTP_CHUNK_LINE_MAX - 1] = '\r';
	buf[HTTP_CHUNK_LINE_MAX] = '\n';
	buf[HTTP_CHUNK_LINE_MAX + 1] = '\0';
	w = (struct row){"extension at limit", buf, 0, HTTP_NEED_MORE, "", 0};
	check_row(&w, 0);
}

Test(http_chunked, skip_spliced_data)
{
	struct http_chunked c;
	size_t used, data;

	http_chunked_init(&c, 0);
	cr_assert_eq(http_chunked_feed(&c, "10\r\n", 4, &used, &data), HTTP_NEED_MORE);
	cr_expect_eq(used, 4);
	cr_expect_eq(http_chunked_data_left(&c), 16);
	http_chunked_skip(&c, 10);
	cr_expect_eq(http_chunked_data_left(&c), 6);
	cr_assert_eq(http_chunked_feed(&c, "abcdef\r\n0\r\n\r\n", 13, &used, &data),
		     HTTP_NEED_MORE);
	cr_expect_eq(used, 6);
	cr_expect_eq(data, 6);
	cr_expect_eq(http_chunked_data_left(&c), 0);
	cr_assert_eq(http_chunked_feed(&c, "\r\n0\r\n\r\nrest", 11, &used, &data), HTTP_DONE);
	cr_expect_eq(used, 7);
	cr_expect_eq(data, 0);
	cr_expect_eq(http_chunked_feed(&c, "x", 1, &used, &data), HTTP_DONE);
	cr_expect_eq(used, 0);
	cr_expect_str_eq(http_chunked_state_name(c.state), "done");
}

Test(http_chunked, error_sticks)
{
	struct http_chunked c;
	size_t used, data;

	http_chunked_init(&c, 0);
	cr_assert_eq(http_chunked_feed(&c, "5x", 2, &used, &data), HTTP_E_BAD_CHUNK_SIZE);
	cr_expect_eq(used, 1);
	cr_expect_eq(http_chunked_feed(&c, "\r\n", 2, &used, &data), HTTP_E_BAD_CHUNK_SIZE);
	cr_expect_eq(used, 0);
	for (int s = 0; s < HTTP_CHUNK_STATE_COUNT; s++)
		cr_expect_str_neq(http_chunked_state_name(s), "unknown", "state %d", s);
}
