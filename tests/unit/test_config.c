/*
 * test_config.c - unit tests of config/: a file using every key, the
 * defaults, the duration, size and address parsers, and the example
 * configurations shipped in config/ (files that must not load are in
 * test_config_errors.c).
 *
 * Files are written to /tmp with mkstemp and removed afterwards. The tests
 * run from the repository root (make does that), so config/... paths work.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config/config.h"
#include "tests/unit/config_files.h"

/* Writes a fresh self-signed certificate and its key as PEM temporary files
 * (tls_cert, tls_key and tls_ca are loaded with OpenSSL at load time, so
 * they must be real). The caller drops both. */
static void write_cert_pair(char **cert, char **key)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	cr_assert(pk && x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1,
				   0);
	X509_set_issuer_name(x, name);
	cr_assert(X509_sign(x, pk, EVP_sha256()));

	*cert = write_tmp("");
	*key = write_tmp("");
	FILE *f = fopen(*cert, "w");
	cr_assert(f && PEM_write_X509(f, x));
	fclose(f);
	f = fopen(*key, "w");
	cr_assert(f && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
}

static uint16_t port_of(const struct cfg_addr *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

/* ---- value parsers ---- */

Test(config, durations)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} ok[] = {
		{"0", 0},	   {"30", 30000},  {"250ms", 250},
		{"2s", 2000},	   {"1m", 60000},  {"1h", 3600000},
		{"0ms", 0},	   {"10s", 10000}, {"18446744073709551615ms", UINT64_MAX},
		{"2d", 172800000},
	};
	static const char *const bad[] = {
		"",
		"-1",
		"5x",
		"1.5s",
		"s",
		"ms",
		" 5s",
		"5 s",
		"5S",
		"5sec",
		"1hh",
		"1D",
		"1dd",
		"+5",
		"18446744073709551616ms",
		"18446744073709551615s",
		"99999999999999999999",
		"5124095576030432h",
	};
	uint64_t ms;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_eq(cfg_parse_duration_ms(ok[i].s, &ms), 0, "%s", ok[i].s);
		cr_assert_eq(ms, ok[i].ms, "%s", ok[i].s);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(cfg_parse_duration_ms(bad[i], &ms), -EINVAL, "\"%s\"", bad[i]);
}

Test(config, sizes)
{
	static const struct {
		const char *s;
		uint64_t bytes;
	} ok[] = {
		{"0", 0},
		{"512", 512},
		{"16k", 16384},
		{"16K", 16384},
		{"256m", 268435456},
		{"1M", 1048576},
		{"1g", 1073741824},
		{"2G", 2147483648ULL},
		{"17179869183g", 17179869183ULL << 30},
		{"18446744073709551615", UINT64_MAX},
	};
	static const char *const bad[] = {
		"",
		"-1",
		"5x",
		"1.5k",
		"k",
		"16kb",
		"16 k",
		" 1",
		"17179869184g",
		"18446744073709551616",
		"99999999999999999999k",
	};
	uint64_t b;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_eq(cfg_parse_size(ok[i].s, &b), 0, "%s", ok[i].s);
		cr_assert_eq(b, ok[i].bytes, "%s", ok[i].s);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(cfg_parse_size(bad[i], &b), -EINVAL, "\"%s\"", bad[i]);
}

