/*
 * dns.c - per-worker c-ares resolver and answer cache (see dns.h). Worker
 * thread.
 *
 * c-ares tells us which sockets it wants watched through its socket-state
 * callback; each gets a slot (struct dns_sock) registered in the worker's
 * epoll, level-triggered, so c-ares may read one datagram per call and be
 * called again. Slots are reused, never freed before the resolver: a stale
 * event for a socket c-ares closed earlier in the same batch lands on a slot
 * marked free (fd -1) and is dropped. Retransmissions and query timeouts run
 * from one timer on the worker's wheel, re-armed from ares_timeout() after
 * every call into c-ares.
 *
 * The cache holds up to DNS_CACHE_MAX names, least recently used first out.
 * An entry is either pending (one c-ares query under way, the waits of every
 * caller linked to it) or answered, until its TTL runs out: the smallest TTL
 * of its addresses and of the CNAMEs that led there, within [DNS_MIN_TTL_S,
 * DNS_MAX_TTL_S]; a name that does
 * not exist is remembered for DNS_NEG_TTL_MS; a timeout or resolver failure
 * is not remembered. Pending entries are never evicted (the query's callback
 * argument points at them).
 */
#include "core/dns.h"

#include <ares.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "balancer/lb.h"
#include "core/hosts.h"
#include "core/log.h"
#include "core/timer.h"
#include "core/worker.h"

#define DNS_BUCKETS	   64
#define DNS_CACHE_MAX	   256
#define DNS_MIN_TTL_S	   1
#define DNS_MAX_TTL_S	   3600
#define DNS_NEG_TTL_MS	   5000
#define DNS_TRY_TIMEOUT_MS 1000 /* first try; c-ares doubles it for each retry round */
/* Tries at 0, 1, 3 and 7 s (per name server), answers taken until 15 s: the
 * caller's connect_timeout, not c-ares, decides when to stop waiting, and a
 * query nobody waits for any more is cancelled (on_timer). */
#define DNS_TRIES 4

struct dns_entry {
	struct list hnode; /* in d->buckets */
	struct list lru; /* in d->lru */
	struct list waiters; /* dns_wait.node, while pending */
	struct dns *d;
	uint64_t hash;
	uint64_t expire_ms; /* the answer is served until then */
	bool pending;
	bool sync; /* ares_getaddrinfo is on the stack: dns_lookup takes the answer */
	struct dns_answer ans;
	char name[]; /* lower-case */
};

struct dns_sock {
	struct ev_handler h;
	struct list node; /* in d->socks */
	struct dns *d;
	int fd; /* -1: a free slot */
};

struct dns {
	struct worker *w;
	ares_channel ch;
	struct timer timer;
	struct list buckets[DNS_BUCKETS];
	struct list lru; /* least recently used first */
	size_t n_entries;
	size_t n_waiting; /* waits linked to pending entries */
	struct list socks;
};

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static int lib_status;

static void lib_init(void)
{
	lib_status = ares_library_init(ARES_LIB_INIT_ALL);
}

void dns_wait_init(struct dns_wait *wt, dns_cb *cb)
{
	list_init(&wt->node);
	wt->cb = cb;
	wt->d = NULL;
}

void dns_cancel(struct dns_wait *wt)
{
	struct dns *d = wt->d;

	if (list_is_empty(&wt->node))
		return;
	list_del(&wt->node);
	if (--d->n_waiting == 0)
		timer_add(&d->w->timers, &d->timer, d->w->now_ms); /* on_timer cancels */
}

/* ---- sockets and the timer -------------------------------------------- */

