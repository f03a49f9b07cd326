/*
 * admin.c - the admin API's HTTP side (see admin.h): its listener, its
 * clients, request parsing, authorisation and routing. What each endpoint
 * does is in admin_ops.c and metrics.c.
 *
 * Thread: the main thread, from main_loop()'s epoll. Every socket here is
 * non-blocking; a client is read until its request is whole (head by the
 * strict parser of core/http/parser.c, body by Content-Length or chunked), answered,
 * and closed once it has closed its side too (or ADMIN_LINGER_MS passed),
 * what it still sends being read and dropped. A client that ends during a batch is freed after it
 * (like the workers' connections), so a stale event finds a closed object, not freed memory.
 */
#include "core/admin.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/admin_ops.h"
#include "core/gen.h"
#include "core/http/chunked.h"
#include "core/http/parser.h"
#include "core/http/reply.h"
#include "core/listener.h"
#include "core/log.h"
#include "core/upgrade.h"
#include "core/util.h"
#include "core/worker.h"

#define ADMIN_MAX_SEGMENTS 6
#define ADMIN_MAX_PATH	   1024
/* After the answer: how long unread request bytes are drained before the
 * close, so the close does not reset the answer away (an error may be sent
 * before the client finished sending). */
#define ADMIN_LINGER_MS 1000

/* One client. Owned by the admin API; lives from accept to the end of the
 * batch in which it was closed. */
struct admin_conn {
	struct ev_handler h;
	struct list node; /* admin.conns, then admin.closed */
	int fd; /* -1 once closed */
	char *in; /* the request so far */
	size_t in_len, in_cap;
	struct sbuf out; /* the whole answer, once there is one */
	size_t out_off;
	bool answered;
	bool continued; /* "100 Continue" sent */
	bool lingering; /* answer sent and write side shut: reading to EOF */
	uint64_t deadline_ms;
};

static struct {
	struct ev_handler h;
	int fd;
	int epfd;
	char *unix_path; /* a unix-socket listener's path, removed at close */
	const struct admin_host *host;
	struct list conns, closed;
	size_t n_conns;
	struct http_head head; /* parse results, used within one call */
	bool stopping; /* /healthz says 503 */
	uint64_t paused_until_ms; /* out of descriptors: accepting resumes then; 0 = not paused */
	uint64_t emfile_said_ms; /* when that was last logged; pauses since, unsaid */
	unsigned emfile_unsaid;
} admin = {.fd = -1, .epfd = -1};

/* Out of descriptors, the listening socket stays readable and, being
 * level-triggered, would wake the main loop at once forever: it leaves the
 * epoll set for a while instead, as the workers' listeners do. */
#define ADMIN_EMFILE_PAUSE_MS 100
#define ADMIN_EMFILE_SAY_MS   10000

/* A request as the router sees it: method, decoded path segments, body. */
struct admin_req {
	const char *method;
	char path[ADMIN_MAX_PATH];
	char *seg[ADMIN_MAX_SEGMENTS];
	size_t n_seg;
	const char *body;
	size_t body_len;
};

static const char *status_text(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return status >= 500 ? "Internal Server Error" : "Error";
	}
}

/* ---------------------------------------------------------- clients -- */

static void conn_end(struct admin_conn *ac)
{
	if (ac->fd < 0)
		return;
	/* Out of the epoll first: while a binary upgrade's child starts, it
	 * holds a copy of the fd, and a close alone would not end the
	 * registration (worker_close). The admin API is no hot path. */
	epoll_ctl(admin.epfd, EPOLL_CTL_DEL, ac->fd, NULL);
	close(ac->fd);
	ac->fd = -1;
	list_del(&ac->node);
	list_add_tail(&admin.closed, &ac->node);
	admin.n_conns--;
}

static void conn_free(struct admin_conn *ac)
{
	free(ac->in);
	sbuf_free(&ac->out);
	free(ac);
}

