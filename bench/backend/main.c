/*
 * main.c - the light server that benchmarks and integration tests put
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
 * This file runs the workers, reads and writes; http.c parses the requests
 * and builds the answers.
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
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"

struct options opt = {"127.0.0.1", 0, "backend", -1, 1 << 20, 0, false};
char pattern[PATTERN_CAP];
char small_body[128];
size_t small_body_len;

static void conn_run(struct conn *c);
static void conn_rearm(struct conn *c);

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void timer_add(struct conn *c, uint64_t deadline_ms)
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
