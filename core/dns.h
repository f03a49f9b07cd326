/*
 * dns.h - name resolution that never blocks a worker (SPEC §3 forward mode):
 * a c-ares channel per worker, driven by the worker's own epoll and timer
 * wheel, with a small cache of answers that honours their TTLs.
 *
 * A caller embeds a struct dns_wait in its own state and asks dns_lookup().
 * A cached answer comes back at once; otherwise the wait joins the name's
 * pending query (one query per name, however many callers wait) and its
 * callback runs later, from the worker's event loop, exactly once - unless
 * the caller withdraws with dns_cancel() first, which it must do before the
 * memory holding the wait goes away. A wait is either idle or linked to one
 * query; nothing else refers to it, so cancelling is just unlinking.
 *
 * Both IPv4 and IPv6 addresses are asked for (c-ares sorts them by RFC 6724
 * preference). The hosts file is looked in first: the copy the worker's
 * generation holds (core/hosts.h), not c-ares's, which reads the file again
 * for every lookup. Names are taken as fully qualified: resolv.conf's
 * search list is not applied, so the name an ACL allowed is the name
 * resolved. The servers come from /etc/resolv.conf (read when the worker
 * first resolves), or from the FULCRUM_DNS_SERVERS environment variable
 * (c-ares "host:port,host:port" syntax), which the tests use to talk to a
 * local fake server.
 *
 * Thread: the owning worker only. dns_free may run on the main thread once
 * the worker has stopped.
 */
#ifndef FULCRUM_DNS_H
#define FULCRUM_DNS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "core/util.h"

struct worker;
struct dns;
struct hosts;

/* Every address of an answer is checked against the deny list, up to this
 * many; an origin is tried at the first ORIGIN_MAX_ADDRS (http/origin.h). */
#define DNS_MAX_ADDRS 32
#define DNS_NAME_MAX  253

union dns_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* Whether A and B are the same address (ports aside). */
static inline bool dns_same_addr(const union dns_addr *a, const union dns_addr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	return memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr)) == 0;
}

/* What a lookup came to. Ports in the addresses are 0. */
struct dns_answer {
	int err; /* 0; -ENOENT no such name or no address; -ETIMEDOUT; -EIO the resolver failed */
	unsigned n;
	bool truncated; /* the name has more addresses than these */
	union dns_addr addrs[DNS_MAX_ADDRS];
};

struct dns_wait;
/* ANS is valid during the call only. */
typedef void dns_cb(struct dns_wait *wt, const struct dns_answer *ans);

struct dns_wait {
	struct list node; /* in the pending query's list; self-linked when idle */
	dns_cb *cb;
	struct dns *d; /* the resolver it waits on, while linked */
};

void dns_wait_init(struct dns_wait *wt, dns_cb *cb);

/* Worker thread: a resolver for W (sockets watched in W's epoll, timeouts in
 * W's timer wheel). NULL when c-ares cannot start. */
struct dns *dns_new(struct worker *w);
/* Ends every query without calling anyone back, closes the sockets. */
void dns_free(struct dns *d);

/*
 * Looks NAME up (a host name, not an address literal; compared without
 * regard to case): in HOSTS first (the hosts file of the caller's
 * generation; may be NULL), then the cache, then DNS. Returns 1 with *ANS
 * filled when the answer is known now, 0 when WT will be called back, or
 * -ENOMEM. WT must be idle.
 */
int dns_lookup(struct dns *d, const struct hosts *hosts, const char *name, struct dns_wait *wt,
	       struct dns_answer *ans);
/* WT will not be called back. Harmless on an idle wait. */
void dns_cancel(struct dns_wait *wt);

#endif
