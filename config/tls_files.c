/*
 * tls_files.c - TLS checks at configuration load (see tls_files.h).
 * Main thread.
 *
 * Every check uses a scratch SSL_CTX and the same OpenSSL calls the
 * runtime uses (core/tls_ctx.c), so what passes here loads there. The
 * error queue is emptied after each check.
 */
#include "config/tls_files.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Encrypted keys would ask for a passphrase on the terminal: refuse them. */
static int no_password(char *buf, int size, int rwflag, void *arg)
{
	(void)buf, (void)size, (void)rwflag, (void)arg;
	return 0;
}

static int fail(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes the reason, with OpenSSL's last reason appended when there is one. */
static int fail(char *why, size_t cap, const char *fmt, ...)
{
	unsigned long e = ERR_peek_last_error();
	const char *ossl = e ? ERR_reason_error_string(e) : NULL;
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(why, cap, fmt, ap);
	va_end(ap);
	if (ossl && n >= 0 && (size_t)n < cap)
		snprintf(why + n, cap - (size_t)n, " (%s)", ossl);
	ERR_clear_error();
	return -1;
}

static SSL_CTX *scratch_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx)
		SSL_CTX_set_default_passwd_cb(ctx, no_password);
	return ctx;
}

/* A time as "Jan  2 03:04:05 2025 GMT". */
static void format_time(const ASN1_TIME *t, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n = 0;
	out[0] = '\0';
	if (b && ASN1_TIME_print(b, t))
		n = BIO_read(b, out, (int)cap - 1);
	out[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

int cfg_tls_check_cert(const char *path, char *why, size_t cap)
{
	SSL_CTX *ctx = scratch_ctx();
	int rc = 0;

	if (!ctx)
		return fail(why, cap, "cannot check tls_cert \"%s\": out of memory", path);
	if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1) {
		rc = fail(why, cap, "tls_cert \"%s\" holds no usable PEM certificate", path);
	} else {
		X509 *x = SSL_CTX_get0_certificate(ctx);
		const ASN1_TIME *not_after = X509_get0_notAfter(x);
		if (X509_cmp_current_time(not_after) < 0) {
			char when[64];
			format_time(not_after, when, sizeof(when));
			snprintf(why, cap,
				 "tls_cert \"%s\" has expired (not after %s): clients that verify "
				 "it will refuse it",
				 path, when);
			rc = 1;
		}
	}
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

int cfg_tls_check_key(const char *path, char *why, size_t cap)
{
	SSL_CTX *ctx = scratch_ctx();
	int rc = 0;

	if (!ctx)
		return fail(why, cap, "cannot check tls_key \"%s\": out of memory", path);
	if (SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1)
		rc = fail(why, cap,
			  "tls_key \"%s\" holds no usable private key (an unencrypted PEM key is "
			  "needed)",
			  path);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

int cfg_tls_check_pair(const char *cert, const char *key, char *why, size_t cap)
{
	SSL_CTX *ctx = scratch_ctx();
	int rc = 0;

	if (!ctx)
		return fail(why, cap, "cannot check tls_key \"%s\": out of memory", key);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) == 1) {
		EVP_PKEY *pkey = NULL;
		FILE *f = fopen(key, "r");
		if (f) {
			pkey = PEM_read_PrivateKey(f, NULL, no_password, NULL);
			fclose(f);
		}
		ERR_clear_error();
		if (pkey && !X509_check_private_key(SSL_CTX_get0_certificate(ctx), pkey))
			rc = fail(why, cap, "tls_key \"%s\" does not match tls_cert \"%s\"", key,
				  cert);
		EVP_PKEY_free(pkey);
	}
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

int cfg_tls_check_ciphers(const char *list, char *why, size_t cap)
{
	SSL_CTX *ctx = scratch_ctx();
	int rc = 0;

	if (!ctx)
		return fail(why, cap, "cannot check tls_ciphers: out of memory");
	if (SSL_CTX_set_cipher_list(ctx, list) != 1)
		rc = fail(why, cap, "tls_ciphers \"%s\" selects no cipher OpenSSL knows", list);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

int cfg_tls_check_ca(const char *path, char *why, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	int rc = 0;

	if (!ctx)
		return fail(why, cap, "cannot check tls_ca \"%s\": out of memory", path);
	if (SSL_CTX_load_verify_locations(ctx, path, NULL) != 1)
		rc = fail(why, cap, "tls_ca \"%s\" holds no usable PEM certificate", path);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

int cfg_tls_check_alpn(const char *list, char *why, size_t cap)
{
	size_t total = 0;
	const char *p = list;

	for (;;) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, ", ");
		const char *after = p + n;
		while (*after == ' ')
			after++;
		if (n == 0 || n > 255 || (*after && *after != ',')) {
			snprintf(why, cap,
				 "bad alpn \"%s\" (expected protocol names separated by commas, "
				 "e.g. http/1.1)",
				 list);
			return -1;
		}
		total += 1 + n;
		if (!*after)
			break;
		p = after + 1;
	}
	if (total > 255) {
		snprintf(why, cap,
			 "alpn \"%s\" is too long (the names, each with a length byte, "
			 "take 255 bytes at most)",
			 list);
		return -1;
	}
	return 0;
}
