/*
 * tls_sni.c - the ClientHello parser of SNI passthrough (see tls_sni.h).
 * Pure; any thread.
 *
 * Wire format (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2, RFC 6066 §3):
 *
 *   record:     type 22 | version 3.x | length (2) | fragment
 *   handshake:  type 1  | length (3)  | body
 *   body:       version (2) | random (32) | session_id <0..32>
 *               | cipher_suites <2..2^16-2> | compression <1..2^8-1>
 *               | [ extensions <0..2^16-1> ]
 *   extension:  type (2) | length (2) | data
 *   server_name (type 0): list <1..2^16-1> of { type (1) | name <1..2^16-1> }
 *
 * The handshake message is read as one byte stream through the records
 * that carry it (struct stream), so a hello fragmented over several records
 * reads like one. Every length is checked against what encloses it; any
 * mismatch is TLS_HELLO_INVALID, never a read past LEN.
 */
#include "core/tls_sni.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define REC_HANDSHAKE	22
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define SNI_HOST_NAME	0
#define REC_MAX		16384

/* The handshake bytes of consecutive records, and how much of the
 * ClientHello body is left to read. */
struct stream {
	const uint8_t *buf;
	size_t len;
	size_t pos; /* next raw byte of BUF */
	size_t rec_left; /* handshake bytes left in the current record */
	size_t body_left; /* bytes of the ClientHello body not yet read */
	enum tls_hello_result err; /* why the last read stopped */
};

/* Checks the record header at s->pos (as much of it as there is). */
static bool record_header(struct stream *s)
{
	const uint8_t *h = s->buf + s->pos;
	size_t have = s->len - s->pos;

	if ((have > 0 && h[0] != REC_HANDSHAKE) || (have > 1 && h[1] != 3) ||
	    (have > 2 && h[2] > 4)) {
		s->err = TLS_HELLO_INVALID;
		return false;
	}
	if (have < 5) {
		s->err = TLS_HELLO_NEED_MORE;
		return false;
	}
	size_t n = (size_t)h[3] << 8 | h[4];
	if (n == 0 || n > REC_MAX) {
		s->err = TLS_HELLO_INVALID;
		return false;
	}
	s->pos += 5;
	s->rec_left = n;
	return true;
}

/* Copies the next N handshake bytes to OUT (or skips them when OUT is
 * NULL). False with s->err set when they are not all there. */
static bool stream_read(struct stream *s, uint8_t *out, size_t n)
{
	while (n > 0) {
		if (s->rec_left == 0 && !record_header(s))
			return false;
		if (s->pos == s->len) {
			s->err = TLS_HELLO_NEED_MORE;
			return false;
		}
		size_t k = n;
		if (k > s->rec_left)
			k = s->rec_left;
		if (k > s->len - s->pos)
			k = s->len - s->pos;
		if (out) {
			memcpy(out, s->buf + s->pos, k);
			out += k;
		}
		s->pos += k;
		s->rec_left -= k;
		n -= k;
	}
	return true;
}

/* Reads N bytes of the body; reading past its announced end is INVALID. */
static bool body_read(struct stream *s, uint8_t *out, size_t n)
{
	if (n > s->body_left) {
		s->err = TLS_HELLO_INVALID;
		return false;
	}
	if (!stream_read(s, out, n))
		return false;
	s->body_left -= n;
	return true;
}

/* A big-endian number of N (1 to 3) bytes of the body. */
static bool body_num(struct stream *s, size_t n, size_t *v)
{
	uint8_t b[3];
	if (!body_read(s, b, n))
		return false;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v = *v << 8 | b[i];
	return true;
}

/* Skips a vector whose length takes N bytes; checks it lies in [LO, HI]. */
static bool body_skip_vec(struct stream *s, size_t n, size_t lo, size_t hi)
{
	size_t len;
	if (!body_num(s, n, &len))
		return false;
	if (len < lo || len > hi) {
		s->err = TLS_HELLO_INVALID;
		return false;
	}
	return body_read(s, NULL, len);
}

static bool fail(struct stream *s)
{
	s->err = TLS_HELLO_INVALID;
	return false;
}