/* Reads and drops what the client still sends; ends it at its EOF. */
static void linger(struct admin_conn *ac)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(ac->fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_end(ac);
			return;
		}
	}
}

/* Writes what is left of the answer, then lingers. */
static void flush(struct admin_conn *ac)
{
	while (ac->out_off < ac->out.len) {
		ssize_t n = send(ac->fd, ac->out.data + ac->out_off, ac->out.len - ac->out_off,
				 MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_end(ac);
			return;
		}
		ac->out_off += (size_t)n;
	}
	shutdown(ac->fd, SHUT_WR);
	ac->lingering = true;
	ac->deadline_ms = clock_ms() + ADMIN_LINGER_MS;
	linger(ac);
}

/* Turns R into the bytes of the answer and starts writing them. */
static void answer(struct admin_conn *ac, struct admin_reply *r, bool unauthorized)
{
	struct sbuf *o = &ac->out;

	if (r->body.oom) {
		sbuf_free(&r->body);
		admin_error(r, 500, "out of memory");
	}
	char date[HTTP_DATE_SIZE];
	http_date_now(date);
	sbuf_printf(o, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
		    r->status, status_text(r->status), date,
		    r->content_type ? r->content_type : "application/json", r->body.len);
	if (r->allow)
		sbuf_printf(o, "Allow: %s\r\n", r->allow);
	if (unauthorized)
		sbuf_puts(o, "WWW-Authenticate: Bearer realm=\"fulcrum\"\r\n");
	sbuf_puts(o, "Cache-Control: no-store\r\nConnection: close\r\n\r\n");
	if (r->body.len && !r->head)
		sbuf_add(o, r->body.data, r->body.len);
	sbuf_free(&r->body);
	ac->answered = true;
	if (o->oom) {
		conn_end(ac);
		return;
	}
	flush(ac);
}

static void answer_error(struct admin_conn *ac, int status, const char *msg)
{
	struct admin_reply r = {0};

	admin_error(&r, status, msg);
	answer(ac, &r, status == 401);
}

/* ----------------------------------------------------------- routing -- */

static int unhex(char c)
{
	return isdigit((unsigned char)c)    ? c - '0'
	       : isxdigit((unsigned char)c) ? (tolower((unsigned char)c) - 'a' + 10)
					    : -1;
}

/* Splits the path (query dropped) into percent-decoded segments. Returns
 * false for a path that is not absolute, too long, or badly encoded. */
static bool split_path(struct admin_req *q, const char *p, size_t len)
{
	size_t n = 0;

	if (len == 0 || p[0] != '/')
		return false;
	for (size_t i = 1; i < len && p[i] != '?' && p[i] != '#'; i++) {
		char c = p[i];
		if (n + 1 >= sizeof(q->path))
			return false;
		if (c == '%') {
			int hi = i + 2 < len ? unhex(p[i + 1]) : -1;
			int lo = hi >= 0 ? unhex(p[i + 2]) : -1;
			if (lo < 0 || (hi == 0 && lo == 0))
				return false;
			c = (char)(hi * 16 + lo);
			if (c == '/')
				c = '\x01'; /* an encoded slash is no separator, nor valid in a name
					     */
			i += 2;
		} else if (c == '/') {
			c = '\0';
		}
		q->path[n++] = c;
	}
	q->path[n] = '\0';
	q->n_seg = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i > 0 && q->path[i - 1] != '\0')
			continue;
		if (q->n_seg == ADMIN_MAX_SEGMENTS)
			return true; /* longer than any route: unknown */
		q->seg[q->n_seg++] = &q->path[i];
	}
	return true;
}

static bool seg_is(const struct admin_req *q, size_t i, const char *s)
{
	return i < q->n_seg && strcmp(q->seg[i], s) == 0;
}

/* Answers 405 unless the request's method is M. */
static bool method_is(const struct admin_req *q, struct admin_reply *r, const char *m)
{
	if (strcmp(q->method, m) == 0)
		return true;
	admin_error(r, 405, "method not allowed");
	r->allow = strcmp(m, "GET") == 0 ? "GET, HEAD" : m;
	return false;
}

