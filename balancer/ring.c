/*
 * ring.c - a ketama-style consistent-hash ring: each member puts
 * LB_RING_POINTS x weight points on a 64-bit circle, point i of server NAME
 * at lb_hash("NAME-i"); a key belongs to the first point at or after its
 * hash, wrapping past the top. Removing a server moves only the keys that
 * were on its points; every other key stays where it was.
 *
 * Pure code, run by whoever builds tables (main or health thread); lookups
 * (lb_ring_start) run on the workers.
 */
#include "balancer/lb.h"
#include "balancer/hash_table.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct point {
	uint64_t hash;
	uint32_t server;
};

/* Ascending hash; equal hashes ordered by server name so the ring is the same
 * whatever the order of the servers in the file. */
static int point_cmp(const void *a, const void *b, void *arg)
{
	const struct point *pa = a, *pb = b;
	const struct lb_pool *pool = arg;

	if (pa->hash != pb->hash)
		return pa->hash < pb->hash ? -1 : 1;
	return strcmp(pool->servers[pa->server]->name, pool->servers[pb->server]->name);
}

static size_t ring_points(const struct lb_table *t)
{
	size_t n = 0;

	for (size_t i = 0; i < t->n_members; i++)
		n += (size_t)lb_table_weight(t, i) * LB_RING_POINTS;
	return n;
}

/* Appends the points of T's member I, server S, at PTS; returns how many. */
static size_t server_points(struct point *pts, const struct lb_table *t, size_t i_member,
			    const struct lb_server *s)
{
	size_t n = (size_t)lb_table_weight(t, i_member) * LB_RING_POINTS;
	char buf[512];

	for (size_t i = 0; i < n; i++) {
		int len = snprintf(buf, sizeof(buf), "%s-%zu", s->name, i);

		if (len < 0)
			len = 0;
		if ((size_t)len >= sizeof(buf))
			len = sizeof(buf) - 1;
		pts[i].hash = lb_hash(buf, (size_t)len);
		pts[i].server = t->members[i_member];
	}
	return n;
}

int lb_ring_fill(struct lb_table *t, const struct lb_pool *pool)
{
	size_t n = ring_points(t), k = 0;
	struct point *pts;

	t->kind = BAL_RING;
	t->size = 0;
	if (n == 0)
		return 0;
	if (n > UINT32_MAX)
		return -ENOMEM;
	pts = malloc(n * sizeof(*pts));
	t->slot = malloc(n * sizeof(*t->slot));
	t->hash = malloc(n * sizeof(*t->hash));
	if (!pts || !t->slot || !t->hash) {
		free(pts);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n_members; i++)
		k += server_points(pts + k, t, i, pool->servers[t->members[i]]);
	qsort_r(pts, n, sizeof(*pts), point_cmp, (void *)pool);
	for (size_t i = 0; i < n; i++) {
		t->hash[i] = pts[i].hash;
		t->slot[i] = pts[i].server;
	}
	t->size = (uint32_t)n;
	free(pts);
	return 0;
}

/* Binary search for the first point >= KEY; past the last point, point 0. */
uint32_t lb_ring_start(const struct lb_table *t, uint64_t key)
{
	uint32_t lo = 0, hi = t->size;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (t->hash[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == t->size ? 0 : lo;
}