Test(config, addresses)
{
	struct cfg_addr a;
	char text[INET6_ADDRSTRLEN];
	static const char *const bad[] = {
		"",
		"127.0.0.1",
		"127.0.0.1:",
		"127.0.0.1:65536",
		"127.0.0.1:-1",
		":80",
		"::1:80",
		"[::1]",
		"[::1]80",
		"[127.0.0.1]:80",
		"unix:",
		"[]:80",
		"127.0.0.1:8x",
		"no-such-host.invalid:80",
	};

	cr_assert_eq(cfg_parse_addr("0.0.0.0:8080", &a), 0);
	cr_assert_eq(a.ss.ss_family, AF_INET);
	cr_assert_eq(port_of(&a), 8080);
	cr_assert_str_eq(a.text, "0.0.0.0:8080");
	cfg_addr_free(&a);

	cr_assert_eq(cfg_parse_addr("127.0.0.1:0", &a), 0);
	cr_assert_eq(port_of(&a), 0);
	cfg_addr_free(&a);

	cr_assert_eq(cfg_parse_addr("[::]:8080", &a), 0);
	cr_assert_eq(a.ss.ss_family, AF_INET6);
	cr_assert_eq(port_of(&a), 8080);
	cfg_addr_free(&a);

	cr_assert_eq(cfg_parse_addr("[2001:db8::1]:443", &a), 0);
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&a.ss)->sin6_addr, text, sizeof(text));
	cr_assert_str_eq(text, "2001:db8::1");
	cfg_addr_free(&a);

	cr_assert_eq(cfg_parse_addr("localhost:80", &a), 0);
	cr_assert(a.ss.ss_family == AF_INET || a.ss.ss_family == AF_INET6);
	cr_assert_eq(port_of(&a), 80);
	cfg_addr_free(&a);

	cr_assert_eq(cfg_parse_addr("unix:/run/fulcrum.sock", &a), 0);
	cr_assert_eq(a.ss.ss_family, AF_UNIX);
	cr_assert_str_eq(((struct sockaddr_un *)&a.ss)->sun_path, "/run/fulcrum.sock");
	cfg_addr_free(&a);
	/* One spelling per file: slashes merged, "./" dropped, ".." kept. */
	cr_assert_eq(cfg_parse_addr("unix:.//run/./x/../f.sock", &a), 0);
	cr_assert_str_eq(((struct sockaddr_un *)&a.ss)->sun_path, "run/x/../f.sock");
	cfg_addr_free(&a);
	/* The length limit (108 bytes here) is the tidied path's. */
	char longer[300] = "unix:/tmp/";
	for (int i = 0; i < 100; i++)
		strcat(longer, "./");
	strcat(longer, "f.sock");
	cr_assert_eq(cfg_parse_addr(longer, &a), 0);
	cr_assert_str_eq(((struct sockaddr_un *)&a.ss)->sun_path, "/tmp/f.sock");
	cfg_addr_free(&a);
	memset(longer + 10, 'a', 120);
	strcpy(longer + 130, ".sock");
	cr_assert_eq(cfg_parse_addr(longer, &a), -EINVAL);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(cfg_parse_addr(bad[i], &a), -EINVAL, "\"%s\"", bad[i]);
}

/* A check's host= is sent as the Host field: any form a Host may take. */
Test(config, check_host_forms)
{
	const char *hosts[] = {"www.example.com", "a.test:8080", "10.0.0.1", "[::1]", "[::1]:80"};
	char text[256];

	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		snprintf(text, sizeof(text), MIN_POOL "check = http GET / host=%s\n" MIN_LISTENER,
			 hosts[i]);
		struct cfg *cfg = load_ok(text);
		cr_assert_str_eq(cfg->pools[0].check_host, hosts[i]);
		cfg_free(cfg);
	}
}

Test(config, names)
{
	cr_assert_str_eq(cfg_balance_name(BAL_ROUNDROBIN), "roundrobin");
	cr_assert_str_eq(cfg_balance_name(BAL_P2C), "p2c");
	cr_assert_str_eq(cfg_balance_name(BAL_RING), "ring");
	cr_assert_str_eq(cfg_mode_name(MODE_TCP), "tcp");
	cr_assert_str_eq(cfg_mode_name(MODE_FORWARD), "forward");
}

/* ---- whole files ---- */

