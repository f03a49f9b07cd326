/*
 * privs.c - the pid file and the switch to an unprivileged user at start.
 */
#include "core/privs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

/* Whether this process wrote the pid file: only then is it its to give
 * away or remove. A start that fails because another instance holds the
 * port must leave that instance's file alone. */
static bool pid_written;

/* The pid file goes to the user fulcrum runs as, so that a binary upgrade
 * (started by that user) can write it again. Only the regular file this
 * process wrote changes hands, opened without following a link and with no
 * other name: a device (-p /dev/null) stays as it is, and a name planted in
 * a directory that user can write must not hand it a file of root's. */
static void give_pidfile(const char *path, const struct passwd *pw)
{
	struct stat st;
	int err = 0;

	if (!path || !pid_written)
		return;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		err = errno;
	else if (fstat(fd, &st) < 0)
		err = errno;
	else if (S_ISREG(st.st_mode) && st.st_nlink == 1 && fchown(fd, pw->pw_uid, pw->pw_gid) < 0)
		err = errno;
	if (fd >= 0)
		close(fd);
	if (err)
		log_warn("cannot give the pid file %s to user %s: %s; a binary upgrade "
			 "will not be able to write it",
			 path, pw->pw_name, strerror(err));
}

int drop_privileges(const char *user, const char *pidfile)
{
	if (!user)
		return 0;
	if (geteuid() != 0) {
		log_warn("user = %s ignored: fulcrum was not started as root", user);
		return 0;
	}
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		fprintf(stderr, "fulcrum: user \"%s\" does not exist\n", user);
		return -1;
	}
	int err = log_access_chown(pw->pw_uid);
	if (err < 0)
		log_warn("cannot give the access log to user %s: %s; SIGUSR1 may not reopen it",
			 user, strerror(-err));
	give_pidfile(pidfile, pw);
	/* The user's groups come along, as with nginx: a key readable by the
	 * ssl-cert group stays readable to reloads. */
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		fprintf(stderr, "fulcrum: cannot switch to user \"%s\": %s\n", user,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Removes the pid file if this process wrote it and it is a regular file:
 * `-p /dev/null` must not cost the system its /dev/null at exit. */
void remove_pidfile(const char *path)
{
	struct stat st;

	if (!pid_written)
		return;
	pid_written = false;
	/* When lstat fails (a directory the dropped user cannot search),
	 * unlink fails the same way, and says so. */
	if (lstat(path, &st) < 0 || S_ISREG(st.st_mode))
		log_unlink(path, "pid file");
}

/* Opens the pid file for writing without following a link or writing into
 * a file that has other names: started as root, fulcrum must not truncate
 * whatever a name in a directory another user can write points at. */
static int open_pidfile(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		if (errno == ELOOP)
			fprintf(stderr,
				"fulcrum: pid file %s is a symbolic link; give its real path\n",
				path);
		else
			fprintf(stderr, "fulcrum: cannot write pid file %s: %s\n", path,
				strerror(errno));
		return -1;
	}
	struct stat st;
	const char *why = NULL;
	if (fstat(fd, &st) < 0)
		why = strerror(errno);
	else if (S_ISREG(st.st_mode) && st.st_nlink > 1)
		why = "it has other hard links";
	else if (S_ISREG(st.st_mode) && ftruncate(fd, 0) < 0)
		why = strerror(errno);
	if (why) {
		fprintf(stderr, "fulcrum: cannot write pid file %s: %s\n", path, why);
		close(fd);
		return -1;
	}
	return fd;
}

int write_pidfile(const char *path)
{
	int fd = open_pidfile(path);
	if (fd < 0)
		return -1;
	pid_written = true;
	char line[32];
	int len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	/* A write can fail where the open did not (a full disk, /proc). */
	ssize_t n = write(fd, line, (size_t)len);
	int err = n < 0 ? errno : ENOSPC;
	if (close(fd) < 0 && n == len) {
		n = -1;
		err = errno;
	}
	if (n != len) {
		fprintf(stderr, "fulcrum: cannot write pid file %s: %s\n", path, strerror(err));
		remove_pidfile(path); /* a cut-off one would name no process, or another */
		return -1;
	}
	return 0;
}
