/*
 * parser.c - the strict HTTP/1.1 head parser; parser.h states the rules.
 *
 * Pure code, run by whichever worker owns the buffer; no state outside the
 * caller's struct http_head. A parse has two passes. find_head() walks the
 * lines with memchr, checking line endings and the size limits on the bytes
 * there are, until the empty line ends the head. Only then are the start line
 * and the fields checked and the framing facts derived, so that pass never
 * sees a partial head and needs no resumable state.
 */
#include "core/http/parser.h"

#include <string.h>

static const struct {
	const char *name;
	int status;
} results[HTTP_RESULT_COUNT] = {
	[HTTP_DONE] = {"done", 0},
	[HTTP_NEED_MORE] = {"need_more", 0},
	[HTTP_E_BAD_REQUEST_LINE] = {"bad_request_line", 400},
	[HTTP_E_BAD_METHOD] = {"bad_method", 400},
	[HTTP_E_BAD_TARGET] = {"bad_target", 400},
	[HTTP_E_BAD_VERSION] = {"bad_version", 400},
	[HTTP_E_UNSUPPORTED_VERSION] = {"unsupported_version", 505},
	[HTTP_E_BAD_STATUS_LINE] = {"bad_status_line", 502},
	[HTTP_E_URI_TOO_LONG] = {"uri_too_long", 414},
	[HTTP_E_HEAD_TOO_LARGE] = {"head_too_large", 431},
	[HTTP_E_TOO_MANY_HEADERS] = {"too_many_headers", 431},
	[HTTP_E_BARE_CR] = {"bare_cr", 400},
	[HTTP_E_BARE_LF] = {"bare_lf", 400},
	[HTTP_E_OBS_FOLD] = {"obs_fold", 400},
	[HTTP_E_SPACE_BEFORE_COLON] = {"space_before_colon", 400},
	[HTTP_E_BAD_HEADER_NAME] = {"bad_header_name", 400},
	[HTTP_E_BAD_HEADER_VALUE] = {"bad_header_value", 400},
	[HTTP_E_BAD_CONTENT_LENGTH] = {"bad_content_length", 400},
	[HTTP_E_CONFLICTING_CONTENT_LENGTH] = {"conflicting_content_length", 400},
	[HTTP_E_CL_AND_TE] = {"cl_and_te", 400},
	[HTTP_E_BAD_TRANSFER_ENCODING] = {"bad_transfer_encoding", 400},
	[HTTP_E_TE_NOT_CHUNKED] = {"te_not_chunked", 501},
	[HTTP_E_TE_IN_HTTP10] = {"te_in_http10", 400},
	[HTTP_E_MISSING_HOST] = {"missing_host", 400},
	[HTTP_E_MULTIPLE_HOST] = {"multiple_host", 400},
	[HTTP_E_BAD_HOST] = {"bad_host", 400},
	[HTTP_E_BAD_CHUNK_SIZE] = {"bad_chunk_size", 400},
	[HTTP_E_BAD_CHUNK_EXT] = {"bad_chunk_ext", 400},
	[HTTP_E_BAD_CHUNK_END] = {"bad_chunk_end", 400},
	[HTTP_E_BAD_TRAILER] = {"bad_trailer", 400},
	[HTTP_E_TRAILER_TOO_LARGE] = {"trailer_too_large", 400},
};

#define LIT(s) sizeof(s) - 1, s

static const struct {
	size_t len;
	const char *name;
	enum http_method id;
} methods[] = {
	{LIT("GET"), HTTP_M_GET},	  {LIT("HEAD"), HTTP_M_HEAD},
	{LIT("POST"), HTTP_M_POST},	  {LIT("PUT"), HTTP_M_PUT},
	{LIT("DELETE"), HTTP_M_DELETE},	  {LIT("CONNECT"), HTTP_M_CONNECT},
	{LIT("OPTIONS"), HTTP_M_OPTIONS}, {LIT("TRACE"), HTTP_M_TRACE},
	{LIT("PATCH"), HTTP_M_PATCH},
};