static const char full_fmt[] = "; every key of SPEC section 2\n"
			       "[global]\n"
			       "workers = 3\n"
			       "max_connections = 5000\n"
			       "log_level = debug\n"
			       "access_log = /var/log/fulcrum/access.log\n"
			       "access_log_format = json\n"
			       "user = nobody\n"
			       "admin = 127.0.0.1:19900\n"
			       "admin_token = s3cret\n"
			       "graceful_timeout = 5s\n"
			       "cpu_affinity = auto\n"
			       "buffer_size = 32k\n"
			       "pipe_size = 1m\n"
			       "backlog = 128\n"
			       "\n"
			       "[pool web]\n"
			       "balance = maglev\n"
			       "hash_key = header:X-User\n"
			       "maglev_table_size = 131071\n"
			       "hash_balance_factor = 125\n"
			       "sticky_cookie = SRV\n"
			       "server = a 127.0.0.1:9001 weight=3 maxconn=100 proxy_protocol=v2\n"
			       "server = b [::1]:9002 backup\n"
			       "server = c localhost:9003 disabled proxy_protocol=v1 weight=0\n"
			       "check = http GET /healthz expect=200-204 host=www.example.com\n"
			       "check_interval = 500ms\n"
			       "check_timeout = 250ms\n"
			       "rise = 4\n"
			       "fall = 5\n"
			       "max_fails = 7\n"
			       "fail_timeout = 1m\n"
			       "connect_timeout = 2s\n"
			       "server_timeout = 1h\n"
			       "retries = 0\n"
			       "keepalive = 0\n"
			       "slow_start = 30s\n"
			       "tls = on\n"
			       "tls_verify = off\n"
			       "tls_ca = %s\n"
			       "tls_sni = backend.example.com\n"
			       "\n"
			       "[listener front]\n"
			       "bind = 127.0.0.1:18080\n"
			       "bind = [::1]:18080\n"
			       "bind = unix:/tmp/fulcrum-test.sock\n"
			       "mode = http\n"
			       "pool = web\n"
			       "tls_cert = %s\n"
			       "tls_key = %s\n"
			       "tls_min_version = 1.3\n"
			       "tls_ciphers = ECDHE+AESGCM\n"
			       "handshake_timeout = 5s\n"
			       "alpn = http/1.1\n"
			       "proxy_protocol = accept\n"
			       "client_timeout = 20s\n"
			       "tunnel_timeout = 2h\n"
			       "request_timeout = 4s\n"
			       "keepalive_timeout = 15s\n"
			       "max_uri_size = 4k\n"
			       "max_header_size = 32k\n"
			       "max_body_size = 10m\n"
			       "forwarded_headers = no\n"
			       "cache = 64M\n"
			       "\n"
			       "[listener fwd]\n"
			       "bind = 127.0.0.1:13128\n"
			       "mode = forward\n"
			       "allow = *.example.com\n"
			       "allow = [2001:db8::/32]:443\n"
			       "deny = 10.0.0.0/8\n"
			       "deny = \n"
			       "connect_ports = 443, 8000-8100 ,9443\n"
			       "auth = basic %s\n"
			       "connect_timeout = 1s\n"
			       "server_timeout = 10s\n"
			       "\n"
			       "[route api]  # inline comment\n"
			       "listener = front\n"
			       "host = API.Example.COM\n"
			       "path_prefix = /api/\n"
			       "header = X-Canary: 1\n"
			       "pool = web\n"
			       "[route wild]\n"
			       "listener = front\n"
			       "host = *.Example.com\n"
			       "pool = web\n";

