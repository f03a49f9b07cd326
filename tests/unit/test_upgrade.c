/*
 * test_upgrade.c - the new process's side of a binary upgrade
 * (core/upgrade.c): reading FULCRUM_INHERIT, adopting the sockets handed
 * over by listener, bind and worker, sharing out the surplus, closing what
 * nothing adopted, and the ready byte. The old process's side (spawning)
 * is covered by tests/integration/test_upgrade.py.
 *
 * Criterion runs every test in its own process, so each starts with the
 * module's state untouched.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/upgrade.h"
#include "core/worker.h"

static char *argv0[] = {"fulcrum", NULL};

/* A listening socket on 127.0.0.1:*PORT with SO_REUSEPORT (*PORT 0: any,
 * then set). */
static int listening(int *port)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
	socklen_t len = sizeof(sin);

	cr_assert(fd >= 0);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	cr_assert(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0);
	cr_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(listen(fd, 16) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static void set_addr(struct cfg_addr *a, char *text, int port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;

	memset(a, 0, sizeof(*a));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &sin->sin_addr);
	a->len = sizeof(*sin);
	a->text = text;
}

static bool is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

Test(upgrade, no_environment_is_a_plain_start)
{
	unsetenv(UPGRADE_ENV);
	cr_assert_eq(upgrade_init(argv0), 0);
	cr_assert_not(upgrade_inherited());
	struct cfg_addr a;
	set_addr(&a, "127.0.0.1:80", 80);
	cr_assert_eq(upgrade_adopt("web", &a, 0, 16), -ENOENT);
	cr_assert_eq(upgrade_adopt_admin("127.0.0.1:9900", &a, 16), -ENOENT);
	upgrade_close_unused();
	struct cfg none = {0};
	upgrade_ready(&none);
}

Test(upgrade, adopts_by_listener_bind_and_worker)
{
	int port = 0;
	int s0 = listening(&port), s1 = listening(&port), adm_port = 0, adm = listening(&adm_port);
	int ready[2];
	char env[512], text[64], adm_text[64];

	cr_assert(pipe(ready) == 0);
	snprintf(text, sizeof(text), "127.0.0.1:%d", port);
	snprintf(adm_text, sizeof(adm_text), "127.0.0.1:%d", adm_port);
	/* The listener's name holds every character the format escapes,
	 * in upper and lower case hex. */
	snprintf(env, sizeof(env),
		 "1;R,%d;L,%d,w%%2Ce%%3Bb%%25%%20x,%s;L,%d,w%%2ce%%3bb%%25%%20x,%s;A,%d,%s",
		 ready[1], s0, text, s1, text, adm, adm_text);
	cr_assert(setenv(UPGRADE_ENV, env, 1) == 0);
	cr_assert_eq(upgrade_init(argv0), 0);
	cr_assert(upgrade_inherited());
	cr_assert_null(getenv(UPGRADE_ENV), "the variable must not reach a later child");

	struct cfg_addr a, b;
	set_addr(&a, text, port);
	cr_assert_eq(upgrade_adopt("w,e;b% x", &a, 2, 16), -ENOENT, "only two were handed over");
	cr_assert_eq(upgrade_adopt("w,e;b% x", &a, 1, 16), s1);
	cr_assert_eq(upgrade_adopt("w,e;b% x", &a, 0, 16), s0);
	cr_assert_eq(upgrade_adopt("w,e;b% x", &a, 0, 16), -ENOENT, "adopted once only");
	cr_assert_eq(upgrade_adopt("other", &a, 0, 16), -ENOENT);
	cr_assert(fcntl(s0, F_GETFD) & FD_CLOEXEC);
	cr_assert(fcntl(s0, F_GETFL) & O_NONBLOCK);
	set_addr(&b, adm_text, adm_port);
	cr_assert_eq(upgrade_adopt_admin(adm_text, &b, 16), adm);

	upgrade_close_unused();
	cr_assert(is_open(s0) && is_open(s1) && is_open(adm));
	struct cfg none = {0};
	upgrade_ready(&none);
	char c = 0;
	cr_assert_eq(read(ready[0], &c, 1), 1);
	cr_assert_eq(c, 'R');
	cr_assert_eq(read(ready[0], &c, 1), 0, "the write end is closed after the byte");
}

Test(upgrade, port_zero_takes_the_inherited_port)
{
	int port = 0, s0 = listening(&port), ready[2];
	char env[256];

	cr_assert(pipe(ready) == 0);
	snprintf(env, sizeof(env), "1;R,%d;L,%d,web,127.0.0.1:0", ready[1], s0);
	cr_assert(setenv(UPGRADE_ENV, env, 1) == 0);
	cr_assert_eq(upgrade_init(argv0), 0);
	struct cfg_addr a;
	set_addr(&a, "127.0.0.1:0", 0);
	cr_assert_eq(upgrade_adopt("web", &a, 0, 16), s0);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), port,
		     "later workers must bind the port the first one has");
}

