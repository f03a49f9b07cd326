/*
 * test_auth.c - unit tests of core/auth.c: htpasswd files with SHA-256,
 * SHA-512 and bcrypt entries (hashed here with libxcrypt), right and wrong
 * passwords, malformed Proxy-Authorization values, the per-worker cache
 * (verified and refused values) across reloads, the hashing budget, and the
 * load errors with their line numbers.
 */
#include <criterion/criterion.h>

#include <crypt.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/auth.h"

static char *hash_of(const char *prefix, const char *password)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;

	memset(&cd, 0, sizeof(cd));
	cr_assert_not_null(crypt_gensalt_rn(prefix, prefix[1] == '2' ? 4 : 0, NULL, 0, setting,
					    sizeof(setting)));
	const char *h = crypt_rn(password, setting, &cd, sizeof(cd));
	cr_assert_not_null(h);
	return strdup(h);
}

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/fulcrum-test-htpasswd-XXXXXX");
	int fd = mkstemp(path);
	FILE *f;

	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

static struct auth_db *load_text(const char *text, int *rc, char *err, size_t errlen)
{
	char *path = write_tmp(text);
	struct auth_db *db = NULL;

	*rc = auth_db_load(path, &db, err, errlen);
	unlink(path);
	free(path);
	return db;
}