Test(config, every_key)
{
	char *ca, *ca_key, *cert, *key;
	write_cert_pair(&ca, &ca_key);
	write_cert_pair(&cert, &key);
	drop_tmp(ca_key);
	char *pw = write_tmp("user:$2y$05$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234\n");
	char text[8192];
	struct cfg *cfg;

	snprintf(text, sizeof(text), full_fmt, ca, cert, key, pw);
	cfg = load_ok(text);

	const struct cfg_global *g = &cfg->global;
	cr_assert_eq(g->workers, 3);
	cr_assert_eq(g->max_connections, 5000);
	cr_assert_eq(g->log_level, LOG_LVL_DEBUG);
	cr_assert_str_eq(g->access_log, "/var/log/fulcrum/access.log");
	cr_assert_eq(g->access_log_format, LOG_FMT_JSON);
	cr_assert_str_eq(g->user, "nobody");
	cr_assert_str_eq(g->admin, "127.0.0.1:19900");
	cr_assert_eq(port_of(&g->admin_addr), 19900);
	cr_assert_str_eq(g->admin_token, "s3cret");
	cr_assert_eq(g->graceful_timeout_ms, 5000);
	cr_assert(g->cpu_affinity);
	cr_assert_eq(g->buffer_size, 32768);
	cr_assert_eq(g->pipe_size, 1 << 20);
	cr_assert_eq(g->backlog, 128);

	cr_assert_eq(cfg->n_pools, 1);
	const struct cfg_pool *p = &cfg->pools[0];
	cr_assert_str_eq(p->name, "web");
	cr_assert_eq(p->line, 17);
	cr_assert_eq(p->balance, BAL_MAGLEV);
	cr_assert_eq(p->hash_key, HKEY_HEADER);
	cr_assert_str_eq(p->hash_key_name, "X-User");
	cr_assert_eq(p->maglev_table_size, 131071);
	cr_assert_eq(p->hash_balance_factor, 125);
	cr_assert_str_eq(p->sticky_cookie, "SRV");
	cr_assert_eq(p->n_servers, 3);
	cr_assert_str_eq(p->servers[0].name, "a");
	cr_assert_str_eq(p->servers[0].host, "127.0.0.1");
	cr_assert_str_eq(p->servers[0].addr.text, "127.0.0.1:9001");
	cr_assert_eq(port_of(&p->servers[0].addr), 9001);
	cr_assert_eq(p->servers[0].weight, 3);
	cr_assert_eq(p->servers[0].maxconn, 100);
	cr_assert_eq(p->servers[0].proxy_protocol, PROXY_PROTO_V2);
	cr_assert_not(p->servers[0].backup);
	cr_assert_eq(p->servers[0].line, 23);
	cr_assert_str_eq(p->servers[1].host, "::1");
	cr_assert_eq(p->servers[1].addr.ss.ss_family, AF_INET6);
	cr_assert(p->servers[1].backup);
	cr_assert_eq(p->servers[1].weight, 1);
	cr_assert_str_eq(p->servers[2].host, "localhost");
	cr_assert(p->servers[2].disabled);
	cr_assert_eq(p->servers[2].weight, 0);
	cr_assert_eq(p->servers[2].proxy_protocol, PROXY_PROTO_V1);
	cr_assert_eq(p->check, CHECK_HTTP);
	cr_assert_str_eq(p->check_path, "/healthz");
	cr_assert_eq(p->check_expect_lo, 200);
	cr_assert_eq(p->check_expect_hi, 204);
	cr_assert_str_eq(p->check_host, "www.example.com");
	cr_assert_eq(p->check_interval_ms, 500);
	cr_assert_eq(p->check_timeout_ms, 250);
	cr_assert_eq(p->rise, 4);
	cr_assert_eq(p->fall, 5);
	cr_assert_eq(p->max_fails, 7);
	cr_assert_eq(p->fail_timeout_ms, 60000);
	cr_assert_eq(p->connect_timeout_ms, 2000);
	cr_assert_eq(p->server_timeout_ms, 3600000);
	cr_assert_eq(p->retries, 0);
	cr_assert_eq(p->keepalive, 0);
	cr_assert_eq(p->slow_start_ms, 30000);
	cr_assert(p->tls);
	cr_assert_not(p->tls_verify);
	cr_assert_str_eq(p->tls_ca, ca);
	cr_assert_str_eq(p->tls_sni, "backend.example.com");

	cr_assert_eq(cfg->n_listeners, 2);
	const struct cfg_listener *l = &cfg->listeners[0];
	cr_assert_str_eq(l->name, "front");
	cr_assert_eq(l->n_binds, 3);
	cr_assert_eq(l->binds[1].ss.ss_family, AF_INET6);
	cr_assert_eq(l->binds[2].ss.ss_family, AF_UNIX);
	cr_assert_eq(l->mode, MODE_HTTP);
	cr_assert_str_eq(l->pool_name, "web");
	cr_assert_eq(l->pool, 0);
	cr_assert_eq(l->n_tls_certs, 1);
	cr_assert_eq(l->n_tls_keys, 1);
	cr_assert_str_eq(l->tls_certs[0], cert);
	cr_assert_str_eq(l->tls_keys[0], key);
	cr_assert_eq(l->tls_min_version, 13);
	cr_assert_str_eq(l->tls_ciphers, "ECDHE+AESGCM");
	cr_assert_eq(l->handshake_timeout_ms, 5000);
	cr_assert_str_eq(l->alpn, "http/1.1");
	cr_assert(l->proxy_protocol_accept);
	cr_assert_eq(l->client_timeout_ms, 20000);
	cr_assert_eq(l->tunnel_timeout_ms, 7200000);
	cr_assert_eq(l->request_timeout_ms, 4000);
	cr_assert_eq(l->keepalive_timeout_ms, 15000);
	cr_assert_eq(l->max_uri_size, 4096);
	cr_assert_eq(l->max_header_size, 32768);
	cr_assert_eq(l->max_body_size, 10 << 20);
	cr_assert_not(l->forwarded_headers);
	cr_assert_eq(l->cache_size, 64 << 20);

	const struct cfg_listener *f = &cfg->listeners[1];
	cr_assert_eq(f->mode, MODE_FORWARD);
	cr_assert_eq(f->pool, -1);
	cr_assert_null(f->pool_name);
	cr_assert_eq(f->n_allow, 2);
	cr_assert_str_eq(f->allow[0].pattern, "*.example.com");
	cr_assert_str_eq(f->allow[1].pattern, "[2001:db8::/32]:443");
	cr_assert_eq(f->n_deny, 1);
	cr_assert_str_eq(f->deny[0].pattern, "10.0.0.0/8");
	cr_assert_eq(f->n_connect_ports, 3);
	cr_assert_not(f->connect_ports_any);
	cr_assert_eq(f->connect_ports[0].lo, 443);
	cr_assert_eq(f->connect_ports[0].hi, 443);
	cr_assert_eq(f->connect_ports[1].lo, 8000);
	cr_assert_eq(f->connect_ports[1].hi, 8100);
	cr_assert_eq(f->connect_ports[2].lo, 9443);
	cr_assert_str_eq(f->auth_file, pw);
	cr_assert_eq(f->connect_timeout_ms, 1000);
	cr_assert_eq(f->server_timeout_ms, 10000);
	cr_assert_not(f->forwarded_headers, "off by default for forward");

	cr_assert_eq(cfg->n_routes, 2);
	const struct cfg_route *r = &cfg->routes[0];
	cr_assert_str_eq(r->name, "api");
	cr_assert_eq(r->listener, 0);
	cr_assert_eq(r->pool, 0);
	cr_assert_str_eq(r->host, "api.example.com");
	cr_assert_str_eq(r->path_prefix, "/api/");
	cr_assert_str_eq(r->header_name, "X-Canary");
	cr_assert_str_eq(r->header_value, "1");
	cr_assert_str_eq(cfg->routes[1].host, "*.example.com");
	cr_assert_null(cfg->routes[1].path_prefix);
	cr_assert_null(cfg->routes[1].header_name);

	cr_assert_eq(cfg_find_pool(cfg, "web"), 0);
	cr_assert_eq(cfg_find_pool(cfg, "nope"), -1);
	cr_assert_eq(cfg_find_listener(cfg, "fwd"), 1);
	cr_assert_eq(cfg_find_listener(cfg, "web"), -1);

	cfg_free(cfg);
	drop_tmp(ca);
	drop_tmp(cert);
	drop_tmp(key);
	drop_tmp(pw);
}

