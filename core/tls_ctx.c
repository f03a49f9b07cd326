/*
 * tls_ctx.c - the SSL_CTXs of a configuration generation (see tls.h): per
 * terminating listener one server context per certificate, with the SNI
 * and ALPN callbacks that choose between them; per tls = on pool one client
 * context. Also the module's process-wide set-up.
 *
 * Threads: built and freed on the main thread; the callbacks run on the
 * workers during handshakes and only read what was built here.
 *
 * Certificate choice: the SNI name is compared with the DNS names of every
 * certificate (subjectAltName, else the subject's CN), exact names first,
 * then wildcards ("*.w.test" matches one label, as RFC 6125 §6.4.3 has TLS
 * clients check it); no match, or no SNI, takes the first pair.
 *
 * ALPN (RFC 7301 §3.2): the first of our protocols (alpn = ..., in our
 * order) that the client offers is selected; a client that offers ALPN but
 * none of ours gets the fatal no_application_protocol alert, as the RFC
 * says. Clients that send no ALPN are served as before.
 */
#include "core/tls.h"
#include "core/tls_impl.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "core/log.h"

int tls_ex_session_key = -1;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void global_init(void)
{
	tls_ex_session_key = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (tls_ex_session_key < 0 || tls_ticket_init() < 0 || tls_session_cache_init() < 0)
		init_rc = -1;
}

int tls_global_init(void)
{
	pthread_once(&init_once, global_init);
	return init_rc;
}

const char *tls_error_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;
	ERR_clear_error();
	return why ? why : "unknown error";
}

const struct tls_gen *tls_of(const struct gen *g)
{
	return g->root ? g->root->tls : g->tls; /* a derived one shares its root's */
}

/* Encrypted keys are refused instead of asking for a passphrase on a tty. */
static int no_password(char *buf, int size, int rwflag, void *arg)
{
	(void)buf, (void)size, (void)rwflag, (void)arg;
	return 0;
}

/* ---- certificate names and the SNI callback ---------------------------- */

static int add_name(struct tls_cert *tc, const char *s, size_t len)
{
	if (len == 0 || memchr(s, '\0', len))
		return 0; /* not a usable name; ignored */
	char *name = strndup(s, len);
	char **grown = name ? realloc(tc->names, (tc->n_names + 1) * sizeof(*grown)) : NULL;
	if (!grown) {
		free(name);
		return -ENOMEM;
	}
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	tc->names = grown;
	tc->names[tc->n_names++] = name;
	return 0;
}