/* Names in lowercase, compared ignoring the case of the input. */
static const struct {
	size_t len;
	const char *name;
	enum http_hdr id;
} known_headers[] = {
	{LIT("content-length"), HTTP_H_CONTENT_LENGTH},
	{LIT("transfer-encoding"), HTTP_H_TRANSFER_ENCODING},
	{LIT("host"), HTTP_H_HOST},
	{LIT("connection"), HTTP_H_CONNECTION},
	{LIT("upgrade"), HTTP_H_UPGRADE},
	{LIT("expect"), HTTP_H_EXPECT},
	{LIT("keep-alive"), HTTP_H_KEEP_ALIVE},
	{LIT("proxy-connection"), HTTP_H_PROXY_CONNECTION},
	{LIT("te"), HTTP_H_TE},
	{LIT("trailer"), HTTP_H_TRAILER},
};

/* The limits of one parse, resolved from struct http_limits. */
struct limits {
	size_t line; /* max_uri_size, at most head */
	size_t head; /* max_header_size, at most UINT32_MAX - 1 so slices fit */
};

const char *http_result_name(enum http_result r)
{
	if ((unsigned int)r >= HTTP_RESULT_COUNT || !results[r].name)
		return "unknown";
	return results[r].name;
}

int http_result_status(enum http_result r)
{
	if ((unsigned int)r >= HTTP_RESULT_COUNT)
		return 400;
	return results[r].status;
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

bool http_case_eq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

bool http_token_eq(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && http_case_eq(s, lit, len);
}

static struct http_slice slice(size_t off, size_t len)
{
	return (struct http_slice){.off = (uint32_t)off, .len = (uint32_t)len};
}

static struct limits resolve_limits(const struct http_limits *lim)
{
	struct limits l = {HTTP_DEFAULT_URI_SIZE, HTTP_DEFAULT_HEADER_SIZE};

	if (lim && lim->max_uri_size)
		l.line = lim->max_uri_size;
	if (lim && lim->max_header_size)
		l.head = lim->max_header_size;
	if (l.head > UINT32_MAX - 1)
		l.head = UINT32_MAX - 1;
	if (l.line > l.head)
		l.line = l.head;
	return l;
}

/*
 * Look for the LF ending the line that starts at buf[from], within
 * buf[from, to). *nl is its index (to when there is none). Returns HTTP_DONE
 * for a line ending in CRLF, HTTP_NEED_MORE when there is no LF yet, or the
 * error: a CR followed by anything but LF, or an LF without its CR. A CR in
 * the last byte may still be followed by LF, so it is not judged yet.
 */
static enum http_result scan_line(const char *buf, size_t from, size_t to, size_t *nl)
{
	const char *lf = memchr(buf + from, '\n', to - from);
	size_t end = lf ? (size_t)(lf - buf) : to;

	if (end > from + 1 && memchr(buf + from, '\r', end - from - 1))
		return HTTP_E_BARE_CR;
	*nl = end;
	if (!lf)
		return HTTP_NEED_MORE;
	if (end == from || buf[end - 1] != '\r')
		return HTTP_E_BARE_LF;
	return HTTP_DONE;
}

/*
 * The start of a start line, at buf[p, end): a request's method must be a
 * token and a response must begin "HTTP/1.", byte by byte. Garbage (a TLS
 * hello to a plain port, a server that does not speak HTTP) is refused as
 * soon as it comes, not when request_timeout or server_timeout passes,
 * as nginx refuses it. Stops at the line's end, which the start line's
 * own parser judges.
 */
static enum http_result check_line_start(const char *buf, size_t p, size_t end, bool request)
{
	if (!request) {
		size_t n = end - p < 7 ? end - p : 7;
		return memcmp(buf + p, "HTTP/1.", n) ? HTTP_E_BAD_STATUS_LINE : HTTP_DONE;
	}
	for (; p < end && !memchr(" \t\r\n", buf[p], 4); p++)
		if (!http_is_tchar((unsigned char)buf[p]))
			return HTTP_E_BAD_METHOD;
	return HTTP_DONE;
}

/*
 * Find the start line in buf[0, len), checking its ending and limits. On
 * HTTP_DONE, *start is where it begins (after skipped empty lines) and *nl
 * the index of its LF. Only bytes inside the limits are looked at and each
 * is judged once its line is known, so a prefix of a message answers
 * NEED_MORE or what the whole does.
 */
static enum http_result find_start_line(const char *buf, size_t len, const struct limits *l,
					bool request, size_t *start, size_t *nl)
{
	size_t wend = len < l->head ? len : l->head;
	size_t p = 0, skipped = 0, line_cap, lend;
	enum http_result r;

	if (len == 0)
		return HTTP_NEED_MORE;
	while (request && skipped < HTTP_MAX_EMPTY_LINES && p + 2 <= wend && buf[p] == '\r' &&
	       buf[p + 1] == '\n') {
		p += 2;
		skipped++;
	}
	*start = p;
	line_cap = p + l->line + 2; /* the start line, its CRLF included */
	lend = wend < line_cap ? wend : line_cap;
	r = check_line_start(buf, p, lend, request);
	if (r != HTTP_DONE)
		return r;
	r = scan_line(buf, p, lend, nl);
	if (r == HTTP_NEED_MORE && line_cap <= l->head && len >= line_cap)
		return HTTP_E_URI_TOO_LONG;
	if (r == HTTP_DONE && *nl == p + 1)
		return request ? HTTP_E_BAD_REQUEST_LINE : HTTP_E_BAD_STATUS_LINE;
	if (r == HTTP_NEED_MORE && len >= l->head)
		return HTTP_E_HEAD_TOO_LARGE;
	return r;
}

/*
 * Find the end of the head whose start line ends at buf[nl], checking line
 * endings and limits: on HTTP_DONE, *head_len is the length up to and
 * including the empty line.
 */
static enum http_result find_head_end(const char *buf, size_t len, const struct limits *l,
				      size_t nl, size_t *head_len)
{
	size_t wend = len < l->head ? len : l->head;
	enum http_result r = HTTP_DONE;

	while (r == HTTP_DONE) {
		size_t p = nl + 1;
		r = scan_line(buf, p, wend, &nl);
		if (r == HTTP_DONE && nl == p + 1) {
			*head_len = nl + 1;
			return HTTP_DONE;
		}
	}
	if (r == HTTP_NEED_MORE && len >= l->head)
		return HTTP_E_HEAD_TOO_LARGE;
	return r;
}

/* Index of the CR ending the line at buf[p]; the scan made sure it exists. */
static size_t line_end(const char *buf, size_t p, size_t head_len)
{
	const char *cr = memchr(buf + p, '\r', head_len - p);

	return (size_t)(cr - buf);
}

/* "HTTP/1.D": s has 8 bytes. A minor version above 1 is taken for 1.1,
 * the highest this end speaks (RFC 9112 §2.3); the proxy passes it on
 * written as 1.1. */
static enum http_result parse_version(const char *s, int *minor)
{
	if (memcmp(s, "HTTP/", 5) != 0 || !is_digit(s[5]) || s[6] != '.' || !is_digit(s[7]))
		return HTTP_E_BAD_VERSION;
	if (s[5] != '1')
		return HTTP_E_UNSUPPORTED_VERSION;
	*minor = s[7] == '0' ? 0 : 1;
	return HTTP_DONE;
}

/* RFC 3986 reg-name characters (unreserved, pct-encoded, sub-delims). */
static bool is_host_char(unsigned char c)
{
	if (is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'z'))
		return true;
	return c && strchr("-._~%!$&'()*+,;=", c) != NULL;
}

