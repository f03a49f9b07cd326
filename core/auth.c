/*
 * auth.c - htpasswd files and Basic credential checks (see auth.h).
 *
 * auth_db_load runs on the main thread at configuration load; auth_check and
 * auth_collect on workers, each with its own auth_cache; the hasher thread
 * runs crypt_rn() from libxcrypt with its own struct crypt_data.
 *
 * A job carries everything the hash needs (the password and a copy of the
 * stored hash: a reload may free the db meanwhile). Workers push jobs onto
 * one lock-free stack and ring the hasher's eventfd; the hasher takes the
 * whole stack at once, hashes in arrival order, and pushes each finished
 * job onto its cache's stack and rings that worker's doorbell. A job's
 * owner field is the worker's alone: the hasher never reads it; a job whose
 * owner left is marked cancelled and is not hashed. A cache counts the jobs
 * the hasher still holds (in_hasher), which it drops only after its last
 * touch of the cache (the doorbell included), so auth_cache_free, which
 * waits for that count, never frees a cache or closes a doorbell under it.
 *
 * The cache makes a hash a cost of a user's first request per worker and
 * configuration, not of every request. Refused credentials are remembered
 * too (by a hash of the header value), so a client repeating a wrong
 * password costs no hash either. Behind the workers' caches, the hasher
 * remembers its own recent verdicts (struct memo): requests that came
 * together with one new credential, on any worker, or the first ones after
 * a reload emptied the caches, cost one hash, not one each.
 */
#include "core/auth.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "balancer/lb.h"
#include "core/log.h"
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
	struct auth_slot slots[AUTH_CACHE_SLOTS];
	struct auth_refused refused[AUTH_REFUSED_SLOTS];
	int wake_fd; /* the worker's doorbell */
	size_t outstanding; /* jobs handed out and not yet collected */
	_Atomic size_t in_hasher; /* jobs the hasher has not let go of */
	_Atomic(struct auth_job *) done; /* pushed by the hasher */
};

struct auth_job {
	struct auth_job *next;
	struct auth_cache *ac;
	void *owner; /* the worker's: NULL once cancelled */
	_Atomic bool cancelled; /* set with owner = NULL: the hasher skips it */
	bool hashed; /* the hasher ran it: ok is a verdict */
	bool unknown; /* no such user: hashed for the time it takes, refused */
	uint64_t serial, hash; /* for the caches: the db's serial, the value's lb_hash */
	uint16_t len; /* of token; 0 when the value is too long to remember */
	char token[AUTH_TOKEN_MAX];
	char *stored; /* the user's hash string, a copy */
	const char *password; /* within cred */
	char cred[AUTH_DECODED_MAX + 1];
	bool ok;
};

/* The hasher thread: one for the process, started by the first job. */
static struct {
	pthread_once_t once;
	int fd; /* eventfd, blocking: rung for every job */
	bool running;
	_Atomic(struct auth_job *) jobs;
	_Atomic int queued;
	_Atomic uint64_t hashes; /* crypt() runs (auth_hashes_run) */
} hasher = {.once = PTHREAD_ONCE_INIT, .fd = -1};

static void hasher_start(void);

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