/* The subject's common name, used only when there is no DNS altName. */
static int add_common_name(struct tls_cert *tc, X509 *x)
{
	X509_NAME *subject = X509_get_subject_name(x);
	int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	if (i < 0)
		return 0;
	int n = ASN1_STRING_to_UTF8(&utf8,
				    X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
	if (n < 0)
		return 0;
	int rc = add_name(tc, (const char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return rc;
}

static int read_names(struct tls_cert *tc)
{
	X509 *x = SSL_CTX_get0_certificate(tc->ctx);
	GENERAL_NAMES *alt = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int rc = 0;

	for (int i = 0; alt && i < sk_GENERAL_NAME_num(alt) && rc == 0; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(alt, i);
		if (gn->type != GEN_DNS)
			continue;
		rc = add_name(tc, (const char *)ASN1_STRING_get0_data(gn->d.dNSName),
			      (size_t)ASN1_STRING_length(gn->d.dNSName));
	}
	GENERAL_NAMES_free(alt);
	if (rc == 0 && tc->n_names == 0)
		rc = add_common_name(tc, x);
	return rc;
}

static bool is_wildcard(const char *name)
{
	return name[0] == '*' && name[1] == '.';
}

/* HOST[0, LEN) against a certificate name; a wildcard stands for exactly
 * one non-empty label. */
static bool name_matches(const char *name, const char *host, size_t len)
{
	if (!is_wildcard(name))
		return strlen(name) == len && strncasecmp(name, host, len) == 0;
	size_t suffix = strlen(name + 1); /* ".w.test" */
	if (len <= suffix || strncasecmp(host + len - suffix, name + 1, suffix) != 0)
		return false;
	return !memchr(host, '.', len - suffix);
}

/* Key types (tls_cert.key_types), a bit each. */
enum {
	KEY_RSA = 1u << 0,
	KEY_RSA_PSS = 1u << 1,
	KEY_EC = 1u << 2,
	KEY_ED25519 = 1u << 3,
	KEY_ED448 = 1u << 4,
	KEY_OTHER = 1u << 5,
	KEY_ANY = (1u << 6) - 1,
};

/* Whether TC names HOST[0, LEN): exactly (WILD false) or by a wildcard. */
static bool cert_names(const struct tls_cert *tc, const char *host, size_t len, bool wild)
{
	for (size_t j = 0; j < tc->n_names; j++)
		if (is_wildcard(tc->names[j]) == wild && name_matches(tc->names[j], host, len))
			return true;
	return false;
}

/* The pair for HOST (NULL: no SNI), KEYS being the key types the client
 * can use: the first that names HOST exactly with such a key, else by a
 * wildcard with such a key; else the first naming HOST at all (the client
 * cannot use it: its handshake fails, as it must); and with no SNI, or
 * none naming it, the first pair with such a key, else the first pair. So
 * an RSA-only client gets the RSA certificate of a name whatever the order
 * of the files and whatever other names each covers. */
static const struct tls_cert *pick_cert(const struct tls_listener *tl, const char *host,
					unsigned keys)
{
	const struct tls_cert *named = NULL;
	size_t len = host ? strlen(host) : 0;
	/* "a.test." names a.test; "a.test.." names nothing, as in routes */
	if (len && host[len - 1] == '.')
		len--;
	for (int wild = 0; host && wild < 2; wild++)
		for (size_t i = 0; i < tl->n_certs; i++) {
			if (!cert_names(&tl->certs[i], host, len, wild))
				continue;
			if (tl->certs[i].key_types & keys)
				return &tl->certs[i];
			if (!named)
				named = &tl->certs[i];
		}
	if (named)
		return named;
	for (size_t i = 0; i < tl->n_certs; i++)
		if (tl->certs[i].key_types & keys)
			return &tl->certs[i];
	return &tl->certs[0];
}

/* Whether the client offers TLS 1.3 (supported_versions, RFC 8446 §4.2.1). */
static bool client_offers_tls13(SSL *ssl)
{
	const unsigned char *p;
	size_t len;

	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &p, &len) || len < 1 ||
	    (size_t)p[0] != len - 1)
		return false;
	for (size_t i = 1; i + 1 < len; i += 2)
		if (p[i] == 0x03 && p[i + 1] == 0x04)
			return true;
	return false;
}

/* The key types a TLS 1.2 client's cipher suites can authenticate with. */
static unsigned suite_key_types(SSL *ssl)
{
	const unsigned char *p;
	size_t len = SSL_client_hello_get0_ciphers(ssl, &p);
	unsigned keys = 0;

	for (size_t i = 0; i + 1 < len; i += 2) {
		const SSL_CIPHER *c = SSL_CIPHER_find(ssl, p + i);
		int auth = c ? SSL_CIPHER_get_auth_nid(c) : NID_undef;
		if (auth == NID_auth_rsa)
			keys |= KEY_RSA | KEY_RSA_PSS;
		else if (auth == NID_auth_ecdsa)
			keys |= KEY_EC | KEY_ED25519 | KEY_ED448;
	}
	return keys ? keys | KEY_OTHER : KEY_ANY;
}

/* The key types a client's signature_algorithms extension (RFC 8446
 * §4.2.3) allows; all of them without it (TLS 1.2's default is RSA or
 * ECDSA with SHA-1). */
static unsigned sigalg_key_types(SSL *ssl)
{
	const unsigned char *p;
	size_t len;
	unsigned keys = 0;

	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_signature_algorithms, &p, &len) ||
	    len < 2 || (size_t)(p[0] << 8 | p[1]) != len - 2)
		return KEY_ANY;
	for (size_t i = 2; i + 1 < len; i += 2) {
		unsigned hash = p[i], sig = p[i + 1];
		if (hash == 0x08 && sig >= 0x04 && sig <= 0x06)
			keys |= KEY_RSA; /* rsa_pss_rsae_* */
		else if (hash == 0x08 && sig >= 0x09 && sig <= 0x0b)
			keys |= KEY_RSA_PSS;
		else if (hash == 0x08 && sig == 0x07)
			keys |= KEY_ED25519;
		else if (hash == 0x08 && sig == 0x08)
			keys |= KEY_ED448;
		else if (hash == 0x08 && sig >= 0x1a && sig <= 0x1c)
			keys |= KEY_EC; /* ecdsa_brainpool* (TLS 1.3) */
		else if (sig == 0x01)
			keys |= KEY_RSA; /* rsa_pkcs1_* */
		else if (sig == 0x03)
			keys |= KEY_EC; /* ecdsa_* */
	}
	return keys ? keys | KEY_OTHER : KEY_ANY;
}

