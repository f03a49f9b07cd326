/*
 * tls_files.h - checks of TLS files and settings at configuration load (and
 * so at -t and at reload): certificates and keys are loaded with OpenSSL
 * exactly as the listeners will load them, so a missing, unreadable,
 * malformed or mismatched one is a FILE:LINE error instead of a failure
 * later.
 *
 * Each check returns 0, or -1 with a one-line reason in WHY (CAP bytes);
 * cfg_tls_check_cert may also return 1 with a warning in WHY.
 * Main thread (cfg_load); they keep no state.
 */
#ifndef FULCRUM_CONFIG_TLS_FILES_H
#define FULCRUM_CONFIG_TLS_FILES_H

#include <stddef.h>

/* PATH holds a PEM certificate (and its chain). An expired one is served
 * all the same, as nginx and HAProxy do (a restart after the renewal job
 * failed must not take the whole site down): 1 and a warning. */
int cfg_tls_check_cert(const char *path, char *why, size_t cap);
/* PATH holds a PEM private key that needs no passphrase. */
int cfg_tls_check_key(const char *path, char *why, size_t cap);
/* The key in KEY belongs to the certificate in CERT. When either cannot be
 * loaded at all, returns 0: that file's own check reports it. */
int cfg_tls_check_pair(const char *cert, const char *key, char *why, size_t cap);
/* LIST is an OpenSSL cipher list that selects at least one cipher. */
int cfg_tls_check_ciphers(const char *list, char *why, size_t cap);
/* PATH holds at least one PEM CA certificate. */
int cfg_tls_check_ca(const char *path, char *why, size_t cap);
/* LIST is an ALPN protocol list: comma-separated names of 1 to 255 bytes. */
int cfg_tls_check_alpn(const char *list, char *why, size_t cap);

#endif
