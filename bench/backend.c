/*
 * backend.c - the light server that benchmarks and integration tests put
 * behind fulcrum: an HTTP/1.1 keep-alive responder, or (-e) a raw TCP echo.
 *
 * Threads: -t N workers, each with its own epoll instance and its own
 * SO_REUSEPORT listening socket; a connection lives on the worker that
 * accepted it and nothing is shared between workers except the read-only
 * options and the body pattern, both set up before the threads start.
 *
 * HTTP: every request is answered in order (pipelining), keep-alive unless
 * the client says close or speaks HTTP/1.0 without keep-alive. Request bodies
 * (Content-Length or chunked) are read and dropped. What the answer looks like
 * is chosen by the path and a few query parameters, see usage(). Every answer
 * carries X-Server: NAME and, unless the path asks otherwise, Content-Length.
 *
 * Echo (-e): every byte is sent back; after the client's FIN and once all is
 * echoed, the server shuts its side down too (half-close is honoured).
 *
 * Invariants: sockets are edge-triggered; rd_ready/wr_ready remember whether
 * the last read/write stopped on EAGAIN. While a large body or a delayed
 * answer is pending no further pipelined request is parsed, so answers
 * always leave in request order.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define IN_CAP	    16384 /* request head limit and read buffer */
#define OUT_HIGH    (1 << 20) /* stop parsing while this much waits */
#define OUT_KEEP    65536 /* larger out buffers are freed when empty */
#define COPY_MAX    16384 /* bodies up to this are copied, larger are streamed */
#define AUX_MAX	    (16u << 20) /* /echo and /chunked bodies are buffered up to this */
#define PATTERN_CAP 65536 /* streamed bodies repeat this block */
#define LINGER_MS   2000 /* wait for the client's FIN after ours */
#define RUN_BUDGET  64 /* loop turns per event before yielding */
#define MAX_BACKLOG 4096

enum phase { PH_HEAD, PH_BODY, PH_SLEEP, PH_LINGER };
enum route { R_SMALL, R_LARGE, R_HEADERS, R_ECHO, R_CHUNKED, R_CLOSE };
enum chunk_state { CK_SIZE, CK_DATA, CK_DATA_END, CK_TRAILER };
/* what a parsing step achieved */
enum step { ST_NEED, ST_MORE, ST_COMPLETE, ST_ANSWERED };

/* The request being read; reset for each request on the connection. */
struct request {
	enum route route;
	bool head_only;
	bool keep_alive;
	bool chunked;
	bool expect_continue;
	bool too_large;
	int status;
	long long delay_ms;
	long long size; /* body size asked for with ?size=, -1 = default */
	long long max_age; /* -1 = no Cache-Control */
	unsigned long long body_left;
	enum chunk_state ck;
};

/*
 * One client connection, owned by the worker that accepted it; freed by
 * conn_close(). aux holds a copied request head (/headers) or the collected
 * body (/echo) until the answer is built.
 */
struct conn {
	int fd;
	struct worker *w;
	enum phase phase;
	bool rd_ready, wr_ready, rd_hup, rd_eof, closing;
	struct request req;
	uint64_t deadline_ms; /* PH_SLEEP and PH_LINGER only */
	struct conn *tprev, *tnext; /* the worker's timer list */
	char *out;
	size_t out_len, out_off, out_cap;
	unsigned long long bulk_left, bulk_sent;
	char *aux;
	size_t aux_len, aux_cap;
	size_t in_len, in_off;
	char in[IN_CAP];
};

/* A worker thread: its epoll, its listener, its connections waiting on time. */
struct worker {
	int ep;
	int lfd;
	struct conn *timers;
	pthread_t thread;
};

/* Options, set by main() before any thread starts, read-only afterwards. */
static struct {
	const char *bind;
	int port;
	char name[65];
	long long small_len; /* -1 = "hello from NAME\n" */
	long long large_len;
	int threads;
	bool echo;
} opt = {"127.0.0.1", 0, "backend", -1, 1 << 20, 0, false};