static void route_pools(const struct admin_req *q, struct admin_reply *r)
{
	const struct admin_host *host = admin.host;

	/* Paths are exact, as "/status/" is no "/status": "/pools/p/servers/"
	 * names no endpoint (not a server called ""). */
	if (!*q->seg[q->n_seg - 1]) {
		admin_error(r, 404, "no such endpoint");
		return;
	}

	if (q->n_seg == 3 && seg_is(q, 2, "servers")) {
		if (method_is(q, r, "POST"))
			admin_server_add(r, host, q->seg[1], q->body, q->body_len);
		return;
	}
	if (q->n_seg == 4 && seg_is(q, 2, "servers")) {
		if (strcmp(q->method, "GET") != 0 && strcmp(q->method, "DELETE") != 0) {
			admin_error(r, 405, "method not allowed");
			r->allow = "GET, HEAD, DELETE";
			return;
		}
		admin_server_op(r, host, q->method, q->seg[1], q->seg[3], NULL, q->body,
				q->body_len);
		return;
	}
	if (q->n_seg == 5 && seg_is(q, 2, "servers")) {
		const char *a = q->seg[4];
		bool known = !strcmp(a, "drain") || !strcmp(a, "enable") || !strcmp(a, "disable");
		if (!known && strcmp(a, "weight") != 0) {
			admin_error(r, 404, "no such endpoint");
			return;
		}
		if (method_is(q, r, known ? "POST" : "PUT"))
			admin_server_op(r, host, q->method, q->seg[1], q->seg[3], a, q->body,
					q->body_len);
		return;
	}
	admin_error(r, 404, "no such endpoint");
}

static bool is_healthz(const struct admin_req *q)
{
	return q->n_seg == 1 && seg_is(q, 0, "healthz");
}

static void route(const struct admin_req *q, struct admin_reply *r)
{
	if (is_healthz(q)) {
		if (method_is(q, r, "GET")) {
			/* SPEC §5: "ok" while the process serves. */
			r->status = admin.stopping ? 503 : 200;
			r->content_type = "text/plain";
			sbuf_puts(&r->body, admin.stopping ? "stopping" : "ok");
		}
	} else if (q->n_seg == 1 && seg_is(q, 0, "metrics")) {
		if (method_is(q, r, "GET"))
			admin_metrics(r, admin.host);
	} else if (q->n_seg == 1 && seg_is(q, 0, "status")) {
		if (method_is(q, r, "GET"))
			admin_status(r, admin.host);
	} else if (q->n_seg == 1 && seg_is(q, 0, "reload")) {
		if (method_is(q, r, "POST"))
			admin_reload(r, admin.host);
	} else if (q->n_seg >= 3 && seg_is(q, 0, "pools")) {
		route_pools(q, r);
	} else {
		admin_error(r, 404, "no such endpoint");
	}
}

/* --------------------------------------------------------- requests -- */

/* Compares in time that depends on the expected token's length only. */
static bool token_matches(const char *given, size_t given_len, const char *want)
{
	size_t want_len = strlen(want);
	unsigned char diff = given_len != want_len;

	for (size_t i = 0; i < want_len; i++)
		diff |= (unsigned char)(want[i] ^ (i < given_len ? given[i] : 0));
	return diff == 0;
}

/* Whether the request carries "Authorization: Bearer TOKEN" for the token
 * of the running configuration (always, when none is set). */
static bool is_authorized(const struct http_head *h, const char *buf)
{
	const struct gen *g = atomic_load_explicit(&gen_current, memory_order_acquire);
	const char *token = g->cfg->global.admin_token;

	if (!token || !*token)
		return true;
	int i = http_header_find(h, buf, "authorization", 0);
	if (i < 0 || http_header_find(h, buf, "authorization", (unsigned)i + 1) >= 0)
		return false;
	const char *v = http_slice_ptr(buf, h->headers[i].value);
	size_t len = h->headers[i].value.len;
	if (len < 7 || !http_token_eq(v, 6, "bearer") || v[6] != ' ')
		return false;
	return token_matches(v + 7, len - 7, token);
}