/*
 * An authority without userinfo: host [":" port], the host a reg-name or a
 * bracketed IP literal, the port up to 65535 (leading zeros allowed: RFC 3986
 * §3.2.3 has port = *DIGIT). need_port: CONNECT's
 * authority-form, where the port is required and not 0. An empty string is
 * valid only when allow_empty (an empty Host field).
 */
static bool is_authority(const char *s, size_t n, bool need_port, bool allow_empty)
{
	size_t i = 0, digits;
	unsigned long port = 0;

	if (n == 0)
		return allow_empty;
	if (s[0] == '[') {
		for (i = 1; i < n && (is_host_char(s[i]) || s[i] == ':'); i++)
			;
		if (i == 1 || i == n || s[i] != ']')
			return false;
		i++;
	} else {
		while (i < n && is_host_char(s[i]))
			i++;
		if (i == 0)
			return false;
	}
	if (i == n)
		return !need_port;
	if (s[i] != ':')
		return false;
	for (digits = 0, i++; i < n && is_digit(s[i]) && port <= 65535; i++, digits++)
		port = port * 10 + (unsigned long)(s[i] - '0');
	if (i != n || port > 65535)
		return false;
	return !need_port || (digits > 0 && port > 0);
}

bool http_is_host_value(const char *s, size_t n)
{
	return is_authority(s, n, false, false);
}

