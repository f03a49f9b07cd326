/*
 * test_proxy_proto.c - the PROXY protocol parser and builders
 * (core/proxy_proto.c).
 *
 * Table-driven: every row is parsed whole, then as each of its prefixes (as
 * if it arrived byte by byte: a valid header must say "more" until its last
 * byte, an invalid one must never say "done"), then with payload bytes after
 * it (which must not count as header). Built headers must parse back to the
 * addresses they were built from.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>

#include "core/proxy_proto.h"

struct row {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen(text) */
	enum pp_result want;
	bool local;
	const char *src; /* "ADDR PORT" for DONE rows that carry addresses */
	const char *dst;
};

#define V2SIG "\r\n\r\n\0\r\nQUIT\n"

static const struct row rows[] = {
	{"v1 tcp4", "PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n", 0, PP_DONE, false,
	 "192.168.0.1 56324", "10.0.0.2 443"},
	{"v1 tcp6", "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n", 0, PP_DONE, false, "2001:db8::1 1",
	 "::1 65535"},
	{"v1 unknown", "PROXY UNKNOWN\r\n", 0, PP_DONE, true, NULL, NULL},
	{"v1 unknown with junk", "PROXY UNKNOWN ffff::1 ::1 1 2\r\n", 0, PP_DONE, true, NULL, NULL},
	{"v1 port 0", "PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n", 0, PP_DONE, false, "1.2.3.4 0",
	 "5.6.7.8 0"},
	{"v1 double space", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 0, PP_ERROR, false, NULL,
	 NULL},
	{"v1 missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 port too big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 0, PP_ERROR, false, NULL,
	 NULL},
	{"v1 leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 v6 address as tcp4", "PROXY TCP4 ::1 ::1 1 2\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 bad address", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 udp", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 bare CR", "PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v1 lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, PP_ERROR, false, NULL, NULL},
	/* A NUL would end a field early for inet_pton and the port parser. */
	{"v1 NUL in an address", "PROXY TCP4 1.2.3.4\0garbage 5.6.7.8 1 2\r\n", 40, PP_ERROR, false,
	 NULL, NULL},
	{"v1 NUL after the port", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0zzz\r\n", 36, PP_ERROR, false,
	 NULL, NULL},
	{"v1 no CRLF in 107 bytes",
	 "PROXY UNKNOWN "
	 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	 "xxxxxxxxxxxxxxxxxxxxx\r\n",
	 0, PP_ERROR, false, NULL, NULL},
	/* The longest v1 header is 107 bytes, its CRLF included. */
	{"v1 107 bytes",
	 "PROXY UNKNOWN "
	 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	 "xxxxxxxxxxxxxxx\r\n",
	 0, PP_DONE, true, NULL, NULL},
	{"v1 108 bytes",
	 "PROXY UNKNOWN "
	 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	 "xxxxxxxxxxxxxxxx\r\n",
	 0, PP_ERROR, false, NULL, NULL},
	{"v2 unix too short",
	 V2SIG "\x21\x31\x00\x05"
	       "abcde",
	 21, PP_ERROR, false, NULL, NULL},
	{"http instead", "GET / HTTP/1.1\r\n\r\n", 0, PP_ERROR, false, NULL, NULL},
	{"v2 tcp4",
	 V2SIG "\x21\x11\x00\x0c"
	       "\xc0\xa8\x00\x01\x0a\x00\x00\x02\xdc\x04\x01\xbb",
	 28, PP_DONE, false, "192.168.0.1 56324", "10.0.0.2 443"},
	{"v2 tcp4 with a TLV",
	 V2SIG "\x21\x11\x00\x11"
	       "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
	       "\x04\x00\x02xy",
	 33, PP_DONE, false, "1.2.3.4 1", "5.6.7.8 2"},
	{"v2 tcp6",
	 V2SIG "\x21\x21\x00\x24"
	       "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
	       "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
	       "\x00\x50\x01\xbb",
	 52, PP_DONE, false, "2001:db8::1 80", "::1 443"},
	{"v2 local", V2SIG "\x20\x00\x00\x00", 16, PP_DONE, true, NULL, NULL},
	{"v2 local with addresses",
	 V2SIG "\x20\x11\x00\x0c"
	       "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
	 28, PP_DONE, true, NULL, NULL},
	{"v2 unspec", V2SIG "\x21\x00\x00\x00", 16, PP_DONE, true, NULL, NULL},
	/* An address block that is to be ignored is not read for TLVs either. */
	{"v2 unspec with bytes that are no TLV", V2SIG "\x21\x00\x00\x04junk", 20, PP_DONE, true,
	 NULL, NULL},
	{"v2 udp4",
	 V2SIG "\x21\x12\x00\x0c"
	       "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
	 28, PP_DONE, true, NULL, NULL},
	{"v2 version 1", V2SIG "\x11\x11\x00\x00", 16, PP_ERROR, false, NULL, NULL},
	{"v2 bad command", V2SIG "\x22\x11\x00\x0c", 16, PP_ERROR, false, NULL, NULL},
	{"v2 bad family", V2SIG "\x21\x41\x00\x00", 16, PP_ERROR, false, NULL, NULL},
	/* LOCAL ignores its block, family byte included (HAProxy too). */
	{"v2 local with an unknown family",
	 V2SIG "\x20\x51\x00\x0c"
	       "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02",
	 28, PP_DONE, true, NULL, NULL},
	{"v2 tcp4 with a TLV longer than the block",
	 V2SIG "\x21\x11\x00\x0f"
	       "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
	       "\x04\xff\xff",
	 31, PP_ERROR, false, NULL, NULL},
	{"v2 tcp4 with a cut TLV header",
	 V2SIG "\x21\x11\x00\x0e"
	       "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
	       "\x04\x00",
	 30, PP_ERROR, false, NULL, NULL},
	{"v2 tcp4 with two TLVs",
	 V2SIG "\x21\x11\x00\x15"
	       "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x01\x00\x02"
	       "\x04\x00\x02xy\x05\x00\x01z",
	 37, PP_DONE, false, "1.2.3.4 1", "5.6.7.8 2"},
	{"v2 tcp4 too short",
	 V2SIG "\x21\x11\x00\x08"
	       "\x01\x02\x03\x04\x05\x06\x07\x08",
	 24, PP_ERROR, false, NULL, NULL},
	{"v2 bad signature", "\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x00", 16, PP_ERROR, false, NULL,
	 NULL},
};

static size_t row_len(const struct row *w)
{
	return w->len ? w->len : strlen(w->text);
}

static void check_addr(const struct sockaddr_storage *ss, const char *want, const char *name)
{
	char addr[64], text[80];
	unsigned port;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
		port = ntohs(in->sin_port);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		cr_assert_eq(ss->ss_family, AF_INET6, "%s: family %d", name, ss->ss_family);
		inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
		port = ntohs(in6->sin6_port);
	}
	snprintf(text, sizeof(text), "%s %u", addr, port);
	cr_assert_str_eq(text, want, "%s: address %s, want %s", name, text, want);
}