/* A whole request (head H, then BODY_LEN bytes) is in ac->in. */
static void handle(struct admin_conn *ac, const struct http_head *h, size_t body_len)
{
	struct admin_req q = {0};
	struct admin_reply r = {0};
	char method[16];

	/* Origin form, or absolute form (RFC 9112 §3.2.2: servers accept it). */
	bool path_form = h->target_form == HTTP_TARGET_ORIGIN ||
			 (h->target_form == HTTP_TARGET_ABSOLUTE && h->path.len > 0);
	if (!path_form || h->method.len >= sizeof(method) ||
	    !split_path(&q, http_slice_ptr(ac->in, h->path), h->path.len)) {
		answer_error(ac, 400, "bad request target");
		return;
	}
	memcpy(method, http_slice_ptr(ac->in, h->method), h->method.len);
	method[h->method.len] = '\0';
	/* HEAD is GET without the body (RFC 9110 §9.3.2). */
	r.head = strcmp(method, "HEAD") == 0;
	q.method = r.head ? "GET" : method;
	q.body = ac->in + h->head_len;
	q.body_len = body_len;
	/* GET /healthz needs no token: load balancers and orchestrators probe
	 * it (SPEC §5 exempts GET, and so HEAD; other methods need it). */
	bool open = is_healthz(&q) && strcmp(q.method, "GET") == 0;
	if (!open && !is_authorized(h, ac->in)) {
		answer_error(ac, 401, "missing or wrong bearer token");
		return;
	}
	route(&q, &r);
	answer(ac, &r, false);
}

/* A chunked body after the head (at HEAD_LEN): 1 once it is all in, when
 * its data is moved together right after the head and *LEN is its length;
 * 0 while more is to come; -1 when it is malformed. The first pass only
 * checks, so that a body still coming is never decoded twice. */
static int dechunk(struct admin_conn *ac, size_t head_len, size_t *len)
{
	char *p = ac->in + head_len;
	size_t avail = ac->in_len - head_len;

	for (int pass = 0; pass < 2; pass++) {
		struct http_chunked ch;
		size_t off = 0, out = 0;
		enum http_result r = HTTP_NEED_MORE;

		http_chunked_init(&ch, 0);
		while (r == HTTP_NEED_MORE) {
			size_t used = 0, data = 0;
			r = http_chunked_feed(&ch, p + off, avail - off, &used, &data);
			if (http_is_error(r))
				return -1;
			/* Data only ever moves left of where the decoder reads. */
			if (pass == 1 && data)
				memmove(p + out, p + off + used - data, data);
			out += data;
			off += used;
			if (r == HTTP_NEED_MORE && (off == avail || used == 0))
				return 0;
		}
		*len = out;
	}
	return 1;
}

/* Parses what has come so far; answers once the request is whole or bad. */
static void parse(struct admin_conn *ac)
{
	const struct http_limits lim = {.max_uri_size = ADMIN_MAX_PATH,
					.max_header_size = ADMIN_MAX_REQUEST};
	struct http_head *h = &admin.head;
	enum http_result res = http_parse_request(ac->in, ac->in_len, &lim, h);

	if (res == HTTP_NEED_MORE) {
		if (ac->in_len >= ADMIN_MAX_REQUEST)
			answer_error(ac, 431, "request head too large");
		return;
	}
	if (http_is_error(res)) {
		answer_error(ac, http_result_status(res), http_result_name(res));
		return;
	}
	size_t body = h->content_length > 0 ? (size_t)h->content_length : 0;
	bool whole;
	if (h->has_te) { /* chunked: the parser refuses any other coding */
		int d = dechunk(ac, h->head_len, &body);
		if (d < 0) {
			answer_error(ac, 400, "malformed chunked body");
			return;
		}
		whole = d > 0;
		if (!whole && ac->in_len >= ADMIN_MAX_REQUEST) {
			answer_error(ac, 413, "request too large");
			return;
		}
	} else {
		if (h->content_length > ADMIN_MAX_REQUEST ||
		    h->head_len + body > ADMIN_MAX_REQUEST) {
			answer_error(ac, 413, "request too large");
			return;
		}
		whole = ac->in_len >= h->head_len + body;
	}
	if (whole) {
		handle(ac, h, body);
	} else if (h->expect_continue && !ac->continued) {
		/* curl waits for it before sending a larger body. A short write
		 * only costs the client its wait. */
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		ssize_t n = send(ac->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL);
		(void)n;
		ac->continued = true;
	}
}