Test(config, defaults)
{
	struct cfg *cfg = load_ok(MIN_POOL MIN_LISTENER);
	const struct cfg_global *g = &cfg->global;
	const struct cfg_pool *p = &cfg->pools[0];
	const struct cfg_listener *l = &cfg->listeners[0];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	cr_assert_eq(g->workers, cpus < 1 ? 1 : cpus);
	cr_assert_eq(g->max_connections, 100000);
	cr_assert_eq(g->log_level, LOG_LVL_INFO);
	cr_assert_str_eq(g->access_log, "stderr");
	cr_assert_eq(g->access_log_format, LOG_FMT_TEXT);
	cr_assert_null(g->user);
	cr_assert_str_eq(g->admin, "127.0.0.1:9900");
	cr_assert_eq(port_of(&g->admin_addr), 9900);
	cr_assert_null(g->admin_token);
	cr_assert_eq(g->graceful_timeout_ms, 30000);
	cr_assert_not(g->cpu_affinity);
	cr_assert_eq(g->buffer_size, 16384);
	cr_assert_eq(g->pipe_size, 262144);
	cr_assert_eq(g->backlog, 4096);

	cr_assert_eq(p->balance, BAL_ROUNDROBIN);
	cr_assert_eq(p->hash_key, HKEY_CLIENT_IP);
	cr_assert_eq(p->maglev_table_size, 65537);
	cr_assert_eq(p->hash_balance_factor, 0);
	cr_assert_null(p->sticky_cookie);
	cr_assert_eq(p->servers[0].weight, 1);
	cr_assert_eq(p->servers[0].maxconn, 0);
	cr_assert_eq(p->servers[0].proxy_protocol, PROXY_PROTO_NONE);
	cr_assert_eq(p->check, CHECK_TCP);
	cr_assert_eq(p->check_expect_lo, 200);
	cr_assert_eq(p->check_expect_hi, 399);
	cr_assert_eq(p->check_interval_ms, 2000);
	cr_assert_eq(p->check_timeout_ms, 1000);
	cr_assert_eq(p->rise, 2);
	cr_assert_eq(p->fall, 3);
	cr_assert_eq(p->max_fails, 5);
	cr_assert_eq(p->fail_timeout_ms, 10000);
	cr_assert_eq(p->connect_timeout_ms, 3000);
	cr_assert_eq(p->server_timeout_ms, 30000);
	cr_assert_eq(p->retries, 2);
	cr_assert_eq(p->keepalive, 32);
	cr_assert_eq(p->slow_start_ms, 0);
	cr_assert_not(p->tls);
	cr_assert(p->tls_verify);
	cr_assert_null(p->tls_ca);
	cr_assert_null(p->tls_sni);

	cr_assert_eq(l->mode, MODE_HTTP);
	cr_assert_eq(l->pool, 0);
	cr_assert_eq(l->n_tls_certs, 0);
	cr_assert_eq(l->tls_min_version, 12);
	cr_assert_null(l->tls_ciphers);
	cr_assert_eq(l->handshake_timeout_ms, 10000);
	cr_assert_str_eq(l->alpn, "http/1.1");
	cr_assert_not(l->proxy_protocol_accept);
	cr_assert_eq(l->client_timeout_ms, 30000);
	cr_assert_eq(l->tunnel_timeout_ms, 3600000);
	cr_assert_eq(l->request_timeout_ms, 10000);
	cr_assert_eq(l->keepalive_timeout_ms, 60000);
	cr_assert_eq(l->max_uri_size, 8192);
	cr_assert_eq(l->max_header_size, 16384);
	cr_assert_eq(l->max_body_size, 0);
	cr_assert(l->forwarded_headers, "on by default for http");
	cr_assert_eq(l->cache_size, 0);
	cr_assert_eq(l->n_allow, 0);
	cr_assert_eq(l->n_deny, 0);
	cr_assert_eq(l->n_connect_ports, 1);
	cr_assert_eq(l->connect_ports[0].lo, 443);
	cr_assert_eq(l->connect_ports[0].hi, 443);
	cr_assert_not(l->connect_ports_any);
	cr_assert_null(l->auth_file);
	cr_assert_eq(l->connect_timeout_ms, 3000);
	cr_assert_eq(l->server_timeout_ms, 30000);
	cfg_free(cfg);
}

