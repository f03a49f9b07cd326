/*
 * tls_ticket.c - session-ticket keys (RFC 5077, RFC 8446 §4.6.1) that every
 * worker and every configuration generation shares, rotated with time.
 *
 * The keys are derived, not stored: time is cut into periods of
 * TLS_TICKET_PERIOD_S, and period P's key name, AES-256 key and HMAC-SHA256
 * key are SHA-256(secret | label | P). Workers therefore agree on the keys
 * without sharing any mutable state, and rotation is just time passing. The
 * key name starts with P, so a ticket names the period that sealed it:
 * tickets of the current period are accepted, those of the previous one
 * too (and replaced by a fresh ticket), older ones fall back to a full
 * handshake.
 *
 * The secret: 32 random bytes drawn once, by the main thread before any
 * worker runs (tls_global_init), immutable afterwards, and kept across
 * reloads so resumption survives them. A restart draws a new one.
 *
 * Threads: tls_ticket_key_cb runs on the workers inside handshakes.
 */
#include "core/tls_impl.h"

#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static unsigned char secret[32];

struct ticket_key {
	unsigned char name[16]; /* 8 bytes of period, 8 of tag */
	unsigned char aes[32];
	unsigned char hmac[32];
};

int tls_ticket_init(void)
{
	return RAND_bytes(secret, sizeof(secret)) == 1 ? 0 : -1;
}

/* SHA-256(secret | LABEL (8 bytes) | PERIOD) into OUT. 0 or -1. */
static int derive(const char label[8], uint64_t period, unsigned char out[32])
{
	unsigned char in[sizeof(secret) + 8 + 8];
	unsigned int n = 0;

	memcpy(in, secret, sizeof(secret));
	memcpy(in + sizeof(secret), label, 8);
	for (int i = 0; i < 8; i++)
		in[sizeof(secret) + 8 + i] = (unsigned char)(period >> (56 - 8 * i));
	int ok = EVP_Digest(in, sizeof(in), out, &n, EVP_sha256(), NULL);
	OPENSSL_cleanse(in, sizeof(in));
	return ok && n == 32 ? 0 : -1;
}

static int key_for(uint64_t period, struct ticket_key *k)
{
	unsigned char tag[32];

	if (derive("tkt-name", period, tag) < 0 || derive("tkt-aes_", period, k->aes) < 0 ||
	    derive("tkt-hmac", period, k->hmac) < 0)
		return -1;
	for (int i = 0; i < 8; i++)
		k->name[i] = (unsigned char)(period >> (56 - 8 * i));
	memcpy(k->name + 8, tag, 8);
	return 0;
}

static int set_mac_key(EVP_MAC_CTX *mac, unsigned char *key)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	return EVP_MAC_CTX_set_params(mac, params);
}

/* Sealing a new ticket: the current period's keys and a random IV.
 * Returns 1, or 0 to issue no ticket this time. */
static int seal(uint64_t now, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cipher,
		EVP_MAC_CTX *mac)
{
	struct ticket_key k;
	int ok = key_for(now, &k) == 0 && RAND_bytes(iv, 16) == 1 &&
		 EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k.aes, iv) &&
		 set_mac_key(mac, k.hmac);
	if (ok)
		memcpy(key_name, k.name, 16);
	OPENSSL_cleanse(&k, sizeof(k));
	return ok ? 1 : 0;
}

/* Opening a ticket: 1 (current period), 2 (previous: accept and renew),
 * 0 (unknown or too old: full handshake), -1 on an internal error. */
static int open_ticket(uint64_t now, const unsigned char key_name[16], unsigned char *iv,
		       EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac)
{
	struct ticket_key k;
	uint64_t period = 0;
	int rc = 0;

	for (int i = 0; i < 8; i++)
		period = period << 8 | key_name[i];
	if (period != now && period + 1 != now)
		return 0;
	if (key_for(period, &k) < 0)
		return -1;
	if (CRYPTO_memcmp(key_name, k.name, 16) == 0) {
		rc = EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k.aes, iv) &&
				     set_mac_key(mac, k.hmac)
			     ? (period == now ? 1 : 2)
			     : -1;
	}
	OPENSSL_cleanse(&k, sizeof(k));
	return rc;
}

/* Whether SSL's context still offers CIPHER. */
static bool offered(const SSL *ssl, const SSL_CIPHER *cipher)
{
	STACK_OF(SSL_CIPHER) *list = SSL_get_ciphers(ssl);
	uint32_t id = SSL_CIPHER_get_id(cipher);

	for (int i = 0; i < sk_SSL_CIPHER_num(list); i++)
		if (SSL_CIPHER_get_id(sk_SSL_CIPHER_value(list, i)) == id)
			return true;
	return false;
}

int tls_ticket_decrypted_cb(SSL *ssl, SSL_SESSION *session, const unsigned char *key_name,
			    size_t key_name_len, SSL_TICKET_STATUS status, void *arg)
{
	(void)key_name;
	(void)key_name_len;
	(void)arg;
	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		/* Tickets outlive reloads: one whose cipher the listener's
		 * tls_ciphers no longer allow gets a full handshake. */
		if (!offered(ssl, SSL_SESSION_get0_cipher(session)))
			return SSL_TICKET_RETURN_IGNORE_RENEW;
		return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE
						    : SSL_TICKET_RETURN_USE_RENEW;
	default:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	}
}

int tls_ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
		      EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac, int enc)
{
	uint64_t now = (uint64_t)time(NULL) / TLS_TICKET_PERIOD_S;
	(void)ssl;

	if (enc)
		return seal(now, key_name, iv, cipher, mac);
	return open_ticket(now, key_name, iv, cipher, mac);
}
