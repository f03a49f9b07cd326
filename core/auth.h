/*
 * auth.h - Basic proxy authentication for forward listeners (SPEC §2 "auth =
 * basic FILE"): the htpasswd file, and checking a Proxy-Authorization value
 * against it.
 *
 * The file holds "user:hash" lines (blank lines and # comments allowed); a
 * hash is a crypt(3) string that libxcrypt verifies: bcrypt ($2y$, $2b$,
 * $2a$), SHA-512 crypt ($6$), SHA-256 crypt ($5$), and yescrypt ($y$) and
 * scrypt ($7$), which Debian's own tools write. Weak legacy methods (DES,
 * MD5, Apache's $apr1$ and {SHA}) are refused when the file is loaded.
 *
 * Ownership: an auth_db is built by the main thread while loading the
 * configuration (so it is read again on every reload) and is read-only
 * afterwards, shared by the workers. An auth_cache belongs to one worker:
 * hashing is slow by design (bcrypt takes milliseconds, a quarter second at
 * cost 12), so a worker remembers which credentials it has already verified
 * against which auth_db and does not hash them again.
 *
 * Hashing itself never runs on a worker: a worker hands new credentials to
 * the hasher thread (started at the first) as a job, and the connection
 * waits; the hasher posts the verdict back to the worker's cache and rings
 * the worker's doorbell (its wake eventfd), and the worker's auth_collect()
 * records the verdict and resumes the connection. So a slow hash, or a flood
 * of guesses, delays only the requests that carry new credentials.
 */
#ifndef FULCRUM_AUTH_H
#define FULCRUM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth_db;
struct auth_cache;

/*
 * Reads the htpasswd file PATH. Returns 0 with *OUT (the caller frees it with
 * auth_db_free), or a negative errno with a message in ERR: "cannot open:
 * ...", or "line N: ..." for an entry that is malformed, repeated, or uses a
 * hash libxcrypt cannot or should not verify.
 */
int auth_db_load(const char *path, struct auth_db **out, char *err, size_t errlen);
void auth_db_free(struct auth_db *db);
/* Users in DB. */
size_t auth_db_size(const struct auth_db *db);

struct auth_job;

/* Worker thread: a cache whose verdicts come back through the eventfd
 * WAKE_FD. auth_cache_free waits for the cache's jobs still hashing. */
struct auth_cache *auth_cache_new(int wake_fd);
void auth_cache_free(struct auth_cache *ac);

enum auth_result {
	AUTH_OK,
	AUTH_WRONG, /* malformed, unknown user, or wrong password */
	AUTH_BUSY, /* not checked: AUTH_QUEUE_MAX jobs already wait for the hasher */
	AUTH_PENDING, /* handed to the hasher: the verdict comes to auth_collect */
};

/*
 * Checks VALUE[0, LEN), the value of a Proxy-Authorization field, for Basic
 * credentials of a user of DB with the right password. Verified credentials
 * are remembered in AC, per DB, and so are recently refused ones, so that
 * neither is hashed again. Credentials that need a hash give AUTH_PENDING
 * and *JOB: OWNER (say, the connection) gets the verdict from auth_collect,
 * unless auth_cancel(*JOB) was called first.
 */
enum auth_result auth_check(struct auth_cache *ac, const struct auth_db *db, const char *value,
			    size_t len, void *owner, struct auth_job **job);
/* The owner of JOB is gone: its verdict goes to the cache only. */
void auth_cancel(struct auth_job *job);
/* Worker thread, when its doorbell rang: records the verdicts the hasher
 * finished for AC and calls DONE(owner, verdict) for each job not cancelled. */
void auth_collect(struct auth_cache *ac, void (*done)(void *owner, enum auth_result r));

/* Jobs waiting for the hasher, all workers together, past which new
 * credentials get AUTH_BUSY: a flood of guesses queues no further. */
#define AUTH_QUEUE_MAX 256

/* How many passwords the hasher has run through crypt() since start (not
 * the verdicts it remembered): for tests and diagnostics. */
uint64_t auth_hashes_run(void);

#endif