/* absolute-form: scheme "://" authority [path-abempty] ["?" query]. */
static enum http_result parse_absolute(const char *buf, size_t off, size_t n, struct http_head *h)
{
	const char *s = buf + off;
	size_t i = 0, a, ae;

	if (lower(s[0]) < 'a' || lower(s[0]) > 'z')
		return HTTP_E_BAD_TARGET;
	while (i < n && (is_digit(s[i]) || (lower(s[i]) >= 'a' && lower(s[i]) <= 'z') ||
			 s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (n - i < 3 || memcmp(s + i, "://", 3) != 0)
		return HTTP_E_BAD_TARGET;
	a = i + 3;
	for (ae = a; ae < n && s[ae] != '/' && s[ae] != '?'; ae++)
		;
	if (!is_authority(s + a, ae - a, false, false))
		return HTTP_E_BAD_TARGET;
	h->target_form = HTTP_TARGET_ABSOLUTE;
	h->authority = slice(off + a, ae - a);
	h->path = slice(off + ae, n - ae);
	return HTTP_DONE;
}

/* The request target in buf[off, off + n), n > 0; h->method_id is known. */
static enum http_result parse_target(const char *buf, size_t off, size_t n, struct http_head *h)
{
	for (size_t i = off; i < off + n; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c <= 0x20 || c == 0x7f || c == '#')
			return HTTP_E_BAD_TARGET;
	}
	h->target = slice(off, n);
	if (h->method_id == HTTP_M_CONNECT) {
		h->target_form = HTTP_TARGET_AUTHORITY;
		h->authority = h->target;
		return is_authority(buf + off, n, true, false) ? HTTP_DONE : HTTP_E_BAD_TARGET;
	}
	if (buf[off] == '/') {
		h->target_form = HTTP_TARGET_ORIGIN;
		h->path = h->target;
		return HTTP_DONE;
	}
	if (n == 1 && buf[off] == '*') {
		h->target_form = HTTP_TARGET_ASTERISK;
		return h->method_id == HTTP_M_OPTIONS ? HTTP_DONE : HTTP_E_BAD_TARGET;
	}
	return parse_absolute(buf, off, n, h);
}

static enum http_method method_id(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (methods[i].len == n && memcmp(methods[i].name, s, n) == 0)
			return methods[i].id;
	return HTTP_M_OTHER;
}

/* method SP request-target SP HTTP-version, in buf[p, e), single spaces. */
static enum http_result parse_request_line(const char *buf, size_t p, size_t e, struct http_head *h)
{
	const char *sp = memchr(buf + p, ' ', e - p);
	size_t sp1, sp2;
	enum http_result r;

