/*
 * proxy_proto.c - parsing and building PROXY protocol headers (see
 * proxy_proto.h). Pure functions, any thread.
 *
 * Parsing is strict: v1 must be "PROXY" SP proto SP src SP dst SP sport SP
 * dport CRLF with single spaces, addresses inet_pton accepts for the named
 * family and ports 0..65535 without leading zeros; a bare CR or LF, a NUL,
 * or no CRLF within 107 bytes, is an error. v2 must carry version 2, the LOCAL or
 * PROXY command and a known family; its length field decides where it ends.
 */
#include "core/proxy_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char v1_prefix[] = "PROXY ";
static const char v2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";

static enum pp_result fail(struct pp_info *info, const char *why)
{
	info->error = why;
	return PP_ERROR;
}

/* Copies the token at *P (up to a space or END) into OUT (CAP bytes, NUL
 * terminated) and moves *P past it and one following space. Returns the
 * token's length, or -1 when it is empty, too long, or not followed by
 * exactly one space (LAST: by END instead). */
static int take_token(const char **p, const char *end, char *out, size_t cap, bool last)
{
	const char *s = *p, *e = s;

	while (e < end && *e != ' ')
		e++;
	size_t n = (size_t)(e - s);
	if (n == 0 || n >= cap)
		return -1;
	if (last ? e != end : (e == end || e + 1 == end || e[1] == ' '))
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	*p = last ? e : e + 1;
	return (int)n;
}

