/*
 * tunnel_load.c - throughput of HTTP through CONNECT tunnels, for the
 * forward-connect benchmark (wrk cannot send CONNECT).
 *
 * Opens -c connections to HOST PORT spread over -t threads. With -C
 * DEST:PORT each connection first sends "CONNECT DEST:PORT HTTP/1.1" and must
 * get a 2xx answer; without -C the connections go straight to an HTTP server
 * (the "direct" baseline). The setup is done before the clock starts. Then
 * every connection runs keep-alive "GET PATH" requests one after the other for
 * -d seconds; each thread drives its connections with its own epoll.
 *
 * Answers must carry Content-Length (build/backend's do). Prints, as wrk-like
 * lines that bench/run.sh reads:
 *   requests N / bytes N / seconds S / Requests/sec: X / MiB/sec: Y /
 *   p99_ms: Z / errors N
 * Exit status 0 when at least one connection finished a request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 8192
#define READ_BUF (256 * 1024)

enum conn_state { CS_SEND, CS_HEAD, CS_BODY, CS_DEAD };

/* One client connection (tunnel); owned by the thread that set it up. */
struct conn {
	int fd;
	enum conn_state state;
	size_t head_len;
	long long body_left;
	double sent_at; /* when the current request was sent */
	char head[HEAD_MAX];
};

/* One load thread and what it measured; the main thread reads the counters
 * only after joining it. */
struct worker {
	pthread_t tid;
	int n_conns;
	struct conn *conns;
	unsigned long long requests;
	unsigned long long bytes;
	unsigned long errors;
	uint32_t *lat_us; /* latency of every finished request, microseconds */
	size_t n_lat, cap_lat;
	char first_error[160];
};

static struct {
	int conns;
	int threads;
	double duration;
	const char *path;
	const char *connect_to; /* DEST:PORT, or NULL for direct */
	struct sockaddr_in addr;
} opt = {8, 2, 5.0, "/large", NULL, {0}};

static char request[512];
static size_t request_len;
static double start_at, stop_at; /* set by main between the two barriers */
static pthread_barrier_t set_up, go;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((format(printf, 2, 3))) static void note(struct worker *w, const char *fmt, ...)
{
	va_list ap;

	w->errors++;
	if (w->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(w->first_error, sizeof(w->first_error), fmt, ap);
	va_end(ap);
}

static void conn_kill(struct worker *w, struct conn *c, const char *why)
{
	note(w, "%s", why);
	close(c->fd);
	c->fd = -1;
	c->state = CS_DEAD;
}

/* Reads a response head into c->head until the blank line; blocking (the
 * setup phase). Returns the bytes after the head, or -1. */
static ssize_t read_head_blocking(struct conn *c)
{
	char *end;
	ssize_t n;

	c->head_len = 0;
	for (;;) {
		if (c->head_len >= HEAD_MAX - 1)
			return -1;
		n = recv(c->fd, c->head + c->head_len, HEAD_MAX - 1 - c->head_len, 0);
		if (n <= 0)
			return -1;
		c->head_len += (size_t)n;
		c->head[c->head_len] = '\0';
		end = strstr(c->head, "\r\n\r\n");
		if (end)
			return (ssize_t)(c->head_len - (size_t)(end + 4 - c->head));
	}
}

/* Connects, and with -C opens the tunnel; blocking, with a 5 s limit. */
static bool conn_setup(struct worker *w, struct conn *c)
{
	struct timeval tv = {5, 0};
	char line[300];
	int one = 1, len;
	ssize_t extra;

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0) {
		note(w, "socket: %s", strerror(errno));
		return false;
	}
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&opt.addr, sizeof(opt.addr)) < 0) {
		conn_kill(w, c, "connect failed");
		return false;
	}
	if (opt.connect_to) {
		len = snprintf(line, sizeof(line), "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n",
			       opt.connect_to, opt.connect_to);
		if (send(c->fd, line, (size_t)len, MSG_NOSIGNAL) != len) {
			conn_kill(w, c, "sending CONNECT failed");
			return false;
		}
		extra = read_head_blocking(c);
		if (extra < 0) {
			conn_kill(w, c, "no answer to CONNECT");
			return false;
		}
		if (strncmp(c->head, "HTTP/1.", 7) != 0 || c->head[9] != '2') {
			c->head[strcspn(c->head, "\r\n")] = '\0';
			note(w, "CONNECT refused: %s", c->head);
			close(c->fd);
			c->fd = -1;
			c->state = CS_DEAD;
			return false;
		}
		if (extra > 0) {
			conn_kill(w, c, "bytes before the first request");
			return false;
		}
	}
	c->state = CS_SEND;
	return true;
}

