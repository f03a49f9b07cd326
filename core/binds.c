/*
 * binds.c - the listening sockets of every worker, across reloads (see
 * binds.h). Main thread only, so the registry needs no lock. A worker
 * reads a socket's fd and bind id, set before it is in the worker's epoll
 * and never changed, and its live and paused flags, which are atomic.
 */
#include "core/binds.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/listener.h"
#include "core/log.h"
#include "core/worker.h"

/* How long a reload or a stop waits for dropped sockets to close (settle). */
#define SETTLE_MS 200

/* One bind address: its socket on every worker. */
struct bound {
	struct cfg_addr addr; /* as bound: a port 0 is the one the kernel chose */
	char *listener; /* the name of the listener it serves */
	uint32_t id; /* cfg_addr.bind_id of the binds it serves, in every generation */
	struct listen_sock *socks, **tail; /* in worker order, linked by next */
	/* binds_prepare: its listener in the new file, and how that writes it;
	 * or, gone from it, the bind that takes its queued connections. */
	const struct cfg_listener *next_lc;
	const char *next_text;
	uint32_t heir;
	struct bound *next;
};

static struct {
	struct worker *ws;
	int n;
	struct bound *live; /* in service */
	struct bound *fresh; /* bound by binds_prepare, not yet in service */
	struct listen_sock *dropped; /* out of the epolls; fd open until worker_past */
	struct listen_sock *closed; /* closed; freed once out of their worker's paused list */
	uint32_t next_id;
} reg;

static struct bound *bound_new(const struct cfg_listener *lc, const struct cfg_addr *a)
{
	struct bound *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->tail = &b->socks;
	b->addr = *a;
	b->addr.text = strdup(a->text);
	b->listener = strdup(lc->name);
	b->id = ++reg.next_id;
	if (!b->addr.text || !b->listener) {
		free(b->addr.text);
		free(b->listener);
		free(b);
		return NULL;
	}
	return b;
}

/* Frees B and its sockets, closing them (they are in no epoll). */
static void bound_free(struct bound *b)
{
	while (b->socks) {
		struct listen_sock *ls = b->socks;
		b->socks = ls->next;
		close(ls->fd);
		free(ls);
	}
	free(b->addr.text);
	free(b->listener);
	free(b);
}

static int add_sock(struct bound *b, int fd, int worker)
{
	struct listen_sock *ls = calloc(1, sizeof(*ls));

	if (!ls) {
		close(fd);
		return -ENOMEM;
	}
	ls->fd = fd;
	ls->bind = b->id;
	ls->w = &reg.ws[worker];
	*b->tail = ls;
	b->tail = &ls->next;
	return 0;
}

/* Opens B's socket for every worker at A (A takes the port the kernel
 * chose for a port 0). STARTUP: adopt what a binary upgrade handed over
 * first. CHECK: make sure no other socket listens at A first (listener.h).
 * 0, or -errno with *WHAT naming the step. */
static int open_bound(struct bound *b, const struct cfg_listener *lc, struct cfg_addr *a,
		      int backlog, bool startup, bool check, const char **what)
{
	for (int w = 0; w < reg.n; w++) {
		int fd, err;

		if (w > 0 && a->ss.ss_family == AF_UNIX) {
			/* No SO_REUSEPORT for unix sockets: one, shared. */
			*what = "dup";
			fd = fcntl(b->socks->fd, F_DUPFD_CLOEXEC, 0);
			if (fd < 0)
				return -errno;
		} else {
			*what = "adopt";
			fd = startup ? upgrade_adopt(lc->name, a, w, backlog) : -ENOENT;
			if (fd == -ENOENT)
				fd = listener_open(a, backlog, w == 0 && check, LISTENER_UNIX_MODE,
						   what);
			if (fd < 0)
				return fd;
		}
		if ((err = add_sock(b, fd, w)) < 0)
			return err;
		while (startup && (fd = upgrade_adopt_surplus(lc->name, a, w, reg.n, backlog)) >= 0)
			if ((err = add_sock(b, fd, w)) < 0)
				return err;
	}
	b->addr.ss = a->ss;
	b->addr.len = a->len;
	return 0;
}

/* Logs that B serves, with the port the kernel chose when the file asked
 * for any (port 0): nothing else tells it. At start-up (CHOSEN_ONLY) only
 * such a bind is logged; the start line counts the others. */
