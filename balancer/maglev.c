/*
 * maglev.c - the Maglev lookup table (Eisenbud et al., "Maglev: A Fast and
 * Reliable Software Network Load Balancer", NSDI 2016, §3.4).
 *
 * Each member gets a permutation of the M slots (M prime):
 *   offset = h1(name) mod M, skip = h2(name) mod (M - 1) + 1,
 *   permutation[j] = (offset + j * skip) mod M,
 * and the members take turns claiming the next free slot of their own
 * permutation until all M slots are taken. The hashes come from the server's
 * NAME and the turns go in name order, so the table does not depend on the
 * order of servers in the file. Weights: per round a member takes w / g turns
 * (g the gcd of the weights), so its share of slots is w / total weight.
 *
 * Pure code, run by whoever builds tables (main or health thread).
 */
#include "balancer/lb.h"
#include "balancer/algo.h"
#include "balancer/hash_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SEED_OFFSET 0x6d61676c65762d6fULL /* "maglev-o" */
#define SEED_SKIP   0x6d61676c65762d73ULL /* "maglev-s" */
#define SLOT_FREE   UINT32_MAX

/* One member while the table fills: where its permutation stands. */
struct perm {
	uint32_t pos; /* permutation[next], the slot it tries next */
	uint32_t skip;
	uint32_t turns; /* slots claimed per round */
	uint32_t server; /* index in pool->servers */
};

static uint32_t gcd_u32(uint32_t a, uint32_t b)
{
	while (b) {
		uint32_t r = a % b;

		a = b;
		b = r;
	}
	return a;
}

/* S is the pool's server at position INDEX. */
static void perm_seed(struct perm *p, const struct lb_server *s, uint32_t index, uint32_t m)
{
	size_t len = strlen(s->name);

	p->pos = (uint32_t)(lb_hash_seeded(s->name, len, SEED_OFFSET) % m);
	p->skip = (uint32_t)(lb_hash_seeded(s->name, len, SEED_SKIP) % (m - 1) + 1);
	p->server = index;
}

/* Claims the next free slot of P's permutation. M is prime, so the
 * permutation visits every slot and a free one is always found. */
static void perm_claim(struct perm *p, uint32_t *slot, uint32_t m)
{
	while (slot[p->pos] != SLOT_FREE) {
		p->pos += p->skip;
		if (p->pos >= m)
			p->pos -= m;
	}
	slot[p->pos] = p->server;
}

static void maglev_populate(struct perm *perms, size_t n, uint32_t *slot, uint32_t m)
{
	uint32_t filled = 0;

	for (;;) {
		for (size_t i = 0; i < n; i++) {
			for (uint32_t k = 0; k < perms[i].turns; k++) {
				perm_claim(&perms[i], slot, m);
				if (++filled == m)
					return;
			}
		}
	}
}

int lb_maglev_fill(struct lb_table *t, const struct lb_pool *pool, uint32_t m)
{
	struct perm *perms;
	uint32_t g = 0;

	t->kind = BAL_MAGLEV;
	t->size = 0;
	if (t->n_members == 0)
		return 0;
	m = lb_next_prime(m < 2 ? 2 : m);
	perms = calloc(t->n_members, sizeof(*perms));
	t->slot = malloc((size_t)m * sizeof(*t->slot));
	if (!perms || !t->slot) {
		free(perms);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n_members; i++) {
		const struct lb_server *s = pool->servers[t->members[i]];

		perm_seed(&perms[i], s, t->members[i], m);
		perms[i].turns = (uint32_t)lb_table_weight(t, i);
		g = gcd_u32(g, perms[i].turns);
	}
	for (size_t i = 0; i < t->n_members; i++)
		perms[i].turns /= g;
	memset(t->slot, 0xff, (size_t)m * sizeof(*t->slot));
	maglev_populate(perms, t->n_members, t->slot, m);
	t->size = m;
	free(perms);
	return 0;
}