static void lat_add(struct worker *w, double seconds)
{
	uint32_t *p;

	if (w->n_lat == w->cap_lat) {
		w->cap_lat = w->cap_lat ? 2 * w->cap_lat : 4096;
		p = realloc(w->lat_us, w->cap_lat * sizeof(*p));
		if (!p) {
			w->cap_lat = w->n_lat;
			return;
		}
		w->lat_us = p;
	}
	w->lat_us[w->n_lat++] = (uint32_t)(seconds * 1e6);
}

static void conn_send(struct worker *w, struct conn *c)
{
	ssize_t n = send(c->fd, request, request_len, MSG_NOSIGNAL);

	/* a fresh request on an idle connection always fits the send buffer */
	if (n != (ssize_t)request_len) {
		conn_kill(w, c, "send failed");
		return;
	}
	c->sent_at = now_s();
	c->head_len = 0;
	c->state = CS_HEAD;
}

/* Parses a complete head: the status must be 2xx, Content-Length present. */
static bool head_parse(struct conn *c)
{
	const char *p = c->head;
	char *end;

	if (strncmp(p, "HTTP/1.", 7) != 0 || p[9] != '2')
		return false;
	c->body_left = -1;
	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, "content-length:", 15) == 0) {
			c->body_left = strtoll(p + 15, &end, 10);
			if (end == p + 15)
				return false;
		}
	}
	return c->body_left >= 0;
}

