/*
 * origin.c - the per-worker table of forward-mode origins (see origin.h).
 * Worker thread.
 *
 * Invariant: an lb_server of an origin is freed only after every idle
 * pooled connection to it is closed (upstream_take_idle finds them, since
 * the pool is keyed by that very pointer) and no connection holds the
 * origin, so no pointer to it survives anywhere.
 */
#include "core/http/origin.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/lb.h"
#include "core/upstream.h"
#include "core/worker.h"

void origin_table_init(struct origin_table *t, struct worker *w)
{
	t->w = w;
	for (size_t i = 0; i < ORIGIN_BUCKETS; i++)
		list_init(&t->buckets[i]);
	list_init(&t->lru);
	t->count = 0;
}

/* Closes the idle pooled connections to S. */
static void close_idle(struct worker *w, struct lb_server *s)
{
	struct upstream *u;

	while ((u = upstream_take_idle(w, s)))
		upstream_close(u);
}

static void origin_free(struct origin_table *t, struct origin *o)
{
	for (unsigned i = 0; i < o->n; i++) {
		close_idle(t->w, o->servers[i]);
		lb_server_unref(o->servers[i]);
	}
	free(o);
}

/* Takes O out of the table; frees it unless a connection holds it. */
static void unlist(struct origin_table *t, struct origin *o)
{
	list_del(&o->hnode);
	list_del(&o->lru);
	o->listed = false;
	t->count--;
	for (unsigned i = 0; i < o->n; i++)
		close_idle(t->w, o->servers[i]);
	if (o->refs == 0)
		origin_free(t, o);
}

void origin_table_deinit(struct origin_table *t)
{
	while (!list_is_empty(&t->lru))
		unlist(t, container_of(t->lru.next, struct origin, lru));
}

void origin_put(struct origin_table *t, struct origin *o)
{
	if (--o->refs == 0 && !o->listed)
		origin_free(t, o);
}

/* Whether O's servers are the addresses ADDRS, in any order (round-robin
 * DNS rotates them from one answer to the next). */
static bool same_addrs(const struct origin *o, const union dns_addr *addrs, unsigned n)
{
	if (o->n != n)
		return false;
	for (unsigned i = 0; i < n; i++) {
		bool found = false;
		for (unsigned j = 0; j < n && !found; j++)
			found = dns_same_addr((const union dns_addr *)&o->servers[j]->addr.ss,
					      &addrs[i]);
		if (!found)
			return false;
	}
	return true;
}

/* An lb_server named KEY for address A on PORT. */
static struct lb_server *server_new(const char *key, const union dns_addr *a, uint16_t port)
{
	struct cfg_server cs;
	char ip[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN + 8];

	memset(&cs, 0, sizeof(cs));
	cs.name = (char *)key;
	cs.weight = 1;
	if (a->sa.sa_family == AF_INET) {
		memcpy(&cs.addr.ss, &a->in, sizeof(a->in));
		((struct sockaddr_in *)&cs.addr.ss)->sin_port = htons(port);
		cs.addr.len = sizeof(struct sockaddr_in);
		inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
		snprintf(text, sizeof(text), "%s:%u", ip, port);
	} else {
		memcpy(&cs.addr.ss, &a->in6, sizeof(a->in6));
		((struct sockaddr_in6 *)&cs.addr.ss)->sin6_port = htons(port);
		cs.addr.len = sizeof(struct sockaddr_in6);
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(text, sizeof(text), "[%s]:%u", ip, port);
	}
	cs.addr.text = text;
	return lb_server_new(&cs, 0);
}

static struct origin *origin_new(const char *key, size_t klen, uint64_t hash, uint16_t port,
				 const union dns_addr *addrs, unsigned n)
{
	struct origin *o = calloc(1, sizeof(*o) + klen + 1);

	if (!o)
		return NULL;
	memcpy(o->key, key, klen + 1);
	o->hash = hash;
	list_init(&o->hnode);
	list_init(&o->lru);
	for (unsigned i = 0; i < n && i < ORIGIN_MAX_ADDRS; i++) {
		o->servers[o->n] = server_new(o->key, &addrs[i], port);
		if (!o->servers[o->n]) {
			while (o->n)
				lb_server_unref(o->servers[--o->n]);
			free(o);
			return NULL;
		}
		o->n++;
	}
	return o;
}

/* Makes room for one more listed origin. False when every one is held. */
static bool make_room(struct origin_table *t)
{
	if (t->count < ORIGIN_TABLE_MAX)
		return true;
	for (struct list *n = t->lru.next; n != &t->lru; n = n->next) {
		struct origin *o = container_of(n, struct origin, lru);
		if (o->refs == 0) {
			unlist(t, o);
			return true;
		}
	}
	return false;
}

struct origin *origin_get(struct origin_table *t, const char *host, uint16_t port,
			  const union dns_addr *addrs, unsigned n)
{
	char key[DNS_NAME_MAX + 16];
	int klen = snprintf(key, sizeof(key), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	if (klen < 0 || (size_t)klen >= sizeof(key))
		return NULL; /* callers pass names of DNS_NAME_MAX bytes at most */
	uint64_t hash = lb_hash_local(key, (size_t)klen);
	struct list *b = &t->buckets[hash % ORIGIN_BUCKETS];
	struct origin *o = NULL;

	for (struct list *it = b->next; it != b && !o; it = it->next) {
		struct origin *x = container_of(it, struct origin, hnode);
		if (x->hash == hash && strcmp(x->key, key) == 0)
			o = x;
	}
	if (o && same_addrs(o, addrs, n)) {
		list_del(&o->lru);
		list_add_tail(&t->lru, &o->lru);
		o->refs++;
		return o;
	}
	if (o)
		unlist(t, o);
	o = origin_new(key, (size_t)klen, hash, port, addrs, n);
	if (!o)
		return NULL;
	o->refs = 1;
	if (make_room(t)) {
		o->listed = true;
		list_add_tail(b, &o->hnode);
		list_add_tail(&t->lru, &o->lru);
		t->count++;
	}
	return o;
}