Test(config, mode_dependent_defaults)
{
	struct cfg *cfg = load_ok(MIN_POOL "[listener f]\nbind = 127.0.0.1:13128\nmode = forward\n"
					   "forwarded_headers = on\nconnect_ports = *\n"
					   "[listener g]\nbind = 127.0.0.1:13129\nmode = forward\n"
					   "[listener t]\nbind = 127.0.0.1:13130\nmode = tcp\n");

	cr_assert(cfg->listeners[0].forwarded_headers, "an explicit value wins");
	cr_assert(cfg->listeners[0].connect_ports_any);
	cr_assert_eq(cfg->listeners[0].n_connect_ports, 0);
	cr_assert_not(cfg->listeners[1].forwarded_headers);
	cr_assert_not(cfg->listeners[2].forwarded_headers);
	cfg_free(cfg);
}

Test(config, workers)
{
	struct cfg_errors errs = {0};
	char *path = write_tmp("[global]\nworkers = auto\n" MIN_POOL MIN_LISTENER);
	struct cfg *cfg = cfg_load(path, 5, &errs);

	cr_assert_not_null(cfg);
	cr_assert_eq(cfg->global.workers, 5, "-w overrides workers");
	cr_assert_str_eq(cfg->path, path);
	cfg_free(cfg);
	drop_tmp(path);
	cfg = load_ok("[global]\nworkers = 7\n" MIN_POOL MIN_LISTENER);
	cr_assert_eq(cfg->global.workers, 7);
	cfg_free(cfg);
}