static void log_listening(const struct bound *b, bool chosen_only)
{
	const struct sockaddr_storage *ss = &b->addr.ss;
	size_t n = strlen(b->addr.text);
	unsigned port = ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
			: ss->ss_family == AF_INET6
				? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
				: 0;

	if (port && n >= 2 && strcmp(b->addr.text + n - 2, ":0") == 0)
		log_info("listener %s: listening on %s (port %u)", b->listener, b->addr.text, port);
	else if (!chosen_only)
		log_info("listener %s: listening on %s", b->listener, b->addr.text);
}

/* Puts B's sockets in their workers' epolls. One that cannot be (out of
 * memory, or of epoll watches) is closed rather than left in the port's
 * SO_REUSEPORT group with nobody to accept its share of connections.
 * Returns the first error (0: none). */
static int start_serving(struct bound *b)
{
	int first = 0;

	for (struct listen_sock **pp = &b->socks; *pp;) {
		struct listen_sock *ls = *pp;
		int err = worker_listen(ls->w, ls);
		if (!err) {
			pp = &ls->next;
			continue;
		}
		log_error("listener %s: cannot watch %s on worker %d: %s", b->listener,
			  b->addr.text, ls->w->id, strerror(-err));
		first = first ? first : err;
		*pp = ls->next;
		close(ls->fd);
		free(ls);
	}
	b->tail = &b->socks;
	while (*b->tail)
		b->tail = &(*b->tail)->next;
	return first;
}

int binds_open(struct cfg *cfg, struct worker *ws, int n)
{
	reg.ws = ws;
	reg.n = n;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct cfg_listener *lc = &cfg->listeners[i];
		for (size_t k = 0; k < lc->n_binds; k++) {
			const char *what = "bind";
			struct bound *b = bound_new(lc, &lc->binds[k]);
			int err = b ? open_bound(b, lc, &lc->binds[k], cfg->global.backlog, true,
						 !upgrade_inherited(), &what)
				    : -ENOMEM;
			if (err < 0) {
				fprintf(stderr, "fulcrum: listener %s: %s %s: %s\n", lc->name, what,
					lc->binds[k].text, strerror(-err));
				if (b)
					bound_free(b);
				return -1;
			}
			lc->binds[k].bind_id = b->id;
			b->next = reg.live;
			reg.live = b;
			if (start_serving(b) < 0)
				return -1; /* logged */
			log_listening(b, true);
		}
	}
	return 0;
}

/* *DST becomes a copy of SRC; kept as it was without memory for one. */
static void replace_str(char **dst, const char *src)
{
	char *c;

	if (strcmp(*dst, src) == 0 || !(c = strdup(src)))
		return;
	free(*dst);
	*dst = c;
}

static void poke_all(void)
{
	for (int i = 0; i < reg.n; i++)
		worker_poke(&reg.ws[i]);
}

/* The running bind that A names and no other bind of the new file took:
 * the same text, or (a port given) the same address written another way.
 * (Two listeners may both ask for any port of one address.) */
static struct bound *find_live(const struct cfg_addr *a)
{
	for (struct bound *b = reg.live; b; b = b->next)
		if (!b->next_lc && strcmp(b->addr.text, a->text) == 0)
			return b;
	for (struct bound *b = reg.live; b && !listener_any_port(a); b = b->next)
		if (!b->next_lc && listener_bound_at(&b->addr.ss, a))
			return b;
	return NULL;
}

