/*
 * http.c - the bench backend's HTTP side: reads requests out of a
 * connection's input buffer (heads, Content-Length and chunked bodies) and
 * queues each answer in its output, in request order. Nothing here touches a
 * socket; main.c reads and writes.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"

static int out_reserve(struct conn *c, size_t n)
{
	size_t cap = c->out_cap ? c->out_cap : 4096;
	char *p;

	if (c->out_len + n <= c->out_cap)
		return 0;
	while (cap < c->out_len + n)
		cap *= 2;
	p = realloc(c->out, cap);
	if (!p)
		return -1;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

static int out_append(struct conn *c, const void *data, size_t len)
{
	if (out_reserve(c, len) < 0)
		return -1;
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

__attribute__((format(printf, 2, 3))) static int out_fmt(struct conn *c, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return out_append(c, line, (size_t)n);
}

static int aux_append(struct conn *c, const char *data, size_t len)
{
	size_t cap = c->aux_cap ? c->aux_cap : 4096;
	char *p;

	if (c->aux_len + len > AUX_MAX)
		return -1;
	if (c->aux_len + len > c->aux_cap) {
		while (cap < c->aux_len + len)
			cap *= 2;
		p = realloc(c->aux, cap);
		if (!p)
			return -1;
		c->aux = p;
		c->aux_cap = cap;
	}
	memcpy(c->aux + c->aux_len, data, len);
	c->aux_len += len;
	return 0;
}

static const char *status_reason(int status)
{
	static const struct {
		int code;
		const char *text;
	} table[] = {
		{200, "OK"},
		{201, "Created"},
		{204, "No Content"},
		{301, "Moved Permanently"},
		{302, "Found"},
		{304, "Not Modified"},
		{400, "Bad Request"},
		{403, "Forbidden"},
		{404, "Not Found"},
		{413, "Content Too Large"},
		{429, "Too Many Requests"},
		{431, "Request Header Fields Too Large"},
		{500, "Internal Server Error"},
		{502, "Bad Gateway"},
		{503, "Service Unavailable"},
		{504, "Gateway Timeout"},
	};

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i].code == status)
			return table[i].text;
	return "Status";
}

/* Appends len bytes of the repeating pattern, starting at its beginning. */
static int out_pattern(struct conn *c, size_t len)
{
	while (len > 0) {
		size_t n = len < PATTERN_CAP ? len : PATTERN_CAP;

		if (out_append(c, pattern, n) < 0)
			return -1;
		len -= n;
	}
	return 0;
}

/* The body a request gets when it asks for no special one. */
static int out_default_body(struct conn *c, long long size)
{
	if (size < 0 && c->req.route == R_LARGE)
		size = opt.large_len;
	if (size < 0 && opt.small_len >= 0)
		size = opt.small_len;
	if (size < 0)
		return out_append(c, small_body, small_body_len);
	return out_pattern(c, (size_t)size);
}

static long long default_body_len(const struct request *r)
{
	if (r->size >= 0)
		return r->size;
	if (r->route == R_LARGE)
		return opt.large_len;
	return opt.small_len >= 0 ? opt.small_len : (long long)small_body_len;
}

/* Builds the framed body of /chunked in aux, in pieces of up to 4000 bytes. */
static int build_chunked(struct conn *c)
{
	size_t body_start = c->out_len, body_len;
	int rc;

	if (default_body_len(&c->req) > AUX_MAX / 2)
		return -1;
	rc = out_default_body(c, c->req.size);
	if (rc < 0)
		return -1;
	body_len = c->out_len - body_start;
	for (size_t off = 0; off < body_len && rc == 0; off += 4000) {
		size_t n = body_len - off < 4000 ? body_len - off : 4000;
		char line[32];
		int k = snprintf(line, sizeof(line), "%zx\r\n", n);

		rc = aux_append(c, line, (size_t)k);
		if (rc == 0)
			rc = aux_append(c, c->out + body_start + off, n);
		if (rc == 0)
			rc = aux_append(c, "\r\n", 2);
	}
	c->out_len = body_start;
	return rc ? rc : aux_append(c, "0\r\n\r\n", 5);
}

