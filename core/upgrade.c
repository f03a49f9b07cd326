/*
 * upgrade.c - seamless binary upgrade (see upgrade.h). Main thread only.
 *
 * FULCRUM_INHERIT is "1" (the format's version) followed by one entry per
 * fd, each after a ';':
 *   R,FD                 the pipe the new process writes its ready byte to
 *   L,FD,LISTENER,BIND   a listening socket of that listener and bind
 *   A,FD,ADDRESS         the admin listener
 * LISTENER, BIND and ADDRESS are as written in the configuration file, with
 * '%', ',', ';' and every byte outside printable ASCII written %XX. The L
 * entries of one listener and bind come in the old process's worker order.
 *
 * The new process is the old one's child until the old one exits; systemd
 * follows it through the pid file (config/fulcrum.service).
 */
#include "core/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/listener.h"
#include "core/log.h"
#include "core/sbuf.h"
#include "core/util.h"
#include "core/worker.h" /* struct ev_handler */

/* A socket handed over to this process, until it is adopted or closed. */
struct inherited {
	char kind; /* 'L' listener, 'A' admin */
	int fd;
	char *listener; /* L: the listener's name; NULL for A */
	char *addr; /* the bind or admin address, as written */
	struct cfg_addr bound; /* L: where the socket is bound (getsockname) */
	int idx; /* L: position among the entries bound at the same address */
	bool used;
};

/* The new side: what this process was handed. */
static struct {
	struct inherited *v;
	size_t n;
	int ready_fd;
	bool active;
	char **gone; /* socket files of unix binds the file dropped, for upgrade_ready */
	size_t n_gone;
} in = {.ready_fd = -1};

/* UP_REAPING: the new process closed its pipe without saying it runs; its
 * exit is awaited (a pidfd in the main epoll) before another may start. */
enum up_state { UP_IDLE, UP_PENDING, UP_REAPING, UP_HANDED_OVER };

/* How long a new process that closed its pipe has to exit before it is
 * killed. */
#define UPGRADE_REAP_MS 1000

/* The old side: the upgrade this process started. */
static struct {
	struct ev_handler h; /* the pipe's, in the main epoll while pending */
	struct ev_handler reap_h; /* the pidfd's, while reaping */
	char exe[PATH_MAX];
	char **argv;
	enum up_state state;
	enum upgrade_outcome outcome; /* reported once by upgrade_poll */
	pid_t child;
	int pipe_fd; /* read end, while pending */
	int pidfd; /* the child's, while reaping */
	int epfd;
	uint64_t deadline_ms;
	bool killed;
} up = {.pipe_fd = -1, .pidfd = -1};

/* ------------------------------------------------------------ encoding -- */

static void add_escaped(struct sbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch > 0x20 && ch < 0x7f && ch != '%' && ch != ',' && ch != ';') {
			sbuf_add(b, s, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			sbuf_add(b, e, sizeof(e));
		}
	}
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes S in place. False on a malformed escape or an escaped NUL. */
static bool unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (*s != '%') {
			*o++ = *s;
			continue;
		}
		int hi = hex_value(s[1]);
		int lo = hi < 0 ? -1 : hex_value(s[2]);
		if (lo < 0 || (hi | lo) == 0)
			return false;
		*o++ = (char)(hi * 16 + lo);
		s += 2;
	}
	*o = '\0';
	return true;
}

static bool parse_fd(const char *s, int *fd)
{
	char *end;

	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > INT_MAX)
		return false;
	*fd = (int)v;
	return true;
}

