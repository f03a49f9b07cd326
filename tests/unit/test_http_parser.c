/*
 * test_http_parser.c - the HTTP/1.1 head parser (core/http/parser.c).
 *
 * Table-driven: every row is parsed whole and then as every prefix, each in a
 * buffer of exactly that size (so ASan sees any read past len); a prefix must
 * answer HTTP_NEED_MORE or exactly what the whole message answers, and once it
 * has answered it must keep answering the same.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http/parser.h"

struct row {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen(text); set it for rows holding a NUL */
	enum http_result want;
};

typedef enum http_result (*parse_fn)(const char *, size_t, const struct http_limits *,
				     struct http_head *);

static enum http_result parse_copy(parse_fn parse, const char *text, size_t len,
				   const struct http_limits *lim, struct http_head *out)
{
	char *copy = malloc(len ? len : 1);
	enum http_result r;

	cr_assert_not_null(copy);
	memcpy(copy, text, len);
	r = parse(copy, len, lim, out);
	free(copy);
	return r;
}

/*
 * Parse text whole and as every prefix; check they agree. Returns the whole
 * answer, with *out filled from the whole parse.
 */
static enum http_result parse_all_ways(parse_fn parse, const char *name, const char *text,
				       size_t len, const struct http_limits *lim,
				       struct http_head *out)
{
	static struct http_head part;
	enum http_result whole = parse_copy(parse, text, len, lim, out);
	bool decided = false;

	for (size_t k = 0; k <= len; k++) {
		enum http_result r = parse_copy(parse, text, k, lim, &part);

		if (r == HTTP_NEED_MORE) {
			cr_expect(!decided, "%s: prefix %zu went back to need_more", name, k);
			continue;
		}
		decided = true;
		cr_expect_eq(r, whole, "%s: prefix %zu gives %s, whole gives %s", name, k,
			     http_result_name(r), http_result_name(whole));
		if (r == HTTP_DONE && whole == HTTP_DONE)
			cr_expect_eq(part.head_len, out->head_len, "%s: prefix %zu head_len", name,
				     k);
	}
	return whole;
}

static void run_rows(parse_fn parse, const struct row *rows, size_t n,
		     const struct http_limits *lim)
{
	static struct http_head h;

	for (size_t i = 0; i < n; i++) {
		size_t len = rows[i].len ? rows[i].len : strlen(rows[i].text);
		enum http_result r =
			parse_all_ways(parse, rows[i].name, rows[i].text, len, lim, &h);

		cr_expect_eq(r, rows[i].want, "%s: got %s, want %s", rows[i].name,
			     http_result_name(r), http_result_name(rows[i].want));
	}
}

#define ROWS(a) (a), sizeof(a) / sizeof((a)[0])
/* A literal holding a NUL, with its length. */
#define BIN(s) s, sizeof(s) - 1

