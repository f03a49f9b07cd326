/*
 * test_tls_sni.c - the ClientHello SNI parser (core/tls_sni.c): well-formed
 * hellos fed whole and byte by byte, hellos split over several records,
 * garbage, truncated and lying lengths, and oversized hellos.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/tls_sni.h"

/* A ClientHello under construction: the handshake message, later cut into
 * records by wrap(). */
struct msg {
	uint8_t b[70000];
	size_t len;
};

static void put(struct msg *m, const void *p, size_t n)
{
	cr_assert(m->len + n <= sizeof(m->b));
	memcpy(m->b + m->len, p, n);
	m->len += n;
}

static void put_u8(struct msg *m, unsigned v)
{
	uint8_t b = (uint8_t)v;
	put(m, &b, 1);
}

static void put_u16(struct msg *m, unsigned v)
{
	put_u8(m, v >> 8);
	put_u8(m, v);
}

static void put_u24(struct msg *m, size_t v)
{
	put_u8(m, (unsigned)(v >> 16));
	put_u16(m, (unsigned)(v & 0xffff));
}

/* Extensions block: a supported_versions extension, the server_name (when
 * SNI is not NULL), and PAD bytes of padding extension. */
static void put_extensions(struct msg *m, const char *sni, size_t pad)
{
	struct msg e = {.len = 0};
	static const uint8_t versions[] = {0x00, 0x2b, 0x00, 0x03, 0x02, 0x03, 0x04};
	put(&e, versions, sizeof(versions));
	if (sni) {
		size_t n = strlen(sni);
		put_u16(&e, 0); /* server_name */
		put_u16(&e, (unsigned)(n + 5));
		put_u16(&e, (unsigned)(n + 3));
		put_u8(&e, 0); /* host_name */
		put_u16(&e, (unsigned)n);
		put(&e, sni, n);
	}
	if (pad) {
		put_u16(&e, 21); /* padding */
		put_u16(&e, (unsigned)pad);
		for (size_t i = 0; i < pad; i++)
			put_u8(&e, 0);
	}
	put_u16(m, (unsigned)e.len);
	put(m, e.b, e.len);
}

/* The handshake message of a ClientHello. */
static void hello_msg(struct msg *m, const char *sni, size_t pad)
{
	struct msg body = {.len = 0};
	put_u16(&body, 0x0303);
	for (int i = 0; i < 32; i++)
		put_u8(&body, (unsigned)i);
	put_u8(&body, 32); /* session id */
	for (int i = 0; i < 32; i++)
		put_u8(&body, 0xaa);
	put_u16(&body, 4); /* cipher suites */
	put_u16(&body, 0x1301);
	put_u16(&body, 0xc02f);
	put_u8(&body, 1); /* compression: null */
	put_u8(&body, 0);
	put_extensions(&body, sni, pad);
	m->len = 0;
	put_u8(m, 1);
	put_u24(m, body.len);
	put(m, body.b, body.len);
}

/* Cuts the handshake message into records of at most FRAG bytes. */
static size_t wrap(const struct msg *m, size_t frag, uint8_t *out, size_t cap)
{
	size_t len = 0;
	for (size_t off = 0; off < m->len; off += frag) {
		size_t n = m->len - off < frag ? m->len - off : frag;
		cr_assert(len + 5 + n <= cap);
		out[len++] = 22;
		out[len++] = 3;
		out[len++] = 1;
		out[len++] = (uint8_t)(n >> 8);
		out[len++] = (uint8_t)n;
		memcpy(out + len, m->b + off, n);
		len += n;
	}
	return len;
}

static uint8_t wire[80000];
static struct msg m;

static enum tls_hello_result parse(size_t len, struct tls_hello *h)
{
	return tls_hello_parse(wire, len, TLS_HELLO_MAX, h);
}

