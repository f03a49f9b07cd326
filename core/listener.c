/*
 * listener.c - listening sockets (see listener.h). Main thread.
 */
#include "core/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int open_unix(const struct cfg_addr *a, int backlog, const char **what)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*what = "socket";
		return -errno;
	}
	/* A stale socket file from an earlier run would make bind fail. */
	unlink(un->sun_path);
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
		*what = "bind";
		goto fail;
	}
	if (listen(fd, backlog) < 0) {
		*what = "listen";
		goto fail;
	}
	return fd;
fail:;
	int err = errno;
	close(fd);
	return -err;
}

int listener_open(struct cfg_addr *a, int backlog, const char **what)
{
	int one = 1;

	if (a->ss.ss_family == AF_UNIX)
		return open_unix(a, backlog, what);
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*what = "socket";
		return -errno;
	}
	*what = "setsockopt";
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	*what = "bind";
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
		goto fail;
	*what = "listen";
	if (listen(fd, backlog) < 0)
		goto fail;
	socklen_t len = a->len;
	if (getsockname(fd, (struct sockaddr *)&a->ss, &len) < 0)
		goto fail;
	return fd;
fail:;
	int err = errno;
	close(fd);
	return -err;
}