static const struct row valid_requests[] = {
	{"simple", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_DONE},
	{"http10 without host", "GET / HTTP/1.0\r\n\r\n", 0, HTTP_DONE},
	{"absolute form",
	 "GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", 0,
	 HTTP_DONE},
	{"absolute form no path", "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", 0,
	 HTTP_DONE},
	{"connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 0,
	 HTTP_DONE},
	{"connect ipv6", "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", 0,
	 HTTP_DONE},
	{"options asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_DONE},
	{"value spaces and tabs", "GET / HTTP/1.1\r\nHost: a\r\nX: a b\t c \t\r\n\r\n", 0,
	 HTTP_DONE},
	{"empty values", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\nY: \t \r\n\r\n", 0, HTTP_DONE},
	{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 0, HTTP_DONE},
	{"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", 0, HTTP_DONE},
	{"utf-8 target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_DONE},
	{"leading empty lines", "\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_DONE},
	{"content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 0,
	 HTTP_DONE},
	{"content-length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 0,
	 HTTP_DONE},
	{"content-length repeated",
	 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 05\r\n\r\n", 0,
	 HTTP_DONE},
	{"content-length max",
	 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", 0, HTTP_DONE},
	{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
	 HTTP_DONE},
	{"chunked case", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked \r\n\r\n", 0,
	 HTTP_DONE},
	{"gzip then chunked",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;q=\"a,b\", chunked\r\n\r\n", 0,
	 HTTP_DONE},
	{"te over two fields",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
	 "chunked\r\n\r\n",
	 0, HTTP_DONE},
	{"custom method", "PROPFIND /x HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_DONE},
	{"pipelined", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", 0,
	 HTTP_DONE},
	{"upgrade",
	 "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: "
	 "websocket\r\n\r\n",
	 0, HTTP_DONE},
};

static const struct row incomplete_requests[] = {
	{"empty line only", "\r\n", 0, HTTP_NEED_MORE},
	{"cr only", "\r", 0, HTTP_NEED_MORE},
	{"no end", "GET / HTTP/1.1\r\nHost: a\r\n", 0, HTTP_NEED_MORE},
	{"cr pending", "GET / HTTP/1.1\r\nHost: a\r\n\r", 0, HTTP_NEED_MORE},
	{"request line only", "GET / HTTP/1.1", 0, HTTP_NEED_MORE},
};

/* SPEC §3 "Request smuggling is refused", one row per vector. */
static const struct row smuggling[] = {
	{"cl and te",
	 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
	 HTTP_E_CL_AND_TE},
	{"te and cl",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 0,
	 HTTP_E_CL_AND_TE},
	{"cl and te without chunked",
	 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n", 0,
	 HTTP_E_CL_AND_TE},
	{"differing cl",
	 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 0,
	 HTTP_E_CONFLICTING_CONTENT_LENGTH},
	{"differing cl list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 0,
	 HTTP_E_CONFLICTING_CONTENT_LENGTH},
	{"cl letters", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 0,
	 HTTP_E_BAD_CONTENT_LENGTH},
	{"cl negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 0,
	 HTTP_E_BAD_CONTENT_LENGTH},
	{"cl plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 0,
	 HTTP_E_BAD_CONTENT_LENGTH},
	{"cl hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 0,
	 HTTP_E_BAD_CONTENT_LENGTH},
	{"cl two numbers", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 0,
	 HTTP_E_BAD_CONTENT_LENGTH},
	{"cl empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 0,
	 HTTP_E_BAD_CONTENT_LENGTH},
	{"cl empty element", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 0,
	 HTTP_E_BAD_CONTENT_LENGTH},
	{"cl 2^63", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", 0,
	 HTTP_E_BAD_CONTENT_LENGTH},
	{"cl huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
	 0, HTTP_E_BAD_CONTENT_LENGTH},
	{"chunked not last",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0,
	 HTTP_E_BAD_TRANSFER_ENCODING},
	{"chunked twice",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0,
	 HTTP_E_BAD_TRANSFER_ENCODING},
	{"chunked twice over fields",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
	 "chunked\r\n\r\n",
	 0, HTTP_E_BAD_TRANSFER_ENCODING},
	{"chunked with parameter",
	 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 0,
	 HTTP_E_BAD_TRANSFER_ENCODING},
	{"te empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 0,
	 HTTP_E_BAD_TRANSFER_ENCODING},
	{"te garbage", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\"\r\n\r\n", 0,
	 HTTP_E_BAD_TRANSFER_ENCODING},
	{"te without chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 0,
	 HTTP_E_TE_NOT_CHUNKED},
	{"te xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 0,
	 HTTP_E_TE_NOT_CHUNKED},
	{"te in http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
	 HTTP_E_TE_IN_HTTP10},
	{"space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
	 0, HTTP_E_SPACE_BEFORE_COLON},
	{"tab before colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n", 0,
	 HTTP_E_SPACE_BEFORE_COLON},
	{"space inside name", "GET / HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n", 0,
	 HTTP_E_BAD_HEADER_NAME},
	{"space and no colon", "GET / HTTP/1.1\r\nHost: a\r\nBad \r\n\r\n", 0,
	 HTTP_E_BAD_HEADER_NAME},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 0, HTTP_E_OBS_FOLD},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 0, HTTP_E_OBS_FOLD},
	{"leading space field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0, HTTP_E_OBS_FOLD},
	{"bare cr in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 0, HTTP_E_BARE_CR},
	{"bare cr in request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BARE_CR},
	{"bare cr at end", "GET / HTTP/1.1\r\nHost: a\r\n\rX", 0, HTTP_E_BARE_CR},
	{"bare lf everywhere", "GET / HTTP/1.1\nHost: a\n\n", 0, HTTP_E_BARE_LF},
	{"bare lf in field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 0, HTTP_E_BARE_LF},
	{"bare lf at end", "GET / HTTP/1.1\r\nHost: a\r\n\n", 0, HTTP_E_BARE_LF},
	{"bare lf first", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BARE_LF},
	{"nul in value", BIN("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"),
	 HTTP_E_BAD_HEADER_VALUE},
	{"del in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 0,
	 HTTP_E_BAD_HEADER_VALUE},
	{"ctl in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", 0,
	 HTTP_E_BAD_HEADER_VALUE},
	{"nul in name", BIN("GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n"), HTTP_E_BAD_HEADER_NAME},
	{"ctl in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x01Y: a\r\n\r\n", 0,
	 HTTP_E_BAD_HEADER_NAME},
	{"del in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x7f: a\r\n\r\n", 0, HTTP_E_BAD_HEADER_NAME},
	{"separator in name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): a\r\n\r\n", 0,
	 HTTP_E_BAD_HEADER_NAME},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: a\r\n\r\n", 0, HTTP_E_BAD_HEADER_NAME},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nXY\r\n\r\n", 0, HTTP_E_BAD_HEADER_NAME},
	{"two parts", "GET /\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"one part", "GET\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"four parts", "GET / x HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"empty target", "GET  HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"leading space", " GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"too many empty lines", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0,
	 HTTP_E_BAD_REQUEST_LINE},
	{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_METHOD},
	{"http12 without host", "GET / HTTP/1.2\r\nX: a\r\n\r\n", 0, HTTP_E_MISSING_HOST},
	{"http19", "GET / HTTP/1.9\r\nHost: a\r\n\r\n", 0, HTTP_DONE},
	{"http lowercase", "GET / http/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_VERSION},
	{"http10 two digits", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_VERSION},
	{"http1", "GET / HTTP/1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_VERSION},
	{"http2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, HTTP_E_UNSUPPORTED_VERSION},
	{"http09 line", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 0, HTTP_E_UNSUPPORTED_VERSION},
	{"no host", "GET / HTTP/1.1\r\nX: a\r\n\r\n", 0, HTTP_E_MISSING_HOST},
	{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 0, HTTP_E_MULTIPLE_HOST},
	{"two hosts http10", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 0,
	 HTTP_E_MULTIPLE_HOST},
	{"host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, HTTP_E_BAD_HOST},
	{"host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 0, HTTP_E_BAD_HOST},
	{"host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, HTTP_E_BAD_HOST},
	{"host bad port", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 0, HTTP_E_BAD_HOST},
	{"asterisk with get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_TARGET},
	{"authority with get", "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 0,
	 HTTP_E_BAD_TARGET},
	{"connect origin form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_TARGET},
	{"connect no port", "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", 0,
	 HTTP_E_BAD_TARGET},
	{"connect port 0", "CONNECT example.com:0 HTTP/1.1\r\nHost: a\r\n\r\n", 0,
	 HTTP_E_BAD_TARGET},
	{"absolute userinfo", "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 0,
	 HTTP_E_BAD_TARGET},
	{"absolute no host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_TARGET},
	{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_TARGET},
	{"del in target", "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_TARGET},
	{"ctl in target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 0, HTTP_E_BAD_TARGET},
	{"tls hello with lf", BIN("\x16\x03\x01\x02\x00\x01\x00\x0a\xfc\x03\x03"),
	 HTTP_E_BAD_METHOD},
};

Test(http_parser, valid_requests)
{
	run_rows(http_parse_request, ROWS(valid_requests), NULL);
}

Test(http_parser, incomplete_requests)
{
	run_rows(http_parse_request, ROWS(incomplete_requests), NULL);
}

Test(http_parser, smuggling_vectors)
{
	run_rows(http_parse_request, ROWS(smuggling), NULL);
}

static const struct row responses[] = {
	{"ok", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0, HTTP_DONE},
	{"empty reason", "HTTP/1.1 200 \r\n\r\n", 0, HTTP_DONE},
	{"no reason", "HTTP/1.1 204\r\n\r\n", 0, HTTP_DONE},
	{"http10", "HTTP/1.0 404 Not Found\r\n\r\n", 0, HTTP_DONE},
	{"http13", "HTTP/1.3 200 OK\r\n\r\n", 0, HTTP_DONE},
	{"reason with tab", "HTTP/1.1 500 Bad\tthing \xc3\xa9\r\n\r\n", 0, HTTP_DONE},
	{"te until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, HTTP_DONE},
	{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, HTTP_DONE},
	{"status 600", "HTTP/1.1 600 X\r\n\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"status 099", "HTTP/1.1 099 X\r\n\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"status two digits", "HTTP/1.1 20 OK\r\n\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"status four digits", "HTTP/1.1 2000 OK\r\n\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"double space", "HTTP/1.1  200 OK\r\n\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"nul in reason", BIN("HTTP/1.1 200 O\0K\r\n\r\n"), HTTP_E_BAD_STATUS_LINE},
	{"leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"http2", "HTTP/2.0 200 OK\r\n\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"short version", "HTTP/2 200 OK\r\n\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"cl and te", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
	 0, HTTP_E_CL_AND_TE},
	{"chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0,
	 HTTP_E_BAD_TRANSFER_ENCODING},
	{"te in http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
	 HTTP_E_TE_IN_HTTP10},
	{"differing cl", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0,
	 HTTP_E_CONFLICTING_CONTENT_LENGTH},
	{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 0, HTTP_E_OBS_FOLD},
	{"bare lf", "HTTP/1.1 200 OK\nX: a\r\n\r\n", 0, HTTP_E_BARE_LF},
	{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", 0,
	 HTTP_E_SPACE_BEFORE_COLON},
};

Test(http_parser, responses)
{
	run_rows(http_parse_response, ROWS(responses), NULL);
}

/* Heads that never end: a start line that cannot begin a valid head is
 * refused as soon as it is in (or, for a method or "HTTP/1.", as soon as a
 * byte goes wrong), so garbage is answered at once and not at a timeout. */
static const struct row unfinished_requests[] = {
	{"tls hello", BIN("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), HTTP_E_BAD_METHOD},
	{"four parts", "GET / HTTP/1.1 extra\r\nHost: a\r\n", 0, HTTP_E_BAD_REQUEST_LINE},
	{"bad version", "GET / HTTP/x.1\r\nHost: a\r\n", 0, HTTP_E_BAD_VERSION},
	{"nul in method", BIN("G\0ET / "), HTTP_E_BAD_METHOD},
	{"method so far", "GE", 0, HTTP_NEED_MORE},
	{"target so far", "GET /a\x01", 0, HTTP_NEED_MORE}, /* judged with the line */
	{"empty line so far", "\r\n\r", 0, HTTP_NEED_MORE},
	{"good line, fields to come", "GET / HTTP/1.1\r\nHost: a\r\n", 0, HTTP_NEED_MORE},
};

static const struct row unfinished_responses[] = {
	{"no http", "hello, I am not HTTP\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"no http, no line end", "hello", 0, HTTP_E_BAD_STATUS_LINE},
	{"http/2", "HTTP/2", 0, HTTP_E_BAD_STATUS_LINE},
	{"status 600", "HTTP/1.1 600 X\r\nA: b\r\n", 0, HTTP_E_BAD_STATUS_LINE},
	{"version so far", "HTTP/1", 0, HTTP_NEED_MORE},
	{"good line, fields to come", "HTTP/1.1 200 OK\r\nA: b\r\n", 0, HTTP_NEED_MORE},
};

Test(http_parser, garbage_is_refused_before_the_head_ends)
{
	run_rows(http_parse_request, ROWS(unfinished_requests), NULL);
	run_rows(http_parse_response, ROWS(unfinished_responses), NULL);
}

/* A request "GET /<pad> HTTP/1.1\r\nHost: a\r\n" + extra + "\r\n" with a line of line_len. */
static size_t build_request(char *buf, size_t cap, size_t line_len, size_t field_len)
{
	size_t n = 0;

	n += (size_t)snprintf(buf, cap, "GET /");
	while (n < line_len - 9)
		buf[n++] = 'a';
	n += (size_t)snprintf(buf + n, cap - n, " HTTP/1.1\r\nHost: a\r\n");
	if (field_len) {
		n += (size_t)snprintf(buf + n, cap - n, "X: ");
		for (size_t i = 3; i < field_len; i++)
			buf[n++] = 'b';
		n += (size_t)snprintf(buf + n, cap - n, "\r\n");
	}
	n += (size_t)snprintf(buf + n, cap - n, "\r\n");
	return n;
}

Test(http_parser, uri_limit)
{
	struct http_limits lim = {.max_uri_size = 64, .max_header_size = 1024};
	static struct http_head h;
	char buf[2048];
	size_t n;

	n = build_request(buf, sizeof(buf), 64, 0);
	cr_expect_eq(parse_all_ways(http_parse_request, "line at limit", buf, n, &lim, &h),
		     HTTP_DONE);
	n = build_request(buf, sizeof(buf), 65, 0);
	cr_expect_eq(parse_all_ways(http_parse_request, "line over limit", buf, n, &lim, &h),
		     HTTP_E_URI_TOO_LONG);
	/* The line has not fully arrived, but it is already too long. */
	n = build_request(buf, sizeof(buf), 100, 0);
	cr_expect_eq(parse_all_ways(http_parse_request, "partial line", buf, 70, &lim, &h),
		     HTTP_E_URI_TOO_LONG);
	cr_expect_eq(parse_all_ways(http_parse_request, "partial short", buf, 60, &lim, &h),
		     HTTP_NEED_MORE);
	/* Empty lines before the request line do not count against it. */
	memcpy(buf, "\r\n\r\n", 4);
	n = build_request(buf + 4, sizeof(buf) - 4, 64, 0) + 4;
	cr_expect_eq(parse_all_ways(http_parse_request, "after empty lines", buf, n, &lim, &h),
		     HTTP_DONE);
}

Test(http_parser, head_limit)
{
	struct http_limits lim = {.max_uri_size = 64, .max_header_size = 512};
	static struct http_head h;
	char buf[2048];
	size_t n, base = build_request(buf, sizeof(buf), 20, 0);

	/* base - 2 bytes before the final CRLF, then "X: b...\r\n" of field_len + 2. */
	n = build_request(buf, sizeof(buf), 20, 512 - base - 2);
	cr_expect_eq(n, 512);
	cr_expect_eq(parse_all_ways(http_parse_request, "head at limit", buf, n, &lim, &h),
		     HTTP_DONE);
	cr_expect_eq(h.head_len, 512);
	n = build_request(buf, sizeof(buf), 20, 512 - base - 1);
	cr_expect_eq(parse_all_ways(http_parse_request, "head over limit", buf, n, &lim, &h),
		     HTTP_E_HEAD_TOO_LARGE);
	cr_expect_eq(parse_all_ways(http_parse_request, "partial head", buf, 600, &lim, &h),
		     HTTP_E_HEAD_TOO_LARGE);
	/* The line limit is above the head limit: the head limit speaks. */
	lim = (struct http_limits){.max_uri_size = 4096, .max_header_size = 100};
	n = build_request(buf, sizeof(buf), 200, 0);
	cr_expect_eq(parse_all_ways(http_parse_request, "long line small head", buf, n, &lim, &h),
		     HTTP_E_HEAD_TOO_LARGE);
}

/* "GET / HTTP/1.1\r\nHost: a\r\n" and count more fields. */
static size_t build_fields(char *buf, size_t cap, unsigned int count)
{
	size_t n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: a\r\n");

	for (unsigned int i = 1; i < count; i++)
		n += (size_t)snprintf(buf + n, cap - n, "X-%u: %u\r\n", i, i);
	n += (size_t)snprintf(buf + n, cap - n, "\r\n");
	return n;
}

Test(http_parser, header_count)
{
	static struct http_head h;
	static char buf[HTTP_MAX_HEADERS * 16];
	size_t n;

	n = build_fields(buf, sizeof(buf), HTTP_MAX_HEADERS);
	cr_expect_eq(http_parse_request(buf, n, NULL, &h), HTTP_DONE);
	cr_expect_eq(h.header_count, HTTP_MAX_HEADERS);
	n = build_fields(buf, sizeof(buf), HTTP_MAX_HEADERS + 1);
	cr_expect_eq(parse_all_ways(http_parse_request, "too many", buf, n, NULL, &h),
		     HTTP_E_TOO_MANY_HEADERS);
	cr_expect_eq(http_result_status(HTTP_E_TOO_MANY_HEADERS), 431);
}

Test(http_parser, connection_tokens_are_bounded)
{
	static struct http_head h;
	static char buf[4096];
	size_t n;

	for (int count = HTTP_MAX_CONNECTION_TOKENS; count <= HTTP_MAX_CONNECTION_TOKENS + 1;
	     count++) {
		n = (size_t)snprintf(buf, sizeof(buf),
				     "GET / HTTP/1.1\r\nHost: a\r\nConnection: close");
		for (int i = 1; i < count; i++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sx-%d",
					      i % 2 ? ", " : "\r\nConnection: ", i);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\r\n");
		enum http_result r = http_parse_request(buf, n, NULL, &h);
		if (count <= HTTP_MAX_CONNECTION_TOKENS) {
			cr_expect_eq(r, HTTP_DONE, "%d tokens", count);
			cr_expect_eq(h.conn_tokens, count);
			cr_expect_eq(h.conn_options, count - 1);
			cr_expect(h.conn_close);
		} else {
			cr_expect_eq(r, HTTP_E_TOO_MANY_HEADERS, "%d tokens", count);
		}
	}
}

static bool slice_is(const char *buf, struct http_slice s, const char *want)
{
	return s.len == strlen(want) && memcmp(buf + s.off, want, s.len) == 0;
}

Test(http_parser, request_facts)
{
	static struct http_head h;
	const char *req = "\r\nPOST /up?x=1 HTTP/1.1\r\nHost: Example.com:81\r\n"
			  "X-Spaced: \t a  b \t\r\nConnection: Keep-Alive, close\r\n"
			  "Expect: 100-Continue\r\nContent-Length: 7\r\n\r\nbody...";

	cr_assert_eq(http_parse_request(req, strlen(req), NULL, &h), HTTP_DONE);
	cr_expect_eq(h.head_len, strlen(req) - 7);
	cr_expect(slice_is(req, h.method, "POST"));
	cr_expect_eq(h.method_id, HTTP_M_POST);
	cr_expect(slice_is(req, h.target, "/up?x=1"));
	cr_expect(slice_is(req, h.path, "/up?x=1"));
	cr_expect_eq(h.target_form, HTTP_TARGET_ORIGIN);
	cr_expect_eq(h.version_minor, 1);
	cr_expect(slice_is(req, h.host, "Example.com:81"));
	cr_expect_eq(h.host_count, 1);
	cr_expect_eq(h.header_count, 5);
	cr_expect(slice_is(req, h.headers[1].name, "X-Spaced"));
	cr_expect(slice_is(req, h.headers[1].value, "a  b"));
	cr_expect_eq(h.headers[2].id, HTTP_H_CONNECTION);
	cr_expect(h.conn_close && h.conn_keep_alive && !h.conn_upgrade);
	cr_expect(h.expect_continue && !h.expect_other);
	cr_expect_eq(h.content_length, 7);
	cr_expect(!h.chunked && !h.has_te);
	cr_expect(!http_is_keep_alive(&h));
	cr_expect_eq(http_request_body(&h), HTTP_BODY_LENGTH);
}

Test(http_parser, target_forms)
{
	static struct http_head h;
	const char *abs = "GET http://a.example:8080?q HTTP/1.1\r\nHost: a.example:8080\r\n\r\n";
	const char *con = "CONNECT a.example:443 HTTP/1.0\r\n\r\n";
	const char *opt = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";

	cr_assert_eq(http_parse_request(abs, strlen(abs), NULL, &h), HTTP_DONE);
	cr_expect_eq(h.target_form, HTTP_TARGET_ABSOLUTE);
	cr_expect(slice_is(abs, h.authority, "a.example:8080"));
	cr_expect(slice_is(abs, h.path, "?q"));
	cr_assert_eq(http_parse_request(con, strlen(con), NULL, &h), HTTP_DONE);
	cr_expect_eq(h.target_form, HTTP_TARGET_AUTHORITY);
	cr_expect_eq(h.method_id, HTTP_M_CONNECT);
	cr_expect(slice_is(con, h.authority, "a.example:443"));
	cr_expect(!http_is_keep_alive(&h));
	cr_assert_eq(http_parse_request(opt, strlen(opt), NULL, &h), HTTP_DONE);
	cr_expect_eq(h.target_form, HTTP_TARGET_ASTERISK);
	cr_expect(http_is_keep_alive(&h));
}

Test(http_parser, framing_facts)
{
	static struct http_head h;
	const char *te = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
	const char *cl = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";

	cr_assert_eq(http_parse_request(te, strlen(te), NULL, &h), HTTP_DONE);
	cr_expect(h.has_te && h.chunked && h.te_other);
	cr_expect_eq(h.content_length, -1);
	cr_expect_eq(http_request_body(&h), HTTP_BODY_CHUNKED);
	cr_assert_eq(http_parse_request(cl, strlen(cl), NULL, &h), HTTP_DONE);
	cr_expect_eq(h.content_length, 0);
	cr_expect_eq(http_request_body(&h), HTTP_BODY_NONE);
}

static enum http_body response_body(const char *resp, enum http_method m)
{
	static struct http_head h;

	cr_assert_eq(http_parse_response(resp, strlen(resp), NULL, &h), HTTP_DONE, "%s", resp);
	return http_response_body(&h, m);
}

Test(http_parser, response_bodies)
{
	const char *cl = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
	const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

	cr_expect_eq(response_body(cl, HTTP_M_GET), HTTP_BODY_LENGTH);
	cr_expect_eq(response_body(cl, HTTP_M_HEAD), HTTP_BODY_NONE);
	cr_expect_eq(response_body(ch, HTTP_M_GET), HTTP_BODY_CHUNKED);
	cr_expect_eq(response_body(ch, HTTP_M_CONNECT), HTTP_BODY_TUNNEL);
	cr_expect_eq(response_body("HTTP/1.1 200 OK\r\n\r\n", HTTP_M_GET), HTTP_BODY_UNTIL_CLOSE);
	cr_expect_eq(
		response_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", HTTP_M_GET),
		HTTP_BODY_UNTIL_CLOSE);
	cr_expect_eq(response_body("HTTP/1.1 204 No Content\r\n\r\n", HTTP_M_GET), HTTP_BODY_NONE);
	cr_expect_eq(
		response_body("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", HTTP_M_GET),
		HTTP_BODY_NONE);
	cr_expect_eq(response_body("HTTP/1.1 100 Continue\r\n\r\n", HTTP_M_POST), HTTP_BODY_NONE);
	cr_expect_eq(
		response_body("HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n", HTTP_M_GET),
		HTTP_BODY_TUNNEL);
	cr_expect_eq(response_body("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", HTTP_M_GET),
		     HTTP_BODY_NONE);
}

Test(http_parser, lists_and_lookup)
{
	static struct http_head h;
	const char *req = "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, , upgrade\r\n"
			  "x-foo: 1\r\nUpgrade: websocket\r\nX-FOO: 2\r\nKeep-Alive: 5\r\n\r\n";
	const char *val = " a , \"b,c\" ,,d;q=\"x\\\"y,z\",\t";
	const char *want[] = {"a", "\"b,c\"", "d;q=\"x\\\"y,z\""};
	const char *el;
	size_t el_len, pos = 0, i = 0;

	cr_assert_eq(http_parse_request(req, strlen(req), NULL, &h), HTTP_DONE);
	cr_expect_eq(http_header_find(&h, req, "x-foo", 0), 2);
	cr_expect_eq(http_header_find(&h, req, "x-foo", 3), 4);
	cr_expect_eq(http_header_find(&h, req, "x-bar", 0), -1);
	cr_expect(http_connection_lists(&h, req, "X-FOO", 5));
	cr_expect(http_connection_lists(&h, req, "Upgrade", 7));
	cr_expect(!http_connection_lists(&h, req, "Host", 4));
	cr_expect(h.conn_upgrade && h.has_upgrade);
	cr_expect(http_header_is_hop_by_hop(&h.headers[1]));
	cr_expect(!http_header_is_hop_by_hop(&h.headers[2]));
	cr_expect(http_header_is_hop_by_hop(&h.headers[3]));
	cr_expect(http_header_is_hop_by_hop(&h.headers[5]));
	while (http_list_next(val, strlen(val), &pos, &el, &el_len)) {
		cr_assert_lt(i, 3);
		cr_expect(el_len == strlen(want[i]) && memcmp(el, want[i], el_len) == 0,
			  "element %zu: %.*s", i, (int)el_len, el);
		i++;
	}
	cr_expect_eq(i, 3);
}

Test(http_parser, result_table)
{
	for (int r = 0; r < HTTP_RESULT_COUNT; r++) {
		cr_expect_str_neq(http_result_name(r), "unknown", "result %d has no name", r);
		cr_expect_eq(http_result_status(r) != 0, http_is_error(r), "result %d status", r);
	}
	cr_expect_str_eq(http_result_name(HTTP_E_CL_AND_TE), "cl_and_te");
	cr_expect_eq(http_result_status(HTTP_E_URI_TOO_LONG), 414);
	cr_expect_eq(http_result_status(HTTP_E_HEAD_TOO_LARGE), 431);
	cr_expect_eq(http_result_status(HTTP_E_TE_NOT_CHUNKED), 501);
	cr_expect_eq(http_result_status(HTTP_E_UNSUPPORTED_VERSION), 505);
	cr_expect(http_method_is_idempotent(HTTP_M_PUT));
	cr_expect(!http_method_is_idempotent(HTTP_M_POST));
}