static char pattern[PATTERN_CAP];
static char small_body[128];
static size_t small_body_len;

static void conn_run(struct conn *c);
static void conn_rearm(struct conn *c);

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void timer_add(struct conn *c, uint64_t deadline_ms)
{
	struct worker *w = c->w;

	c->deadline_ms = deadline_ms;
	c->tprev = NULL;
	c->tnext = w->timers;
	if (w->timers)
		w->timers->tprev = c;
	w->timers = c;
}

static void timer_del(struct conn *c)
{
	if (c->tprev)
		c->tprev->tnext = c->tnext;
	else if (c->w->timers == c)
		c->w->timers = c->tnext;
	if (c->tnext)
		c->tnext->tprev = c->tprev;
	c->tprev = c->tnext = NULL;
}

static bool conn_is_timed(const struct conn *c)
{
	return c->phase == PH_SLEEP || c->phase == PH_LINGER;
}

/* The one place a connection ends: out of epoll, off the timer list, freed. */
static void conn_close(struct conn *c)
{
	if (conn_is_timed(c))
		timer_del(c);
	close(c->fd);
	free(c->out);
	free(c->aux);
	free(c);
}

/* Makes room for n more bytes in c->out; 0 or -1 when memory runs out. */
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

static bool conn_has_output(const struct conn *c)
{
	return c->out_off < c->out_len || c->bulk_left > 0;
}

/* Streams the pending pattern body; 0 when done or blocked, -1 on error. */
static int flush_bulk(struct conn *c)
{
	while (c->bulk_left > 0) {
		struct iovec iov[16];
		unsigned long long left = c->bulk_left;
		size_t off = c->bulk_sent % PATTERN_CAP;
		int n_iov = 0;
		ssize_t n;

		while (left > 0 && n_iov < 16) {
			size_t len = PATTERN_CAP - off;

			if (len > left)
				len = (size_t)left;
			iov[n_iov].iov_base = pattern + off;
			iov[n_iov++].iov_len = len;
			left -= len;
			off = 0;
		}
		n = writev(c->fd, iov, n_iov);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				c->wr_ready = false;
				return 0;
			}
			return -1;
		}
		c->bulk_left -= (unsigned long long)n;
		c->bulk_sent += (unsigned long long)n;
	}
	return 0;
}

/* Writes what waits, head bytes first, then a streamed body. */
static int conn_flush(struct conn *c)
{
	if (!c->wr_ready)
		return 0;
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				c->wr_ready = false;
				return 0;
			}
			return -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	if (c->out_cap > OUT_KEEP) {
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	return flush_bulk(c);
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
static enum step finish_request(struct conn *c)
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
static void conn_process(struct conn *c)
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

/* Reads more request bytes; -1 when the connection must end. */
static int conn_fill(struct conn *c)
{
	size_t room;
	ssize_t n;

	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	room = IN_CAP - c->in_len;
	if (room == 0)
		return -1;
	do
		n = recv(c->fd, c->in + c->in_len, room, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN) {
		c->rd_ready = false;
		return 0;
	}
	if (n < 0)
		return -1;
	if (n == 0)
		c->rd_eof = true;
	else if ((size_t)n < room && !c->rd_hup)
		c->rd_ready = false; /* drained: new bytes or a FIN raise a new edge */
	c->in_len += (size_t)n;
	return 0;
}

/* After our last answer: send FIN, then wait for the client's, dropping input. */
static void conn_linger(struct conn *c)
{
	if (c->rd_eof) {
		conn_close(c);
		return;
	}
	if (c->phase != PH_LINGER) {
		shutdown(c->fd, SHUT_WR);
		c->phase = PH_LINGER;
		timer_add(c, now_ms() + LINGER_MS);
	}
	while (c->rd_ready) {
		c->in_off = c->in_len = 0;
		if (conn_fill(c) < 0 || c->rd_eof) {
			conn_close(c);
			return;
		}
	}
}

/* HTTP: flush, parse, answer, read, until the socket blocks both ways. */
static void conn_run_http(struct conn *c)
{
	for (int budget = RUN_BUDGET; budget > 0; budget--) {
		if (conn_flush(c) < 0) {
			conn_close(c);
			return;
		}
		if (conn_has_output(c))
			return; /* EPOLLOUT resumes */
		if (c->closing || c->phase == PH_LINGER) {
			conn_linger(c);
			return;
		}
		conn_process(c);
		if (c->phase == PH_SLEEP)
			return;
		if (conn_has_output(c) || c->closing)
			continue;
		if (c->rd_eof)
			c->closing = true;
		else if (!c->rd_ready)
			return;
		else if (conn_fill(c) < 0) {
			conn_close(c);
			return;
		}
	}
	conn_rearm(c);
}

/* Out of budget: re-arming makes epoll report the still-ready socket again. */
static void conn_rearm(struct conn *c)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				 .data.ptr = c};

	if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		conn_close(c);
}

