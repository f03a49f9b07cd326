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
 * hashing is slow by design (bcrypt takes milliseconds), so a worker
 * remembers which credentials it has already verified against which
 * auth_db and does not hash them again.
 */
#ifndef FULCRUM_AUTH_H
#define FULCRUM_AUTH_H

#include <stdbool.h>
#include <stddef.h>

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

/* Worker thread: a cache and the scratch space crypt_rn() needs (~32 KiB). */
struct auth_cache *auth_cache_new(void);
void auth_cache_free(struct auth_cache *ac);

enum auth_result {
	AUTH_OK,
	AUTH_WRONG, /* malformed, unknown user, or wrong password */
	AUTH_BUSY, /* not checked: this worker's hashing budget is spent */
};

/*
 * Checks VALUE[0, LEN), the value of a Proxy-Authorization field, for Basic
 * credentials of a user of DB with the right password. Verified credentials
 * are remembered in AC, per DB, and so are recently refused ones, so that
 * neither is hashed again. Hashing new ones is capped at AUTH_HASH_BUDGET_MS
 * per second of the worker's time: a flood of guesses must not stall the
 * worker's other clients; past the cap the answer is AUTH_BUSY.
 */
enum auth_result auth_check(struct auth_cache *ac, const struct auth_db *db, const char *value,
			    size_t len);

#define AUTH_HASH_BUDGET_MS 100

#endif
