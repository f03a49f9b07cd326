/*
 * loader.h - the state of one cfg_load() run, shared by the files of the
 * config module (config.c reads lines and sections, keys.c applies keys,
 * validate.c checks the whole file, values.c parses single values).
 *
 * Internal to config/: nothing outside this folder includes it. A loader
 * lives on the stack of cfg_load() on the main thread and dies with it.
 */
#ifndef FULCRUM_CONFIG_LOADER_H
#define FULCRUM_CONFIG_LOADER_H

#include <stddef.h>
#include <stdio.h>

#include "config/config.h"

struct cfg_loader;

enum cfg_sec {
	CFG_SEC_NONE, /* before the first section header */
	CFG_SEC_BAD, /* inside a rejected header: its keys are skipped silently */
	CFG_SEC_GLOBAL,
	CFG_SEC_POOL,
	CFG_SEC_LISTENER,
	CFG_SEC_ROUTE,
};

/* More than the longest key table in keys.c (a static_assert checks it). */
#define CFG_MAX_KEYS 32

/* For one section: the line where each key of its table was set, 0 if not. */
struct cfg_key_lines {
	int line[CFG_MAX_KEYS];
};

/* A name that must resolve to a pool or listener once the whole file is read. */
enum cfg_ref_kind { CFG_REF_LISTENER_POOL, CFG_REF_ROUTE_LISTENER, CFG_REF_ROUTE_POOL };

struct cfg_ref {
	enum cfg_ref_kind kind;
	size_t idx; /* the listener or route holding the reference */
	char *name;
	int line;
};

struct cfg_loader {
	struct cfg *cfg;
	struct cfg_errors *errs;
	size_t first_err; /* errs->len when this load started */
	bool oom;

	FILE *file;
	int read_errno; /* why the last read failed */
	size_t bytes; /* read so far: a file may not be endless (CFG_MAX_FILE) */
	int line; /* number of the line inih is working on */

	enum cfg_sec sec; /* the section the current line belongs to */
	size_t idx; /* its index in the cfg array of that kind */
	bool global_seen;
	int global_line;

	/* Parallel to cfg->pools, cfg->listeners, cfg->routes. */
	struct cfg_key_lines global_keys;
	struct cfg_key_lines *pool_keys;
	struct cfg_key_lines *listener_keys;
	struct cfg_key_lines *route_keys;

	struct cfg_ref *refs;
	size_t n_refs;
};

