/*
 * idleconns.c - opens N TCP connections to HOST PORT and holds them idle, so
 * the benchmark can read how much memory a proxy spends per idle connection.
 *
 * Single thread, one epoll. Connections are opened without blocking, at most
 * -c at a time in flight; with -r each one first sends a small HTTP request
 * and reads the whole answer, proving the connection is relayed end to end.
 * Once every connection is idle (or failed) it prints "connected N" and holds
 * them for -d seconds, or until killed. By default every socket has SO_LINGER
 * 0, so ending the program resets them instead of leaving N sockets in
 * TIME_WAIT on the client side.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum pc_state { PC_CONNECTING, PC_READING, PC_IDLE, PC_DONE };

/* One probe connection; owned by main, lives until the program ends. */
struct probe {
	int fd;
	enum pc_state state;
	size_t head_len;
	long long body_left; /* -1 until the answer's head is complete */
	char head[1024];
};

static struct {
	int count;
	int in_flight;
	int hold_s; /* -1 = until killed */
	int wait_s;
	bool request;
	bool graceful;
	const char *host;
	const char *port;
} opt = {100, 200, -1, 60, false, false, NULL, NULL};

static struct addrinfo *target;
static char request[512];
static size_t request_len;
static int n_busy, n_idle, n_failed, n_closed;
static char first_error[128];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void note_error(const char *what, int err)
{
	if (!first_error[0])
		snprintf(first_error, sizeof(first_error), "%s: %s", what, strerror(err));
}

/* Ends a probe that failed or was closed by the other side. */
static void probe_end(struct probe *p, bool failed)
{
	if (p->state == PC_IDLE)
		n_idle--;
	else
		n_busy--;
	if (failed)
		n_failed++;
	else
		n_closed++;
	close(p->fd);
	p->fd = -1;
	p->state = PC_DONE;
}

static void probe_set_idle(struct probe *p)
{
	p->state = PC_IDLE;
	n_busy--;
	n_idle++;
}

/* Starts a non-blocking connect; false when no socket could be made. */
static bool probe_open(int ep, struct probe *p)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = p};

	p->fd = socket(target->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		note_error("socket", errno);
		return false;
	}
	if (!opt.graceful)
		setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	p->state = PC_CONNECTING;
	p->body_left = -1;
	n_busy++;
	if (connect(p->fd, target->ai_addr, target->ai_addrlen) < 0 && errno != EINPROGRESS) {
		note_error("connect", errno);
		probe_end(p, true);
		return true;
	}
	if (epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &ev) < 0) {
		note_error("epoll_ctl", errno);
		probe_end(p, true);
	}
	return true;
}

/* The connect finished: check it, then send the request or go idle. */
static void probe_connected(int ep, struct probe *p)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		note_error("connect", err ? err : errno);
		probe_end(p, true);
		return;
	}
	epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &ev);
	if (!opt.request) {
		probe_set_idle(p);
		return;
	}
	if (send(p->fd, request, request_len, MSG_NOSIGNAL) != (ssize_t)request_len) {
		note_error("send", errno);
		probe_end(p, true);
		return;
	}
	p->state = PC_READING;
}

/* Finds Content-Length in a complete answer head; 0 when absent. */
static long long head_content_length(const char *head)
{
	const char *h = strcasestr(head, "\r\ncontent-length:");

	return h ? atoll(h + 17) : 0;
}

/* Reads the answer to the request; idle once its head and body are in. */
static void probe_read(struct probe *p)
{
	char buf[16384];
	ssize_t n = recv(p->fd, buf, sizeof(buf), 0);
	char *end;

	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		note_error(n ? "recv" : "recv: closed by peer", n ? errno : ECONNRESET);
		probe_end(p, p->state != PC_IDLE);
		return;
	}
	if (p->body_left < 0) {
		size_t take = (size_t)n;

		if (take > sizeof(p->head) - 1 - p->head_len)
			take = sizeof(p->head) - 1 - p->head_len;
		memcpy(p->head + p->head_len, buf, take);
		p->head_len += take;
		p->head[p->head_len] = '\0';
		end = strstr(p->head, "\r\n\r\n");
		if (!end)
			return;
		p->body_left = head_content_length(p->head);
		n = (ssize_t)(p->head_len - (size_t)(end + 4 - p->head));
	}
	p->body_left -= n;
	if (p->body_left <= 0 && p->state == PC_READING)
		probe_set_idle(p);
}