Test(tls_sni, finds_the_name_whole_and_byte_by_byte)
{
	struct tls_hello h;
	hello_msg(&m, "a.example.com", 0);
	size_t len = wrap(&m, 16384, wire, sizeof(wire));

	cr_assert_eq(parse(len, &h), TLS_HELLO_SNI);
	cr_assert_str_eq(h.sni, "a.example.com");
	cr_assert_eq(h.sni_len, 13);
	/* Every prefix that stops before the name is in needs more. */
	size_t found_at = 0;
	for (size_t i = 0; i <= len; i++) {
		enum tls_hello_result r = parse(i, &h);
		if (r == TLS_HELLO_SNI) {
			found_at = i;
			break;
		}
		cr_assert_eq(r, TLS_HELLO_NEED_MORE, "prefix %zu: %s", i, tls_hello_result_name(r));
	}
	cr_assert(found_at > 0);
	cr_assert_str_eq(h.sni, "a.example.com");
}

Test(tls_sni, hello_without_sni)
{
	struct tls_hello h;
	hello_msg(&m, NULL, 10);
	size_t len = wrap(&m, 16384, wire, sizeof(wire));

	cr_assert_eq(parse(len, &h), TLS_HELLO_NO_SNI);
	cr_assert_eq(h.sni_len, 0);
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(parse(i, &h), TLS_HELLO_NEED_MORE, "prefix %zu", i);
}

Test(tls_sni, hello_split_over_records)
{
	struct tls_hello h;
	hello_msg(&m, "split.example", 300);
	for (size_t frag = 1; frag < 64; frag++) {
		size_t len = wrap(&m, frag, wire, sizeof(wire));
		cr_assert_eq(parse(len, &h), TLS_HELLO_SNI, "fragments of %zu", frag);
		cr_assert_str_eq(h.sni, "split.example");
	}
	/* Byte by byte over 7-byte records. */
	size_t len = wrap(&m, 7, wire, sizeof(wire));
	enum tls_hello_result r = TLS_HELLO_NEED_MORE;
	for (size_t i = 0; i <= len && r == TLS_HELLO_NEED_MORE; i++)
		r = parse(i, &h);
	cr_assert_eq(r, TLS_HELLO_SNI);
}

Test(tls_sni, sni_after_a_large_extension)
{
	struct tls_hello h;
	struct msg body = {.len = 0};
	/* Padding first, then the name: the name comes late in the stream. */
	put_u16(&body, 0x0303);
	for (int i = 0; i < 32; i++)
		put_u8(&body, 0);
	put_u8(&body, 0);
	put_u16(&body, 2);
	put_u16(&body, 0x1301);
	put_u8(&body, 1);
	put_u8(&body, 0);
	put_u16(&body, 4 + 5000 + 4 + 5 + 6);
	put_u16(&body, 21);
	put_u16(&body, 5000);
	for (int i = 0; i < 5000; i++)
		put_u8(&body, 0);
	put_u16(&body, 0);
	put_u16(&body, 5 + 6);
	put_u16(&body, 3 + 6);
	put_u8(&body, 0);
	put_u16(&body, 6);
	put(&body, "x.test", 6);
	m.len = 0;
	put_u8(&m, 1);
	put_u24(&m, body.len);
	put(&m, body.b, body.len);
	size_t len = wrap(&m, 1000, wire, sizeof(wire));
	cr_assert_eq(parse(len, &h), TLS_HELLO_SNI);
	cr_assert_str_eq(h.sni, "x.test");
	cr_assert_eq(parse(len - 7, &h), TLS_HELLO_NEED_MORE);
}