/* Appends the status line and headers; framing says how the body is delimited. */
static int out_head(struct conn *c, int status, const char *framing, long long len)
{
	int rc = out_fmt(c, "HTTP/1.1 %d %s\r\nX-Server: %s\r\nContent-Type: text/plain\r\n",
			 status, status_reason(status), opt.name);

	if (rc == 0 && framing[0] == 'l')
		rc = out_fmt(c, "Content-Length: %lld\r\n", len);
	else if (rc == 0 && framing[0] == 'c')
		rc = out_fmt(c, "Transfer-Encoding: chunked\r\n");
	if (rc == 0 && c->req.max_age >= 0)
		rc = out_fmt(c, "Cache-Control: max-age=%lld\r\n", c->req.max_age);
	if (rc == 0 && c->closing)
		rc = out_fmt(c, "Connection: close\r\n");
	return rc ? rc : out_append(c, "\r\n", 2);
}

/* Sends an error of our own and closes after it. */
static int answer_error(struct conn *c, int status)
{
	const char *reason = status_reason(status);

	c->closing = true;
	c->req.max_age = -1;
	if (out_head(c, status, "length", (long long)strlen(reason) + 1) < 0)
		return -1;
	return out_fmt(c, "%s\n", reason);
}

/* Queues the answer to the complete request in c->req. */
static int answer(struct conn *c)
{
	struct request *r = &c->req;
	bool no_body = r->head_only || r->status == 204 || r->status == 304;
	long long len = default_body_len(r);
	int rc;

	if (r->too_large)
		return answer_error(c, 413);
	if (!r->keep_alive || r->route == R_CLOSE)
		c->closing = true;
	if (r->route == R_HEADERS || r->route == R_ECHO)
		len = (long long)c->aux_len;
	if (r->route == R_CHUNKED && !no_body && build_chunked(c) < 0)
		return answer_error(c, 500);
	if (r->status == 204 || r->status == 304)
		rc = out_head(c, r->status, "none", 0);
	else if (r->route == R_CHUNKED)
		rc = out_head(c, r->status, "chunked", 0);
	else
		rc = out_head(c, r->status, r->route == R_CLOSE ? "none" : "length", len);
	if (rc < 0 || no_body)
		return rc;
	if (r->route == R_HEADERS || r->route == R_ECHO || r->route == R_CHUNKED)
		return out_append(c, c->aux, c->aux_len);
	if (len > COPY_MAX) {
		c->bulk_left = (unsigned long long)len;
		c->bulk_sent = 0;
		return 0;
	}
	return out_default_body(c, r->size);
}