/* The key types a client can use: those its signature algorithms allow,
 * and for a TLS 1.2 client those its cipher suites authenticate with. */
static unsigned client_key_types(SSL *ssl)
{
	unsigned suites = client_offers_tls13(ssl) ? KEY_ANY : suite_key_types(ssl);
	return sigalg_key_types(ssl) & suites;
}

/* Runs on the worker during the ClientHello, after on_client_hello, which
 * has chosen the certificate: acknowledges the name. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	(void)arg;
	return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) ? SSL_TLSEXT_ERR_OK
								  : SSL_TLSEXT_ERR_NOACK;
}

/* The host_name of a server_name extension's body (RFC 6066 §3) into HOST,
 * NUL-terminated. Returns false when there is none or it is malformed. */
static bool sni_of_ext(const unsigned char *p, size_t len, char *host, size_t cap)
{
	if (len < 5 || (size_t)(p[0] << 8 | p[1]) != len - 2 || p[2] != 0 /* host_name */)
		return false;
	size_t n = (size_t)(p[3] << 8 | p[4]);
	if (n == 0 || n >= cap || n > len - 5 || memchr(p + 5, 0, n))
		return false;
	memcpy(host, p + 5, n);
	host[n] = '\0';
	return true;
}

/* Runs first thing on a ClientHello, before OpenSSL looks for a session
 * to resume: takes the context of the certificate the SNI asks for. Each
 * certificate's context has its own session-id context, so a session made
 * under one name is not resumed under another (RFC 6066 §3), which
 * on_servername, running after that lookup, could not prevent. */