/* Echo: send back what was read; after the client's FIN, shut our side. */
static void conn_run_echo(struct conn *c)
{
	for (int budget = RUN_BUDGET; budget > 0; budget--) {
		if (c->in_off < c->in_len) {
			ssize_t n =
				send(c->fd, c->in + c->in_off, c->in_len - c->in_off, MSG_NOSIGNAL);

			if (n < 0 && errno == EAGAIN)
				return; /* EPOLLOUT resumes */
			if (n < 0 && errno != EINTR) {
				conn_close(c);
				return;
			}
			if (n > 0)
				c->in_off += (size_t)n;
			continue;
		}
		c->in_off = c->in_len = 0;
		if (c->rd_eof) {
			shutdown(c->fd, SHUT_WR);
			conn_close(c);
			return;
		}
		if (!c->rd_ready)
			return;
		if (conn_fill(c) < 0) {
			conn_close(c);
			return;
		}
	}
	conn_rearm(c);
}

static void conn_run(struct conn *c)
{
	if (opt.echo)
		conn_run_echo(c);
	else
		conn_run_http(c);
}

/* A timer fired: a delayed answer is due, or a lingering close gives up. */
static void conn_expire(struct conn *c)
{
	timer_del(c);
	if (c->phase == PH_LINGER) {
		c->phase = PH_HEAD;
		conn_close(c);
		return;
	}
	c->req.delay_ms = 0;
	c->phase = PH_BODY;
	finish_request(c);
	conn_run(c);
}

static void worker_accept(struct worker *w)
{
	for (;;) {
		int one = 1, fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
		struct conn *c;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return; /* EAGAIN, or out of fds: the backlog keeps them */
		}
		c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(struct conn, in));
		c->fd = fd;
		c->w = w;
		c->wr_ready = true;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev.data.ptr = c;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_close(c);
	}
}

/* Milliseconds until the next timer, or -1 when none waits. */
static int worker_timeout(struct worker *w, uint64_t now)
{
	uint64_t next = UINT64_MAX;

	for (struct conn *c = w->timers; c; c = c->tnext)
		if (c->deadline_ms < next)
			next = c->deadline_ms;
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return next - now > 60000 ? 60000 : (int)(next - now);
}

static void worker_expire(struct worker *w)
{
	uint64_t now = now_ms();
	struct conn *c = w->timers, *next;

	for (; c; c = next) {
		next = c->tnext;
		if (c->deadline_ms <= now)
			conn_expire(c);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];

	for (;;) {
		int n = epoll_wait(w->ep, evs, 256, worker_timeout(w, now_ms()));

		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c) {
				worker_accept(w);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->rd_ready = true;
			if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				c->rd_hup = true; /* read until 0: no further edge will come */
			if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
				c->wr_ready = true;
			conn_run(c);
		}
		if (w->timers)
			worker_expire(w);
	}
	return NULL;
}