/* Parses up to 18 decimal digits; -1 if s[0..len) is anything else. */
static long long parse_num(const char *s, size_t len)
{
	long long v = 0;

	if (len == 0 || len > 18)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static bool token_is(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && memcmp(s, prefix, n) == 0;
}

/* Reads ?ms=, ?status=, ?size=, ?maxage= from the query string. */
static void parse_query(struct request *r, const char *q, size_t len)
{
	while (len > 0) {
		const char *amp = memchr(q, '&', len);
		size_t item = amp ? (size_t)(amp - q) : len;
		const char *eq = memchr(q, '=', item);

		if (eq) {
			size_t klen = (size_t)(eq - q);
			long long v = parse_num(eq + 1, item - klen - 1);

			if (token_is(q, klen, "ms"))
				r->delay_ms = v;
			else if (token_is(q, klen, "status") && v >= 200 && v <= 599)
				r->status = (int)v;
			else if (token_is(q, klen, "size"))
				r->size = v;
			else if (token_is(q, klen, "maxage"))
				r->max_age = v;
		}
		q += item;
		len -= item;
		if (len > 0) {
			q++;
			len--;
		}
	}
}

/* Picks the route from the request target (origin or absolute form). */
static void parse_target(struct request *r, const char *t, size_t len)
{
	const char *q;
	size_t path_len;

	if (has_prefix(t, len, "http://") || has_prefix(t, len, "https://")) {
		const char *host = memchr(t, '/', len);
		const char *slash = memchr(host + 2, '/', len - (size_t)(host + 2 - t));

		len = slash ? len - (size_t)(slash - t) : 0;
		t = slash ? slash : t;
	}
	q = memchr(t, '?', len);
	path_len = q ? (size_t)(q - t) : len;
	if (has_prefix(t, path_len, "/large"))
		r->route = R_LARGE;
	else if (has_prefix(t, path_len, "/headers"))
		r->route = R_HEADERS;
	else if (has_prefix(t, path_len, "/echo"))
		r->route = R_ECHO;
	else if (has_prefix(t, path_len, "/chunked"))
		r->route = R_CHUNKED;
	else if (has_prefix(t, path_len, "/close"))
		r->route = R_CLOSE;
	if (q)
		parse_query(r, q + 1, len - path_len - 1);
}

/* METHOD SP TARGET SP HTTP/1.x; false when the line is not one. */
static bool parse_request_line(struct request *r, const char *s, size_t len)
{
	const char *sp1 = memchr(s, ' ', len), *sp2;
	size_t rest;

	if (!sp1 || sp1 == s)
		return false;
	rest = len - (size_t)(sp1 + 1 - s);
	sp2 = memchr(sp1 + 1, ' ', rest);
	if (!sp2 || sp2 == sp1 + 1)
		return false;
	rest = len - (size_t)(sp2 + 1 - s);
	if (rest != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return false;
	if (sp2[8] != '0' && sp2[8] != '1')
		return false;
	r->keep_alive = sp2[8] == '1';
	r->head_only = token_is(s, (size_t)(sp1 - s), "HEAD");
	parse_target(r, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	return true;
}

/* One "Name: value" line; false when it is malformed. */
static bool parse_header(struct request *r, const char *s, size_t len)
{
	const char *colon = memchr(s, ':', len);
	const char *v;
	size_t nlen, vlen;

	if (!colon || colon == s)
		return false;
	nlen = (size_t)(colon - s);
	v = colon + 1;
	vlen = len - nlen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (token_is(s, nlen, "content-length")) {
		long long n = parse_num(v, vlen);

		if (n < 0)
			return false;
		r->body_left = (unsigned long long)n;
	} else if (token_is(s, nlen, "transfer-encoding")) {
		r->chunked = memmem(v, vlen, "chunked", 7) != NULL;
	} else if (token_is(s, nlen, "connection")) {
		if (memmem(v, vlen, "close", 5))
			r->keep_alive = false;
		else if (memmem(v, vlen, "keep-alive", 10))
			r->keep_alive = true;
	} else if (token_is(s, nlen, "expect")) {
		r->expect_continue = token_is(v, vlen, "100-continue");
	}
	return true;
}

static void request_reset(struct request *r)
{
	memset(r, 0, sizeof(*r));
	r->route = R_SMALL;
	r->status = 200;
	r->size = -1;
	r->max_age = -1;
	r->ck = CK_SIZE;
}

/* Parses a complete head of head_len bytes at s; false on malformed input. */
static bool parse_head_lines(struct request *r, const char *s, size_t head_len)
{
	const char *end = s + head_len - 2; /* the final empty line */
	const char *eol = memmem(s, head_len, "\r\n", 2);

	if (!parse_request_line(r, s, (size_t)(eol - s)))
		return false;
	for (s = eol + 2; s < end; s = eol + 2) {
		eol = memmem(s, (size_t)(end - s) + 2, "\r\n", 2);
		if (!parse_header(r, s, (size_t)(eol - s)))
			return false;
	}
	if (r->chunked)
		r->body_left = 0;
	return true;
}

/* PH_HEAD: waits for a whole head, parses it and moves on to the body. */
static enum step step_head(struct conn *c)
{
	char *s = c->in + c->in_off;
	size_t avail = c->in_len - c->in_off, head_len;
	char *end;

	while (avail >= 2 && s[0] == '\r' && s[1] == '\n') {
		s += 2, avail -= 2;
		c->in_off += 2;
	}
	end = memmem(s, avail, "\r\n\r\n", 4);
	if (!end) {
		if (avail == IN_CAP)
			return answer_error(c, 431) < 0 ? ST_NEED : ST_ANSWERED;
		return ST_NEED;
	}
	head_len = (size_t)(end + 4 - s);
	request_reset(&c->req);
	c->in_off += head_len;
	if (!parse_head_lines(&c->req, s, head_len))
		return answer_error(c, 400) < 0 ? ST_NEED : ST_ANSWERED;
	if (c->req.route == R_HEADERS && aux_append(c, s, head_len) < 0)
		c->req.too_large = true;
	if (c->req.expect_continue && (c->req.body_left || c->req.chunked))
		(void)out_fmt(c, "HTTP/1.1 100 Continue\r\n\r\n");
	c->phase = PH_BODY;
	return ST_MORE;
}

/* Takes up to want body bytes from the buffer; keeps them for /echo. */
static size_t take_body(struct conn *c, unsigned long long want)
{
	size_t avail = c->in_len - c->in_off;
	size_t n = want < avail ? (size_t)want : avail;

	if (c->req.route == R_ECHO && !c->req.too_large && aux_append(c, c->in + c->in_off, n) < 0)
		c->req.too_large = true;
	c->in_off += n;
	return n;
}

/* One chunk-size or trailer line; NULL (and *len untouched) if incomplete. */
static const char *take_line(struct conn *c, size_t *len)
{
	const char *s = c->in + c->in_off;
	const char *eol = memchr(s, '\n', c->in_len - c->in_off);

	if (!eol)
		return NULL;
	*len = (size_t)(eol - s);
	c->in_off += *len + 1;
	if (*len > 0 && s[*len - 1] == '\r')
		(*len)--;
	return s;
}

static enum step bad_request(struct conn *c)
{
	answer_error(c, 400);
	return ST_ANSWERED;
}

/* A chunk-size line: hex digits, then nothing or an extension; -1 if not. */
static long long parse_chunk_size(const char *s, size_t len)
{
	long long v = 0;
	size_t i;

	for (i = 0; i < len && i < 15 && isxdigit((unsigned char)s[i]); i++)
		v = v * 16 + (isdigit((unsigned char)s[i]) ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10);
	if (i == 0 || (i < len && s[i] != ';' && s[i] != ' ' && s[i] != '\t'))
		return -1;
	return v;
}

/* Advances the chunked-body state machine; ST_COMPLETE after the trailers. */
static enum step step_chunked(struct conn *c)
{
	struct request *r = &c->req;
	const char *line;
	long long size;
	size_t len;

	if (r->ck == CK_DATA) {
		r->body_left -= take_body(c, r->body_left);
		if (r->body_left)
			return ST_NEED;
		r->ck = CK_DATA_END;
		return ST_MORE;
	}
	line = take_line(c, &len);
	if (!line)
		return c->in_len - c->in_off > 1024 ? bad_request(c) : ST_NEED;
	if (r->ck == CK_DATA_END) {
		r->ck = CK_SIZE;
		return len == 0 ? ST_MORE : bad_request(c);
	}
	if (r->ck == CK_TRAILER)
		return len == 0 ? ST_COMPLETE : ST_MORE;
	size = parse_chunk_size(line, len);
	if (size < 0)
		return bad_request(c);
	r->body_left = (unsigned long long)size;
	r->ck = size ? CK_DATA : CK_TRAILER;
	return ST_MORE;
}

/* PH_BODY: drops or collects the request body. */
static enum step step_body(struct conn *c)
{
	if (c->req.chunked)
		return step_chunked(c);
	c->req.body_left -= take_body(c, c->req.body_left);
	return c->req.body_left ? ST_NEED : ST_COMPLETE;
}

/* Answers a complete request now or, for ?ms=N, once its delay has passed. */
enum step finish_request(struct conn *c)
{
	if (c->req.delay_ms > 0) {
		c->phase = PH_SLEEP;
		timer_add(c, now_ms() + (uint64_t)c->req.delay_ms);
		return ST_NEED;
	}
	c->phase = PH_HEAD;
	if (answer(c) < 0)
		c->closing = true;
	free(c->aux);
	c->aux = NULL;
	c->aux_len = c->aux_cap = 0;
	return ST_ANSWERED;
}

/* Parses and answers what is buffered, within the output limits. */
void conn_process(struct conn *c)
{
	while (!c->closing && c->bulk_left == 0 && c->out_len < OUT_HIGH) {
		enum step st;

		if (c->phase == PH_SLEEP)
			return;
		st = c->phase == PH_HEAD ? step_head(c) : step_body(c);
		if (st == ST_COMPLETE)
			st = finish_request(c);
		if (st == ST_NEED)
			return;
	}
}