/* A host name fit for routing: printable ASCII without blanks. */
static bool name_is_valid(const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] <= 0x20 || (unsigned char)name[i] >= 0x7f)
			return false;
	return len > 0;
}

/* The server_name extension's data (EXT_LEN bytes). The first host_name
 * entry wins; other name types are skipped. */
static bool read_server_name(struct stream *s, size_t ext_len, struct tls_hello *hello)
{
	size_t list_len, type, name_len;

	if (ext_len < 2)
		return fail(s);
	if (!body_num(s, 2, &list_len))
		return false;
	if (list_len + 2 != ext_len || list_len < 3)
		return fail(s);
	while (list_len > 0) {
		if (list_len < 3)
			return fail(s);
		if (!body_num(s, 1, &type) || !body_num(s, 2, &name_len))
			return false;
		if (name_len == 0 || name_len + 3 > list_len)
			return fail(s);
		list_len -= 3 + name_len;
		if (type != SNI_HOST_NAME || hello->sni_len) {
			if (!body_read(s, NULL, name_len))
				return false;
			continue;
		}
		if (name_len > TLS_SNI_MAX)
			return fail(s);
		if (!body_read(s, (uint8_t *)hello->sni, name_len))
			return false;
		hello->sni[name_len] = '\0';
		if (!name_is_valid(hello->sni, name_len))
			return fail(s);
		hello->sni_len = name_len;
	}
	return true;
}

/* The extensions block, up to the server_name extension or its end. */
static enum tls_hello_result read_extensions(struct stream *s, struct tls_hello *hello)
{
	size_t total, type, len;

	if (s->body_left == 0)
		return TLS_HELLO_NO_SNI; /* no extensions at all (TLS 1.2 allows it) */
	if (!body_num(s, 2, &total))
		return s->err;
	if (total != s->body_left)
		return TLS_HELLO_INVALID;
	while (s->body_left > 0) {
		if (!body_num(s, 2, &type) || !body_num(s, 2, &len))
			return s->err;
		if (len > s->body_left)
			return TLS_HELLO_INVALID;
		if (type != EXT_SERVER_NAME) {
			if (!body_read(s, NULL, len))
				return s->err;
			continue;
		}
		if (!read_server_name(s, len, hello))
			return s->err;
		if (hello->sni_len)
			return TLS_HELLO_SNI;
	}
	return TLS_HELLO_NO_SNI;
}

enum tls_hello_result tls_hello_parse(const void *buf, size_t len, size_t max,
				      struct tls_hello *hello)
{
	struct stream s = {.buf = buf, .len = len, .err = TLS_HELLO_INVALID};
	uint8_t hs[4];

	hello->sni[0] = '\0';
	hello->sni_len = 0;
	if (!stream_read(&s, hs, sizeof(hs)))
		return s.err;
	if (hs[0] != HS_CLIENT_HELLO)
		return TLS_HELLO_INVALID;
	s.body_left = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
	/* The shortest body: version, random, three empty-ish vectors. */
	if (s.body_left < 2 + 32 + 1 + 2 + 2 + 1 + 1)
		return TLS_HELLO_INVALID;
	/* At least one record header in front of the whole message. */
	if (5 + sizeof(hs) + s.body_left > max)
		return TLS_HELLO_TOO_LARGE;
	if (!body_read(&s, NULL, 2 + 32) || !body_skip_vec(&s, 1, 0, 32) ||
	    !body_skip_vec(&s, 2, 2, 65534) || !body_skip_vec(&s, 1, 1, 255))
		return s.err;
	return read_extensions(&s, hello);
}

const char *tls_hello_result_name(enum tls_hello_result r)
{
	switch (r) {
	case TLS_HELLO_SNI:
		return "sni";
	case TLS_HELLO_NO_SNI:
		return "no_sni";
	case TLS_HELLO_NEED_MORE:
		return "need_more";
	case TLS_HELLO_INVALID:
		return "invalid";
	case TLS_HELLO_TOO_LARGE:
		return "too_large";
	}
	return "?";
}
