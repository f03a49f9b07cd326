/*
 * privs.c - the pid file and the switch to an unprivileged user at start.
 */
#include "core/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

/* The pid file goes to the user fulcrum runs as, so that a binary upgrade
 * (started by that user) can write it again. A device (-p /dev/null) or a
 * link is left as it is. */
static void give_pidfile(const char *path, const struct passwd *pw)
{
	struct stat st;

	if (path && lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	    lchown(path, pw->pw_uid, pw->pw_gid) < 0)
		log_warn("cannot give the pid file %s to user %s: %s; a binary upgrade "
			 "will not be able to write it",
			 path, pw->pw_name, strerror(errno));
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
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		fprintf(stderr, "fulcrum: cannot switch to user \"%s\": %s\n", user,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Removes the pid file, if it is one: `-p /dev/null` must not cost the
 * system its /dev/null at exit. */
void remove_pidfile(const char *path)
{
	struct stat st;

	/* When lstat fails (a directory the dropped user cannot search),
	 * unlink fails the same way, and says so. */
	if (lstat(path, &st) < 0 || S_ISREG(st.st_mode))
		log_unlink(path, "pid file");
}

int write_pidfile(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "fulcrum: cannot write pid file %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* A write can fail where the open did not (a full disk, /proc). */
	bool failed = fprintf(f, "%d\n", (int)getpid()) < 0 || fflush(f) != 0;
	int err = errno;
	if (fclose(f) != 0 && !failed) {
		failed = true;
		err = errno;
	}
	if (failed) {
		fprintf(stderr, "fulcrum: cannot write pid file %s: %s\n", path, strerror(err));
		remove_pidfile(path); /* a cut-off one would name no process, or another */
		return -1;
	}
	return 0;
}
