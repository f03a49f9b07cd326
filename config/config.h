/*
 * config.h - the immutable configuration generation.
 *
 * cfg_load() reads an INI file (inih) into a struct cfg and validates it:
 * every section and key of SPEC §2 is known, values are parsed (durations,
 * sizes, addresses), cross-references (listener -> pool, route -> listener,
 * route -> pool) are resolved to indexes. Errors are collected as
 * "FILE:LINE: what is wrong" strings; a cfg with errors is never returned.
 *
 * Ownership: the main thread builds a cfg and publishes it; after that it is
 * read-only and shared by every thread until the last reference is dropped
 * (see core/gen.h). Every string inside is owned by the cfg.
 */
#ifndef FULCRUM_CONFIG_H
#define FULCRUM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An address we bind to or connect to. Unix paths use sockaddr_un. */
struct cfg_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char *text; /* as written in the file, e.g. "127.0.0.1:8080" */
	int line; /* of a listener's bind line; 0 elsewhere */
	/* A listener's bind: the id of its sockets (core/binds.h), set before
	 * the generation is published; the same for as long as the address
	 * stays in the file, whichever listener has it. */
	uint32_t bind_id;
};

enum cfg_log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum cfg_log_format { LOG_FMT_TEXT, LOG_FMT_JSON };

struct cfg_global {
	int workers; /* resolved: "auto" becomes the number of online CPUs */
	uint64_t max_connections;
	enum cfg_log_level log_level;
	char *access_log; /* "off", "stderr", "stdout" or a path */
	int access_log_line; /* where it was set, 0 for the default */
	enum cfg_log_format access_log_format;
	char *user; /* NULL when empty */
	char *admin; /* NULL when empty (disabled) */
	struct cfg_addr admin_addr;
	char *admin_token; /* NULL when empty */
	uint64_t graceful_timeout_ms;
	bool cpu_affinity;
	uint64_t buffer_size;
	uint64_t pipe_size;
	int backlog;
};

enum cfg_balance {
	BAL_ROUNDROBIN,
	BAL_LEASTCONN,
	BAL_RANDOM,
	BAL_P2C,
	BAL_SOURCE,
	BAL_MAGLEV,
	BAL_RING,
};

enum cfg_hash_key { HKEY_CLIENT_IP, HKEY_HEADER, HKEY_COOKIE, HKEY_URI, HKEY_PATH, HKEY_HOST };

enum cfg_check { CHECK_NONE, CHECK_TCP, CHECK_HTTP };

enum cfg_proxy_proto { PROXY_PROTO_NONE, PROXY_PROTO_V1, PROXY_PROTO_V2 };

struct cfg_server {
	char *name;
	struct cfg_addr addr; /* resolved at load time (getaddrinfo, first result) */
	char *host; /* the HOST part as written, without [] ("localhost" for unix:) */
	int weight; /* default 1; 0 allowed: takes no new traffic (a soft drain) */
	int maxconn; /* 0 = unlimited */
	bool backup;
	bool disabled;
	enum cfg_proxy_proto proxy_protocol;
	int line;
};

struct cfg_pool {
	char *name;
	int line;
	enum cfg_balance balance;
	enum cfg_hash_key hash_key;
	char *hash_key_name; /* header or cookie name for HKEY_HEADER/HKEY_COOKIE */
	uint32_t maglev_table_size;
	int hash_balance_factor; /* percent; 0 = off */
	char *sticky_cookie; /* NULL when empty */
	struct cfg_server *servers;
	size_t n_servers;
	enum cfg_check check;
	char *check_path; /* CHECK_HTTP */
	int check_expect_lo, check_expect_hi;
	char *check_host; /* NULL when not given */
	uint64_t check_interval_ms;
	uint64_t check_timeout_ms;
	int rise, fall;
	int max_fails;
	uint64_t fail_timeout_ms;
	uint64_t connect_timeout_ms;
	uint64_t server_timeout_ms;
	int retries;
	int keepalive;
	uint64_t slow_start_ms;
	bool tls;
	bool tls_verify;
	char *tls_ca;
	char *tls_sni;
};

enum cfg_mode { MODE_TCP, MODE_HTTP, MODE_FORWARD };

#define CFG_MAX_LISTENERS   256
#define CFG_DURATION_MAX_MS (365ULL * 24 * 3600 * 1000) /* the longest duration a key takes */
/* Listener timeouts' defaults (SPEC §2), which -t's warnings compare with. */
#define CFG_HANDSHAKE_TIMEOUT_MS (10 * 1000)
#define CFG_TUNNEL_TIMEOUT_MS	 (3600 * 1000)
#define CFG_REQUEST_TIMEOUT_MS	 (10 * 1000)

struct acl;
struct auth_db;
struct hosts;