	if (!sp)
		return HTTP_E_BAD_REQUEST_LINE;
	sp1 = (size_t)(sp - buf);
	sp = memchr(buf + sp1 + 1, ' ', e - sp1 - 1);
	if (!sp)
		return HTTP_E_BAD_REQUEST_LINE;
	sp2 = (size_t)(sp - buf);
	if (sp1 == p || sp2 == sp1 + 1 || sp2 + 1 == e || memchr(sp + 1, ' ', e - sp2 - 1))
		return HTTP_E_BAD_REQUEST_LINE;
	for (size_t i = p; i < sp1; i++)
		if (!http_is_tchar((unsigned char)buf[i]))
			return HTTP_E_BAD_METHOD;
	h->method = slice(p, sp1 - p);
	h->method_id = method_id(buf + p, sp1 - p);
	if (e - sp2 - 1 != 8)
		return HTTP_E_BAD_VERSION;
	r = parse_version(buf + sp2 + 1, &h->version_minor);
	if (r != HTTP_DONE)
		return r;
	return parse_target(buf, sp1 + 1, sp2 - sp1 - 1, h);
}

/* HTTP-version SP 3DIGIT [SP reason-phrase], in buf[p, e). */
static enum http_result parse_status_line(const char *buf, size_t p, size_t e, struct http_head *h)
{
	const char *s = buf + p;
	enum http_result r;

	if (e - p < 12 || s[8] != ' ')
		return HTTP_E_BAD_STATUS_LINE;
	r = parse_version(s, &h->version_minor);
	if (r != HTTP_DONE)
		return r;
	if (!is_digit(s[9]) || !is_digit(s[10]) || !is_digit(s[11]) || s[9] == '0' || s[9] > '5')
		return HTTP_E_BAD_STATUS_LINE;
	h->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	if (e - p == 12) {
		h->reason = slice(e, 0);
		return HTTP_DONE;
	}
	if (s[12] != ' ')
		return HTTP_E_BAD_STATUS_LINE;
	for (size_t i = p + 13; i < e; i++)
		if (!http_is_field_char((unsigned char)buf[i]))
			return HTTP_E_BAD_STATUS_LINE;
	h->reason = slice(p + 13, e - p - 13);
	return HTTP_DONE;
}

/* 1*DIGIT, or a list of equal ones ("5, 5"); each must fit in 63 bits.
 * Equal repeats are allowed (RFC 9110 §8.6) but the message is sent on
 * with one value (see rewrite_compact). */
static enum http_result add_content_length(const char *v, size_t n, struct http_head *h)
{
	size_t i = 0;

	for (;;) {
		int64_t val = 0;
		size_t start = i;

		for (; i < n && is_digit(v[i]); i++) {
			if (val > (INT64_MAX - (v[i] - '0')) / 10)
				return HTTP_E_BAD_CONTENT_LENGTH;
			val = val * 10 + (v[i] - '0');
		}
		if (i == start)
			return HTTP_E_BAD_CONTENT_LENGTH;
		if (v[start] == '0' && i - start > 1)
			h->content_length_recast =
				true; /* "007": a lenient peer might read octal */
		if (h->content_length >= 0) {
			if (h->content_length != val)
				return HTTP_E_CONFLICTING_CONTENT_LENGTH;
			h->content_length_recast = true;
		}
		h->content_length = val;
		while (i < n && http_is_ows(v[i]))
			i++;
		if (i == n)
			return HTTP_DONE;
		if (v[i++] != ',')
			return HTTP_E_BAD_CONTENT_LENGTH;
		while (i < n && http_is_ows(v[i]))
			i++;
	}
}

/*
 * Index just past the quoted-string that starts at s[i] (a DQUOTE), or 0 if
 * it does not close. The bytes are field characters already.
 */
static size_t skip_quoted(const char *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '"')
			return i + 1;
		if (s[i] == '\\')
			i++;
	}
	return 0;
}

/*
 * transfer-coding = token *( OWS ";" OWS token BWS "=" BWS ( token /
 * quoted-string ) ). *name_len: the length of the coding's name.
 */
static bool is_transfer_coding(const char *s, size_t n, size_t *name_len)
{
	size_t i = 0, t;

	while (i < n && http_is_tchar(s[i]))
		i++;
	*name_len = i;
	if (i == 0)
		return false;
	while (i < n) {
		while (i < n && http_is_ows(s[i]))
			i++;
		if (i == n || s[i++] != ';')
			return false;
		while (i < n && http_is_ows(s[i]))
			i++;
		for (t = i; i < n && http_is_tchar(s[i]); i++)
			;
		while (i < n && http_is_ows(s[i]))
			i++;
		if (t == i || i == n || s[i++] != '=')
			return false;
		while (i < n && http_is_ows(s[i]))
			i++;
		if (i < n && s[i] == '"') {
			i = skip_quoted(s, n, i);
			if (i == 0)
				return false;
			continue;
		}
		for (t = i; i < n && http_is_tchar(s[i]); i++)
			;
		if (t == i)
			return false;
	}
	return true;
}

