/*
 * test_config_errors.c - unit tests of config/ on files that must not load:
 * one case per kind of error, each checking FILE:LINE and the message,
 * several errors in one file, a missing file.
 */
#include "tests/unit/config_files.h"

struct bad_case {
	const char *text;
	int line;
	const char *what;
};

static const struct bad_case bad_cases[] = {
	{"[global]\nworkers = 2\nbogus = 1\n", 3, "unknown key \"bogus\" in [global]"},
	{MIN_POOL "balancer = roundrobin\n", 3, "unknown key \"balancer\" in [pool p]"},
	{MIN_POOL "[frontend x]\n", 3, "unknown section [frontend]"},
	{MIN_POOL "[pool]\n", 3, "bad section name"},
	{"[global x]\n", 1, "[global] takes no name"},
	{"[pool p\nserver = a 127.0.0.1:1\n", 1, "section header without ']'"},
	{"workers = 1\n", 1, "outside of any section"},
	{MIN_POOL "rise\n", 3, "expected KEY = VALUE"},
	{MIN_POOL "check_interval = 5x\n", 3, "bad duration \"5x\" for check_interval"},
	{MIN_POOL "check_timeout = 1.5s\n", 3, "bad duration \"1.5s\" for check_timeout"},
	{MIN_POOL "connect_timeout = 0\n", 3, "connect_timeout must be more than 0"},
	{"[global]\ngraceful_timeout = 18446744073709551615ms\n", 2,
	 "graceful_timeout \"18446744073709551615ms\" is over 365 days"},
	{MIN_POOL "server_timeout = 8761h\n", 3, "server_timeout \"8761h\" is over 365 days"},
	{"[global] workers = 2\n", 1, "text after the section header: \"workers = 2\""},
	{"[listener f]\nbind = 127.0.0.1:18081\nmode = forward\nconnect_ports = 443,,80\n", 4,
	 "bad connect_ports \"443,,80\""},
	{"[listener f]\nbind = 127.0.0.1:18081\nmode = forward\nconnect_ports = 443,\n", 4,
	 "bad connect_ports \"443,\""},
	{"[global]\nbuffer_size = 16q\n", 2, "bad size \"16q\" for buffer_size"},
	{"[global]\nbuffer_size = 10\n", 2, "buffer_size must be at least 1024"},
	{"[global]\nbuffer_size = 8000000000000000000\n", 2, "buffer_size must be at most"},
	{"[global]\npipe_size = 2g\n", 2, "pipe_size must be at most 1073741824"},
	{MIN_POOL MIN_LISTENER "max_header_size = 4g\n", 6,
	 "max_header_size must be at most 1048576"},
	{MIN_POOL MIN_LISTENER "max_uri_size = 2m\n", 6, "max_uri_size must be at most 1048576"},
	{"[global]\nworkers = none\n", 2, "bad workers \"none\""},
	{"[global]\nbacklog = -1\n", 2, "bad number \"-1\" for backlog"},
	{"[global]\nlog_level = loud\n", 2, "unknown log_level \"loud\""},
	{"[global]\nuser = no-such-user-here\n", 2, "unknown user"},
	{"[global]\nadmin = localhost\n", 2, "bad address \"localhost\" for admin"},
	{MIN_POOL "tls = maybe\n", 3, "bad boolean \"maybe\" for tls"},
	{MIN_POOL "balance = fastest\n", 3, "unknown balance \"fastest\" (expected roundrobin"},
	{MIN_POOL "hash_key = header:\n", 3, "bad hash_key"},
	{MIN_POOL "maglev_table_size = 65536\n", 3, "maglev_table_size must be a prime"},
	{MIN_POOL "maglev_table_size = 65521\n", 3, "maglev_table_size must be a prime"},
	{MIN_POOL "hash_balance_factor = 50\n", 3, "bad hash_balance_factor"},
	{MIN_POOL "sticky_cookie = a b\n", 3, "bad sticky_cookie"},
	{MIN_POOL "check = udp\n", 3, "bad check \"udp\""},
	{MIN_POOL "check = http GET healthz\n", 3, "bad check"},
	{MIN_POOL "check = http GET /h expect=600\n", 3, "bad check option \"expect=600\""},
	{MIN_POOL "check = http GET /h expect=300 expect=200\n", 3,
	 "check option \"expect=200\" repeats an earlier one"},
	{MIN_POOL "check = http GET /h host=a.test host=b.test\n", 3,
	 "check option \"host=b.test\" repeats"},
	{MIN_POOL "tls_sni = bad name!\n", 3, "bad tls_sni \"bad name!\""},
	{MIN_POOL "tls_sni = a..b\n", 3, "bad tls_sni"},
	{MIN_POOL "tls_sni = 127.0.0.1\n", 3,
	 "bad tls_sni \"127.0.0.1\" (expected a host name, not an address)"},
	{MIN_POOL "tls_sni = 10.0.0.1.\n", 3, "bad tls_sni \"10.0.0.1.\""},
	{MIN_POOL "check = http GET /h expect=399-200\n", 3, "bad check option"},
	{MIN_POOL "check = http GET /h timeout=1\n", 3, "bad check option \"timeout=1\""},
	{MIN_POOL "check = http GET /h\x01X-Inj:1\n", 3, "bad check"},
	{MIN_POOL "check = http GET /h host=a\x7f\n", 3, "bad check option \"host=a"},
	{MIN_POOL "check = http GET /h host=::1\n", 3,
	 "bad check option \"host=::1\" (expected expect=200-399, or host=NAME[:PORT] with an "
	 "IPv6 address in brackets)"},
	{MIN_POOL "check = http GET /h host=[::1\n", 3, "bad check option \"host=[::1\""},
	{MIN_POOL "check = http GET /h host=a.test:99999\n", 3, "bad check option"},
	{MIN_POOL "tls_ca = /no/such/ca.pem\n", 3, "cannot read tls_ca"},
	{MIN_POOL "rise = 0\n", 3, "bad number \"0\" for rise"},
	{MIN_POOL "rise = 2\nrise = 3\n", 4, "duplicate key \"rise\" (already set at line 3)"},
	{MIN_POOL "server = s2 127.0.0.1:9002 weight=x\n", 3, "bad server option \"weight=x\""},
	{MIN_POOL "server = s2 127.0.0.1:9002 weight=257\n", 3, "bad server option"},
	{MIN_POOL "server = s2 127.0.0.1:9002 fast\n", 3, "bad server option \"fast\""},
	{MIN_POOL "server = s2 127.0.0.1:9002 weight=1 weight=2\n", 3,
	 "server option \"weight=2\" repeats an earlier one"},
	{MIN_POOL "server = s2 127.0.0.1:9002 proxy_protocol=v1 backup proxy_protocol=v2\n", 3,
	 "server option \"proxy_protocol=v2\" repeats"},
	{MIN_POOL "server = s2 127.0.0.1:9002 proxy_protocol=v3\n", 3, "bad server option"},
	{MIN_POOL "server = s1 127.0.0.1:9002\n", 3, "duplicate server \"s1\" in pool \"p\""},
	{MIN_POOL "server = s2\n", 3, "server needs NAME HOST:PORT"},
	{MIN_POOL "server = s/2 127.0.0.1:1\n", 3, "bad server name"},
	{MIN_POOL "server = .. 127.0.0.1:1\n", 3, "bad server name"},
	{MIN_POOL "[pool .]\nserver = a 127.0.0.1:1\n", 3, "bad section name \".\""},
	{MIN_POOL "server = s2 127.0.0.1:0\n", 3, "port 0"},
	{MIN_POOL "server = s2 127.0.0.1\n", 3, "bad address \"127.0.0.1\" for server s2"},
	{MIN_POOL "server = s2 ::1:80\n", 3, "IPv6 addresses need brackets"},
	{MIN_POOL "server = s2 no-such-host.invalid:80\n", 3,
	 "cannot resolve no-such-host.invalid"},
	{MIN_POOL "[pool p]\n", 3, "duplicate section [pool p] (first at line 1)"},
	{MIN_POOL "[pool q]\nbalance = random\n", 3, "pool \"q\" has no server"},
	{MIN_POOL "[listener l]\nmode = http\n", 3, "listener \"l\" has no bind"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1\n", 4, "bad address \"127.0.0.1\" for bind"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:99999\n", 4, "bad port"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\npool = nope\n", 5, "unknown pool \"nope\""},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\nmode = udp\n", 5, "unknown mode \"udp\""},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\n[listener m]\nbind = 127.0.0.1:1\n", 6,
	 "bind \"127.0.0.1:1\" overlaps a bind of listener \"l\""},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\n[listener m]\nbind = 0.0.0.0:1\n", 6,
	 "bind \"0.0.0.0:1\" overlaps a bind of listener \"l\""},
	{MIN_POOL "[listener l]\nbind = [::]:1\nbind = [::1]:1\n", 5,
	 "bind \"[::1]:1\" overlaps a bind of listener \"l\""},
	{MIN_POOL
	 "[listener l]\nbind = unix:/tmp/f.sock\n[listener m]\nbind = unix:/tmp//./f.sock\n",
	 6, "bind \"unix:/tmp//./f.sock\" overlaps a bind of listener \"l\""},
	{"[global]\nadmin = 127.0.0.1:7\n" MIN_POOL "[listener l]\nbind = 0.0.0.0:7\n", 2,
	 "admin 127.0.0.1:7 overlaps bind 0.0.0.0:7 of listener \"l\""},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:9900\n", 4,
	 "admin 127.0.0.1:9900 (the default) overlaps bind 127.0.0.1:9900 of listener \"l\""},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\ntls_cert = /no/cert.pem\n", 5,
	 "cannot read tls_cert \"/no/cert.pem\""},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\ntls_cert = /etc/hostname\n"
		  "tls_cert = /etc/hostname\ntls_key = /etc/hostname\n",
	 6, "2 tls_cert and 1 tls_key"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\ntls_cert = /etc/hostname\n"
		  "tls_key = /etc/hostname\ntls_cert = /etc/hostname\n",
	 7, "2 tls_cert and 1 tls_key"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\ntls_cert = /etc/hostname\n"
		  "tls_key = /etc/hostname\ntls_key = /etc/hostname\n",
	 7, "1 tls_cert and 2 tls_key"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\ntls_min_version = 1.1\n", 5,
	 "bad tls_min_version"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\nproxy_protocol = v2\n", 5,
	 "bad proxy_protocol"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\nallow = *\n", 5,
	 "allow is for forward listeners only"},
	{MIN_POOL "[listener l]\nbind = 127.0.0.1:1\nmode = tcp\ncache = 1m\n", 6,
	 "cache is for http and forward listeners only"},
	{"[listener f]\nbind = 127.0.0.1:1\nmode = forward\nconnect_ports = 443,70000\n", 4,
	 "bad connect_ports"},
	{"[listener f]\nbind = 127.0.0.1:1\nmode = forward\nallow =\n", 4, "empty allow pattern"},
	{"[listener f]\nbind = 127.0.0.1:1\nmode = forward\nconnect_ports = 90-80\n", 4,
	 "bad connect_ports"},
	{"[listener f]\nbind = 127.0.0.1:1\nmode = forward\nauth = basic /no/htpasswd\n", 4,
	 "cannot read auth file \"/no/htpasswd\""},
	{"[listener f]\nbind = 127.0.0.1:1\nmode = forward\nauth = digest /etc/hostname\n", 4,
	 "bad auth"},
	{MIN_POOL MIN_LISTENER "[route r]\nlistener = l\n", 6, "route \"r\" needs pool = NAME"},
	{MIN_POOL MIN_LISTENER "[route r]\npool = p\n", 6, "route \"r\" needs listener = NAME"},
	{MIN_POOL MIN_LISTENER "[route r]\nlistener = x\npool = p\n", 7, "unknown listener \"x\""},
	{MIN_POOL MIN_LISTENER "[route r]\nlistener = l\npool = q\n", 8, "unknown pool \"q\""},
	{MIN_POOL MIN_LISTENER "[route r]\nlistener = l\npool = p\nhost = a*.b\n", 9, "bad host"},
	{MIN_POOL MIN_LISTENER "[route r]\nlistener = l\npool = p\npath_prefix = api\n", 9,
	 "bad path_prefix"},
	{MIN_POOL MIN_LISTENER "[route r]\nlistener = l\npool = p\npath_prefix = /zz%00q/\n", 9,
	 "(%00 in it)"},
	{MIN_POOL MIN_LISTENER "[route r]\nlistener = l\npool = p\nheader = X-Canary\n", 9,
	 "bad header"},
	{MIN_POOL MIN_LISTENER "[route r]\nlistener = l\npool = p\nheader = X-A: 1\x01\n", 9,
	 "bad header"},
	{MIN_POOL "[listener t]\nbind = 127.0.0.1:1\nmode = tcp\n[route r]\nlistener = t\n"
		  "pool = p\npath_prefix = /x\n",
	 9, "path_prefix needs an http listener"},
	{MIN_POOL "[listener f]\nbind = 127.0.0.1:1\nmode = forward\n[route r]\nlistener = f\n"
		  "pool = p\n",
	 7, "routes are for http and tcp listeners"},
	{MIN_POOL "[route r]\nlistener = l\npool = p\n[route r]\n", 6,
	 "duplicate section [route r]"},
};