/* One allow/deny pattern of a forward listener, kept as written for now;
 * the forward-proxy code compiles it. */
struct cfg_acl_entry {
	char *pattern;
	int line;
};

struct cfg_port_range {
	uint16_t lo, hi;
};

struct cfg_listener {
	char *name;
	int line;
	struct cfg_addr *binds;
	size_t n_binds;
	enum cfg_mode mode;
	char *pool_name; /* NULL when absent */
	int pool; /* index into cfg->pools, -1 when absent */
	char **tls_certs;
	char **tls_keys;
	size_t n_tls_certs, n_tls_keys;
	int tls_min_version; /* 12 or 13 */
	char *tls_ciphers;
	uint64_t handshake_timeout_ms;
	char *alpn;
	bool proxy_protocol_accept;
	uint64_t client_timeout_ms;
	uint64_t tunnel_timeout_ms;
	uint64_t request_timeout_ms;
	uint64_t keepalive_timeout_ms;
	uint64_t max_uri_size;
	uint64_t max_header_size;
	uint64_t max_body_size; /* 0 = unlimited */
	bool forwarded_headers; /* default: on for http, off for forward */
	uint64_t cache_size;
	struct cfg_acl_entry *allow;
	size_t n_allow;
	struct cfg_acl_entry *deny;
	size_t n_deny;
	struct cfg_port_range *connect_ports; /* default: 443 */
	size_t n_connect_ports;
	bool connect_ports_any;
	char *auth_file; /* from "auth = basic FILE"; NULL when off */
	struct acl *acl; /* allow and deny, compiled (core/acl.h); NULL when neither is given */
	struct auth_db *auth; /* auth_file, loaded (core/auth.h); NULL when off */
	uint64_t connect_timeout_ms; /* forward mode */
	uint64_t server_timeout_ms; /* forward mode */
	/* Set by gen_new: where the listener's counters and cache live, kept
	 * by name for the process's life (core/stats.h). */
	uint32_t slot;
};

struct cfg_route {
	char *name;
	int line;
	int listener; /* index into cfg->listeners */
	char *host; /* NULL, "exact.name" or "*.suffix" (lower-cased) */
	char *path_prefix;
	char *header_name;
	char *header_value;
	int pool; /* index into cfg->pools */
};

struct cfg {
	char *path; /* as given on the command line */
	struct cfg_global global;
	struct cfg_pool *pools;
	size_t n_pools;
	struct cfg_listener *listeners;
	size_t n_listeners;
	struct cfg_route *routes;
	size_t n_routes;
	struct hosts *hosts; /* the hosts file, with a forward listener (core/hosts.h) */
};

/* Error messages collected while loading, each "FILE:LINE: text". */
struct cfg_errors {
	char **msgs;
	size_t len;
	size_t cap;
};

/*
 * Reads and validates PATH. Returns a new cfg (caller owns it, free with
 * cfg_free) or NULL with at least one message appended to ERRS. A missing or
 * unreadable file gives "PATH: cannot open: <strerror>". workers_override > 0
 * replaces [global] workers (the -w flag). Every error found is reported, in
 * line order. A key other than server/bind/tls_cert/tls_key/allow/deny may
 * appear once per section; a second line of it is an error. Main thread only
 * (it sets inih's process-wide options).
 */
struct cfg *cfg_load(const char *path, int workers_override, struct cfg_errors *errs);
void cfg_free(struct cfg *cfg);

void cfg_errors_add(struct cfg_errors *errs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void cfg_errors_free(struct cfg_errors *errs);

/* Value parsers shared with the admin API. Return 0 or -EINVAL (also when a
 * name does not resolve). Durations: "250ms", "2s", "1m", "1h", bare = seconds.
 * Sizes: k/m/g (or K/M/G) powers of 1024, bare = bytes. No sign, no fraction,
 * no blanks; a value that overflows 64 bits is invalid. */
int cfg_parse_duration_ms(const char *s, uint64_t *out_ms);
int cfg_parse_size(const char *s, uint64_t *out_bytes);
/* "HOST:PORT", "[v6]:PORT", "unix:/path". Names are resolved (blocking). */
int cfg_parse_addr(const char *s, struct cfg_addr *out);
/* A name of pools, listeners, routes, servers: [A-Za-z0-9_.-]+, but not
 * "." or "..". */
bool cfg_is_name(const char *s);
void cfg_addr_free(struct cfg_addr *a);

const char *cfg_balance_name(enum cfg_balance b);
const char *cfg_mode_name(enum cfg_mode m);

/* Index of the pool or listener named NAME, or -1. */
int cfg_find_pool(const struct cfg *cfg, const char *name);
int cfg_find_listener(const struct cfg *cfg, const char *name);

#endif
