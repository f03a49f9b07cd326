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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

/* The pid file this process wrote, by its inode: only that is its to give
 * away or remove. A start that fails because another instance holds the
 * port must leave that instance's file alone, and a name swapped for
 * another file after the write is not that file. */
static bool pid_written;
static dev_t pid_dev;
static ino_t pid_ino;

/* The pid file goes to the user fulcrum runs as, so that a binary upgrade
 * (started by that user) can write it again. Only the regular file this
 * process wrote changes hands, reached without a link: a device (-p
 * /dev/null) stays as it is, and nothing planted in a directory that user
 * can write makes root hand it a file of root's. */
static void give_pidfile(const char *path, uid_t uid, gid_t gid, const char *user)
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
	else if (S_ISREG(st.st_mode) && st.st_dev == pid_dev && st.st_ino == pid_ino &&
		 fchown(fd, uid, gid) < 0)
		err = errno;
	if (fd >= 0)
		close(fd);
	if (err)
		log_warn("cannot give the pid file %s to user %s: %s; a binary upgrade "
			 "will not be able to write it",
			 path, user, strerror(err));
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
	/* Copied: initgroups reads the group database, which may reuse
	 * getpwnam's static buffer. */
	uid_t uid = pw->pw_uid;
	gid_t gid = pw->pw_gid;
	int err = log_access_chown(uid);
	if (err < 0)
		log_warn("cannot give the access log to user %s: %s; SIGUSR1 may not reopen it",
			 user, strerror(-err));
	give_pidfile(pidfile, uid, gid, user);
	/* The user's groups come along, as with nginx: a key readable by the
	 * ssl-cert group stays readable to reloads. */
	if (initgroups(user, gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		fprintf(stderr, "fulcrum: cannot switch to user \"%s\": %s\n", user,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Whether the file at PATH holds this process's id: a later instance
 * started as the same user rewrites the same file (inode) with its own. */
static bool names_us(const char *path)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return true; /* unlink will say why */
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strtol(buf, NULL, 10) == (long)getpid();
}

/* Removes PATH if it is still the regular file this process wrote (and,
 * when NAMED, still holds its id). */
static void unlink_ours(const char *path, bool named)
{
	struct stat st;

	if (!pid_written)
		return;
	pid_written = false;
	/* When lstat fails (a directory the dropped user cannot search),
	 * unlink fails the same way, and says so. */
	if (lstat(path, &st) < 0 || (S_ISREG(st.st_mode) && st.st_dev == pid_dev &&
				     st.st_ino == pid_ino && (!named || names_us(path))))
		log_unlink(path, "pid file");
}

void remove_pidfile(const char *path)
{
	unlink_ours(path, true);
}

/* Opens the pid file for writing. Root writes a file of its own making:
 * a regular file at the path is removed and the file made anew (O_EXCL),
 * and a symbolic link is refused, so nothing planted in a directory
 * another user can write makes root truncate a file it points at; a
 * device or a FIFO there is opened as it is, without waiting for a
 * reader. Another user (a binary upgrade after the drop) has no privilege
 * to abuse, and opens the file root gave it. */
static int open_pidfile(const char *path)
{
	const int flags = O_WRONLY | O_NONBLOCK | O_CLOEXEC;
	struct stat st;
	int fd;

	if (geteuid() != 0) {
		fd = open(path, flags | O_CREAT, 0644);
	} else if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		fd = -1; /* -p /dev/stdout is no file to replace either */
		errno = ELOOP;
	} else if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && unlink(path) < 0) {
		fd = -1;
	} else {
		fd = open(path, flags | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
		if (fd < 0 && errno == EEXIST) {
			fd = open(path, flags | O_NOFOLLOW);
			/* A regular file that came in the meantime is not ours. */
			if (fd >= 0 && (fstat(fd, &st) < 0 || S_ISREG(st.st_mode))) {
				close(fd);
				fd = -1;
				errno = EEXIST;
			}
		}
	}
	if (fd < 0) {
		fprintf(stderr, "fulcrum: cannot write pid file %s: %s\n", path,
			errno == ELOOP ? "it is a symbolic link; give the file's own path"
				       : strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || (S_ISREG(st.st_mode) && ftruncate(fd, 0) < 0)) {
		fprintf(stderr, "fulcrum: cannot write pid file %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	pid_dev = st.st_dev;
	pid_ino = st.st_ino;
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
		unlink_ours(path, false); /* a cut-off one would name no process, or another */
		return -1;
	}
	return 0;
}