/* Whether S holds exactly N characters of crypt's base-64 alphabet. */
static bool is_b64(const char *s, size_t n)
{
	return strlen(s) == n && strspn(s, "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					   "abcdefghijklmnopqrstuvwxyz") == n;
}

/* Whether HASH has the shape of a finished hash of its method, not only of
 * its prefix: libxcrypt checks the setting part alone, and a cut-off or
 * mistyped hash would load, then match no password. */
static bool hash_is_whole(const char *hash)
{
	if (hash[1] == '2') { /* $2y$NN$ + 22 salt + 31 hash characters */
		int cost = isdigit((unsigned char)hash[4]) && isdigit((unsigned char)hash[5])
				   ? (hash[4] - '0') * 10 + (hash[5] - '0')
				   : -1;
		return cost >= 4 && cost <= 31 && hash[6] == '$' && is_b64(hash + 7, 53);
	}
	if (hash[1] == '5' || hash[1] == '6') { /* [rounds=N$] salt (up to 16) $ hash */
		const char *p = hash + 3, *end;
		if (strncmp(p, "rounds=", 7) == 0) {
			p += 7 + strspn(p + 7, "0123456789");
			if (p == hash + 10 || *p++ != '$')
				return false;
		}
		end = strchr(p, '$');
		return end && end > p && end - p <= 16 && is_b64(end + 1, hash[1] == '5' ? 43 : 86);
	}
	/* yescrypt $y$params$salt$hash, scrypt $7$params+salt$hash: 43 at the end. */
	const char *last = strrchr(hash, '$');
	return last > hash + 3 && is_b64(last + 1, 43);
}

/* NULL when libxcrypt can verify HASH with a method fit for passwords
 * today, else what is wrong. libxcrypt's own crypt_checksalt() calls
 * SHA-256 crypt "legacy", but SPEC names it, so the list of methods is
 * ours; libxcrypt still says whether the setting is well formed and the
 * method built in. */
static const char *hash_problem(const char *hash)
{
	static const char *const methods[] = {"$2a$", "$2b$", "$2y$", "$5$", "$6$", "$y$", "$7$"};
	static const char unsupported[] = "unsupported password hash (use bcrypt $2y$, SHA-512 "
					  "$6$, SHA-256 $5$, yescrypt $y$ or scrypt $7$ crypt)";
	int r = crypt_checksalt(hash);

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (strncmp(hash, methods[i], strlen(methods[i])) != 0)
			continue;
		if (r == CRYPT_SALT_METHOD_DISABLED)
			return unsupported;
		if (r == CRYPT_SALT_INVALID || !hash_is_whole(hash))
			return "malformed password hash (cut off or mistyped?)";
		return NULL;
	}
	return unsupported;
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
	const char *problem = hash_problem(colon + 1);
	if (problem) {
		snprintf(err, errlen, "line %d: user \"%s\": %s", lineno, line, problem);
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

/* Bounds on what an htpasswd file may be: a device or a log given by
 * mistake is refused rather than read until memory runs out. */
#define AUTH_MAX_LINE 4096
#define AUTH_MAX_FILE (16 << 20)

static int read_file(FILE *f, struct auth_db *db, char *err, size_t errlen)
{
	char line[AUTH_MAX_LINE];
	long prev = 0;
	int lineno = 0, rc = 0;

	while (rc >= 0 && fgets(line, sizeof(line), f)) {
		/* The bytes fgets took, NULs included (the file is a regular one). */
		long pos = ftell(f);
		size_t len = pos > prev ? (size_t)(pos - prev) : strlen(line);
		prev = pos;
		lineno++;
		if (pos > AUTH_MAX_FILE) {
			snprintf(err, errlen, "the file goes on past %d MiB", AUTH_MAX_FILE >> 20);
			return -EINVAL;
		}
		if (len == 0 || (line[len - 1] != '\n' && !feof(f))) {
			snprintf(err, errlen, "line %d: longer than %d bytes", lineno,
				 AUTH_MAX_LINE - 2);
			return -EINVAL;
		}
		if (memchr(line, '\0', len)) {
			snprintf(err, errlen, "line %d: a NUL byte", lineno);
			return -EINVAL;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		rc = parse_line(db, line, lineno, err, errlen);
	}
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	if (rc >= 0 && ferror(f)) {
		snprintf(err, errlen, "cannot read: %s", strerror(errno));
		return -EIO;
	}
	return rc < 0 ? rc : 0;
}

/* PATH opened for reading if it is a regular file, else NULL with *RC and
 * ERR set. Non-blocking, and checked on the descriptor it reads: a FIFO put
 * in its place after the configuration's own check must not hold up the
 * main thread, nor feed it without end. */
static FILE *open_regular(const char *path, char *err, size_t errlen, int *rc)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	FILE *f;

	if (fd < 0 || fstat(fd, &st) < 0) {
		*rc = -errno;
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		*rc = -EINVAL;
		snprintf(err, errlen, "not a regular file");
	} else if (!(f = fdopen(fd, "r"))) {
		*rc = -errno;
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
	} else {
		return f;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
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
	f = open_regular(path, err, errlen, &rc);
	if (!f) {
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
	/* The hasher starts with the first file, on the main thread: its
	 * eventfd and thread are part of the process from then on. */
	pthread_once(&hasher.once, hasher_start);
	*out = db;
	return 0;
}

/* ---- checking --------------------------------------------------------- */

static void push(_Atomic(struct auth_job *) *stack, struct auth_job *j)
{
	j->next = atomic_load_explicit(stack, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(stack, &j->next, j, memory_order_release,
						      memory_order_relaxed))
		;
}

/* The whole stack, oldest first. */
static struct auth_job *take_all(_Atomic(struct auth_job *) *stack)
{
	struct auth_job *j = atomic_exchange_explicit(stack, NULL, memory_order_acquire),
			*fifo = NULL;

	while (j) {
		struct auth_job *next = j->next;
		j->next = fifo;
		fifo = j;
		j = next;
	}
	return fifo;
}

static void ring(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));
	(void)n; /* a full counter still wakes the reader */
}

static void free_job(struct auth_job *j)
{
	explicit_bzero(j->cred, sizeof(j->cred));
	free(j->stored);
	free(j);
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

/*
 * The hasher's recent verdicts, its thread's alone. crypt() is a function of
 * the password and the stored hash only, so a verdict keyed by both never
 * goes stale, across reloads too. The key is a SHA-256 digest of the stored
 * hash and the whole "user:password": with the user in it, an unknown name
 * (hashed against another user's entry) tried with a password that was
 * tried before is not answered faster than a known one, which would tell
 * the names apart.
 */
#define MEMO_SLOTS 256
struct memo {
	bool used, match;
	unsigned char key[32];
};

static bool memo_key(const struct auth_job *j, unsigned char key[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
		  EVP_DigestUpdate(ctx, j->stored, strlen(j->stored) + 1) &&
		  EVP_DigestUpdate(ctx, j->cred, strlen(j->cred)) &&
		  EVP_DigestFinal_ex(ctx, key, NULL);

	EVP_MD_CTX_free(ctx);
	return ok;
}

/* Whether the password of J matches its stored hash: from MEMO when it was
 * decided lately, else by crypt_rn() with CD, and then remembered. */
static bool verify(struct memo *memo, struct crypt_data *cd, const struct auth_job *j)
{
	unsigned char key[32];
	bool keyed = memo_key(j, key);
	struct memo *m = &memo[(key[0] | (unsigned)key[1] << 8) % MEMO_SLOTS];

	if (keyed && m->used && memcmp(m->key, key, sizeof(key)) == 0)
		return m->match;
	const char *h = crypt_rn(j->password, j->stored, cd, sizeof(*cd));
	bool match = h && same_secret(h, j->stored);
	explicit_bzero(cd, sizeof(*cd));
	atomic_fetch_add_explicit(&hasher.hashes, 1, memory_order_relaxed);
	if (keyed) {
		m->used = true;
		m->match = match;
		memcpy(m->key, key, sizeof(key));
	}
	return match;
}

static void *hasher_main(void *arg)
{
	struct crypt_data *cd = arg;
	static struct memo memo[MEMO_SLOTS];

	for (;;) {
		uint64_t v;
		if (read(hasher.fd, &v, sizeof(v)) < 0 && errno != EINTR)
			return NULL;
		for (struct auth_job *j = take_all(&hasher.jobs), *next; j; j = next) {
			next = j->next;
			if (!atomic_load_explicit(&j->cancelled, memory_order_relaxed)) {
				j->ok = verify(memo, cd, j) && !j->unknown;
				j->hashed = true;
			}
			explicit_bzero(j->cred, sizeof(j->cred));
			atomic_fetch_sub_explicit(&hasher.queued, 1, memory_order_relaxed);
			/* j is the worker's once pushed: nothing of it after. */
			struct auth_cache *ac = j->ac;
			push(&ac->done, j);
			ring(ac->wake_fd);
			atomic_fetch_sub_explicit(&ac->in_hasher, 1, memory_order_release);
		}
	}
}

static void hasher_start(void)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	pthread_attr_t attr;
	pthread_t t;

	hasher.fd = eventfd(0, EFD_CLOEXEC);
	if (!cd || hasher.fd < 0 || pthread_attr_init(&attr) != 0) {
		free(cd);
		log_error("cannot start the password hasher thread: new credentials get 503");
		return;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Signals are the main thread's (signalfd): block them all here. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	hasher.running = pthread_create(&t, &attr, hasher_main, cd) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (!hasher.running) {
		free(cd);
		log_error("cannot start the password hasher thread: new credentials get 503");
	}
}

uint64_t auth_hashes_run(void)
{
	return atomic_load_explicit(&hasher.hashes, memory_order_relaxed);
}

struct auth_cache *auth_cache_new(int wake_fd)
{
	struct auth_cache *ac = calloc(1, sizeof(struct auth_cache));

	if (ac)
		ac->wake_fd = wake_fd;
	return ac;
}

/* Records job J's verdict in its cache. */
static void remember(struct auth_cache *ac, const struct auth_job *j)
{
	if (!j->hashed)
		return; /* cancelled: no verdict */
	if (!j->ok) {
		struct auth_refused *no = &ac->refused[(j->hash >> 8) % AUTH_REFUSED_SLOTS];
		no->serial = j->serial;
		no->hash = j->hash;
	} else if (j->len) {
		struct auth_slot *slot = &ac->slots[j->hash % AUTH_CACHE_SLOTS];
		slot->serial = j->serial;
		slot->len = j->len;
		memcpy(slot->token, j->token, j->len);
	}
}

void auth_collect(struct auth_cache *ac, void (*done)(void *owner, enum auth_result r))
{
	for (struct auth_job *j = take_all(&ac->done), *next; j; j = next) {
		next = j->next;
		ac->outstanding--;
		remember(ac, j);
		if (j->owner)
			done(j->owner, j->ok ? AUTH_OK : AUTH_WRONG);
		free_job(j);
	}
}

void auth_cancel(struct auth_job *job)
{
	job->owner = NULL;
	atomic_store_explicit(&job->cancelled, true, memory_order_relaxed);
}

static void forget(void *owner, enum auth_result r)
{
	(void)owner;
	(void)r;
}

void auth_cache_free(struct auth_cache *ac)
{
	if (!ac)
		return;
	/* The hasher still holds these jobs (cancelled, as their connections
	 * have closed: at most the one it is hashing takes time). */
	while (ac->outstanding || atomic_load_explicit(&ac->in_hasher, memory_order_acquire)) {
		auth_collect(ac, forget);
		if (ac->outstanding || atomic_load_explicit(&ac->in_hasher, memory_order_acquire))
			usleep(1000);
	}
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

/* Hands the decoded "user:password" in CRED to the hasher, or answers at
 * once for a malformed one or an unknown user (which cost no hash). */
static enum auth_result submit(struct auth_cache *ac, const struct auth_db *db, const char *cred,
			       size_t len, const char *value, size_t value_len, uint64_t hash,
			       void *owner, struct auth_job **out)
{
	const char *colon = memchr(cred, ':', len);
	char name[AUTH_DECODED_MAX + 1];

	if (!colon || memchr(cred, '\0', len))
		return AUTH_WRONG;
	memcpy(name, cred, (size_t)(colon - cred));
	name[colon - cred] = '\0';
	const struct auth_user *u = find_user(db, name);
	/* An unknown user is hashed too, against another user's hash, and
	 * refused: answering at once would tell which names exist. */
	bool unknown = !u;
	if (unknown && db->n == 0)
		return AUTH_WRONG;
	if (unknown)
		u = &db->users[0];
	pthread_once(&hasher.once, hasher_start);
	if (!hasher.running)
		return AUTH_BUSY;
	if (atomic_fetch_add_explicit(&hasher.queued, 1, memory_order_relaxed) >= AUTH_QUEUE_MAX) {
		atomic_fetch_sub_explicit(&hasher.queued, 1, memory_order_relaxed);
		return AUTH_BUSY;
	}
	struct auth_job *j = calloc(1, sizeof(*j));
	if (!j || !(j->stored = strdup(u->hash))) {
		free(j);
		atomic_fetch_sub_explicit(&hasher.queued, 1, memory_order_relaxed);
		return AUTH_BUSY;
	}
	j->ac = ac;
	j->owner = owner;
	j->unknown = unknown;
	j->serial = db->serial;
	j->hash = hash;
	if (value_len <= AUTH_TOKEN_MAX) {
		j->len = (uint16_t)value_len;
		memcpy(j->token, value, value_len);
	}
	memcpy(j->cred, cred, len);
	j->cred[len] = '\0';
	j->password = j->cred + (colon - cred) + 1;
	ac->outstanding++;
	atomic_fetch_add_explicit(&ac->in_hasher, 1, memory_order_relaxed);
	*out = j;
	push(&hasher.jobs, j);
	ring(hasher.fd);
	return AUTH_PENDING;
}

enum auth_result auth_check(struct auth_cache *ac, const struct auth_db *db, const char *value,
			    size_t len, void *owner, struct auth_job **job)
{
	char cred[AUTH_DECODED_MAX + 1];
	const struct auth_slot *slot;
	size_t sp = 0;

	if (!db || len < 6 || strncasecmp(value, "basic", 5) != 0 ||
	    (value[5] != ' ' && value[5] != '\t'))
		return AUTH_WRONG;
	for (sp = 5; sp < len && (value[sp] == ' ' || value[sp] == '\t'); sp++)
		;
	value += sp;
	len -= sp;
	uint64_t hash = lb_hash_local(value, len);
	slot = &ac->slots[hash % AUTH_CACHE_SLOTS];
	if (slot->serial == db->serial && slot->len == len && memcmp(slot->token, value, len) == 0)
		return AUTH_OK;
	const struct auth_refused *no = &ac->refused[(hash >> 8) % AUTH_REFUSED_SLOTS];
	if (no->serial == db->serial && no->hash == hash)
		return AUTH_WRONG; /* refused a moment ago: not hashed again */
	int n = b64_decode(value, len, cred, AUTH_DECODED_MAX);
	enum auth_result r =
		n >= 0 ? submit(ac, db, cred, (size_t)n, value, len, hash, owner, job) : AUTH_WRONG;
	explicit_bzero(cred, sizeof(cred));
	if (r == AUTH_WRONG) {
		struct auth_refused *w = &ac->refused[(hash >> 8) % AUTH_REFUSED_SLOTS];
		w->serial = db->serial;
		w->hash = hash;
	}
	return r;
}