Test(config, errors_have_file_and_line)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
		expect_error(bad_cases[i].text, bad_cases[i].line, bad_cases[i].what);
}

Test(config, missing_file)
{
	struct cfg_errors errs = {0};
	struct cfg *cfg = cfg_load("/no/such/dir/fulcrum.ini", 0, &errs);

	cr_assert_null(cfg);
	cr_assert_eq(errs.len, 1);
	cr_assert_str_eq(errs.msgs[0],
			 "/no/such/dir/fulcrum.ini: cannot open: No such file or directory");
	cfg_errors_free(&errs);
}

/* Every problem is reported, in line order, with the path as given. */
Test(config, all_errors_collected_in_order)
{
	static const char text[] = "[listener l]\n" /* 1 */
				   "bind = 127.0.0.1:1\n" /* 2 */
				   "pool = missing\n" /* 3 */
				   "[pool p]\n" /* 4 */
				   "check_interval = 5x\n" /* 5 */
				   "server = a 127.0.0.1:1\n" /* 6 */
				   "server = a 127.0.0.1:2\n" /* 7 */
				   "size = 1\n" /* 8 */
				   "[oops]\n" /* 9 */
				   "this = is skipped silently\n" /* 10 */
				   "[route r]\n"; /* 11 */
	static const int lines[] = {3, 5, 7, 8, 9, 11, 11};
	struct cfg_errors errs = {0};
	char *path = write_tmp(text);
	struct cfg *cfg = cfg_load(path, 0, &errs);
	char prefix[256];

	cr_assert_null(cfg);
	for (size_t i = 0; i < errs.len; i++)
		cr_log_info("%s", errs.msgs[i]);
	cr_assert_eq(errs.len, sizeof(lines) / sizeof(lines[0]));
	for (size_t i = 0; i < errs.len; i++) {
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, lines[i]);
		cr_assert_eq(strncmp(errs.msgs[i], prefix, strlen(prefix)), 0, "%s", errs.msgs[i]);
	}
	cfg_errors_free(&errs);
	drop_tmp(path);
}

/* Errors append to what the caller already collected; cfg_errors_add formats. */
Test(config, errors_append)
{
	struct cfg_errors errs = {0};

	cfg_errors_add(&errs, "first %d", 1);
	cr_assert_null(cfg_load("/no/such/file.ini", 0, &errs));
	cr_assert_eq(errs.len, 2);
	cr_assert_str_eq(errs.msgs[0], "first 1");
	cfg_errors_free(&errs);
	cr_assert_eq(errs.len, 0);
	cr_assert_null(errs.msgs);
}