static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
	const struct tls_listener *tl = arg;
	const unsigned char *ext;
	size_t len;
	char host[256];

	bool sni = SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) &&
		   sni_of_ext(ext, len, host, sizeof(host));
	const struct tls_cert *tc = pick_cert(tl, sni ? host : NULL, client_key_types(ssl));
	if (tc->ctx != SSL_get_SSL_CTX(ssl) && !SSL_set_SSL_CTX(ssl, tc->ctx)) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len,
		   const unsigned char *in, unsigned int in_len, void *arg)
{
	const struct tls_listener *tl = arg;
	unsigned char *sel = NULL;
	(void)ssl;

	if (SSL_select_next_proto(&sel, out_len, tl->alpn, (unsigned int)tl->alpn_len, in,
				  in_len) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* "http/1.1" or "h2, http/1.1" into ALPN wire format. Returns the length,
 * 0 for none, or -1 when an entry is empty or too long. */
static int alpn_wire(const char *list, unsigned char *out, size_t cap)
{
	size_t len = 0;
	while (list && *list) {
		while (*list == ' ' || *list == ',')
			list++;
		size_t n = strcspn(list, ", ");
		if (n == 0)
			break;
		if (n > 255 || len + 1 + n > cap)
			return -1;
		out[len++] = (unsigned char)n;
		memcpy(out + len, list, n);
		len += n;
		list += n;
	}
	return (int)len;
}

/* Whether the ALPN wire list W (LEN bytes) names NAME. */
static bool alpn_has(const unsigned char *w, size_t len, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < len; i += 1 + w[i])
		if (w[i] == n && i + 1 + n <= len && memcmp(w + i + 1, name, n) == 0)
			return true;
	return false;
}

/* ---- building --------------------------------------------------------- */

/* Settings every server context of listener LC shares. Returns 1 or 0. */
static int server_settings(SSL_CTX *ctx, const struct cfg_listener *lc, struct tls_listener *tl)
{
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
					 SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Read whole socket buffers rather than a record header and then its
	 * body: one read syscall per request instead of two. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, TLS_SESSION_CACHE_SIZE);
	SSL_CTX_set_timeout(ctx, TLS_SESSION_TIMEOUT_S);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_key_cb);
	SSL_CTX_set_session_ticket_cb(ctx, NULL, tls_ticket_decrypted_cb, NULL);
	SSL_CTX_set_client_hello_cb(ctx, on_client_hello, tl);
	SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
	SSL_CTX_set_tlsext_servername_arg(ctx, tl);
	if (tl->alpn_len)
		SSL_CTX_set_alpn_select_cb(ctx, on_alpn, tl);
	return SSL_CTX_set_min_proto_version(ctx, lc->tls_min_version == 13 ? TLS1_3_VERSION
									    : TLS1_2_VERSION) &&
	       SSL_CTX_set_cipher_list(ctx,
				       lc->tls_ciphers ? lc->tls_ciphers : TLS_DEFAULT_CIPHERS);
}

/*
 * Gives CTX, which serves listener LC, a session-id context of its own: a
 * digest of the listener's name and of every certificate CTX holds (two,
 * for an RSA and an ECDSA pair of the same names). OpenSSL resumes a
 * session (by id or ticket) only in the context it was made in, so a
 * session is never resumed under another pair, nor after a reload renewed
 * any certificate of its context. Returns 1 or 0.
 */
static int bind_sessions(SSL_CTX *ctx, const struct cfg_listener *lc)
{
	unsigned char sid[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
	unsigned int sid_len = 0, md_len = 0;
	EVP_MD_CTX *d = EVP_MD_CTX_new();
	int ok = d && EVP_DigestInit_ex(d, EVP_sha256(), NULL) &&
		 EVP_DigestUpdate(d, lc->name, strlen(lc->name) + 1);

	for (int r = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST); ok && r;
	     r = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT)) {
		X509 *x = SSL_CTX_get0_certificate(ctx);
		ok = x && X509_digest(x, EVP_sha256(), md, &md_len) == 1 &&
		     EVP_DigestUpdate(d, md, md_len);
	}
	ok = ok && EVP_DigestFinal_ex(d, sid, &sid_len);
	EVP_MD_CTX_free(d);
	if (!ok)
		return 0;
	if (sid_len > SSL_MAX_SID_CTX_LENGTH)
		sid_len = SSL_MAX_SID_CTX_LENGTH;
	return SSL_CTX_set_session_id_context(ctx, sid, sid_len);
}