/* Codings accumulate over every Transfer-Encoding field, in order. */
static enum http_result add_transfer_encoding(const char *v, size_t n, struct http_head *h)
{
	const char *el;
	size_t el_len, name_len, pos = 0;
	bool any = false;

	h->has_te = true;
	while (http_list_next(v, n, &pos, &el, &el_len)) {
		any = true;
		if (!is_transfer_coding(el, el_len, &name_len) || h->chunked)
			return HTTP_E_BAD_TRANSFER_ENCODING;
		if (!http_token_eq(el, name_len, "chunked"))
			h->te_other = true;
		else if (name_len == el_len)
			h->chunked = true;
		else
			return HTTP_E_BAD_TRANSFER_ENCODING;
	}
	return any ? HTTP_DONE : HTTP_E_BAD_TRANSFER_ENCODING;
}

static void add_connection(const char *v, size_t n, struct http_head *h)
{
	const char *el;
	size_t el_len, pos = 0;

	while (http_list_next(v, n, &pos, &el, &el_len)) {
		if (h->conn_tokens < UINT16_MAX)
			h->conn_tokens++;
		if (http_token_eq(el, el_len, "close"))
			h->conn_close = true;
		else if (http_token_eq(el, el_len, "keep-alive"))
			h->conn_keep_alive = true;
		else if (http_token_eq(el, el_len, "upgrade"))
			h->conn_upgrade = true;
		else if (h->conn_options < UINT16_MAX)
			h->conn_options++;
	}
}

/* Derive what one field tells about the message. */
static enum http_result apply_field(const char *buf, const struct http_header *hd,
				    struct http_head *h)
{
	const char *v = buf + hd->value.off;
	size_t n = hd->value.len;

	switch (hd->id) {
	case HTTP_H_CONTENT_LENGTH:
		return add_content_length(v, n, h);
	case HTTP_H_TRANSFER_ENCODING:
		return add_transfer_encoding(v, n, h);
	case HTTP_H_HOST:
		if (h->host_count++ == 0)
			h->host = hd->value;
		if (!is_authority(v, n, false, true))
			h->bad_host = true; /* once the framing is known (http_parse_request) */
		return HTTP_DONE;
	case HTTP_H_CONNECTION:
		add_connection(v, n, h);
		return h->conn_tokens > HTTP_MAX_CONNECTION_TOKENS ? HTTP_E_TOO_MANY_HEADERS
								   : HTTP_DONE;
	case HTTP_H_UPGRADE:
		h->has_upgrade = true;
		return HTTP_DONE;
	case HTTP_H_EXPECT:
		if (http_token_eq(v, n, "100-continue"))
			h->expect_continue = true;
		else
			h->expect_other = true;
		return HTTP_DONE;
	default:
		return HTTP_DONE;
	}
}

static enum http_hdr header_id(const char *s, size_t n)
{
	for (size_t i = 0; i < sizeof(known_headers) / sizeof(known_headers[0]); i++)
		if (known_headers[i].len == n && http_case_eq(s, known_headers[i].name, n))
			return known_headers[i].id;
	return HTTP_H_OTHER;
}

/* field-name ":" OWS field-value OWS, in buf[p, e); e > p. */
static enum http_result parse_field(const char *buf, size_t p, size_t e, struct http_head *h)
{
	struct http_header *hd;
	size_t c = p, v, ve;