static bool is_listening(int fd)
{
	int on = 0;
	socklen_t len = sizeof(on);
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

/* ----------------------------------------------------------- new side -- */

/* Takes one entry, split at ',' into NF fields F (decoded in place).
 * Returns NULL, or what is wrong with it. */
static const char *take_entry(char **f, int nf)
{
	int fd;

	if (nf < 2 || strlen(f[0]) != 1 || !parse_fd(f[1], &fd))
		return "malformed entry";
	for (int i = 2; i < nf; i++)
		if (!unescape(f[i]))
			return "malformed escape";
	if (f[0][0] == 'R') {
		if (nf != 2 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			return "bad ready pipe";
		in.ready_fd = fd;
		return NULL;
	}
	if (!((f[0][0] == 'L' && nf == 4) || (f[0][0] == 'A' && nf == 3)))
		return "malformed entry";
	if (!is_listening(fd) || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return "an fd handed over is not a listening socket";
	struct inherited *e = &in.v[in.n];
	*e = (struct inherited){.kind = f[0][0], .fd = fd};
	e->listener = e->kind == 'L' ? strdup(f[2]) : NULL;
	e->addr = strdup(f[nf - 1]);
	if (!e->addr || (e->kind == 'L' && !e->listener)) {
		free(e->listener);
		free(e->addr);
		return "out of memory";
	}
	e->bound.len = sizeof(e->bound.ss);
	if (getsockname(fd, (struct sockaddr *)&e->bound.ss, &e->bound.len) < 0)
		e->bound.len = 0;
	for (size_t i = 0; i < in.n; i++)
		if (in.v[i].kind == e->kind &&
		    (e->kind == 'L'
			     ? e->bound.len && listener_bound_at(&in.v[i].bound.ss, &e->bound)
			     : strcmp(in.v[i].addr, e->addr) == 0))
			e->idx++;
	in.n++;
	return NULL;
}

/* Splits VALUE (modified) into entries and takes them. NULL or a cause. */
static const char *take_all(char *value)
{
	size_t n = 1;

	for (const char *s = value; *s; s++)
		n += *s == ';';
	in.v = calloc(n, sizeof(*in.v));
	if (!in.v)
		return "out of memory";
	char *save = NULL;
	char *tok = strtok_r(value, ";", &save);
	if (!tok || strcmp(tok, "1") != 0)
		return "unknown format (a different fulcrum version?)";
	while ((tok = strtok_r(NULL, ";", &save))) {
		char *f[5];
		int nf = 0;
		char *fsave = NULL;
		for (char *t = strtok_r(tok, ",", &fsave); t && nf < 5;
		     t = strtok_r(NULL, ",", &fsave))
			f[nf++] = t;
		const char *why = take_entry(f, nf);
		if (why)
			return why;
	}
	return in.ready_fd < 0 ? "no ready pipe" : NULL;
}

int upgrade_init(char **argv)
{
	up.argv = argv;
	ssize_t len = readlink("/proc/self/exe", up.exe, sizeof(up.exe) - 1);
	up.exe[len > 0 ? len : 0] = '\0';

	const char *env = getenv(UPGRADE_ENV);
	if (!env)
		return 0;
	char *value = strdup(env);
	unsetenv(UPGRADE_ENV);
	const char *why = value ? take_all(value) : "out of memory";
	free(value);
	if (why) {
		fprintf(stderr,
			"fulcrum: cannot take over the sockets handed over in " UPGRADE_ENV
			": %s\n",
			why);
		return -1;
	}
	in.active = true;
	return 0;
}

bool upgrade_inherited(void)
{
	return in.active;
}

/* Adopts E for A: checks that it is bound where A says (A takes its
 * address when its port is 0), applies BACKLOG, makes it non-blocking.
 * Returns the fd, or -ENOENT when E is bound elsewhere, or -errno. */
static int claim(struct inherited *e, struct cfg_addr *a, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(e->fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (!listener_bound_at(&ss, a)) {
		log_warn("upgrade: the socket handed over for %s is bound elsewhere; not adopted",
			 a->text ? a->text : e->addr);
		return -ENOENT;
	}
	if (ss.ss_family != AF_UNIX && len <= sizeof(a->ss)) {
		memcpy(&a->ss, &ss, len);
		a->len = len;
	}
	int fl = fcntl(e->fd, F_GETFL);
	if (listen(e->fd, backlog) < 0 || fl < 0 || fcntl(e->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	e->used = true;
	return e->fd;
}

/* Whether E is a socket handed over for bind A of LISTENER: the same
 * listener and bind as written, or else (for a bind that names its port)
 * the same address, so that a file that renames a listener, moves a bind
 * to another or writes it another way still gets the very socket. */
static bool hands_over(const struct inherited *e, const char *listener, const struct cfg_addr *a,
		       bool by_name)
{
	if (e->kind != 'L' || e->used)
		return false;
	if (by_name)
		return strcmp(e->listener, listener) == 0 && strcmp(e->addr, a->text) == 0;
	return e->bound.len && !listener_any_port(a) && listener_bound_at(&e->bound.ss, a);
}

int upgrade_adopt(const char *listener, struct cfg_addr *a, int worker, int backlog)
{
	for (int by_name = 1; by_name >= 0; by_name--)
		for (size_t i = 0; i < in.n; i++) {
			struct inherited *e = &in.v[i];
			int fd = e->idx == worker && hands_over(e, listener, a, by_name)
					 ? claim(e, a, backlog)
					 : -ENOENT;
			if (fd != -ENOENT) /* not one bound elsewhere now */
				return fd;
		}
	return -ENOENT;
}

int upgrade_adopt_surplus(const char *listener, struct cfg_addr *a, int worker, int n_workers,
			  int backlog)
{
	/* A unix listener's entries past the first are duplicates of its one
	 * socket, which worker 0 adopted: nothing is queued in them. */
	if (a->ss.ss_family == AF_UNIX)
		return -ENOENT;
	for (int by_name = 1; by_name >= 0; by_name--)
		for (size_t i = 0; i < in.n; i++) {
			struct inherited *e = &in.v[i];
			int fd = e->idx >= n_workers && e->idx % n_workers == worker &&
						 hands_over(e, listener, a, by_name)
					 ? claim(e, a, backlog)
					 : -ENOENT;
			if (fd != -ENOENT)
				return fd;
		}
	return -ENOENT;
}

int upgrade_adopt_admin(const char *text, const struct cfg_addr *a, int backlog)
{
	for (size_t i = 0; i < in.n; i++) {
		struct inherited *e = &in.v[i];
		struct cfg_addr copy = *a; /* claim() fills in a port 0 */
		if (e->kind == 'A' && !e->used && strcmp(e->addr, text) == 0)
			return claim(e, &copy, backlog);
	}
	return -ENOENT;
}

void upgrade_close_unused(void)
{
	for (size_t i = 0; i < in.n; i++) {
		struct inherited *e = &in.v[i];
		if (!e->used && e->kind == 'L')
			log_info("upgrade: closing the socket handed over for listener %s bind %s, "
				 "which this configuration does not use",
				 e->listener, e->addr);
		else if (!e->used)
			log_info(
				"upgrade: closing the admin listener handed over on %s, which this "
				"configuration does not use",
				e->addr);
		if (!e->used)
			close(e->fd);
		/* A unix listener gone from the file: its socket file goes too
		 * (the old process leaves them to this one), once this process
		 * runs (upgrade_ready). */
		if (!e->used && e->kind == 'L' && e->bound.ss.ss_family == AF_UNIX) {
			char *path = strdup(((const struct sockaddr_un *)&e->bound.ss)->sun_path);
			char **grown =
				path ? realloc(in.gone, (in.n_gone + 1) * sizeof(*grown)) : NULL;
			if (grown) {
				in.gone = grown;
				in.gone[in.n_gone++] = path;
			} else {
				free(path);
			}
		}
		free(e->listener);
		free(e->addr);
	}
	free(in.v);
	in.v = NULL;
	in.n = 0;
}

/* Whether PATH is the socket file of one of CFG's unix binds (written
 * another way, "/run//x.sock", it was not adopted, and this process bound
 * its own there). */
static bool unix_path_in_use(const struct cfg *cfg, const char *path)
{
	struct stat a, b;

	if (stat(path, &a) < 0)
		return false;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		for (size_t k = 0; k < cfg->listeners[i].n_binds; k++) {
			const struct cfg_addr *x = &cfg->listeners[i].binds[k];
			if (x->ss.ss_family == AF_UNIX &&
			    stat(((const struct sockaddr_un *)&x->ss)->sun_path, &b) == 0 &&
			    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
				return true;
		}
	return false;
}

void upgrade_ready(const struct cfg *cfg)
{
	if (in.ready_fd >= 0) {
		ssize_t n;
		do
			n = write(in.ready_fd, "R", 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			log_error("upgrade: cannot tell the old process to hand over: %s",
				  strerror(errno));
		close(in.ready_fd);
		in.ready_fd = -1;
	}
	for (size_t i = 0; i < in.n_gone; i++) {
		if (!unix_path_in_use(cfg, in.gone[i]))
			log_unlink(in.gone[i], "socket");
		free(in.gone[i]);
	}
	free(in.gone);
	in.gone = NULL;
	in.n_gone = 0;
}

/* ----------------------------------------------------------- old side -- */

/* Duplicates that stay open across exec, for the child; closed by the
 * parent once it runs. */
struct handover {
	struct sbuf env;
	int *fds;
	size_t n_fds, cap_fds;
};

/* Adds "KIND,dup(FD)" to H's environment value; 0 or -errno. */
static int hand(struct handover *h, char kind, int fd)
{
	if (h->n_fds == h->cap_fds)
		return -ENOMEM;
	int dup_fd = fcntl(fd, F_DUPFD, 3);
	if (dup_fd < 0)
		return -errno;
	h->fds[h->n_fds++] = dup_fd;
	sbuf_printf(&h->env, ";%c,%d", kind, dup_fd);
	return 0;
}

static void handover_free(struct handover *h)
{
	for (size_t i = 0; i < h->n_fds; i++)
		close(h->fds[i]);
	free(h->fds);
	sbuf_free(&h->env);
}

static int build_handover(struct handover *h, const struct cfg *cfg,
			  const struct upgrade_sock *socks, size_t n_socks, int admin_fd,
			  int ready_fd)
{
	h->cap_fds = 2 + n_socks;
	h->fds = calloc(h->cap_fds, sizeof(*h->fds));
	if (!h->fds)
		return -ENOMEM;
	sbuf_puts(&h->env, UPGRADE_ENV "=1");
	int err = hand(h, 'R', ready_fd);
	for (size_t i = 0; i < n_socks && !err; i++) {
		err = hand(h, 'L', socks[i].fd);
		sbuf_add(&h->env, ",", 1);
		add_escaped(&h->env, socks[i].listener);
		sbuf_add(&h->env, ",", 1);
		add_escaped(&h->env, socks[i].bind);
	}
	if (!err && admin_fd >= 0) {
		err = hand(h, 'A', admin_fd);
		sbuf_add(&h->env, ",", 1);
		add_escaped(&h->env, cfg->global.admin);
	}
	return err ? err : h->env.oom ? -ENOMEM : 0;
}

/* environ without any FULCRUM_INHERIT, plus ENTRY; NULL when out of
 * memory. Only the array is allocated. */
static char **child_environ(char *entry)
{
	size_t n = 0, k = 0;

	while (environ[n])
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], UPGRADE_ENV "=", sizeof(UPGRADE_ENV)) != 0)
			env[k++] = environ[i];
	env[k] = entry;
	return env;
}

static void stop_watching(void)
{
	epoll_ctl(up.epfd, EPOLL_CTL_DEL, up.pipe_fd, NULL);
	close(up.pipe_fd);
	up.pipe_fd = -1;
}

/* Says why the new process, reaped by waitpid() with result R and STATUS,
 * did not take over. Its own messages went to the same stderr. */
static void report_failure(pid_t r, int status)
{
	if (r == up.child && WIFEXITED(status))
		log_error("upgrade failed: the new process %d exited with status %d; this one "
			  "carries on",
			  (int)up.child, WEXITSTATUS(status));
	else if (r == up.child && WIFSIGNALED(status))
		log_error("upgrade failed: the new process %d was killed by signal %d (%s); this "
			  "one carries on",
			  (int)up.child, WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		log_error("upgrade failed: the new process %d is gone; this one carries on",
			  (int)up.child);
	up.state = UP_IDLE;
	up.outcome = UPGRADE_FAILED;
}

static void on_child_exit(struct ev_handler *h, uint32_t events)
{
	int status = 0;
	pid_t r = waitpid(up.child, &status, WNOHANG);
	(void)h;
	(void)events;

	if (r == 0)
		return; /* not gone yet */
	epoll_ctl(up.epfd, EPOLL_CTL_DEL, up.pidfd, NULL);
	close(up.pidfd);
	up.pidfd = -1;
	report_failure(r, status);
}

/* The child closed its pipe without saying it runs. Its exit is awaited
 * through a pidfd in the main epoll, which goes on serving the admin API
 * and signals meanwhile; upgrade_poll kills a child that takes longer than
 * UPGRADE_REAP_MS. Without a pidfd, the wait blocks for that long at most. */
static void reap(void)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &up.reap_h};
	int status = 0;
	pid_t r = 0;

	up.pidfd = pidfd_open(up.child, 0);
	if (up.pidfd >= 0 && epoll_ctl(up.epfd, EPOLL_CTL_ADD, up.pidfd, &ev) == 0) {
		log_info("upgrade: the new process %d closed its pipe without saying it runs; "
			 "waiting for it to exit",
			 (int)up.child);
		up.reap_h.fn = on_child_exit;
		up.state = UP_REAPING;
		up.killed = false;
		up.deadline_ms = clock_ms() + UPGRADE_REAP_MS;
		return;
	}
	if (up.pidfd >= 0)
		close(up.pidfd);
	up.pidfd = -1;
	for (int i = 0; i < UPGRADE_REAP_MS / 10 && r == 0; i++) {
		r = waitpid(up.child, &status, WNOHANG);
		if (r == 0)
			usleep(10 * 1000);
	}
	if (r == 0) {
		kill(up.child, SIGKILL);
		r = waitpid(up.child, &status, 0);
	}
	report_failure(r, status);
}

static void on_pipe(struct ev_handler *h, uint32_t events)
{
	char c;
	(void)h;
	(void)events;

	ssize_t n = read(up.pipe_fd, &c, 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	stop_watching();
	/* Ready or gone, the child holds none of our fds but those handed
	 * over (see upgrade_begin). */
	atomic_store(&worker_fds_shared, false);
	if (n == 1) {
		up.state = UP_HANDED_OVER;
		up.outcome = UPGRADE_READY;
		log_info("upgrade: the new process %d runs; this one (%d) stops accepting, drains "
			 "and exits",
			 (int)up.child, (int)getpid());
		return;
	}
	reap();
}

/* Starts the new binary with ENV. Returns 0 or -errno. The child inherits
 * the signal mask, which blocks the signals fulcrum takes through its
 * signalfd: one sent before the new process set its own up waits for it
 * instead of killing it. */
static int spawn(char **env)
{
	/* Until its exec has closed them, the child holds a copy of every fd,
	 * so a worker closing one must take it out of its epoll first
	 * (worker_close); every worker sees the flag once it has passed a
	 * quiescent point. posix_spawn returns a little before the
	 * close-on-exec copies are gone (the kernel lets a vfork parent go on
	 * before it closes them), so the flag stays until the child says it
	 * runs, or is gone (on_pipe). */
	atomic_store(&worker_fds_shared, true);
	workers_wait_quiescent();
	int err = -posix_spawn(&up.child, up.exe, NULL, NULL, up.argv, env);
	if (err)
		atomic_store(&worker_fds_shared, false);
	return err;
}

/* Watches the pipe FD, on which the new process says it runs, from the
 * main loop's EPFD. Returns 0, or -errno after stopping the new process:
 * unwatched, it could never take over. */
static int watch_child(int fd, int epfd)
{
	up.h.fn = on_pipe;
	up.pipe_fd = fd;
	up.epfd = epfd;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &up.h};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, up.pipe_fd, &ev) == 0)
		return 0;
	int err = -errno;
	log_error("upgrade: cannot watch the new process: %s; stopping it", strerror(-err));
	kill(up.child, SIGKILL);
	waitpid(up.child, NULL, 0);
	close(up.pipe_fd);
	up.pipe_fd = -1;
	atomic_store(&worker_fds_shared, false);
	return err;
}

int upgrade_begin(const struct cfg *cfg, const struct upgrade_sock *socks, size_t n_socks,
		  int admin_fd, int epfd)
{
	struct handover h = {.fds = NULL};
	int pipefd[2];

	if (up.state != UP_IDLE) {
		log_warn("SIGUSR2: %s", up.state == UP_PENDING ? "an upgrade is already under way"
					: up.state == UP_REAPING
						? "the last new process is still exiting"
						: "already handed over");
		return -EBUSY;
	}
	if (!up.exe[0]) {
		log_error("upgrade: the path of the running binary is unknown");
		return -ENOENT;
	}
	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
		int err = -errno;
		log_error("upgrade: pipe: %s", strerror(-err));
		return err;
	}
	sbuf_init(&h.env);
	int err = build_handover(&h, cfg, socks, n_socks, admin_fd, pipefd[1]);
	close(pipefd[1]);
	char **env = err ? NULL : child_environ(h.env.data);
	if (!err && !env)
		err = -ENOMEM;
	if (!err)
		err = spawn(env);
	free(env);
	handover_free(&h);
	if (err) {
		log_error("upgrade: cannot start %s: %s", up.exe, strerror(-err));
		close(pipefd[0]);
		return err;
	}
	err = watch_child(pipefd[0], epfd);
	if (err)
		return err;
	up.state = UP_PENDING;
	up.killed = false;
	up.deadline_ms = clock_ms() + UPGRADE_READY_TIMEOUT_MS;
	log_info("upgrade: started %s as process %d; waiting for it to take over", up.exe,
		 (int)up.child);
	return 0;
}

enum upgrade_outcome upgrade_poll(void)
{
	bool waiting = up.state == UP_PENDING || up.state == UP_REAPING;

	if (waiting && !up.killed && clock_ms() >= up.deadline_ms) {
		if (up.state == UP_PENDING)
			log_error("upgrade: the new process %d is not ready after %d s; killing it",
				  (int)up.child, UPGRADE_READY_TIMEOUT_MS / 1000);
		else
			log_error("upgrade: the new process %d closed its pipe but has not exited; "
				  "killing it",
				  (int)up.child);
		kill(up.child, SIGKILL);
		up.killed = true;
	}
	enum upgrade_outcome o = up.outcome;
	up.outcome = UPGRADE_NONE;
	return o;
}

int upgrade_timeout_ms(void)
{
	if ((up.state != UP_PENDING && up.state != UP_REAPING) || up.killed)
		return -1;
	uint64_t now = clock_ms();
	return now >= up.deadline_ms ? 0 : (int)(up.deadline_ms - now);
}

bool upgrade_handed_over(void)
{
	/* Pending counts: the new process may already own the files. One
	 * being reaped failed: they are this one's again. */
	return up.state == UP_PENDING || up.state == UP_HANDED_OVER;
}

bool upgrade_in_progress(void)
{
	return up.state == UP_PENDING;
}