static void arm_timer(struct dns *d)
{
	struct timeval tv, *tvp = ares_timeout(d->ch, NULL, &tv);

	if (!tvp) {
		timer_del(&d->w->timers, &d->timer);
		return;
	}
	uint64_t ms = (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000;
	/* Queries nobody waits for: on_timer cancels them at the next turn. */
	timer_add(&d->w->timers, &d->timer, d->w->now_ms + (d->n_waiting ? ms : 0));
}

static void on_timer(struct timer *t)
{
	struct dns *d = container_of(t, struct dns, timer);

	/* Nobody waits for any answer: end c-ares's retries (15 s and more)
	 * now, so its sockets close with the last query. The entries get a
	 * failure, which is not remembered. Here, not in dns_cancel or a
	 * dispatch, since c-ares may be on the stack there. */
	if (d->n_waiting == 0)
		ares_cancel(d->ch);
	else
		ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	arm_timer(d);
}

static void on_sock(struct ev_handler *h, uint32_t events)
{
	struct dns_sock *s = container_of(h, struct dns_sock, h);
	struct dns *d = s->d;

	if (s->fd < 0)
		return; /* c-ares closed it earlier in this batch */
	ares_socket_t rfd = events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? s->fd : ARES_SOCKET_BAD;
	ares_socket_t wfd = events & (EPOLLOUT | EPOLLERR | EPOLLHUP) ? s->fd : ARES_SOCKET_BAD;
	ares_process_fd(d->ch, rfd, wfd);
	arm_timer(d);
}

static struct dns_sock *sock_slot(struct dns *d, int fd, bool take)
{
	struct dns_sock *free_slot = NULL;

	for (struct list *n = d->socks.next; n != &d->socks; n = n->next) {
		struct dns_sock *s = container_of(n, struct dns_sock, node);
		if (s->fd == fd)
			return s;
		if (s->fd < 0 && !free_slot)
			free_slot = s;
	}
	if (!take || free_slot)
		return free_slot;
	free_slot = calloc(1, sizeof(*free_slot));
	if (free_slot) {
		free_slot->h.fn = on_sock;
		free_slot->d = d;
		free_slot->fd = -1;
		list_add_tail(&d->socks, &free_slot->node);
	}
	return free_slot;
}

/* c-ares: start, change or stop watching FD. */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	uint32_t events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0);
	struct dns_sock *s = sock_slot(d, fd, events != 0);

	if (!s)
		return; /* out of memory: the query times out */
	if (events == 0) {
		if (s->fd == fd) {
			epoll_ctl(d->w->epfd, EPOLL_CTL_DEL, fd, NULL);
			s->fd = -1;
		}
		return;
	}
	if (s->fd == fd) {
		struct epoll_event ev = {.events = events, .data.ptr = &s->h};
		epoll_ctl(d->w->epfd, EPOLL_CTL_MOD, fd, &ev);
		return;
	}
	s->fd = fd;
	if (worker_watch(d->w, fd, events, &s->h) < 0)
		s->fd = -1;
}

/* ---- the cache -------------------------------------------------------- */

static struct dns_entry *entry_find(struct dns *d, const char *name, uint64_t hash)
{
	struct list *b = &d->buckets[hash % DNS_BUCKETS];