	if (http_is_ows(buf[p]))
		return HTTP_E_OBS_FOLD;
	while (c < e && http_is_tchar(buf[c]))
		c++;
	if (c < e && http_is_ows(buf[c])) {
		/* "Name : v" is the smuggling form; "Bad Name: v" a bad name. */
		size_t w = c;
		while (w < e && http_is_ows(buf[w]))
			w++;
		return w < e && buf[w] == ':' ? HTTP_E_SPACE_BEFORE_COLON : HTTP_E_BAD_HEADER_NAME;
	}
	if (c == p || c == e || buf[c] != ':')
		return HTTP_E_BAD_HEADER_NAME;
	for (v = c + 1; v < e && http_is_ows(buf[v]); v++)
		;
	for (ve = e; ve > v && http_is_ows(buf[ve - 1]); ve--)
		;
	for (size_t i = v; i < ve; i++)
		if (!http_is_field_char((unsigned char)buf[i]))
			return HTTP_E_BAD_HEADER_VALUE;
	if (h->header_count == HTTP_MAX_HEADERS)
		return HTTP_E_TOO_MANY_HEADERS;
	hd = &h->headers[h->header_count++];
	hd->name = slice(p, c - p);
	hd->value = slice(v, ve - v);
	hd->id = header_id(buf + p, c - p);
	return apply_field(buf, hd, h);
}

/* Every field line from buf[p] to the empty line that ends the head. */
static enum http_result parse_fields(const char *buf, size_t p, size_t head_len,
				     struct http_head *h)
{
	while (p + 2 < head_len) {
		size_t e = line_end(buf, p, head_len);
		enum http_result r = parse_field(buf, p, e, h);

		if (r != HTTP_DONE)
			return r;
		p = e + 2;
	}
	return HTTP_DONE;
}

/* RFC 9112 §6.1 and §6.3, plus SPEC §3 for requests. */
static enum http_result check_framing(const struct http_head *h, bool request)
{
	if (!h->has_te)
		return HTTP_DONE;
	if (h->content_length >= 0)
		return HTTP_E_CL_AND_TE;
	if (h->version_minor == 0)
		return HTTP_E_TE_IN_HTTP10;
	if (request && !h->chunked)
		return HTTP_E_TE_NOT_CHUNKED;
	return HTTP_DONE;
}

/* Clear everything but the header array, which fills as fields are read. */
static void head_reset(struct http_head *h, size_t head_len)
{
	size_t tail = offsetof(struct http_head, header_count);

	memset(h, 0, offsetof(struct http_head, headers));
	memset((char *)h + tail, 0, sizeof(*h) - tail);
	h->content_length = -1;
	h->head_len = head_len;
}

/* Finds and parses the start line (a request's or a response's) as soon as
 * it is in, then finds the rest of the head and parses its fields and its
 * framing: an error shows as soon as the line holding it is in. */
static enum http_result parse_head(const char *buf, size_t len, const struct http_limits *lim,
				   bool request, struct http_head *out)
{
	struct limits l = resolve_limits(lim);
	size_t start, nl, head_len;
	enum http_result r;

	r = find_start_line(buf, len, &l, request, &start, &nl);
	if (r != HTTP_DONE)
		return r;
	head_reset(out, 0);
	r = request ? parse_request_line(buf, start, nl - 1, out)
		    : parse_status_line(buf, start, nl - 1, out);
	if (r != HTTP_DONE)
		return r;
	r = find_head_end(buf, len, &l, nl, &head_len);
	if (r != HTTP_DONE)
		return r;
	out->head_len = head_len;
	r = parse_fields(buf, nl + 1, head_len, out);
	if (r == HTTP_DONE)
		r = check_framing(out, request);
	return r;
}

enum http_result http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
				    struct http_head *out)
{
	enum http_result r = parse_head(buf, len, lim, true, out);

	if (r == HTTP_DONE && out->host_count > 1)
		r = HTTP_E_MULTIPLE_HOST;
	if (r == HTTP_DONE && out->bad_host)
		r = HTTP_E_BAD_HOST;
	if (r == HTTP_DONE && out->host_count == 0 && out->version_minor == 1)
		r = HTTP_E_MISSING_HOST;
	return r;
}

enum http_result http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
				     struct http_head *out)
{
	return parse_head(buf, len, lim, false, out);
}