/* Appends "FILE:LINE: message" for the current line (or for LINE when > 0). */
void cfg_ld_err(struct cfg_loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfg_ld_err_at(struct cfg_loader *ld, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Logs "FILE:LINE: warning: message" for the current line (or for LINE):
 * something that works but that the operator should know about. Not an
 * error. */
void cfg_ld_warn(struct cfg_loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfg_ld_warn_at(struct cfg_loader *ld, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* strdup that records an allocation failure in the loader; NULL on failure. */
char *cfg_ld_strdup(struct cfg_loader *ld, const char *s);

/* ARR (N elements of SIZE bytes) grown by one zeroed element: the new array,
 * or NULL (then ARR is untouched and still owned by the caller). */
void *cfg_grow(void *arr, size_t n, size_t size);

/* How a key's value is parsed and where it goes (at OFF in the section's struct). */
enum cfg_key_type {
	CFG_KT_DURATION, /* uint64_t ms; LO = 1 when 0 is not allowed */
	CFG_KT_SIZE, /* uint64_t bytes; at least LO */
	CFG_KT_BOOL, /* bool */
	CFG_KT_INT, /* int in [LO, HI] */
	CFG_KT_U64, /* uint64_t in [LO, HI] */
	CFG_KT_STR, /* char *, NULL when the value is empty */
	CFG_KT_ENUM, /* an enum (int-sized): the index of the value in NAMES */
	CFG_KT_FN, /* FN parses and stores it, and reports its own errors */
};

struct cfg_key_def {
	const char *name;
	enum cfg_key_type type;
	bool repeat; /* each line adds an entry; other keys may appear once */
	size_t off;
	long long lo, hi;
	const char *const *names; /* CFG_KT_ENUM, NULL-terminated */
	/* CFG_KT_FN: OBJ is the section's struct. Returns 0 or -EINVAL. */
	int (*fn)(struct cfg_loader *ld, void *obj, const char *value);
};

/* Table entries; ST is the section's struct, KEY the key (and field) name. */
#define CFG_K_DUR(st, key, nonzero)                                                                \
	{                                                                                          \
#key, CFG_KT_DURATION, false, offsetof(st, key##_ms), nonzero, 0, NULL, NULL       \
	}
/* MAX 0: no upper bound. */
#define CFG_K_SIZE(st, key, field, min, max)                                                       \
	{                                                                                          \
		key, CFG_KT_SIZE, false, offsetof(st, field), min, max, NULL, NULL                 \
	}
#define CFG_K_BOOL(st, key)                                                                        \
	{                                                                                          \
#key, CFG_KT_BOOL, false, offsetof(st, key), 0, 0, NULL, NULL                      \
	}
#define CFG_K_INT(st, key, lo, hi)                                                                 \
	{                                                                                          \
#key, CFG_KT_INT, false, offsetof(st, key), lo, hi, NULL, NULL                     \
	}
#define CFG_K_STR(st, key)                                                                         \
	{                                                                                          \
#key, CFG_KT_STR, false, offsetof(st, key), 0, 0, NULL, NULL                       \
	}
#define CFG_K_ENUM(st, key, field, names)                                                          \
	{                                                                                          \
		key, CFG_KT_ENUM, false, offsetof(st, field), 0, 0, names, NULL                    \
	}
#define CFG_K_FN(key, fn)                                                                          \
	{                                                                                          \
		key, CFG_KT_FN, false, 0, 0, 0, NULL, fn                                           \
	}
#define CFG_K_FN_REPEAT(key, fn)                                                                   \
	{                                                                                          \
		key, CFG_KT_FN, true, 0, 0, 0, NULL, fn                                            \
	}
#define CFG_K_END                                                                                  \
	{                                                                                          \
		NULL, 0, false, 0, 0, 0, NULL, NULL                                                \
	}

/* The key tables of the four sections, each ended by an entry with no name. */
extern const struct cfg_key_def cfg_global_keys[];
extern const struct cfg_key_def cfg_pool_keys[];
extern const struct cfg_key_def cfg_listener_keys[];
extern const struct cfg_key_def cfg_route_keys[];

/* Records that NAME must resolve once the whole file is read (at the current line). */
int cfg_add_ref(struct cfg_loader *ld, enum cfg_ref_kind kind, const char *name);
/* Replaces *DST by a copy of VALUE, or by NULL when VALUE is empty. 0 or -ENOMEM. */
int cfg_set_str(struct cfg_loader *ld, char **dst, const char *value);

/* keys.c: applies NAME = VALUE to the current section; reports its own errors. */
void cfg_keys_apply(struct cfg_loader *ld, const char *name, const char *value);
/* The line where key NAME was set in the given section object, 0 if never. */
int cfg_key_line(const struct cfg_loader *ld, enum cfg_sec sec, size_t idx, const char *name);
int cfg_defaults_global(struct cfg_global *g);
int cfg_defaults_pool(struct cfg_pool *p);
int cfg_defaults_listener(struct cfg_listener *l);

/* validate.c: checks needing the whole file; resolves references. */
void cfg_validate(struct cfg_loader *ld, int workers_override);

/* values.c: parsers for single values. Each returns 0 or -EINVAL. */
int cfg_parse_bool(const char *s, bool *out);
int cfg_parse_int(const char *s, long long lo, long long hi, long long *out);
/* Like cfg_parse_addr; on failure writes a short reason into WHY. */
int cfg_parse_addr_why(const char *s, struct cfg_addr *out, char *why, size_t why_len);
/* The same for an address to listen on, which may also be "*:PORT" (every
 * IPv4 address, as 0.0.0.0:PORT). */
int cfg_parse_bind_why(const char *s, struct cfg_addr *out, char *why, size_t why_len);
bool cfg_is_prime(uint64_t n);
/* A DNS host name: dot-separated labels of letters, digits, - and _ (up to
 * 63 bytes each, 253 in all); a trailing dot is allowed. */
bool cfg_is_host_name(const char *s);
/* An HTTP token (RFC 9110 tchar+), as header and cookie names are. */
bool cfg_is_token(const char *s);
/* No blanks, no control bytes: what a request-target or Host may hold. */
bool cfg_is_visible(const char *s);
/* An HTTP field value (RFC 9110 §5.5): no control bytes but HTAB. */
bool cfg_is_field_value(const char *s);
/* NULL when PATH is a regular file that can be opened for reading, else
 * why not. A FIFO or a device is refused: reading one could wait for a
 * writer, holding up a reload, or never end. */
const char *cfg_file_unreadable(const char *path);
bool cfg_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b);
/* Whether binding A and B at once must fail: the same unix path, or the
 * same family and port with equal addresses or one of them the wildcard.
 * Port 0 (any free port) never overlaps. */
bool cfg_addr_overlaps(const struct cfg_addr *a, const struct cfg_addr *b);

#endif