/* Reads until EAGAIN, the request limit, or the end of the client. A client
 * that shut its side right after a whole request (printf ... | nc -N) still
 * gets its answer; one that left before its request was whole is ended. */
static void read_in(struct admin_conn *ac)
{
	bool eof = false;

	for (;;) {
		if (ac->in_len == ac->in_cap) {
			size_t cap = ac->in_cap ? ac->in_cap * 2 : 4096;
			char *p = cap <= ADMIN_MAX_REQUEST ? realloc(ac->in, cap) : NULL;
			if (!p)
				break; /* full (or no memory): judge what we have */
			ac->in = p;
			ac->in_cap = cap;
		}
		ssize_t n = recv(ac->fd, ac->in + ac->in_len, ac->in_cap - ac->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n == 0) {
			eof = true;
			break;
		}
		if (n < 0) {
			conn_end(ac);
			return;
		}
		ac->in_len += (size_t)n;
	}
	parse(ac);
	if (eof && !ac->answered)
		conn_end(ac);
}

static void on_conn_event(struct ev_handler *h, uint32_t events)
{
	struct admin_conn *ac = container_of(h, struct admin_conn, h);
	(void)events;

	if (ac->fd < 0)
		return;
	if (ac->lingering)
		linger(ac);
	else if (!ac->answered)
		read_in(ac);
	else
		flush(ac);
}

static void on_accept(struct ev_handler *h, uint32_t events)
{
	(void)h;
	(void)events;
	for (;;) {
		int fd = accept4(admin.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			uint64_t now = clock_ms();
			if (epoll_ctl(admin.epfd, EPOLL_CTL_DEL, admin.fd, NULL) == 0)
				admin.paused_until_ms = now + ADMIN_EMFILE_PAUSE_MS;
			/* A long shortage: once per ADMIN_EMFILE_SAY_MS, as the
			 * workers say theirs, not ten lines a second. */
			if (admin.emfile_said_ms &&
			    now - admin.emfile_said_ms < ADMIN_EMFILE_SAY_MS) {
				admin.emfile_unsaid++;
				return;
			}
			log_warn("admin: out of file descriptors; not accepting for %d ms (%u more "
				 "pauses since the last warning)",
				 ADMIN_EMFILE_PAUSE_MS, admin.emfile_unsaid);
			admin.emfile_said_ms = now;
			admin.emfile_unsaid = 0;
			return;
		}
		if (fd < 0)
			return; /* EAGAIN, or a transient error: level-triggered */
		/* Full: the oldest client makes room, so clients that open
		 * connections and send nothing cannot lock /healthz out. */
		if (admin.n_conns >= ADMIN_MAX_CONNS)
			conn_end(container_of(admin.conns.next, struct admin_conn, node));
		struct admin_conn *ac = calloc(1, sizeof(*ac));
		if (!ac) {
			close(fd);
			continue;
		}
		ac->fd = fd;
		ac->h.fn = on_conn_event;
		ac->deadline_ms = clock_ms() + ADMIN_TIMEOUT_MS;
		sbuf_init(&ac->out);
		list_add_tail(&admin.conns, &ac->node);
		admin.n_conns++;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					 .data.ptr = &ac->h};
		if (epoll_ctl(admin.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_end(ac);
	}
}

/* ------------------------------------------------------------- setup -- */

int admin_open(const struct cfg *cfg, int epfd, const struct admin_host *host)
{
	list_init(&admin.conns);
	list_init(&admin.closed);
	admin.host = host;
	admin.epfd = epfd;
	if (!cfg->global.admin)
		return 0;
	int fd = upgrade_adopt_admin(cfg->global.admin, &cfg->global.admin_addr,
				     cfg->global.backlog);
	if (fd == -ENOENT) {
		/* Like a traffic listener's first socket: refused when anyone
		 * listens there already, a live unix socket included. */
		struct cfg_addr a = cfg->global.admin_addr;
		const char *what;
		fd = listener_open(&a, cfg->global.backlog, true, ADMIN_UNIX_MODE, &what);
	}
	if (fd < 0) {
		fprintf(stderr, "fulcrum: admin listener %s: %s\n", cfg->global.admin,
			strerror(-fd));
		return fd;
	}
	admin.fd = fd;
	admin.h.fn = on_accept;
	if (cfg->global.admin_addr.ss.ss_family == AF_UNIX)
		admin.unix_path =
			strdup(((const struct sockaddr_un *)&cfg->global.admin_addr.ss)->sun_path);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &admin.h};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;
		fprintf(stderr, "fulcrum: admin listener %s: %s\n", cfg->global.admin,
			strerror(-err));
		admin_close();
		return err;
	}
	return 0;
}

