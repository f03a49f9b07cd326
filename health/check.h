/*
 * check.h - what one server's active check sends and verifies: built from
 * its pool's configuration when the health thread adopts a generation,
 * immutable afterwards, freed with that generation's records.
 *
 * Thread: the health thread only.
 */
#ifndef FULCRUM_HEALTH_CHECK_H
#define FULCRUM_HEALTH_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "config/config.h"
#include "core/proxy_proto.h"

struct hc_check {
	enum cfg_check kind;
	char *request; /* http: the whole request, owned */
	size_t request_len;
	int expect_lo, expect_hi;
	bool tls; /* http over TLS (pool tls = on) */
	SSL_CTX *tls_ctx; /* borrowed from the pool's record; NULL if it failed */
	const char *tls_sni; /* SNI to send, or NULL */
	const char *tls_name; /* what the certificate must match, or NULL (tls_verify off) */
	char *host; /* the server's host without port or brackets, owned; NULL for unix */
	/* Sent first on every check connection to a server that expects a PROXY
	 * header: v1 "PROXY UNKNOWN" or a v2 LOCAL command (the check is
	 * fulcrum's own, on behalf of no client). */
	char proxy_header[PP_BUILD_MAX];
	size_t proxy_header_len;
};

/*
 * Fills CHK for a server at ADDR (its text as written, HOST:PORT) of pool PC,
 * which takes PROXY headers of version PP.
 * http: "GET path HTTP/1.1" with Host = the check's host= or the server's
 * HOST:PORT, Connection: close. TLS (tls = on, http checks only): SNI is
 * tls_sni, else the host when it is a name; with tls_verify the certificate
 * must match tls_sni, else the host (name or address). TLS_CTX is the pool's
 * context (hc_tls_ctx_new), borrowed. Returns 0 or -ENOMEM; CHK is then
 * safe to pass to hc_check_deinit either way.
 */
int hc_check_init(struct hc_check *chk, const struct cfg_pool *pc, const struct cfg_addr *addr,
		  enum cfg_proxy_proto pp, SSL_CTX *tls_ctx);
void hc_check_deinit(struct hc_check *chk);

/* Whether A (of pool PA) and B (of pool PB) check a server the same way,
 * on the same timing: a check running as A may go on as B. */
bool hc_check_same(const struct hc_check *a, const struct cfg_pool *pa, const struct hc_check *b,
		   const struct cfg_pool *pb);

/* Whether pool PC's checks speak TLS (and so need a context). */
static inline bool hc_check_uses_tls(const struct cfg_pool *pc)
{
	return pc->tls && pc->check == CHECK_HTTP;
}

/* A client context for the TLS checks of pool PC (tls_verify, tls_ca), or
 * NULL with the reason in ERR (CAP bytes). Free with SSL_CTX_free(). */
SSL_CTX *hc_tls_ctx_new(const struct cfg_pool *pc, char *err, size_t cap);

#endif