Test(upgrade, socket_bound_elsewhere_is_not_adopted_and_is_closed)
{
	int port = 0, s0 = listening(&port), ready[2];
	char env[256], text[64];

	cr_assert(pipe(ready) == 0);
	snprintf(text, sizeof(text), "127.0.0.1:%d", port == 65535 ? port - 1 : port + 1);
	snprintf(env, sizeof(env), "1;R,%d;L,%d,web,%s", ready[1], s0, text);
	cr_assert(setenv(UPGRADE_ENV, env, 1) == 0);
	cr_assert_eq(upgrade_init(argv0), 0);
	struct cfg_addr a;
	set_addr(&a, text, port == 65535 ? port - 1 : port + 1);
	cr_assert_eq(upgrade_adopt("web", &a, 0, 16), -ENOENT);
	upgrade_close_unused();
	cr_assert_not(is_open(s0));
}

Test(upgrade, surplus_goes_round_the_fewer_workers)
{
	int port = 0, ready[2], s[5];
	char env[512], text[64], *name = "web";
	size_t off;

	for (int i = 0; i < 5; i++)
		s[i] = listening(&port);
	cr_assert(pipe(ready) == 0);
	snprintf(text, sizeof(text), "127.0.0.1:%d", port);
	off = (size_t)snprintf(env, sizeof(env), "1;R,%d", ready[1]);
	for (int i = 0; i < 5; i++)
		off += (size_t)snprintf(env + off, sizeof(env) - off, ";L,%d,web,%s", s[i], text);
	cr_assert(setenv(UPGRADE_ENV, env, 1) == 0);
	cr_assert_eq(upgrade_init(argv0), 0);

	struct cfg_addr bind;
	set_addr(&bind, text, port);

	/* Two workers now: s0 and s1 adopted, s2 and s4 to worker 0, s3 to 1. */
	cr_assert_eq(upgrade_adopt(name, &bind, 0, 16), s[0]);
	cr_assert_eq(upgrade_adopt(name, &bind, 1, 16), s[1]);
	cr_assert_eq(upgrade_adopt_surplus(name, &bind, 0, 2, 16), s[2]);
	cr_assert_eq(upgrade_adopt_surplus(name, &bind, 0, 2, 16), s[4]);
	cr_assert_eq(upgrade_adopt_surplus(name, &bind, 0, 2, 16), -ENOENT);
	/* A listener the new file renamed takes the sockets by address. */
	cr_assert_eq(upgrade_adopt_surplus("renamed", &bind, 1, 2, 16), s[3]);
	cr_assert_eq(upgrade_adopt_surplus(name, &bind, 1, 2, 16), -ENOENT);
	upgrade_close_unused();
	for (int i = 0; i < 5; i++)
		cr_assert(is_open(s[i]), "socket %d closed: its queue would be reset", i);
}

/* TMPL with $R replaced by R and $L by L, into OUT. */
static void expand(const char *tmpl, int r, int l, char *out, size_t cap)
{
	size_t n = 0;

	for (; *tmpl && n + 12 < cap; tmpl++) {
		if (tmpl[0] == '$' && (tmpl[1] == 'R' || tmpl[1] == 'L')) {
			n += (size_t)snprintf(out + n, cap - n, "%d", tmpl[1] == 'R' ? r : l);
			tmpl++;
		} else {
			out[n++] = *tmpl;
		}
	}
	out[n] = '\0';
}

Test(upgrade, malformed_values_fail_the_start)
{
	int port = 0, s0 = listening(&port), ready[2];
	char env[256];
	const char *bad[] = {
		"2;R,$R", /* unknown version */
		"1;L,$L,web,127.0.0.1:1", /* no ready pipe */
		"1;R,$R;L,x,web,127.0.0.1:1", /* fd not a number */
		"1;R,$R;L,$L,web,127.0.0.1%zz", /* bad escape */
		"1;R,$R;L,$L,web%00,127.0.0.1:1", /* escaped NUL */
		"1;R,$R;L,$L,web", /* missing field */
		"1;R,$R;Q,$L,web,127.0.0.1:1", /* unknown kind */
		"1;R,$R;L,99999,web,127.0.0.1:1", /* not an open fd */
	};
	cr_assert(pipe(ready) == 0);
	for (size_t i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
		pid_t pid = fork();
		cr_assert(pid >= 0);
		if (pid == 0) {
			/* The last row: a pipe handed over as a listener. */
			if (i == sizeof(bad) / sizeof(bad[0]))
				expand("1;R,$R;L,$L,web,127.0.0.1:1", ready[1], ready[0], env,
				       sizeof(env));
			else
				expand(bad[i], ready[1], s0, env, sizeof(env));
			setenv(UPGRADE_ENV, env, 1);
			fclose(stderr); /* the one-line cause is expected */
			_exit(upgrade_init(argv0) == -1 ? 0 : 1);
		}
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "row %zu was accepted", i);
	}
}