static void probe_event(int ep, struct probe *p, unsigned events)
{
	if (p->state == PC_CONNECTING) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			probe_connected(ep, p);
		return;
	}
	probe_read(p);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: idleconns [-n N] [-c IN_FLIGHT] [-r] [-d SECONDS] [-w SECONDS] [-g] "
		"HOST PORT\n"
		"  -n N       connections to open (default 100)\n"
		"  -c N       connects in flight at once (default 200)\n"
		"  -r         send \"GET /\" on each and read the answer before going idle\n"
		"  -d S       hold them S seconds, then exit (default: until killed)\n"
		"  -w S       give up waiting for connections after S seconds (default 60)\n"
		"  -g         close gracefully (FIN) instead of resetting at exit\n"
		"Prints \"connected N\" once every connection is idle or failed.\n");
	exit(2);
}

static int parse_int(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v < 0 || v > 10000000)
		usage();
	return (int)v;
}

static void parse_options(int argc, char **argv)
{
	int ch;

	while ((ch = getopt(argc, argv, "n:c:rd:w:gh")) != -1) {
		switch (ch) {
		case 'n':
			opt.count = parse_int(optarg);
			break;
		case 'c':
			opt.in_flight = parse_int(optarg);
			break;
		case 'r':
			opt.request = true;
			break;
		case 'd':
			opt.hold_s = parse_int(optarg);
			break;
		case 'w':
			opt.wait_s = parse_int(optarg);
			break;
		case 'g':
			opt.graceful = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 2 || opt.in_flight < 1)
		usage();
	opt.host = argv[optind];
	opt.port = argv[optind + 1];
}

/* Raises the open-file limit as far as allowed: the hard limit, or more as root. */
static void raise_fd_limit(int want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_max < (rlim_t)want) {
		struct rlimit more = {(rlim_t)want, (rlim_t)want};

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			return;
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* Opens connections and drives them until all are idle or failed, or time runs out. */
static void connect_all(int ep, struct probe *probes)
{
	struct epoll_event evs[512];
	double give_up = now_s() + opt.wait_s;
	int opened = 0;

	while (n_idle + n_failed + n_closed < opt.count && now_s() < give_up) {
		while (opened < opt.count && n_busy < opt.in_flight)
			if (!probe_open(ep, &probes[opened++]))
				n_failed++;
		int n = epoll_wait(ep, evs, 512, 100);

		for (int i = 0; i < n; i++)
			probe_event(ep, evs[i].data.ptr, evs[i].events);
	}
}

/* Holds the idle connections, noticing any the other side closes. */
static void hold_all(int ep)
{
	struct epoll_event evs[512];
	double until = opt.hold_s < 0 ? 0 : now_s() + opt.hold_s;

	while (opt.hold_s < 0 || now_s() < until) {
		int n = epoll_wait(ep, evs, 512, 1000);

		for (int i = 0; i < n; i++)
			probe_event(ep, evs[i].data.ptr, evs[i].events);
	}
}

int main(int argc, char **argv)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct probe *probes;
	int ep, rc;

	parse_options(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(opt.count + 64);
	rc = getaddrinfo(opt.host, opt.port, &hints, &target);
	if (rc != 0) {
		fprintf(stderr, "idleconns: %s %s: %s\n", opt.host, opt.port, gai_strerror(rc));
		return 2;
	}
	request_len = (size_t)snprintf(
		request, sizeof(request),
		"GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: idleconns\r\n\r\n", opt.host);
	probes = calloc((size_t)opt.count, sizeof(*probes));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!probes || ep < 0) {
		fprintf(stderr, "idleconns: out of memory\n");
		return 2;
	}
	connect_all(ep, probes);
	printf("connected %d\n", n_idle);
	fflush(stdout);
	if (n_failed || n_closed || n_idle < opt.count)
		fprintf(stderr, "idleconns: %d of %d not idle (%d failed, %d closed)%s%s\n",
			opt.count - n_idle, opt.count, n_failed, n_closed,
			first_error[0] ? "; first error: " : "", first_error);
	hold_all(ep);
	if (n_closed)
		fprintf(stderr, "idleconns: %d closed by the other side\n", n_closed);
	return n_idle == opt.count ? 0 : 1;
}