static void check_row(const struct row *w)
{
	struct pp_info info;
	size_t len = row_len(w);
	enum pp_result r = pp_parse(w->text, len, &info);

	cr_assert_eq(r, w->want, "%s: result %d, want %d (%s)", w->name, r, w->want,
		     info.error ? info.error : "-");
	if (r == PP_ERROR) {
		cr_assert_not_null(info.error, "%s: no reason", w->name);
		return;
	}
	cr_assert_eq(info.len, len, "%s: length %zu, want %zu", w->name, info.len, len);
	cr_assert_eq(info.local, w->local, "%s: local %d", w->name, info.local);
	if (w->src) {
		check_addr(&info.src, w->src, w->name);
		check_addr(&info.dst, w->dst, w->name);
	}
}

Test(proxy_proto, table_whole)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		check_row(&rows[i]);
}

/* Every proper prefix of a valid header needs more; no prefix of an invalid
 * one is ever done. Each prefix sits in its own buffer, so reading past it
 * would show under a sanitizer. */
Test(proxy_proto, table_byte_by_byte)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		size_t len = row_len(w);

		for (size_t k = 0; k < len; k++) {
			char *copy = malloc(k ? k : 1);
			struct pp_info info;

			memcpy(copy, w->text, k);
			enum pp_result r = pp_parse(copy, k, &info);
			free(copy);
			if (w->want == PP_DONE)
				cr_assert_eq(r, PP_MORE, "%s: prefix of %zu bytes gave %d (%s)",
					     w->name, k, r, info.error ? info.error : "-");
			else
				cr_assert_neq(r, PP_DONE, "%s: prefix of %zu bytes is done",
					      w->name, k);
		}
	}
}

/* Payload after the header is not part of it, even when it looks like more
 * header (another CRLF, another PROXY line). */
