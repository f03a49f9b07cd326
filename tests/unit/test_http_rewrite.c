/*
 * test_http_rewrite.c - closing up a parsed head in place
 * (core/http/rewrite.c: rewrite_compact): hop-by-hop fields go, and a
 * Content-Length repeated with equal values goes on as one field, and
 * transfer coding names go on in lower case.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/http/parser.h"
#include "core/http/rewrite.h"

/* Parses request TEXT, compacts it with no options, and compares the kept
 * lines (start line and fields, without the empty line) to WANT. */
static void compacts_to(const char *text, const char *want)
{
	static struct http_head h;
	char buf[1024];
	size_t start, end, len = strlen(text);

	cr_assert(len < sizeof(buf));
	memcpy(buf, text, len);
	cr_assert_eq(http_parse_request(buf, len, NULL, &h), HTTP_DONE, "%s", text);
	struct rewrite_opts o = {0};
	rewrite_compact(buf, &h, &o, &start, &end);
	cr_expect_eq(end - start, strlen(want), "%.*s", (int)(end - start), buf + start);
	cr_expect(memcmp(buf + start, want, strlen(want)) == 0, "got %.*s, want %s",
		  (int)(end - start), buf + start, want);
}

Test(rewrite, content_length_list_sent_as_one_value)
{
	compacts_to("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nX: y\r\n\r\n",
		    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX: y\r\n");
	compacts_to("POST / HTTP/1.1\r\nHost: a\r\ncontent-length:007,7\r\n\r\n",
		    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n");
}

Test(rewrite, repeated_content_length_fields_sent_as_one)
{
	compacts_to("POST / HTTP/1.1\r\nContent-Length:5\r\nHost: a\r\nContent-Length:5\r\n\r\n",
		    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n");
	compacts_to("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nConnection: close\r\n"
		    "Content-Length: 12\r\nContent-Length: 12\r\nX: y\r\n\r\n",
		    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX: y\r\n");
}

Test(rewrite, single_content_length_untouched)
{
	compacts_to("POST / HTTP/1.1\r\nHost: a\r\ncontent-length:  5 \r\nKeep-Alive: 1\r\n\r\n",
		    "POST / HTTP/1.1\r\nHost: a\r\ncontent-length:  5 \r\n");
}

Test(rewrite, transfer_coding_names_go_on_in_lower_case)
{
	/* A lenient server that knows only "chunked" must not read the body
	 * as something else than fulcrum framed it. */
	compacts_to("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
		    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n");
	compacts_to("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: GZIP, CHUNKED\r\n\r\n",
		    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n");
}