static bool is_wildcard(const struct cfg_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

/* Whether a running bind of fulcrum's would clash with A (same family and
 * port, and the same address or a wildcard on either side): moving from
 * 127.0.0.1:P to 0.0.0.0:P (or back) must not take fulcrum's own socket
 * for another process's. Anything else is checked as usual. */
static bool clashes_with_ours(const struct cfg_addr *a)
{
	if ((a->ss.ss_family != AF_INET && a->ss.ss_family != AF_INET6) || listener_any_port(a))
		return false;
	for (const struct bound *b = reg.live; b; b = b->next) {
		/* sin_port and sin6_port sit at the same offset. */
		if (b->addr.ss.ss_family != a->ss.ss_family ||
		    ((const struct sockaddr_in *)&b->addr.ss)->sin_port !=
			    ((const struct sockaddr_in *)&a->ss)->sin_port)
			continue;
		if (is_wildcard(a) || is_wildcard(&b->addr) || listener_bound_at(&b->addr.ss, a))
			return true;
	}
	return false;
}

/* Dropped sockets still listen until their workers let go (a batch or
 * so): until then a client connecting to a removed address is queued, not
 * refused, and a reload binding it again would fail. Waits up to SETTLE_MS
 * for them to close; binds_collect takes any left later. */
static void settle(void)
{
	poke_all();
	for (int waited = 0; (binds_collect(), reg.dropped) && waited < SETTLE_MS; waited++) {
		usleep(1000);
		if (waited % 10 == 9)
			poke_all();
	}
}

/* The bind of CFG that takes what is queued on B's socket when a reload
 * removes it: one on the same family and port, the wildcard for a bind
 * moved from 127.0.0.1:P to 0.0.0.0:P, or an address for one moved back
 * (those few connections came in under the old file, as a connection
 * accepted just before the reload would have). 0 for none. */
static uint32_t heir_of(const struct bound *b, const struct cfg *cfg)
{
	const struct cfg_addr *a = &b->addr;

	if ((a->ss.ss_family != AF_INET && a->ss.ss_family != AF_INET6) || listener_any_port(a))
		return 0;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		for (size_t k = 0; k < cfg->listeners[i].n_binds; k++) {
			const struct cfg_addr *n = &cfg->listeners[i].binds[k];
			/* sin_port and sin6_port sit at the same offset. */
			if (n->ss.ss_family == a->ss.ss_family &&
			    is_wildcard(n) != is_wildcard(a) &&
			    ((const struct sockaddr_in *)&n->ss)->sin_port ==
				    ((const struct sockaddr_in *)&a->ss)->sin_port)
				return n->bind_id;
		}
	return 0;
}

int binds_prepare(struct cfg *cfg, struct cfg_errors *errs)
{
	settle();
	for (struct bound *b = reg.live; b; b = b->next)
		b->next_lc = NULL;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		struct cfg_listener *lc = &cfg->listeners[i];
		for (size_t k = 0; k < lc->n_binds; k++) {
			struct cfg_addr *a = &lc->binds[k];
			struct bound *b = find_live(a);
			const char *what = "bind";

			if (b) {
				b->next_lc = lc;
				b->next_text = a->text;
				a->ss = b->addr.ss; /* a port 0 stays the one bound */
				a->len = b->addr.len;
				a->bind_id = b->id;
				continue;
			}
			b = bound_new(lc, a);
			int err = b ? open_bound(b, lc, a, cfg->global.backlog, false,
						 !clashes_with_ours(a), &what)
				    : -ENOMEM;
			if (err < 0) {
				cfg_errors_add(errs, "%s:%d: listener %s: cannot %s %s: %s",
					       cfg->path, a->line, lc->name, what, a->text,
					       strerror(-err));
				if (b)
					bound_free(b);
				binds_abort();
				return -1;
			}
			b->next_lc = lc;
			a->bind_id = b->id;
			b->next = reg.fresh;
			reg.fresh = b;
		}
	}
	for (struct bound *b = reg.live; b; b = b->next)
		b->heir = b->next_lc ? 0 : heir_of(b, cfg);
	return 0;
}

static void unlink_unix(const struct bound *b)
{
	if (b->addr.ss.ss_family == AF_UNIX && !upgrade_handed_over())
		log_unlink(((const struct sockaddr_un *)&b->addr.ss)->sun_path, "socket");
}

void binds_remove_unix_files(void)
{
	if (upgrade_inherited())
		return;
	for (struct bound *b = reg.live; b; b = b->next)
		unlink_unix(b);
}

void binds_abort(void)
{
	while (reg.fresh) {
		struct bound *b = reg.fresh;
		reg.fresh = b->next;
		unlink_unix(b); /* bound by this failed reload */
		bound_free(b);
	}
}

/* A removed address refuses connections from now on: each worker empties
 * its socket and shuts it (shutdown() ends a listen, the kernel unhashes
 * the socket, and leaves the fd open). Only for a reload: at a stop after
 * an upgrade the sockets live on in the new process. */
static void stop_listening(struct bound *b)
{
	for (struct listen_sock *ls = b->socks; ls; ls = ls->next) {
		ls->heir = b->heir;
		ls->retiring = true;
		worker_retire(ls->w, ls);
	}
}