/* Pair I of listener LC into TC. Returns 0 or -1 (logged). */
static int cert_load(struct tls_cert *tc, const struct cfg_listener *lc, size_t i,
		     struct tls_listener *tl)
{
	tc->ctx = SSL_CTX_new(TLS_server_method());
	if (!tc->ctx)
		goto fail;
	SSL_CTX_set_default_passwd_cb(tc->ctx, no_password);
	if (!server_settings(tc->ctx, lc, tl) ||
	    SSL_CTX_use_certificate_chain_file(tc->ctx, lc->tls_certs[i]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(tc->ctx, lc->tls_keys[i], SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(tc->ctx) != 1 || !bind_sessions(tc->ctx, lc))
		goto fail;
	if (read_names(tc) < 0) {
		log_error("listener %s: out of memory reading the names of %s", lc->name,
			  lc->tls_certs[i]);
		return -1;
	}
	return 0;
fail:
	log_error("listener %s: cannot use tls_cert %s with tls_key %s: %s", lc->name,
		  lc->tls_certs[i], lc->tls_keys[i], tls_error_reason());
	return -1;
}

/* A bit for the type of the private key CTX serves with (tls_cert.key_types). */
static unsigned key_bit(SSL_CTX *ctx)
{
	EVP_PKEY *k = SSL_CTX_get0_privatekey(ctx);

	switch (k ? EVP_PKEY_get_base_id(k) : EVP_PKEY_NONE) {
	case EVP_PKEY_RSA:
		return KEY_RSA;
	case EVP_PKEY_RSA_PSS:
		return KEY_RSA_PSS;
	case EVP_PKEY_EC:
		return KEY_EC;
	case EVP_PKEY_ED25519:
		return KEY_ED25519;
	case EVP_PKEY_ED448:
		return KEY_ED448;
	default:
		return KEY_OTHER;
	}
}

/* Whether A and B cover the same names (as sets). */
static bool same_names(const struct tls_cert *a, const struct tls_cert *b)
{
	if (a->n_names != b->n_names)
		return false;
	for (size_t i = 0; i < a->n_names; i++) {
		size_t j = 0;
		while (j < b->n_names && strcmp(a->names[i], b->names[j]) != 0)
			j++;
		if (j == b->n_names)
			return false;
	}
	return true;
}

/*
 * The earlier pair that NEW (just loaded) should join, or NULL: one with the
 * same names and a key of another type, say an RSA and an ECDSA certificate
 * for one site. Both then serve from one context and OpenSSL picks, per
 * handshake, the one whose signature the client supports, as nginx and
 * HAProxy do with several certificates for a name.
 */
static struct tls_cert *twin_of(struct tls_listener *tl, const struct tls_cert *new)
{
	for (size_t j = 0; j + 1 < tl->n_certs; j++) {
		struct tls_cert *tc = &tl->certs[j];
		if (same_names(tc, new) && !(tc->key_types & key_bit(new->ctx)))
			return tc;
	}
	return NULL;
}

/* Adds pair I of LC to TWIN's context. Returns 0 or -1 (logged). */
static int join_twin(struct tls_cert *twin, const struct cfg_listener *lc, size_t i)
{
	if (SSL_CTX_use_certificate_chain_file(twin->ctx, lc->tls_certs[i]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(twin->ctx, lc->tls_keys[i], SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(twin->ctx) != 1 || !bind_sessions(twin->ctx, lc)) {
		log_error("listener %s: cannot use tls_cert %s with tls_key %s: %s", lc->name,
			  lc->tls_certs[i], lc->tls_keys[i], tls_error_reason());
		return -1;
	}
	twin->key_types |= key_bit(twin->ctx);
	return 0;
}

static void cert_free(struct tls_cert *tc)
{
	SSL_CTX_free(tc->ctx);
	for (size_t j = 0; j < tc->n_names; j++)
		free(tc->names[j]);
	free(tc->names);
	memset(tc, 0, sizeof(*tc));
}

static void listener_free(struct tls_listener *tl)
{
	if (!tl)
		return;
	for (size_t i = 0; i < tl->n_certs; i++)
		cert_free(&tl->certs[i]);
	free(tl->certs);
	free(tl);
}

static struct tls_listener *listener_new(const struct cfg_listener *lc)
{
	struct tls_listener *tl = calloc(1, sizeof(*tl));
	if (!tl)
		return NULL;
	int n = alpn_wire(lc->alpn, tl->alpn, sizeof(tl->alpn));
	if (n < 0) {
		log_error("listener %s: bad alpn \"%s\"", lc->name, lc->alpn);
		goto fail;
	}
	tl->alpn_len = (size_t)n;
	/* An http listener serves HTTP/1.0 too (SPEC §3): a client that offers
	 * only "http/1.0" (curl --http1.0) gets it, after the listed ones, as
	 * nginx's list has it. */
	if (lc->mode != MODE_TCP && alpn_has(tl->alpn, tl->alpn_len, "http/1.1") &&
	    !alpn_has(tl->alpn, tl->alpn_len, "http/1.0") && tl->alpn_len + 9 <= sizeof(tl->alpn)) {
		memcpy(tl->alpn + tl->alpn_len, "\x08http/1.0", 9);
		tl->alpn_len += 9;
	}
	tl->certs = calloc(lc->n_tls_certs, sizeof(*tl->certs));
	if (!tl->certs)
		goto fail;
	for (size_t i = 0; i < lc->n_tls_certs && i < lc->n_tls_keys; i++) {
		struct tls_cert *tc = &tl->certs[tl->n_certs++], *twin;
		if (cert_load(tc, lc, i, tl) < 0)
			goto fail;
		tc->key_types = key_bit(tc->ctx);
		if ((twin = twin_of(tl, tc))) {
			cert_free(tc);
			tl->n_certs--;
			if (join_twin(twin, lc, i) < 0)
				goto fail;
		}
	}
	if (tl->n_certs == 0)
		goto fail;
	return tl;
fail:
	listener_free(tl);
	return NULL;
}

static struct tls_client *client_new(const struct cfg_pool *pc)
{
	static _Atomic uint64_t next_id = 1;
	struct tls_client *tc = calloc(1, sizeof(*tc));
	if (!tc)
		return NULL;
	tc->id = atomic_fetch_add(&next_id, 1);
	tc->verify = pc->tls_verify;
	tc->sni = pc->tls_sni;
	tc->ctx = SSL_CTX_new(TLS_client_method());
	if (!tc->ctx || !SSL_CTX_set_min_proto_version(tc->ctx, TLS1_2_VERSION))
		goto fail;
	SSL_CTX_set_options(tc->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(tc->ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
					  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(tc->ctx, 1);
	SSL_CTX_set_session_cache_mode(tc->ctx,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(tc->ctx, tls_on_new_session);
	SSL_CTX_set_verify(tc->ctx, tc->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (tc->verify && !(pc->tls_ca ? SSL_CTX_load_verify_locations(tc->ctx, pc->tls_ca, NULL)
				       : SSL_CTX_set_default_verify_paths(tc->ctx)))
		goto fail;
	return tc;
fail:
	log_error("pool %s: cannot set up TLS to its servers%s%s: %s", pc->name,
		  pc->tls_ca ? " with tls_ca " : "", pc->tls_ca ? pc->tls_ca : "",
		  tls_error_reason());
	SSL_CTX_free(tc->ctx);
	free(tc);
	return NULL;
}

static void client_free(struct tls_client *tc)
{
	if (tc) {
		SSL_CTX_free(tc->ctx);
		free(tc);
	}
}

struct tls_gen *tls_gen_new(const struct cfg *cfg)
{
	if (tls_global_init() < 0) {
		log_error("TLS: cannot initialise OpenSSL: %s", tls_error_reason());
		return NULL;
	}
	struct tls_gen *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->listeners = calloc(cfg->n_listeners + 1, sizeof(*t->listeners));
	t->pools = calloc(cfg->n_pools + 1, sizeof(*t->pools));
	if (!t->listeners || !t->pools)
		goto fail;
	t->n_listeners = cfg->n_listeners;
	t->n_pools = cfg->n_pools;
	for (size_t i = 0; i < cfg->n_listeners; i++) {
		if (cfg->listeners[i].n_tls_certs == 0)
			continue;
		t->listeners[i] = listener_new(&cfg->listeners[i]);
		if (!t->listeners[i])
			goto fail;
	}
	for (size_t i = 0; i < cfg->n_pools; i++) {
		if (!cfg->pools[i].tls)
			continue;
		t->pools[i] = client_new(&cfg->pools[i]);
		if (!t->pools[i])
			goto fail;
	}
	return t;
fail:
	tls_gen_free(t);
	return NULL;
}

void tls_gen_free(struct tls_gen *t)
{
	if (!t)
		return;
	for (size_t i = 0; t->listeners && i < t->n_listeners; i++)
		listener_free(t->listeners[i]);
	for (size_t i = 0; t->pools && i < t->n_pools; i++)
		client_free(t->pools[i]);
	free(t->listeners);
	free(t->pools);
	free(t);
}