	for (struct list *n = b->next; n != b; n = n->next) {
		struct dns_entry *e = container_of(n, struct dns_entry, hnode);
		if (e->hash == hash && strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

static void entry_free(struct dns *d, struct dns_entry *e)
{
	list_del(&e->hnode);
	list_del(&e->lru);
	d->n_entries--;
	free(e);
}

static struct dns_entry *entry_new(struct dns *d, const char *name, size_t len, uint64_t hash)
{
	for (struct list *n = d->lru.next; d->n_entries >= DNS_CACHE_MAX && n != &d->lru;) {
		struct dns_entry *old = container_of(n, struct dns_entry, lru);
		n = n->next;
		if (!old->pending)
			entry_free(d, old);
	}
	struct dns_entry *e = calloc(1, sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	memcpy(e->name, name, len + 1);
	e->d = d;
	e->hash = hash;
	list_init(&e->waiters);
	list_add_tail(&d->buckets[hash % DNS_BUCKETS], &e->hnode);
	list_add_tail(&d->lru, &e->lru);
	d->n_entries++;
	return e;
}

/* Copies the addresses of RES (in c-ares's order, duplicates dropped) and
 * returns the smallest TTL of them and of the CNAMEs that led there. */
static int copy_addrs(struct dns_answer *a, const struct ares_addrinfo *res)
{
	int ttl = DNS_MAX_TTL_S;
	union dns_addr spare;

	a->n = 0;
	a->truncated = false;
	for (const struct ares_addrinfo_cname *cn = res ? res->cnames : NULL; cn; cn = cn->next)
		if (cn->ttl < ttl)
			ttl = cn->ttl;
	for (const struct ares_addrinfo_node *nd = res ? res->nodes : NULL; nd; nd = nd->ai_next) {
		union dns_addr *x = a->n < DNS_MAX_ADDRS ? &a->addrs[a->n] : &spare;
		memset(x, 0, sizeof(*x));
		if (nd->ai_family == AF_INET && nd->ai_addrlen >= sizeof(x->in))
			memcpy(&x->in, nd->ai_addr, sizeof(x->in));
		else if (nd->ai_family == AF_INET6 && nd->ai_addrlen >= sizeof(x->in6))
			memcpy(&x->in6, nd->ai_addr, sizeof(x->in6));
		else
			continue;
		x->in.sin_port = 0; /* same offset in both families */
		bool dup = false;
		for (unsigned i = 0; i < a->n && !dup; i++)
			dup = dns_same_addr(&a->addrs[i], x);
		if (dup)
			continue;
		if (a->n == DNS_MAX_ADDRS) {
			a->truncated = true;
			break;
		}
		a->n++;
		if (nd->ai_ttl < ttl)
			ttl = nd->ai_ttl;
	}
	return ttl < DNS_MIN_TTL_S ? DNS_MIN_TTL_S : ttl;
}

static void fill_answer(struct dns_entry *e, int status, const struct ares_addrinfo *res)
{
	uint64_t now = e->d->w->now_ms;
	int ttl = copy_addrs(&e->ans, res);

	e->expire_ms = 0;
	if (status == ARES_SUCCESS && e->ans.n) {
		e->ans.err = 0;
		e->expire_ms = now + (uint64_t)ttl * 1000;
	} else if (status == ARES_SUCCESS || status == ARES_ENOTFOUND || status == ARES_ENODATA ||
		   status == ARES_ENONAME) {
		e->ans.err = -ENOENT;
		e->ans.n = 0;
		e->expire_ms = now + DNS_NEG_TTL_MS;
	} else {
		e->ans.err = status == ARES_ETIMEOUT ? -ETIMEDOUT
			     : status == ARES_ENOMEM ? -ENOMEM
						     : -EIO;
		e->ans.n = 0;
	}
}

/* Calls back every wait of E. Works on copies: a callback may look names
 * up, which may evict E, or cancel other waits of the same list. */
static void dispatch(struct dns_entry *e)
{
	struct dns_answer ans = e->ans;
	struct list todo;

	list_take_all(&todo, &e->waiters);
	while (!list_is_empty(&todo)) {
		struct dns_wait *wt = container_of(todo.next, struct dns_wait, node);
		list_del(&wt->node);
		if (--wt->d->n_waiting == 0) /* on_timer cancels what is left */
			timer_add(&wt->d->w->timers, &wt->d->timer, wt->d->w->now_ms);
		wt->cb(wt, &ans);
	}
}

/* c-ares: the query of entry ARG ended. */
static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct dns_entry *e = arg;

	(void)timeouts;
	if (status != ARES_EDESTRUCTION) {
		fill_answer(e, status, res);
		e->pending = false;
	}
	if (res)
		ares_freeaddrinfo(res);
	if (status != ARES_EDESTRUCTION && !e->sync)
		dispatch(e);
}

int dns_lookup(struct dns *d, const struct hosts *hosts, const char *name, struct dns_wait *wt,
	       struct dns_answer *ans)
{
	char key[DNS_NAME_MAX + 1];
	size_t len = strlen(name);
	struct ares_addrinfo_hints hints;

	if (len && name[len - 1] == '.')
		len--; /* "a.test." is "a.test": no search list applies to either */
	if (len == 0 || len > DNS_NAME_MAX) {
		memset(ans, 0, sizeof(*ans));
		ans->err = -ENOENT;
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		key[i] = (char)tolower((unsigned char)name[i]);
	key[len] = '\0';
	if (hosts_find(hosts, key, ans))
		return 1;
	uint64_t hash = lb_hash_local(key, len);
	struct dns_entry *e = entry_find(d, key, hash);
	if (e) {
		list_del(&e->lru);
		list_add_tail(&d->lru, &e->lru);
		if (e->pending) {
			list_add_tail(&e->waiters, &wt->node);
			wt->d = d;
			d->n_waiting++;
			return 0;
		}
		if (d->w->now_ms < e->expire_ms) {
			*ans = e->ans;
			return 1;
		}
	} else if (!(e = entry_new(d, key, len, hash))) {
		return -ENOMEM;
	}
	list_add_tail(&e->waiters, &wt->node);
	wt->d = d;
	d->n_waiting++;
	e->pending = e->sync = true;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	ares_getaddrinfo(d->ch, e->name, NULL, &hints, on_answer, e);
	e->sync = false;
	arm_timer(d);
	if (e->pending)
		return 0;
	/* Answered at once (an immediate failure): nobody else can have
	 * joined. */
	list_del(&wt->node);
	d->n_waiting--;
	*ans = e->ans;
	return 1;
}

/* ---- life ------------------------------------------------------------- */

struct dns *dns_new(struct worker *w)
{
	struct ares_options o;
	const char *servers = getenv("FULCRUM_DNS_SERVERS");
	struct dns *d;
	int rc;

	pthread_once(&lib_once, lib_init);
	if (lib_status != ARES_SUCCESS)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->w = w;
	timer_init(&d->timer, on_timer);
	for (size_t i = 0; i < DNS_BUCKETS; i++)
		list_init(&d->buckets[i]);
	list_init(&d->lru);
	list_init(&d->socks);
	memset(&o, 0, sizeof(o));
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = d;
	o.timeout = DNS_TRY_TIMEOUT_MS;
	o.tries = DNS_TRIES;
	/* The name a client asked for, and nothing else, is what the ACL
	 * allowed: no search list ("secret" is not secret.corp.example), and
	 * the hosts file is the generation's (hosts.h), not read here. */
	o.flags = ARES_FLAG_NOSEARCH;
	o.ndomains = 0; /* c-ares 1.18's getaddrinfo ignores NOSEARCH */
	o.lookups = (char *)"b";
	rc = ares_init_options(&d->ch, &o,
			       ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
				       ARES_OPT_FLAGS | ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS);
	if (rc != ARES_SUCCESS) {
		log_error("worker %d: c-ares: %s", w->id, ares_strerror(rc));
		free(d);
		return NULL;
	}
	if (servers && *servers &&
	    (rc = ares_set_servers_ports_csv(d->ch, servers)) != ARES_SUCCESS)
		log_warn("FULCRUM_DNS_SERVERS \"%s\": %s", servers, ares_strerror(rc));
	return d;
}

void dns_free(struct dns *d)
{
	if (!d)
		return;
	timer_del(&d->w->timers, &d->timer);
	ares_destroy(d->ch);
	for (size_t i = 0; i < DNS_BUCKETS; i++)
		while (!list_is_empty(&d->buckets[i]))
			entry_free(d, container_of(d->buckets[i].next, struct dns_entry, hnode));
	while (!list_is_empty(&d->socks)) {
		struct dns_sock *s = container_of(d->socks.next, struct dns_sock, node);
		list_del(&s->node);
		free(s);
	}
	free(d);
}