int admin_timeout_ms(void)
{
	uint64_t now = clock_ms(),
		 next = admin.paused_until_ms ? admin.paused_until_ms : UINT64_MAX;

	for (struct list *n = admin.conns.next; n && n != &admin.conns; n = n->next) {
		const struct admin_conn *ac = container_of(n, struct admin_conn, node);
		if (ac->deadline_ms < next)
			next = ac->deadline_ms;
	}
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now);
}

void admin_tick(void)
{
	uint64_t now = clock_ms();

	if (!admin.conns.next)
		return; /* never opened */
	if (admin.paused_until_ms && now >= admin.paused_until_ms) {
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &admin.h};
		admin.paused_until_ms = 0;
		if (admin.fd >= 0 && epoll_ctl(admin.epfd, EPOLL_CTL_ADD, admin.fd, &ev) < 0)
			log_error("admin: cannot watch the listener again: %s", strerror(errno));
	}
	for (struct list *n = admin.conns.next, *next; n != &admin.conns; n = next) {
		struct admin_conn *ac = container_of(n, struct admin_conn, node);
		next = n->next;
		if (now < ac->deadline_ms)
			continue;
		if (!ac->answered)
			answer_error(ac, 408, "request not complete in time");
		conn_end(ac); /* a 408 gets one write; lingering ends here */
	}
	while (!list_is_empty(&admin.closed)) {
		struct admin_conn *ac = container_of(admin.closed.next, struct admin_conn, node);
		list_del(&ac->node);
		conn_free(ac);
	}
}

int admin_listen_fd(void)
{
	return admin.fd;
}

void admin_set_stopping(void)
{
	admin.stopping = true;
}

void admin_release(void)
{
	if (admin.fd >= 0) {
		/* Another process holds the socket too: closing it here would
		 * leave it registered. */
		epoll_ctl(admin.epfd, EPOLL_CTL_DEL, admin.fd, NULL);
		close(admin.fd);
	}
	admin.fd = -1;
	free(admin.unix_path);
	admin.unix_path = NULL;
}

void admin_close(void)
{
	if (admin.fd >= 0)
		close(admin.fd);
	admin.fd = -1;
	if (admin.unix_path)
		log_unlink(admin.unix_path, "admin socket");
	free(admin.unix_path);
	admin.unix_path = NULL;
	if (!admin.conns.next)
		return;
	while (!list_is_empty(&admin.conns))
		conn_end(container_of(admin.conns.next, struct admin_conn, node));
	admin_tick();
}
