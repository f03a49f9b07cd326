/*
 * tls_impl.h - what the files of the TLS module (core/tls_*.c) share and
 * nobody else includes: the per-generation context structs and the
 * process-wide state set up once.
 *
 * Ownership: a struct tls_gen and everything in it belong to one
 * generation; built by the main thread, read-only afterwards, freed by
 * tls_gen_free() when the generation goes.
 */
#ifndef FULCRUM_TLS_IMPL_H
#define FULCRUM_TLS_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/gen.h"

/* TLS 1.2 ciphers when tls_ciphers is empty: forward secrecy and AEAD only
 * (Mozilla's "intermediate" list). TLS 1.3 suites keep OpenSSL's default. */
#define TLS_DEFAULT_CIPHERS                                                                        \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Ticket keys change this often; a ticket from the previous period still
 * decrypts (and is renewed), so a ticket lives at most two periods. */
#define TLS_TICKET_PERIOD_S (12 * 3600)
/* How long a session may be resumed (ticket lifetime hint, cache entries). */
#define TLS_SESSION_TIMEOUT_S 3600
/* Entries in a listener's session-ID cache (shared by its workers). */
#define TLS_SESSION_CACHE_SIZE 20480

/* One tls_cert/tls_key pair of a listener, and the names it answers to. */
struct tls_cert {
	SSL_CTX *ctx; /* one certificate per key type (RSA, ECDSA...) for the same names */
	char **names; /* lower-cased DNS names from the certificate; "*.x" wildcards */
	size_t n_names;
	unsigned key_types; /* a bit per key type held (key_bit in tls_ctx.c) */
};

/* A terminating listener: certs[0] is the default. */
struct tls_listener {
	struct tls_cert *certs;
	size_t n_certs;
	unsigned char alpn[256]; /* our protocols, ALPN wire format */
	size_t alpn_len; /* 0: ALPN is not negotiated */
};

/* A pool with tls = on. */
struct tls_client {
	SSL_CTX *ctx;
	uint64_t id; /* unique in the process: keys the session cache */
	bool verify;
	const char *sni; /* tls_sni, or NULL (borrowed from the cfg) */
};

struct tls_gen {
	struct tls_listener **listeners; /* per cfg listener; NULL without certificates */
	size_t n_listeners;
	struct tls_client **pools; /* per cfg pool; NULL unless tls = on */
	size_t n_pools;
};

/* Runs the process-wide set-up once (any thread; idempotent). Returns 0 or
 * -1 when OpenSSL could not give a random secret or an ex_data index. */
int tls_global_init(void);

/* SSL ex_data slot holding a server connection's session-cache key. */
extern int tls_ex_session_key;

/* The contexts of generation G. */
const struct tls_gen *tls_of(const struct gen *g);

/* tls_ticket.c: the session-ticket key callback of every server context
 * (SSL_CTX_set_tlsext_ticket_key_evp_cb). */
/* After a ticket is opened: sessions whose cipher the listener no longer
 * offers (a reload narrowed tls_ciphers) are not resumed. */
int tls_ticket_decrypted_cb(SSL *ssl, SSL_SESSION *session, const unsigned char *key_name,
			    size_t key_name_len, SSL_TICKET_STATUS status, void *arg);
int tls_ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
		      EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc);
/* Fills the process-wide ticket secret. 0 or -1. */
int tls_ticket_init(void);

/* tls_conn.c: new sessions of server connections go to the worker's cache
 * (SSL_CTX_sess_set_new_cb of every client context). */
int tls_on_new_session(SSL *ssl, SSL_SESSION *sess);
/* tls_conn.c: creates the worker-side session cache key. 0 or -1. */
int tls_session_cache_init(void);

/* Reads and drops what FD holds now (a bounded amount), so that closing it
 * sends a FIN rather than a reset and the peer can read our last words
 * (an alert). Never blocks. Returns the bytes dropped. */
uint64_t tls_drain_socket(int fd);

/* The most recent reason in this thread's OpenSSL error queue (a static
 * string), or "unknown error"; empties the queue. */
const char *tls_error_reason(void);

#endif