Test(config, empty_values_disable)
{
	struct cfg *cfg = load_ok("[global]\nadmin =\nuser =\n" MIN_POOL MIN_LISTENER);

	cr_assert_null(cfg->global.admin);
	cr_assert_eq(cfg->global.admin_addr.len, 0);
	cr_assert_null(cfg->global.user);
	cfg_free(cfg);
}

Test(config, listener_without_pool_and_port_zero)
{
	struct cfg *cfg = load_ok("[listener a]\nbind = 127.0.0.1:0\n"
				  "[listener b]\nbind = 127.0.0.1:0\nmode = tcp\n");

	cr_assert_eq(cfg->listeners[0].pool, -1);
	cr_assert_eq(cfg->n_pools, 0);
	cfg_free(cfg);
}

Test(config, comments_and_blanks)
{
	struct cfg *cfg = load_ok("# hash comment\n"
				  "; semicolon comment\n"
				  "\n"
				  "   [pool p]   ; after a header\n"
				  "  server = s1 127.0.0.1:9001   # trailing hash comment\n"
				  "\tbalance = leastconn ; trailing\n" MIN_LISTENER);

	cr_assert_eq(cfg->pools[0].balance, BAL_LEASTCONN);
	cr_assert_eq(cfg->pools[0].n_servers, 1);
	cfg_free(cfg);
}

/* ---- shipped examples ---- */

static void load_example(const char *path)
{
	struct cfg_errors errs = {0};
	struct cfg *cfg = cfg_load(path, 0, &errs);

	for (size_t i = 0; i < errs.len; i++)
		cr_log_error("%s", errs.msgs[i]);
	cr_assert_not_null(cfg, "%s should load", path);
	cfg_free(cfg);
	cfg_errors_free(&errs);
}

/* TEXT with every FROM replaced by TO; the caller frees it. */
static char *replace_all(const char *text, const char *from, const char *to)
{
	size_t n = 0, lf = strlen(from), lt = strlen(to);
	for (const char *p = strstr(text, from); p; p = strstr(p + lf, from))
		n++;
	char *out = malloc(strlen(text) + n * lt + 1), *o = out;
	cr_assert_not_null(out);
	for (const char *p = text, *q; *p; p = q + lf) {
		q = strstr(p, from);
		if (!q) {
			strcpy(o, p);
			return out;
		}
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		memcpy(o, to, lt);
		o += lt;
	}
	*o = '\0';
	return out;
}

/* tls.ini names certificate files that do not exist here, and they are
 * loaded with the configuration: it is loaded with generated ones in their
 * place (the first pair's certificate also stands in as the CA). */
