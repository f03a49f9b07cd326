/*
 * auth.c - htpasswd files and Basic credential checks (see auth.h).
 *
 * auth_db_load runs on the main thread at configuration load; auth_check on
 * workers, each with its own auth_cache. Hashing uses crypt_rn() from
 * libxcrypt with the worker's own struct crypt_data, so workers never share
 * crypt state. A bcrypt check takes a few milliseconds of the worker's time;
 * the cache makes that a cost of a user's first request per worker and
 * configuration, not of every request. Refused credentials are remembered
 * too (by a hash of the header value), and hashing is capped per second
 * (AUTH_HASH_BUDGET_MS), so guessing cannot stall a worker.
 */
#include "core/auth.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/lb.h"
#include "core/util.h"

#define AUTH_CACHE_SLOTS   64
#define AUTH_REFUSED_SLOTS 256
#define AUTH_TOKEN_MAX	   256 /* longer base64 credentials are checked, not cached */
#define AUTH_DECODED_MAX   768

struct auth_user {
	char *name;
	char *hash;
	int line;
};

struct auth_db {
	uint64_t serial; /* unique per load: cache entries of an older file never match */
	struct auth_user *users; /* sorted by name */
	size_t n;
};

struct auth_slot {
	uint64_t serial; /* 0: empty */
	uint16_t len;
	char token[AUTH_TOKEN_MAX];
};

/* A value refused recently: its lb_hash, for the db serial (0: empty). */
struct auth_refused {
	uint64_t serial, hash;
};

struct auth_cache {
	struct crypt_data cd;
	struct auth_slot slots[AUTH_CACHE_SLOTS];
	struct auth_refused refused[AUTH_REFUSED_SLOTS];
	uint64_t window_start_us; /* the current second of the hashing budget */
	uint64_t spent_us; /* hashing done in it */
};

static _Atomic uint64_t next_serial = 1;

/* ---- loading ---------------------------------------------------------- */

void auth_db_free(struct auth_db *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < db->n; i++) {
		free(db->users[i].name);
		free(db->users[i].hash);
	}
	free(db->users);
	free(db);
}

size_t auth_db_size(const struct auth_db *db)
{
	return db ? db->n : 0;
}

static int cmp_user(const void *a, const void *b)
{
	const struct auth_user *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : x->line - y->line;
}

/* Whether libxcrypt can verify HASH with a method fit for passwords today.
 * libxcrypt's own crypt_checksalt() calls SHA-256 crypt "legacy", but SPEC
 * names it, so the list of methods is ours; libxcrypt still says whether
 * the string is well formed and the method built in. */
static bool hash_is_usable(const char *hash)
{
	static const char *const methods[] = {"$2a$", "$2b$", "$2y$", "$5$", "$6$", "$y$", "$7$"};
	int r = crypt_checksalt(hash);

	if (r == CRYPT_SALT_INVALID || r == CRYPT_SALT_METHOD_DISABLED)
		return false;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strncmp(hash, methods[i], strlen(methods[i])) == 0)
			return true;
	return false;
}

/* Parses one line (trailing newline removed) into DB. Returns 0, 1 for a
 * line with no entry, or -EINVAL / -ENOMEM with ERR set. */
static int parse_line(struct auth_db *db, char *line, int lineno, char *err, size_t errlen)
{
	char *p = line + strspn(line, " \t"), *colon, *end;
	struct auth_user *grown;

	if (*p == '\0' || *p == '#')
		return 1;
	colon = strchr(line, ':');
	if (!colon || colon == line || strcspn(line, " \t") < (size_t)(colon - line)) {
		snprintf(err, errlen, "line %d: expected user:hash", lineno);
		return -EINVAL;
	}
	*colon = '\0';
	end = colon + 1 + strcspn(colon + 1, ":");
	*end = '\0'; /* fields after the hash (comments some tools add) are ignored */
	while (end > colon + 1 && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0'; /* and so is trailing white space */
	if (!hash_is_usable(colon + 1)) {
		snprintf(err, errlen,
			 "line %d: user \"%s\": unsupported password hash (use bcrypt $2y$, "
			 "SHA-512 $6$, SHA-256 $5$, yescrypt $y$ or scrypt $7$ crypt)",
			 lineno, line);
		return -EINVAL;
	}
	grown = realloc(db->users, (db->n + 1) * sizeof(*db->users));
	if (!grown)
		return -ENOMEM;
	db->users = grown;
	grown[db->n].name = strdup(line);
	grown[db->n].hash = strdup(colon + 1);
	grown[db->n].line = lineno;
	db->n++;
	return grown[db->n - 1].name && grown[db->n - 1].hash ? 0 : -ENOMEM;
}

static int read_file(FILE *f, struct auth_db *db, char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0, rc = 0;

	while (rc >= 0 && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		rc = parse_line(db, line, lineno, err, errlen);
	}
	free(line);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	return rc < 0 ? rc : 0;
}

int auth_db_load(const char *path, struct auth_db **out, char *err, size_t errlen)
{
	struct auth_db *db = calloc(1, sizeof(*db));
	FILE *f;
	int rc;

	if (!db) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f = fopen(path, "re");
	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		auth_db_free(db);
		return rc;
	}
	rc = read_file(f, db, err, errlen);
	fclose(f);
	if (rc == 0 && db->n)
		qsort(db->users, db->n, sizeof(*db->users), cmp_user);
	for (size_t i = 1; rc == 0 && i < db->n; i++) {
		if (strcmp(db->users[i].name, db->users[i - 1].name) == 0) {
			snprintf(err, errlen, "line %d: user \"%s\" again (first on line %d)",
				 db->users[i].line, db->users[i].name, db->users[i - 1].line);
			rc = -EINVAL;
		}
	}
	if (rc < 0) {
		auth_db_free(db);
		return rc;
	}
	db->serial = atomic_fetch_add(&next_serial, 1);
	*out = db;
	return 0;
}