Test(tls_sni, garbage_is_invalid_at_once)
{
	struct tls_hello h;
	static const char *const junk[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x16\x02", /* record version 2.x */
		"\x17\x03\x03\x00\x10", /* application data record */
		"\x16\x03\x09", /* record version 3.9 */
		"SSH-2.0-OpenSSH_9.0\r\n",
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		size_t n = strlen(junk[i]);
		memcpy(wire, junk[i], n);
		cr_assert_eq(parse(n, &h), TLS_HELLO_INVALID, "junk %zu", i);
		/* The first bytes alone already give it away. */
		cr_assert_eq(parse(n < 3 ? n : 3, &h), TLS_HELLO_INVALID, "junk %zu, 3 bytes", i);
	}
	static const uint8_t empty_record[] = {22, 3, 1, 0, 0};
	memcpy(wire, empty_record, sizeof(empty_record));
	cr_assert_eq(parse(sizeof(empty_record), &h), TLS_HELLO_INVALID);
	static const uint8_t not_hello[] = {22, 3, 1, 0, 4, 2, 0, 0, 0}; /* ServerHello */
	memcpy(wire, not_hello, sizeof(not_hello));
	cr_assert_eq(parse(sizeof(not_hello), &h), TLS_HELLO_INVALID);
	cr_assert_eq(parse(0, &h), TLS_HELLO_NEED_MORE);
}

Test(tls_sni, lying_lengths_are_invalid)
{
	struct tls_hello h;
	hello_msg(&m, "a.test", 0);
	size_t len = wrap(&m, 16384, wire, sizeof(wire));
	/* Offsets in the record: 5 record header, 4 handshake header, 2 + 32
	 * version and random, 1 + 32 session id, 2 + 4 ciphers, 1 + 1
	 * compression, 2 extensions length. */
	size_t sid = 5 + 4 + 34, ciphers = sid + 33, ext = ciphers + 6 + 2;

	wire[sid] = 33; /* session id longer than 32 */
	cr_assert_eq(parse(len, &h), TLS_HELLO_INVALID);
	wire[sid] = 32;
	wire[ciphers] = 0xff; /* cipher suites longer than the body */
	cr_assert_eq(parse(len, &h), TLS_HELLO_INVALID);
	wire[ciphers] = 0;
	wire[ciphers + 1] = 4;
	wire[ext] ^= 0x40; /* extensions length disagrees with the body */
	cr_assert_eq(parse(len, &h), TLS_HELLO_INVALID);
	wire[ext] ^= 0x40;
	cr_assert_eq(parse(len, &h), TLS_HELLO_SNI);
}

Test(tls_sni, bad_names_are_invalid)
{
	struct tls_hello h;
	hello_msg(&m, "bad name", 0);
	size_t len = wrap(&m, 16384, wire, sizeof(wire));
	cr_assert_eq(parse(len, &h), TLS_HELLO_INVALID);

	char long_name[300];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	hello_msg(&m, long_name, 0);
	len = wrap(&m, 16384, wire, sizeof(wire));
	cr_assert_eq(parse(len, &h), TLS_HELLO_INVALID);

	long_name[TLS_SNI_MAX] = '\0';
	hello_msg(&m, long_name, 0);
	len = wrap(&m, 16384, wire, sizeof(wire));
	cr_assert_eq(parse(len, &h), TLS_HELLO_SNI);
	cr_assert_eq(h.sni_len, TLS_SNI_MAX);
}

Test(tls_sni, oversized_hello)
{
	struct tls_hello h;
	/* Announces more than fits in TLS_HELLO_MAX: refused at once. */
	hello_msg(&m, "big.test", 20000);
	size_t len = wrap(&m, 16384, wire, sizeof(wire));
	cr_assert_eq(parse(64, &h), TLS_HELLO_TOO_LARGE);
	cr_assert_eq(parse(len, &h), TLS_HELLO_TOO_LARGE);
	/* Just under the limit is fine. */
	hello_msg(&m, "big.test", 0);
	size_t small = m.len;
	hello_msg(&m, "big.test", TLS_HELLO_MAX - 5 - small - 4);
	len = wrap(&m, 16384, wire, sizeof(wire));
	cr_assert_eq(len, TLS_HELLO_MAX);
	cr_assert_eq(parse(len, &h), TLS_HELLO_SNI);
}