static void load_tls_example(void)
{
	FILE *f = fopen("config/examples/tls.ini", "r");
	cr_assert_not_null(f, "config/examples/tls.ini: %s", strerror(errno));
	char *text = calloc(1, 1 << 16);
	cr_assert_not_null(text);
	size_t len = fread(text, 1, (1 << 16) - 1, f);
	cr_assert(len > 0 && feof(f), "tls.ini is empty or over 64 KiB");
	fclose(f);

	char *cert[2], *key[2];
	write_cert_pair(&cert[0], &key[0]);
	write_cert_pair(&cert[1], &key[1]);
	const char *subst[][2] = {
		{"/etc/fulcrum/certs/site.pem", cert[0]},
		{"/etc/fulcrum/certs/site.key", key[0]},
		{"/etc/fulcrum/certs/other.pem", cert[1]},
		{"/etc/fulcrum/certs/other.key", key[1]},
		{"/etc/fulcrum/certs/internal-ca.pem", cert[0]},
	};
	for (size_t i = 0; i < sizeof(subst) / sizeof(subst[0]); i++) {
		cr_assert_not_null(strstr(text, subst[i][0]), "tls.ini no longer names %s",
				   subst[i][0]);
		char *next = replace_all(text, subst[i][0], subst[i][1]);
		free(text);
		text = next;
	}
	/* Every file the example names was replaced: none is left to fail on. */
	cr_assert_null(strstr(text, "/etc/fulcrum/"), "tls.ini names a file not substituted");

	char *path = write_tmp(text);
	struct cfg_errors errs = {0};
	struct cfg *cfg = cfg_load(path, 0, &errs);
	for (size_t i = 0; i < errs.len; i++)
		cr_log_error("%s", errs.msgs[i]);
	cr_assert_not_null(cfg,
			   "config/examples/tls.ini (with generated certificates) should load");
	/* And it is the TLS example that loaded: both pairs and the TLS pool. */
	size_t pairs = 0, tls_pools = 0;
	for (size_t i = 0; i < cfg->n_listeners; i++)
		pairs += cfg->listeners[i].n_tls_certs;
	for (size_t i = 0; i < cfg->n_pools; i++)
		tls_pools += cfg->pools[i].tls && cfg->pools[i].tls_verify;
	cr_assert_eq(pairs, 2);
	cr_assert_eq(tls_pools, 1);
	cfg_free(cfg);
	cfg_errors_free(&errs);

	drop_tmp(path);
	for (int i = 0; i < 2; i++) {
		drop_tmp(cert[i]);
		drop_tmp(key[i]);
	}
	free(text);
}

Test(config, examples_load)
{
	load_example("config/fulcrum.ini");
	load_example("config/examples/tcp.ini");
	load_example("config/examples/http-routes.ini");
	load_example("config/examples/sni-passthrough.ini");
	load_example("config/examples/sticky.ini");
	load_example("config/examples/forward.ini");
	load_tls_example();
}

Test(config, demo_config_shape)
{
	struct cfg_errors errs = {0};
	struct cfg *cfg = cfg_load("config/fulcrum.ini", 0, &errs);

	cr_assert_not_null(cfg);
	cr_assert_eq(cfg->n_pools, 1);
	cr_assert_eq(cfg->pools[0].n_servers, 3);
	cr_assert_eq(port_of(&cfg->pools[0].servers[0].addr), 9001);
	cr_assert_eq(port_of(&cfg->pools[0].servers[2].addr), 9003);
	cr_assert_eq(cfg->n_listeners, 2);
	cr_assert_eq(cfg->listeners[0].mode, MODE_HTTP);
	cr_assert_eq(port_of(&cfg->listeners[0].binds[0]), 8080);
	cr_assert_eq(cfg->listeners[1].mode, MODE_TCP);
	cr_assert_eq(port_of(&cfg->listeners[1].binds[0]), 8081);
	cr_assert_eq(port_of(&cfg->global.admin_addr), 9900);
	cfg_free(cfg);
}