/* ---- checking --------------------------------------------------------- */

struct auth_cache *auth_cache_new(void)
{
	return calloc(1, sizeof(struct auth_cache));
}

void auth_cache_free(struct auth_cache *ac)
{
	free(ac);
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* RFC 4648 base64 with padding. Returns the decoded length, or -1. */
static int b64_decode(const char *s, size_t len, char *out, size_t cap)
{
	uint32_t acc = 0;
	size_t n = 0, bits = 0;

	if (len % 4)
		return -1;
	while (len && s[len - 1] == '=' && n < 2) {
		len--;
		n++;
	}
	n = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64_value((unsigned char)s[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == cap)
				return -1;
			out[n++] = (char)(acc >> bits);
		}
	}
	return (int)n;
}

static const struct auth_user *find_user(const struct auth_db *db, const char *name)
{
	size_t lo = 0, hi = db->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, db->users[mid].name);
		if (c == 0)
			return &db->users[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Compares two NUL-terminated strings in time that depends on their
 * lengths only. */
static bool same_secret(const char *a, const char *b)
{
	size_t len = strlen(a);
	unsigned char diff = 0;

	if (len != strlen(b))
		return false;
	for (size_t i = 0; i < len; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

/* Whether AC may spend another hash in this second, starting a new second
 * when the last one is over. */
static bool budget_left(struct auth_cache *ac, uint64_t now_us)
{
	if (now_us - ac->window_start_us >= 1000000) {
		ac->window_start_us = now_us;
		ac->spent_us = 0;
	}
	return ac->spent_us < AUTH_HASH_BUDGET_MS * 1000;
}

/* Whether the decoded "user:password" in CRED is right. */
static enum auth_result verify(struct auth_cache *ac, const struct auth_db *db, char *cred,
			       size_t len)
{
	char *colon = memchr(cred, ':', len);
	const struct auth_user *u;

	if (!colon || memchr(cred, '\0', len))
		return AUTH_WRONG;
	*colon = '\0';
	cred[len] = '\0';
	u = find_user(db, cred);
	if (!u)
		return AUTH_WRONG; /* costs nothing: no hash */
	uint64_t t0 = clock_us();
	if (!budget_left(ac, t0))
		return AUTH_BUSY;
	const char *h = crypt_rn(colon + 1, u->hash, &ac->cd, sizeof(ac->cd));
	ac->spent_us += clock_us() - t0;
	return h && same_secret(h, u->hash) ? AUTH_OK : AUTH_WRONG;
}

enum auth_result auth_check(struct auth_cache *ac, const struct auth_db *db, const char *value,
			    size_t len)
{
	char cred[AUTH_DECODED_MAX + 1];
	struct auth_slot *slot;
	size_t sp = 0;

	if (!db || len < 6 || strncasecmp(value, "basic", 5) != 0 ||
	    (value[5] != ' ' && value[5] != '\t'))
		return AUTH_WRONG;
	for (sp = 5; sp < len && (value[sp] == ' ' || value[sp] == '\t'); sp++)
		;
	value += sp;
	len -= sp;
	uint64_t hash = lb_hash(value, len);
	slot = &ac->slots[hash % AUTH_CACHE_SLOTS];
	if (slot->serial == db->serial && slot->len == len && memcmp(slot->token, value, len) == 0)
		return AUTH_OK;
	struct auth_refused *no = &ac->refused[(hash >> 8) % AUTH_REFUSED_SLOTS];
	if (no->serial == db->serial && no->hash == hash)
		return AUTH_WRONG; /* refused a moment ago: not hashed again */
	int n = b64_decode(value, len, cred, AUTH_DECODED_MAX);
	enum auth_result r = n >= 0 ? verify(ac, db, cred, (size_t)n) : AUTH_WRONG;
	explicit_bzero(cred, sizeof(cred));
	if (r == AUTH_WRONG) {
		no->serial = db->serial;
		no->hash = hash;
	}
	if (r != AUTH_OK)
		return r;
	if (len <= AUTH_TOKEN_MAX) {
		slot->serial = db->serial;
		slot->len = (uint16_t)len;
		memcpy(slot->token, value, len);
	}
	return AUTH_OK;
}
