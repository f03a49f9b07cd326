/*
 * check.c - building what a server's active check sends and verifies (see
 * check.h), and the per-pool TLS client context. Health thread only (the
 * first generation is adopted on the main thread before the health thread
 * starts).
 */
#include "health/check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

/* HOST out of "HOST:PORT" or "[V6]:PORT" (a fresh string), or NULL. */
static char *host_of(const char *text)
{
	if (!text)
		return NULL;
	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		return end ? strndup(text + 1, (size_t)(end - text - 1)) : NULL;
	}
	const char *colon = strrchr(text, ':');
	return colon ? strndup(text, (size_t)(colon - text)) : strdup(text);
}

static bool is_address(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int build_request(struct hc_check *chk, const struct cfg_pool *pc,
			 const struct cfg_addr *addr)
{
	/* Host: host= of the check, else the server's HOST:PORT as written. */
	const char *host = pc->check_host;

	if (!host)
		host = addr->ss.ss_family == AF_UNIX || !addr->text ? "localhost" : addr->text;
	int n = asprintf(&chk->request,
			 "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
			 "User-Agent: fulcrum-health\r\n\r\n",
			 pc->check_path ? pc->check_path : "/", host);
	if (n < 0) {
		chk->request = NULL;
		return -ENOMEM;
	}
	chk->request_len = (size_t)n;
	return 0;
}

int hc_check_init(struct hc_check *chk, const struct cfg_pool *pc, const struct cfg_addr *addr,
		  enum cfg_proxy_proto pp, SSL_CTX *tls_ctx)
{
	memset(chk, 0, sizeof(*chk));
	chk->kind = pc->check;
	chk->expect_lo = pc->check_expect_lo;
	chk->expect_hi = pc->check_expect_hi;
	if (pp != PROXY_PROTO_NONE) {
		struct sockaddr none = {.sa_family = AF_UNSPEC};
		int n = pp == PROXY_PROTO_V1 ? pp_build_v1(chk->proxy_header,
							   sizeof(chk->proxy_header), &none, &none)
					     : pp_build_v2(chk->proxy_header,
							   sizeof(chk->proxy_header), &none, &none);
		chk->proxy_header_len = n > 0 ? (size_t)n : 0;
	}
	if (pc->check != CHECK_HTTP)
		return 0;
	if (build_request(chk, pc, addr) < 0)
		return -ENOMEM;
	if (!hc_check_uses_tls(pc))
		return 0;
	chk->tls = true;
	chk->tls_ctx = tls_ctx;
	if (addr->ss.ss_family != AF_UNIX) {
		chk->host = host_of(addr->text);
		if (addr->text && !chk->host)
			return -ENOMEM;
	}
	chk->tls_sni = pc->tls_sni;
	if (!chk->tls_sni && chk->host && !is_address(chk->host))
		chk->tls_sni = chk->host;
	if (pc->tls_verify)
		chk->tls_name = pc->tls_sni ? pc->tls_sni : chk->host;
	return 0;
}

void hc_check_deinit(struct hc_check *chk)
{
	free(chk->request);
	free(chk->host);
	memset(chk, 0, sizeof(*chk));
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

bool hc_check_same(const struct hc_check *a, const struct cfg_pool *pa, const struct hc_check *b,
		   const struct cfg_pool *pb)
{
	return a->kind == b->kind && a->request_len == b->request_len &&
	       (a->request_len == 0 || memcmp(a->request, b->request, a->request_len) == 0) &&
	       a->expect_lo == b->expect_lo && a->expect_hi == b->expect_hi && a->tls == b->tls &&
	       same_str(a->tls_sni, b->tls_sni) && same_str(a->tls_name, b->tls_name) &&
	       same_str(pa->tls_ca, pb->tls_ca) && a->proxy_header_len == b->proxy_header_len &&
	       memcmp(a->proxy_header, b->proxy_header, a->proxy_header_len) == 0 &&
	       pa->check_timeout_ms == pb->check_timeout_ms &&
	       pa->check_interval_ms == pb->check_interval_ms;
}

SSL_CTX *hc_tls_ctx_new(const struct cfg_pool *pc, char *err, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	unsigned long e;
	const char *why;

	if (!ctx)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A server closing without close_notify after its answer is normal. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (pc->tls_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = pc->tls_ca ? SSL_CTX_load_verify_locations(ctx, pc->tls_ca, NULL)
				    : SSL_CTX_set_default_verify_paths(ctx);
		if (!ok)
			goto fail;
	}
	return ctx;
fail:
	e = ERR_peek_last_error();
	why = e ? ERR_reason_error_string(e) : NULL;

	snprintf(err, cap, "%s", why ? why : "cannot create a TLS context");
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}
