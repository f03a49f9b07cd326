/*
 * source.c - source hashing by weighted rendezvous hashing (HRW, Thaler and
 * Ravishankar; weighted form of Schindelhauer and Schomaker): every candidate
 * scores the key, score = -weight / ln(u), u in (0,1) from a hash of the key
 * and the server's NAME; the highest score wins. The same key goes to the same
 * server while the candidate set is unchanged, a server leaving moves only
 * its own keys, and the shares follow the weights. Because the score depends
 * on names and not positions, the server order in the file does not matter.
 *
 * Also the last resort of maglev and ring when their table has no usable
 * entry left. Pure code on the calling worker; O(servers) per pick.
 */
#include "balancer/lb.h"
#include "balancer/algo.h"

#include <string.h>

/*
 * Natural logarithm of U in (0, 1), accurate to ~1e-11, without libm:
 * U = m * 2^e with m in [sqrt(1/2), sqrt(2)), ln(m) = 2 atanh(z),
 * z = (m - 1) / (m + 1), |z| < 0.172. Always < 0 for U < 1.
 */
static double ln_unit(double u)
{
	uint64_t bits;
	double m, z, z2, sum, term;
	int e;

	memcpy(&bits, &u, sizeof(bits));
	e = (int)((bits >> 52) & 0x7ff) - 1023;
	bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
	memcpy(&m, &bits, sizeof(m));
	if (m > 1.4142135623730951) {
		m *= 0.5;
		e++;
	}
	z = (m - 1.0) / (m + 1.0);
	z2 = z * z;
	term = z;
	sum = 0;
	for (int k = 1; k <= 13; k += 2) {
		sum += term / k;
		term *= z2;
	}
	return 2.0 * sum + e * 0.6931471805599453;
}

/* The rendezvous score of S for KEY; higher wins. */
static double hrw_score(const struct lb_cands *c, const struct lb_server *s, uint64_t key)
{
	uint64_t h = lb_mix64(key ^ s->name_hash);
	/* 53 random bits, centred in their interval: u is never 0 nor 1. */
	double u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);

	return -(double)lb_cand_weight(c, s) / ln_unit(u);
}

struct lb_server *lb_hrw_pick(const struct lb_pool *pool, const struct lb_cands *c, uint64_t key,
			      const struct lb_bound *b)
{
	struct lb_server *best = NULL, *best_in = NULL;
	double best_score = 0, best_in_score = 0;

	for (size_t i = 0; i < pool->n_servers; i++) {
		struct lb_server *s = pool->servers[i];
		double score;

		if (!lb_is_cand(c, s))
			continue;
		score = hrw_score(c, s, key);
		if (!best || score > best_score) {
			best = s;
			best_score = score;
		}
		if (b && lb_bound_admits(b, s) && (!best_in || score > best_in_score)) {
			best_in = s;
			best_in_score = score;
		}
	}
	return best_in ? best_in : best;
}