/* A listening socket on opt.bind:port with SO_REUSEPORT; -1 with a message. */
static int listen_on(int port)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai;
	char service[16];
	int one = 1, fd, rc;

	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(opt.bind, service, &hints, &ai);
	if (rc != 0) {
		fprintf(stderr, "backend: bad address %s: %s\n", opt.bind, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, MAX_BACKLOG) < 0) {
			fprintf(stderr, "backend: %s port %d: %s\n", opt.bind, port,
				strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	return fd;
}

/* The port a bound socket got (for -p 0). */
static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: backend -p PORT [-b ADDR] [-n NAME] [-s SMALL] [-l LARGE] [-t THREADS] "
		"[-e]\n"
		"  -p PORT   port (0 = any; the port is printed as \"port N\" before \"ready\")\n"
		"  -b ADDR   address to bind (default 127.0.0.1)\n"
		"  -n NAME   sent as X-Server: NAME (default backend)\n"
		"  -s BYTES  size of the small body (default: \"hello from NAME\\n\")\n"
		"  -l BYTES  size of the /large body (default 1048576)\n"
		"  -t N      worker threads (default: online CPUs)\n"
		"  -e        raw TCP echo instead of HTTP\n"
		"HTTP paths: /large* big body; /headers echoes the request head; /echo echoes\n"
		"the request body; /chunked chunked answer; /close answer delimited by close.\n"
		"Query on any path: ms=N delay, status=N, size=N body bytes, maxage=N adds\n"
		"Cache-Control: max-age=N.\n");
	exit(2);
}

static long long parse_arg(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);

	if (end == s || *end || v < 0)
		usage();
	return v;
}

static void parse_options(int argc, char **argv)
{
	int ch;

	while ((ch = getopt(argc, argv, "p:b:n:s:l:t:eh")) != -1) {
		switch (ch) {
		case 'p':
			opt.port = (int)parse_arg(optarg);
			break;
		case 'b':
			opt.bind = optarg;
			break;
		case 'n':
			snprintf(opt.name, sizeof(opt.name), "%s", optarg);
			break;
		case 's':
			opt.small_len = parse_arg(optarg);
			break;
		case 'l':
			opt.large_len = parse_arg(optarg);
			break;
		case 't':
			opt.threads = (int)parse_arg(optarg);
			break;
		case 'e':
			opt.echo = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || opt.port > 65535)
		usage();
	if (opt.threads <= 0)
		opt.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (opt.threads <= 0)
		opt.threads = 1;
}

/* Lines of letters and a newline, so large bodies are readable in a dump. */
static void fill_bodies(void)
{
	for (size_t i = 0; i < PATTERN_CAP; i++)
		pattern[i] = (i % 64 == 63) ? '\n' : (char)('a' + (i % 64) % 26);
	small_body_len =
		(size_t)snprintf(small_body, sizeof(small_body), "hello from %s\n", opt.name);
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct worker *workers;
	int port;

	parse_options(argc, argv);
	fill_bodies();
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	workers = calloc((size_t)opt.threads, sizeof(*workers));
	if (!workers)
		return 2;
	port = opt.port;
	for (int i = 0; i < opt.threads; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
		struct worker *w = &workers[i];

		w->lfd = listen_on(port);
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		if (w->lfd < 0 || w->ep < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev) < 0)
			return 2;
		if (port == 0)
			port = bound_port(w->lfd);
	}
	if (opt.port == 0)
		printf("port %d\n", port);
	printf("ready\n");
	fflush(stdout);
	for (int i = 0; i < opt.threads; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
			return 2;
	for (int i = 0; i < opt.threads; i++)
		pthread_join(workers[i].thread, NULL);
	return 0;
}