/* Takes len bytes of the answer (in buf); may finish the request. */
static void conn_consume(struct worker *w, struct conn *c, const char *buf, size_t len)
{
	size_t take, used;
	char *end;

	w->bytes += len;
	while (len > 0) {
		if (c->state == CS_HEAD) {
			take = len < HEAD_MAX - 1 - c->head_len ? len : HEAD_MAX - 1 - c->head_len;
			memcpy(c->head + c->head_len, buf, take);
			c->head[c->head_len + take] = '\0';
			end = strstr(c->head, "\r\n\r\n");
			if (!end) {
				c->head_len += take;
				if (c->head_len >= HEAD_MAX - 1) {
					conn_kill(w, c, "response head too large");
					return;
				}
				return;
			}
			used = (size_t)(end + 4 - c->head) - c->head_len;
			c->head_len += used;
			end[4] = '\0';
			if (!head_parse(c)) {
				c->head[strcspn(c->head, "\r\n")] = '\0';
				note(w, "bad answer: %s", c->head);
				close(c->fd);
				c->fd = -1;
				c->state = CS_DEAD;
				return;
			}
			buf += used;
			len -= used;
			c->state = CS_BODY;
		}
		if (c->state == CS_BODY) {
			take = (long long)len < c->body_left ? len : (size_t)c->body_left;
			c->body_left -= (long long)take;
			buf += take;
			len -= take;
			if (c->body_left == 0) {
				if (len > 0) {
					conn_kill(w, c, "bytes after the answer");
					return;
				}
				w->requests++;
				lat_add(w, now_s() - c->sent_at);
				c->state = CS_SEND;
			}
		}
	}
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct epoll_event ev, evs[64];
	char *buf = malloc(READ_BUF);
	int ep = epoll_create1(0), i, n, live = 0, timeout_ms;
	struct conn *c;
	ssize_t got;

	for (i = 0; i < w->n_conns; i++)
		if (conn_setup(w, &w->conns[i]))
			live++;
	pthread_barrier_wait(&set_up);
	pthread_barrier_wait(&go);
	if (!buf || ep < 0) {
		note(w, "out of memory or epoll");
		return NULL;
	}
	for (i = 0; i < w->n_conns; i++) {
		c = &w->conns[i];
		if (c->state == CS_DEAD)
			continue;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		conn_send(w, c);
	}
	while (live > 0) {
		timeout_ms = (int)((stop_at - now_s()) * 1000) + 1;
		if (timeout_ms <= 0)
			break;
		n = epoll_wait(ep, evs, 64, timeout_ms);
		if (n < 0 && errno != EINTR)
			break;
		for (i = 0; i < n; i++) {
			c = evs[i].data.ptr;
			if (c->state == CS_DEAD)
				continue;
			got = recv(c->fd, buf, READ_BUF, 0);
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got <= 0) {
				conn_kill(w, c,
					  got == 0 ? "closed by the other side" : "recv failed");
				live--;
				continue;
			}
			conn_consume(w, c, buf, (size_t)got);
			if (c->state == CS_SEND && now_s() < stop_at)
				conn_send(w, c);
			if (c->state == CS_DEAD)
				live--;
		}
		if (now_s() >= stop_at)
			break;
	}
	for (i = 0; i < w->n_conns; i++)
		if (w->conns[i].fd >= 0)
			close(w->conns[i].fd);
	close(ep);
	free(buf);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: tunnel_load [-c CONNS] [-t THREADS] [-d SECONDS] [-p PATH] [-C DEST:PORT]\n"
		"                   HOST PORT\n"
		"  -c N     connections (default 8), spread over the threads\n"
		"  -t N     threads, each with its own epoll (default 2)\n"
		"  -d S     seconds of load after the setup (default 5)\n"
		"  -p PATH  path of the keep-alive GETs (default /large)\n"
		"  -C D:P   HOST PORT is a proxy: open each connection with CONNECT D:P\n"
		"           (without -C, HOST PORT is the HTTP server itself)\n"
		"HOST is an IPv4 address.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct worker *ws;
	unsigned long long reqs = 0, bytes = 0;
	unsigned long errs = 0;
	uint32_t *all;
	size_t n_all = 0, k;
	double p99 = 0, secs;
	const char *first_error = NULL;
	int o, t, i;

	while ((o = getopt(argc, argv, "c:t:d:p:C:h")) != -1) {
		switch (o) {
		case 'c':
			opt.conns = atoi(optarg);
			break;
		case 't':
			opt.threads = atoi(optarg);
			break;
		case 'd':
			opt.duration = atof(optarg);
			break;
		case 'p':
			opt.path = optarg;
			break;
		case 'C':
			opt.connect_to = optarg;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || opt.conns < 1 || opt.threads < 1 || opt.duration <= 0 ||
	    strlen(opt.path) > 200 || (opt.connect_to && strlen(opt.connect_to) > 100))
		usage();
	if (opt.threads > opt.conns)
		opt.threads = opt.conns;
	opt.addr.sin_family = AF_INET;
	opt.addr.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
	if (inet_pton(AF_INET, argv[optind], &opt.addr.sin_addr) != 1)
		usage();
	request_len =
		(size_t)snprintf(request, sizeof(request),
				 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tunnel_load\r\n\r\n",
				 opt.path, opt.connect_to ? opt.connect_to : argv[optind]);

	ws = calloc((size_t)opt.threads, sizeof(*ws));
	if (!ws)
		return 1;
	pthread_barrier_init(&set_up, NULL, (unsigned)opt.threads + 1);
	pthread_barrier_init(&go, NULL, (unsigned)opt.threads + 1);
	for (t = 0; t < opt.threads; t++) {
		ws[t].n_conns = opt.conns / opt.threads + (t < opt.conns % opt.threads);
		ws[t].conns = calloc((size_t)ws[t].n_conns, sizeof(struct conn));
		if (!ws[t].conns)
			return 1;
		for (i = 0; i < ws[t].n_conns; i++)
			ws[t].conns[i].fd = -1;
	}
	for (t = 0; t < opt.threads; t++)
		pthread_create(&ws[t].tid, NULL, worker_run, &ws[t]);
	/* the clock starts once every thread has set its connections up */
	pthread_barrier_wait(&set_up);
	start_at = now_s();
	stop_at = start_at + opt.duration;
	pthread_barrier_wait(&go);
	for (t = 0; t < opt.threads; t++)
		pthread_join(ws[t].tid, NULL);
	secs = now_s() - start_at;

	for (t = 0; t < opt.threads; t++) {
		reqs += ws[t].requests;
		bytes += ws[t].bytes;
		errs += ws[t].errors;
		n_all += ws[t].n_lat;
		if (!first_error && ws[t].first_error[0])
			first_error = ws[t].first_error;
	}
	all = malloc((n_all + 1) * sizeof(*all));
	if (all) {
		n_all = 0;
		for (t = 0; t < opt.threads; t++)
			for (k = 0; k < ws[t].n_lat; k++)
				all[n_all++] = ws[t].lat_us[k];
		if (n_all) {
			qsort(all, n_all, sizeof(*all), cmp_u32);
			k = (size_t)((double)n_all * 0.99);
			p99 = all[k < n_all ? k : n_all - 1] / 1000.0;
		}
	}
	printf("requests %llu\nbytes %llu\nseconds %.3f\n", reqs, bytes, secs);
	printf("Requests/sec: %.2f\nMiB/sec: %.2f\np99_ms: %.3f\nerrors %lu\n", (double)reqs / secs,
	       (double)bytes / 1048576.0 / secs, p99, errs);
	if (first_error)
		fprintf(stderr, "first error: %s\n", first_error);
	return reqs > 0 ? 0 : 1;
}