Test(proxy_proto, payload_after_header)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		size_t len = row_len(w);
		char buf[512];
		const char more[] = "PROXY TCP4 9.9.9.9 9.9.9.9 9 9\r\nGET / HTTP/1.1\r\n\r\n";
		struct pp_info info;

		if (w->want != PP_DONE)
			continue;
		memcpy(buf, w->text, len);
		memcpy(buf + len, more, sizeof(more) - 1);
		cr_assert_eq(pp_parse(buf, len + sizeof(more) - 1, &info), PP_DONE, "%s", w->name);
		cr_assert_eq(info.len, len, "%s: length %zu with payload", w->name, info.len);
	}
}

Test(proxy_proto, v2_length_known_early)
{
	const char head[] = V2SIG "\x21\x11\x01\x00";
	struct pp_info info;

	cr_assert_eq(pp_parse(head, 16, &info), PP_MORE);
	cr_assert_eq(info.len, 16 + 256);
	cr_assert_eq(info.version, 2);
}

static void make_in(struct sockaddr_in *in, const char *addr, unsigned port)
{
	memset(in, 0, sizeof(*in));
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, addr, &in->sin_addr);
}

static void make_in6(struct sockaddr_in6 *in6, const char *addr, unsigned port)
{
	memset(in6, 0, sizeof(*in6));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons((uint16_t)port);
	inet_pton(AF_INET6, addr, &in6->sin6_addr);
}

Test(proxy_proto, build_round_trip)
{
	struct sockaddr_in s4, d4;
	struct sockaddr_in6 s6, d6;
	char buf[PP_BUILD_MAX];
	struct pp_info info;
	int n;

	make_in(&s4, "203.0.113.7", 40000);
	make_in(&d4, "127.0.0.1", 8080);
	make_in6(&s6, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	make_in6(&d6, "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe", 65534);

	n = pp_build_v1(buf, sizeof(buf), (struct sockaddr *)&s4, (struct sockaddr *)&d4);
	cr_assert_str_eq(buf, "PROXY TCP4 203.0.113.7 127.0.0.1 40000 8080\r\n");
	cr_assert_eq(pp_parse(buf, (size_t)n, &info), PP_DONE);
	check_addr(&info.src, "203.0.113.7 40000", "v1 build");

	n = pp_build_v1(buf, sizeof(buf), (struct sockaddr *)&s6, (struct sockaddr *)&d6);
	cr_assert_leq(n, PP_V1_MAX, "the longest v1 header is %d bytes", n);
	cr_assert_eq(pp_parse(buf, (size_t)n, &info), PP_DONE);
	check_addr(&info.dst, "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe 65534", "v1 build v6");

	n = pp_build_v2(buf, sizeof(buf), (struct sockaddr *)&s4, (struct sockaddr *)&d4);
	cr_assert_eq(n, 28);
	cr_assert_eq(pp_parse(buf, (size_t)n, &info), PP_DONE);
	cr_assert(!info.local);
	check_addr(&info.src, "203.0.113.7 40000", "v2 build");
	check_addr(&info.dst, "127.0.0.1 8080", "v2 build");

	/* Mixed families travel as IPv6, the IPv4 one mapped. */
	n = pp_build_v2(buf, sizeof(buf), (struct sockaddr *)&s4, (struct sockaddr *)&d6);
	cr_assert_eq(n, 52);
	cr_assert_eq(pp_parse(buf, (size_t)n, &info), PP_DONE);
	check_addr(&info.src, "::ffff:203.0.113.7 40000", "v2 mixed");
}

Test(proxy_proto, build_unknown)
{
	struct sockaddr un = {.sa_family = AF_UNIX};
	char buf[PP_BUILD_MAX];
	struct pp_info info;

	cr_assert_eq(pp_build_v1(buf, sizeof(buf), &un, &un), 15);
	cr_assert_str_eq(buf, "PROXY UNKNOWN\r\n");
	int n = pp_build_v2(buf, sizeof(buf), &un, &un);
	cr_assert_eq(n, 16);
	cr_assert_eq(pp_parse(buf, 16, &info), PP_DONE);
	cr_assert(info.local);
	cr_assert_eq(pp_build_v1(buf, 10, &un, &un), -ENOSPC);
}

/* A v2 PROXY header of the unix family carries two 108-byte paths: it is
 * taken (as a local connection, no address to use) at its full length. */
Test(proxy_proto, v2_unix_full_length)
{
	char buf[16 + 216];
	struct pp_info info;

	memset(buf, 0, sizeof(buf));
	memcpy(buf, V2SIG "\x21\x31\x00\xd8", 16);
	cr_assert_eq(pp_parse(buf, sizeof(buf), &info), PP_DONE, "%s",
		     info.error ? info.error : "-");
	cr_assert(info.local);
	cr_assert_eq(info.len, sizeof(buf));
}