/* Whether LS is done with (its worker emptied it, or is gone). */
static bool retire_done(const struct listen_sock *ls)
{
	return !ls->retiring || atomic_load_explicit(&ls->retired, memory_order_acquire) ||
	       worker_past(ls->w, UINT64_MAX);
}

/* Takes B's sockets out of the workers' epolls, to be closed by
 * binds_collect, and frees B. */
static void drop_bound(struct bound *b)
{
	while (b->socks) {
		struct listen_sock *ls = b->socks;
		b->socks = ls->next;
		ls->close_after = worker_unlisten(ls->w, ls);
		ls->next = reg.dropped;
		reg.dropped = ls;
	}
	bound_free(b);
}

void binds_commit(void)
{
	for (struct bound **pp = &reg.live; *pp;) {
		struct bound *b = *pp;
		const struct cfg_listener *lc = b->next_lc;

		if (!lc) {
			*pp = b->next;
			log_info("listener %s: no longer listening on %s", b->listener,
				 b->addr.text);
			unlink_unix(b);
			stop_listening(b);
			drop_bound(b);
			continue;
		}
		/* Named as the running file does: a binary upgrade hands the
		 * sockets over by listener name and bind text. */
		if (strcmp(b->listener, lc->name) != 0)
			log_info("listener %s: %s moves to listener %s", b->listener, b->addr.text,
				 lc->name);
		replace_str(&b->listener, lc->name);
		replace_str(&b->addr.text, b->next_text);
		pp = &b->next;
	}
	while (reg.fresh) {
		struct bound *b = reg.fresh;
		reg.fresh = b->next;
		start_serving(b);
		log_listening(b, false);
		b->next = reg.live;
		reg.live = b;
	}
	/* The reload is answered once a removed address refuses connections;
	 * a worker stuck for longer leaves its socket to be shut here. */
	settle();
	for (struct listen_sock *ls = reg.dropped; ls; ls = ls->next)
		if (!retire_done(ls))
			shutdown(ls->fd, SHUT_RD);
}

void binds_drop_all(void)
{
	while (reg.live) {
		struct bound *b = reg.live;
		reg.live = b->next;
		drop_bound(b); /* a unix file stays: see main's exit */
	}
	settle();
}

bool binds_collect(void)
{
	for (struct listen_sock **pp = &reg.dropped; *pp;) {
		struct listen_sock *ls = *pp;
		if (!worker_past(ls->w, ls->close_after) || !retire_done(ls)) {
			pp = &ls->next;
			continue;
		}
		*pp = ls->next;
		close(ls->fd);
		ls->next = reg.closed;
		reg.closed = ls;
	}
	/* A worker that paused a socket on EMFILE holds it in its list until
	 * the pause ends; it cannot pause it again, out of its epoll. */
	for (struct listen_sock **pp = &reg.closed; *pp;) {
		struct listen_sock *ls = *pp;
		if (atomic_load(&ls->paused)) {
			pp = &ls->next;
			continue;
		}
		*pp = ls->next;
		free(ls);
	}
	return reg.dropped || reg.closed;
}

long binds_list(struct upgrade_sock **out)
{
	size_t n = 0, k = 0;

	*out = NULL;
	for (const struct bound *b = reg.live; b; b = b->next)
		for (const struct listen_sock *ls = b->socks; ls; ls = ls->next)
			n++;
	if (!n)
		return 0;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	for (const struct bound *b = reg.live; b; b = b->next)
		for (const struct listen_sock *ls = b->socks; ls; ls = ls->next) {
			/* A unix bind's other sockets are duplicates of the first. */
			if (ls != b->socks && b->addr.ss.ss_family == AF_UNIX)
				continue;
			(*out)[k++] = (struct upgrade_sock){b->listener, b->addr.text, ls->fd};
		}
	return (long)k;
}

void binds_free(void)
{
	binds_abort();
	while (reg.live) {
		struct bound *b = reg.live;
		reg.live = b->next;
		bound_free(b);
	}
	while (reg.dropped) {
		struct listen_sock *ls = reg.dropped;
		reg.dropped = ls->next;
		close(ls->fd);
		free(ls);
	}
	while (reg.closed) {
		struct listen_sock *ls = reg.closed;
		reg.closed = ls->next;
		free(ls);
	}
}