static bool parse_port(const char *s, uint16_t *out)
{
	unsigned long v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

static bool set_addr(struct sockaddr_storage *ss, int family, const char *text, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		return inet_pton(AF_INET, text, &in->sin_addr) == 1;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	return inet_pton(AF_INET6, text, &in6->sin6_addr) == 1;
}

/* The line between "PROXY " and CRLF: [P, END). */
static enum pp_result parse_v1_line(const char *p, const char *end, struct pp_info *info)
{
	char proto[8], src[48], dst[48], sport[8], dport[8];
	uint16_t sp, dp;

	if ((size_t)(end - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0 &&
	    (end - p == 7 || p[7] == ' ')) {
		info->local = true;
		return PP_DONE;
	}
	if (take_token(&p, end, proto, sizeof(proto), false) < 0)
		return fail(info, "malformed v1 header");
	int family = strcmp(proto, "TCP4") == 0	  ? AF_INET
		     : strcmp(proto, "TCP6") == 0 ? AF_INET6
						  : 0;
	if (!family)
		return fail(info, "unknown v1 protocol");
	if (take_token(&p, end, src, sizeof(src), false) < 0 ||
	    take_token(&p, end, dst, sizeof(dst), false) < 0 ||
	    take_token(&p, end, sport, sizeof(sport), false) < 0 ||
	    take_token(&p, end, dport, sizeof(dport), true) < 0)
		return fail(info, "malformed v1 header");
	if (!parse_port(sport, &sp) || !parse_port(dport, &dp))
		return fail(info, "bad port in v1 header");
	if (!set_addr(&info->src, family, src, sp) || !set_addr(&info->dst, family, dst, dp))
		return fail(info, "bad address in v1 header");
	return PP_DONE;
}

static enum pp_result parse_v1(const char *buf, size_t len, struct pp_info *info)
{
	/* The CR may be at most at PP_V1_MAX - 2: its LF ends the 107th byte. */
	size_t lim = len < PP_V1_MAX - 1 ? len : PP_V1_MAX - 1;

	info->version = 1;
	for (size_t i = sizeof(v1_prefix) - 1; i < lim; i++) {
		if (buf[i] == '\n')
			return fail(info, "bare LF in v1 header");
		if (buf[i] == '\0') /* the fields' parsers would stop at it */
			return fail(info, "NUL in v1 header");
		if (buf[i] != '\r')
			continue;
		if (i + 1 == len)
			return PP_MORE;
		if (buf[i + 1] != '\n')
			return fail(info, "bare CR in v1 header");
		info->len = i + 2;
		return parse_v1_line(buf + sizeof(v1_prefix) - 1, buf + i, info);
	}
	if (len >= PP_V1_MAX - 1)
		return fail(info, "no CRLF within 107 bytes");
	return PP_MORE;
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static enum pp_result parse_v2(const char *buf, size_t len, struct pp_info *info)
{
	const unsigned char *b = (const unsigned char *)buf;

	info->version = 2;
	if (len < PP_V2_HEAD)
		return PP_MORE;
	if (b[12] >> 4 != 2)
		return fail(info, "v2 header with a version other than 2");
	int cmd = b[12] & 0x0f, family = b[13] >> 4, proto = b[13] & 0x0f;
	size_t alen = get16(b + 14);
	if (cmd > 1)
		return fail(info, "unknown v2 command");
	/* A LOCAL command's block, family byte included, is to be ignored. */
	if (cmd == 1 && (family > 3 || proto > 2))
		return fail(info, "unknown v2 address family");
	info->len = PP_V2_HEAD + alen;
	if (len < info->len)
		return PP_MORE;
	if (cmd == 0) {
		info->local = true;
		return PP_DONE;
	}
	const unsigned char *a = b + PP_V2_HEAD;
	/* A PROXY command carries the whole address block of its family. */
	static const size_t family_len[] = {0, 12, 36, 216};
	if (alen < family_len[family])
		return fail(info, "v2 header too short for its address family");
	if (proto != 1 || (family != 1 && family != 2)) {
		/* UNSPEC, datagrams, unix sockets: the block is ignored. */
		info->local = true;
		return PP_DONE;
	}
	/* TLVs (read and skipped) must fill the rest of the block exactly. */
	for (size_t off = family_len[family]; off < alen;) {
		if (alen - off < 3 || alen - off - 3 < get16(a + off + 1))
			return fail(info, "v2 TLV longer than its header");
		off += 3 + get16(a + off + 1);
	}
	if (family == 1) {
		struct sockaddr_in *s = (struct sockaddr_in *)&info->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&info->dst;
		memset(&info->src, 0, sizeof(info->src));
		memset(&info->dst, 0, sizeof(info->dst));
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		s->sin_port = htons(get16(a + 8));
		d->sin_port = htons(get16(a + 10));
		return PP_DONE;
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&info->src;
	struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&info->dst;
	memset(&info->src, 0, sizeof(info->src));
	memset(&info->dst, 0, sizeof(info->dst));
	s6->sin6_family = d6->sin6_family = AF_INET6;
	memcpy(&s6->sin6_addr, a, 16);
	memcpy(&d6->sin6_addr, a + 16, 16);
	s6->sin6_port = htons(get16(a + 32));
	d6->sin6_port = htons(get16(a + 34));
	return PP_DONE;
}

enum pp_result pp_parse(const char *buf, size_t len, struct pp_info *info)
{
	memset(info, 0, sizeof(*info));
	if (len == 0)
		return PP_MORE;
	if (buf[0] == 'P') {
		size_t n = len < sizeof(v1_prefix) - 1 ? len : sizeof(v1_prefix) - 1;
		if (memcmp(buf, v1_prefix, n) != 0)
			return fail(info, "not a PROXY header");
		return n < sizeof(v1_prefix) - 1 ? PP_MORE : parse_v1(buf, len, info);
	}
	size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
	if (memcmp(buf, v2_sig, n) != 0)
		return fail(info, "not a PROXY header");
	return parse_v2(buf, len, info);
}

/* ------------------------------------------------------------ building -- */

/* Both addresses as IPv6 when the families differ (IPv4 as ::ffff:a.b.c.d),
 * so one header can carry them. Returns the common family or 0. */
static int common_family(const struct sockaddr *src, const struct sockaddr *dst,
			 struct sockaddr_in6 *s6, struct sockaddr_in6 *d6)
{
	const struct sockaddr *in[2] = {src, dst};
	struct sockaddr_in6 *out[2] = {s6, d6};

	if (!src || !dst)
		return 0;
	if (src->sa_family == AF_INET && dst->sa_family == AF_INET)
		return AF_INET;
	for (int i = 0; i < 2; i++) {
		memset(out[i], 0, sizeof(*out[i]));
		out[i]->sin6_family = AF_INET6;
		if (in[i]->sa_family == AF_INET6) {
			*out[i] = *(const struct sockaddr_in6 *)in[i];
		} else if (in[i]->sa_family == AF_INET) {
			const struct sockaddr_in *v4 = (const struct sockaddr_in *)in[i];
			out[i]->sin6_port = v4->sin_port;
			out[i]->sin6_addr.s6_addr[10] = 0xff;
			out[i]->sin6_addr.s6_addr[11] = 0xff;
			memcpy(&out[i]->sin6_addr.s6_addr[12], &v4->sin_addr, 4);
		} else {
			return 0;
		}
	}
	return AF_INET6;
}

int pp_build_v1(char *buf, size_t cap, const struct sockaddr *src, const struct sockaddr *dst)
{
	struct sockaddr_in6 s6, d6;
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
	int n;

	switch (common_family(src, dst, &s6, &d6)) {
	case AF_INET: {
		const struct sockaddr_in *s = (const struct sockaddr_in *)src;
		const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
		inet_ntop(AF_INET, &s->sin_addr, sa, sizeof(sa));
		inet_ntop(AF_INET, &d->sin_addr, da, sizeof(da));
		n = snprintf(buf, cap, "PROXY TCP4 %s %s %u %u\r\n", sa, da, ntohs(s->sin_port),
			     ntohs(d->sin_port));
		break;
	}
	case AF_INET6:
		inet_ntop(AF_INET6, &s6.sin6_addr, sa, sizeof(sa));
		inet_ntop(AF_INET6, &d6.sin6_addr, da, sizeof(da));
		n = snprintf(buf, cap, "PROXY TCP6 %s %s %u %u\r\n", sa, da, ntohs(s6.sin6_port),
			     ntohs(d6.sin6_port));
		break;
	default:
		n = snprintf(buf, cap, "PROXY UNKNOWN\r\n");
		break;
	}
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

int pp_build_v2(char *buf, size_t cap, const struct sockaddr *src, const struct sockaddr *dst)
{
	unsigned char *b = (unsigned char *)buf;
	struct sockaddr_in6 s6, d6;
	int family = common_family(src, dst, &s6, &d6);
	size_t alen = family == AF_INET ? 12 : family == AF_INET6 ? 36 : 0;

	if (cap < PP_V2_HEAD + alen)
		return -ENOSPC;
	memcpy(b, v2_sig, sizeof(v2_sig));
	b[12] = family ? 0x21 : 0x20; /* version 2; PROXY, or LOCAL */
	b[13] = family == AF_INET ? 0x11 : family == AF_INET6 ? 0x21 : 0x00;
	put16(b + 14, (uint16_t)alen);
	unsigned char *a = b + PP_V2_HEAD;
	if (family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)src;
		const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
		memcpy(a, &s->sin_addr, 4);
		memcpy(a + 4, &d->sin_addr, 4);
		put16(a + 8, ntohs(s->sin_port));
		put16(a + 10, ntohs(d->sin_port));
	} else if (family == AF_INET6) {
		memcpy(a, &s6.sin6_addr, 16);
		memcpy(a + 16, &d6.sin6_addr, 16);
		put16(a + 32, ntohs(s6.sin6_port));
		put16(a + 34, ntohs(d6.sin6_port));
	}
	return (int)(PP_V2_HEAD + alen);
}
