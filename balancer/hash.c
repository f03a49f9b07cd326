/*
 * hash.c - lb_hash: XXH64 (Yann Collet's xxHash, 64-bit variant), written
 * from its published specification, plus the murmur3 fmix64 finalizer.
 *
 * Pure functions, any thread. Input bytes are read little-endian whatever the
 * host, so every fulcrum instance computes the same hash for the same bytes
 * (maglev tables and rendezvous picks agree across machines).
 */
#include "balancer/lb.h"
#include "balancer/algo.h"

#include <stdint.h>
#include <sys/random.h>

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static uint64_t read_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t read_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t xxh_round(uint64_t acc, uint64_t input)
{
	acc += input * P2;
	acc = rotl64(acc, 31);
	return acc * P1;
}

static uint64_t xxh_merge(uint64_t acc, uint64_t v)
{
	acc ^= xxh_round(0, v);
	return acc * P1 + P4;
}

/* The 32-byte stripes of inputs of 32 bytes or more; advances *p. */
static uint64_t xxh_stripes(const unsigned char **p, const unsigned char *end, uint64_t seed)
{
	uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
	const unsigned char *q = *p;

	while (end - q >= 32) {
		v1 = xxh_round(v1, read_le64(q));
		v2 = xxh_round(v2, read_le64(q + 8));
		v3 = xxh_round(v3, read_le64(q + 16));
		v4 = xxh_round(v4, read_le64(q + 24));
		q += 32;
	}
	*p = q;
	uint64_t h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
	h = xxh_merge(h, v1);
	h = xxh_merge(h, v2);
	h = xxh_merge(h, v3);
	return xxh_merge(h, v4);
}

uint64_t lb_hash_seeded(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	const unsigned char *end = p + len;
	uint64_t h;

	if (len >= 32)
		h = xxh_stripes(&p, end, seed);
	else
		h = seed + P5;
	h += (uint64_t)len;

	for (; end - p >= 8; p += 8) {
		h ^= xxh_round(0, read_le64(p));
		h = rotl64(h, 27) * P1 + P4;
	}
	if (end - p >= 4) {
		h ^= (uint64_t)read_le32(p) * P1;
		h = rotl64(h, 23) * P2 + P3;
		p += 4;
	}
	for (; p < end; p++) {
		h ^= *p * P5;
		h = rotl64(h, 11) * P1;
	}
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}

uint64_t lb_hash(const void *data, size_t len)
{
	return lb_hash_seeded(data, len, 0);
}

/* Written once by lb_hash_local_seed() before any worker starts; a fixed odd
 * value until then (unit tests, `-t`). */
static uint64_t local_seed = P4;

void lb_hash_local_seed(void)
{
	uint64_t s;

	if (getrandom(&s, sizeof(s), GRND_NONBLOCK) == (ssize_t)sizeof(s))
		local_seed = s;
}

uint64_t lb_hash_local(const void *data, size_t len)
{
	return lb_hash_seeded(data, len, local_seed);
}

uint64_t lb_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}