/* "Basic " + base64(user:password) */
static char *basic(const char *user, const char *password)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char raw[256], *out = malloc(512), *o;
	size_t n = (size_t)snprintf(raw, sizeof(raw), "%s:%s", user, password);

	strcpy(out, "Basic ");
	o = out + 6;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)raw[i] << 16;
		if (i + 1 < n)
			v |= (unsigned char)raw[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)raw[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? tab[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* The doorbell of the cache new_cache() made last (each Test runs in a
 * process of its own). */
static int wake_fd = -1;

static struct auth_cache *new_cache(void)
{
	wake_fd = eventfd(0, EFD_CLOEXEC);
	cr_assert_geq(wake_fd, 0);
	struct auth_cache *ac = auth_cache_new(wake_fd);
	cr_assert_not_null(ac);
	return ac;
}

/* A db of one user, "u", whose PASSWORD is hashed with METHOD. */
static struct auth_db *one_user(const char *method, const char *password)
{
	char *h = hash_of(method, password);
	char text[512], err[256];
	int rc;

	snprintf(text, sizeof(text), "u:%s\n", h);
	free(h);
	struct auth_db *db = load_text(text, &rc, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	return db;
}

static void got(void *owner, enum auth_result r)
{
	*(enum auth_result *)owner = r;
}

/* VALUE checked as a worker would: a job handed to the hasher is waited
 * for on the doorbell. Returns AUTH_OK, AUTH_WRONG or AUTH_BUSY. */
static enum auth_result settle(struct auth_cache *ac, const struct auth_db *db, const char *value,
			       size_t len)
{
	enum auth_result verdict = AUTH_PENDING;
	struct auth_job *job = NULL;
	enum auth_result r = auth_check(ac, db, value, len, &verdict, &job);

	if (r != AUTH_PENDING)
		return r;
	cr_assert_not_null(job);
	while (verdict == AUTH_PENDING) {
		uint64_t v;
		cr_assert_eq(read(wake_fd, &v, sizeof(v)), (ssize_t)sizeof(v));
		auth_collect(ac, got);
	}
	return verdict;
}

/* (user, password) checked once: AUTH_OK, AUTH_WRONG or AUTH_BUSY. */
static enum auth_result attempt(struct auth_cache *ac, const struct auth_db *db, const char *user,
				const char *password)
{
	char *v = basic(user, password);
	enum auth_result r = settle(ac, db, v, strlen(v));
	free(v);
	return r;
}

static bool check(struct auth_cache *ac, const struct auth_db *db, const char *user,
		  const char *password)
{
	return attempt(ac, db, user, password) == AUTH_OK;
}

Test(auth, three_hash_kinds)
{
	char *h5 = hash_of("$5$", "five"), *h6 = hash_of("$6$", "six"),
	     *h2 = hash_of("$2y$", "two");
	char text[1024], err[256];
	int rc;

	snprintf(text, sizeof(text), "# users\n\nalice:%s \t\nbob:%s\r\ncarol:%s:a comment\n", h5,
		 h6, h2);
	struct auth_db *db = load_text(text, &rc, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err); /* trailing white space is not part of a hash */
	cr_expect_eq(auth_db_size(db), 3);

	struct auth_cache *ac = new_cache();
	cr_expect(check(ac, db, "alice", "five"));
	cr_expect(check(ac, db, "bob", "six"));
	cr_expect(check(ac, db, "carol", "two"));
	cr_expect(check(ac, db, "carol", "two")); /* from the cache */
	cr_expect(!check(ac, db, "alice", "six"));
	cr_expect(!check(ac, db, "bob", "Six"));
	cr_expect(!check(ac, db, "carol", "two "));
	cr_expect(!check(ac, db, "dave", "five"));
	cr_expect(!check(ac, db, "alice", ""));
	auth_cache_free(ac);
	auth_db_free(db);
	free(h5);
	free(h6);
	free(h2);
}

Test(auth, password_with_colons_and_scheme_case)
{
	char *h = hash_of("$5$", "a:b:c");
	char text[512], err[256];
	int rc;

	snprintf(text, sizeof(text), "u:%s\n", h);
	struct auth_db *db = load_text(text, &rc, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	struct auth_cache *ac = new_cache();
	cr_expect(check(ac, db, "u", "a:b:c"));
	/* "u:a:b:c" */
	cr_expect_eq(settle(ac, db, "bAsIc   dTphOmI6Yw==", 20), AUTH_OK);
	auth_cache_free(ac);
	auth_db_free(db);
	free(h);
}

Test(auth, malformed_values_are_refused)
{
	char *h = hash_of("$5$", "pw");
	char text[512], err[256];
	int rc;

	snprintf(text, sizeof(text), "u:%s\n", h);
	struct auth_db *db = load_text(text, &rc, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	struct auth_cache *ac = new_cache();
	static const char *const bad[] = {
		"",
		"Basic",
		"Basic ",
		"Bearer dTpwdw==",
		"Basicdfpwdw==",
		"Basic dTpwdw=",
		"Basic dTpwdw==x",
		"Basic d?pwdw==",
		"Basic dXB3", /* "upw": no colon */
		"Digest username=\"u\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(settle(ac, db, bad[i], strlen(bad[i])), AUTH_WRONG, "accepted \"%s\"",
			     bad[i]);
	cr_expect_eq(settle(ac, db, "Basic dTpwdw==", 14), AUTH_OK);
	cr_expect_eq(settle(ac, NULL, "Basic dTpwdw==", 14), AUTH_WRONG);
	auth_cache_free(ac);
	auth_db_free(db);
	free(h);
}

Test(auth, cache_does_not_outlive_a_reload)
{
	char *h1 = hash_of("$5$", "old"), *h2 = hash_of("$5$", "new");
	char text[512], err[256];
	int rc;

	snprintf(text, sizeof(text), "u:%s\n", h1);
	struct auth_db *db1 = load_text(text, &rc, err, sizeof(err));
	cr_assert_eq(rc, 0);
	snprintf(text, sizeof(text), "u:%s\n", h2);
	struct auth_db *db2 = load_text(text, &rc, err, sizeof(err));
	cr_assert_eq(rc, 0);

	struct auth_cache *ac = new_cache();
	cr_expect(check(ac, db1, "u", "old"));
	cr_expect(!check(ac, db2, "u", "old"));
	cr_expect(check(ac, db2, "u", "new"));
	auth_cache_free(ac);
	auth_db_free(db1);
	auth_db_free(db2);
	free(h1);
	free(h2);
}

Test(auth, load_errors_name_the_line)
{
	char *h = hash_of("$6$", "x");
	char text[1024], err[256];
	int rc;
	struct auth_db *db;

	snprintf(text, sizeof(text), "a:%s\nno colon here\n", h);
	db = load_text(text, &rc, err, sizeof(err));
	cr_expect_eq(rc, -EINVAL);
	cr_expect_null(db);
	cr_expect(strstr(err, "line 2") != NULL, "%s", err);

	snprintf(text, sizeof(text), "a:%s\nb:$apr1$abc$def\n", h);
	db = load_text(text, &rc, err, sizeof(err));
	cr_expect_eq(rc, -EINVAL);
	cr_expect(strstr(err, "line 2") && strstr(err, "unsupported"), "%s", err);

	db = load_text("c:abJnggxhB/yWI\n", &rc, err, sizeof(err)); /* DES */
	cr_expect_eq(rc, -EINVAL);
	cr_expect(strstr(err, "line 1"), "%s", err);

	snprintf(text, sizeof(text), "a:%s\n#\nb:%s\na:%s\n", h, h, h);
	db = load_text(text, &rc, err, sizeof(err));
	cr_expect_eq(rc, -EINVAL);
	cr_expect(strstr(err, "line 4") && strstr(err, "line 1"), "%s", err);

	rc = auth_db_load("/nonexistent/htpasswd", &db, err, sizeof(err));
	cr_expect_eq(rc, -ENOENT);
	cr_expect(strstr(err, "cannot open"), "%s", err);
	free(h);
}

/* A hash of a known method that is cut off or mistyped would load and then
 * match no password: refused at load, with its line. Whole ones of every
 * method load. */
Test(auth, cut_off_hashes_are_refused)
{
	const char *methods[] = {"$2y$", "$2b$", "$5$", "$6$", "$y$", "$7$"};
	char text[1024], err[256];
	int rc;
	struct auth_db *db;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char *h = hash_of(methods[i], "pw");
		size_t len = strlen(h);

		snprintf(text, sizeof(text), "u:%s\n", h);
		db = load_text(text, &rc, err, sizeof(err));
		cr_expect_eq(rc, 0, "%s: %s", h, err);
		auth_db_free(db);

		snprintf(text, sizeof(text), "u:%s\nv:%.*s\n", h, (int)len - 1, h);
		db = load_text(text, &rc, err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "%.*s loaded", (int)len - 1, h);
		cr_expect(strstr(err, "line 2") && strstr(err, "malformed"), "%s", err);

		snprintf(text, sizeof(text), "v:%sx\n", h);
		db = load_text(text, &rc, err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "%sx loaded", h);
		free(h);
	}
	const char *bad[] = {
		"$2y$05$short", "$2y$99$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
		"$6$",		"$5$x",
		"$y$",		"$7$",
		"$2y$"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "u:%s\n", bad[i]);
		db = load_text(text, &rc, err, sizeof(err));
		cr_expect_eq(rc, -EINVAL, "%s loaded", bad[i]);
	}
}

/* A file that is not an htpasswd file (a log, a dump) is refused with a
 * bound on what is read: no line longer than 4 KiB, nothing past 16 MiB. */
Test(auth, oversized_files_are_refused)
{
	char err[256];
	int rc;
	char *line = malloc(8192);

	cr_assert_not_null(line);
	memset(line, 'a', 8191);
	line[8191] = '\0';
	struct auth_db *db = load_text(line, &rc, err, sizeof(err));
	cr_expect_eq(rc, -EINVAL);
	cr_expect_null(db);
	cr_expect(strstr(err, "line 1") && strstr(err, "longer"), "%s", err);
	free(line);

	char *path = write_tmp("");
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	for (int i = 0; i < (17 << 20) / 64; i++)
		fputs("# a comment line that is sixty-four bytes long, padded out ....\n", f);
	fclose(f);
	rc = auth_db_load(path, &db, err, sizeof(err));
	cr_expect_eq(rc, -EINVAL);
	cr_expect(strstr(err, "16 MiB"), "%s", err);
	unlink(path);
	free(path);
}

/* Hands (user, password) to the hasher without waiting: the answer now. */
static enum auth_result hand_over(struct auth_cache *ac, const struct auth_db *db, const char *user,
				  const char *password, enum auth_result *verdict)
{
	char *v = basic(user, password);
	struct auth_job *job;
	enum auth_result r = auth_check(ac, db, v, strlen(v), verdict, &job);
	free(v);
	return r;
}

Test(auth, guessing_queues_no_further_and_refusals_are_remembered)
{
	char guess[32];
	int busy = 0;
	enum auth_result verdicts[2 * AUTH_QUEUE_MAX];
	struct auth_db *db = one_user("$2y$", "right");
	struct auth_cache *ac = new_cache();
	cr_expect_eq(attempt(ac, db, "u", "right"), AUTH_OK, "verified");
	cr_expect_eq(attempt(ac, db, "u", "wrong-0"), AUTH_WRONG, "refused");
	/* A flood of distinct guesses (bcrypt: milliseconds each) fills the
	 * hasher's queue; past AUTH_QUEUE_MAX they are refused as busy. */
	for (int i = 0; i < 2 * AUTH_QUEUE_MAX; i++) {
		snprintf(guess, sizeof(guess), "wrong-%d", i + 1);
		verdicts[i] = AUTH_PENDING;
		enum auth_result r = hand_over(ac, db, "u", guess, &verdicts[i]);
		cr_expect(r == AUTH_PENDING || r == AUTH_BUSY, "guess %d: %d", i, r);
		busy += r == AUTH_BUSY;
	}
	cr_expect_gt(busy, 0, "a flood of guesses was queued without end");
	/* Answered from memory, with no hash and whatever the queue holds:
	 * auth_check gives the verdict at once, not AUTH_PENDING (handed to
	 * the hasher again) nor AUTH_BUSY (the full queue). */
	enum auth_result refused = AUTH_PENDING, verified = AUTH_PENDING;
	cr_expect_eq(hand_over(ac, db, "u", "wrong-0", &refused), AUTH_WRONG,
		     "a refused value was not answered from memory");
	cr_expect_eq(hand_over(ac, db, "u", "right", &verified), AUTH_OK,
		     "a verified value was not answered from memory");
	auth_cache_free(ac); /* waits for the queued guesses */
	for (int i = 0; i < 2 * AUTH_QUEUE_MAX; i++)
		cr_expect(verdicts[i] == AUTH_PENDING || verdicts[i] == AUTH_WRONG,
			  "guess %d: verdict %d", i, verdicts[i]);
	auth_db_free(db);
}

Test(auth, cancelled_jobs_are_not_hashed_nor_remembered)
{
	struct auth_db *db = one_user("$2y$", "right");
	struct auth_cache *ac = new_cache();
	enum auth_result verdict = AUTH_PENDING;
	char *v = basic("u", "wrong");
	struct auth_job *job = NULL;
	cr_assert_eq(auth_check(ac, db, v, strlen(v), &verdict, &job), AUTH_PENDING);
	auth_cancel(job); /* the connection closed */
	/* Its owner hears nothing, and no refusal is remembered: the same value
	 * is handed over again rather than answered from memory. */
	struct auth_job *again = NULL;
	enum auth_result later = AUTH_PENDING;
	cr_expect_eq(auth_check(ac, db, v, strlen(v), &later, &again), AUTH_PENDING);
	auth_cancel(again);
	cr_expect_eq(settle(ac, db, "Basic dTpyaWdodA==", 18), AUTH_OK); /* "u:right" */
	auth_cache_free(ac); /* returns: waits only for what the hasher holds */
	cr_expect(verdict == AUTH_PENDING && later == AUTH_PENDING,
		  "a cancelled job's owner was called back");
	free(v);
	auth_db_free(db);
}

Test(auth, unknown_users_take_as_long_as_known_ones)
{
	struct auth_db *db = one_user("$2y$", "right");
	struct auth_cache *ac = new_cache();
	enum auth_result verdict = AUTH_PENDING;
	char *v = basic("nobody", "right");
	struct auth_job *job = NULL;

	/* Handed to the hasher like a known user's, not refused at once, so
	 * the time of the answer does not tell which names exist. */
	cr_expect_eq(auth_check(ac, db, v, strlen(v), &verdict, &job), AUTH_PENDING);
	auth_cancel(job);
	cr_expect_eq(attempt(ac, db, "nobody", "other"), AUTH_WRONG);
	cr_expect_eq(attempt(ac, db, "u", "right"), AUTH_OK);
	auth_cache_free(ac);
	free(v);
	auth_db_free(db);
}

/* (user, password) checked on the worker whose cache is AC and doorbell FD. */
static enum auth_result attempt_on(struct auth_cache *ac, int fd, const struct auth_db *db,
				   const char *user, const char *password)
{
	wake_fd = fd;
	return attempt(ac, db, user, password);
}

Test(auth, the_hasher_remembers_verdicts_for_every_worker_and_reload)
{
	struct auth_db *db = one_user("$2y$", "right");
	struct auth_cache *a = new_cache();
	int fd_a = wake_fd;
	struct auth_cache *b = new_cache();
	int fd_b = wake_fd;
	uint64_t n = auth_hashes_run();

	cr_expect_eq(attempt_on(a, fd_a, db, "u", "right"), AUTH_OK);
	cr_expect_eq(auth_hashes_run(), n + 1);
	/* Another worker, with nothing in its own cache: no second hash. */
	cr_expect_eq(attempt_on(b, fd_b, db, "u", "right"), AUTH_OK);
	cr_expect_eq(auth_hashes_run(), n + 1, "a second worker hashed again");
	/* A reload of the same file empties the workers' caches, not this. */
	char *h = hash_of("$2y$", "right"), text[512], err[256];
	int rc;
	snprintf(text, sizeof(text), "u:%s\n", h);
	struct auth_db *same = load_text(text, &rc, err, sizeof(err));
	cr_assert_eq(rc, 0, "%s", err);
	cr_expect_eq(attempt_on(a, fd_a, same, "u", "right"), AUTH_OK);
	cr_expect_eq(auth_hashes_run(), n + 2, "the new file's own hash of the password");
	cr_expect_eq(attempt_on(b, fd_b, same, "u", "right"), AUTH_OK);
	cr_expect_eq(attempt_on(a, fd_a, db, "u", "right"), AUTH_OK);
	cr_expect_eq(auth_hashes_run(), n + 2, "a verdict did not outlive a reload");
	/* Refusals too, and a changed entry is hashed anew. */
	cr_expect_eq(attempt_on(a, fd_a, db, "u", "wrong"), AUTH_WRONG);
	cr_expect_eq(attempt_on(b, fd_b, db, "u", "wrong"), AUTH_WRONG);
	cr_expect_eq(auth_hashes_run(), n + 3);
	/* Unknown names tried with one password are each hashed: were the
	 * name not part of what is remembered, the second would be answered
	 * faster than a known name's first try, telling them apart. */
	cr_expect_eq(attempt_on(a, fd_a, db, "x", "guess"), AUTH_WRONG);
	cr_expect_eq(attempt_on(a, fd_a, db, "y", "guess"), AUTH_WRONG);
	cr_expect_eq(auth_hashes_run(), n + 5);
	/* An unknown name is refused even with the password of the entry it
	 * is hashed against, remembered or not. */
	cr_expect_eq(attempt_on(b, fd_b, db, "nobody", "right"), AUTH_WRONG);
	cr_expect_eq(attempt_on(a, fd_a, db, "nobody", "right"), AUTH_WRONG);
	auth_cache_free(a);
	auth_cache_free(b);
	auth_db_free(db);
	auth_db_free(same);
	free(h);
}
