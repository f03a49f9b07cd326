"""Started as root with [global] user: what fulcrum hands the dropped user,
and what a name planted in a directory that user can write must not make
it do (README "Privileges")."""

import grp
import os
import pwd
import signal
import stat

from harness import SCALE, Skip, check, connect, echo_roundtrip, free_port, run_fulcrum, tcp_conf, wait_for


def _need_root():
    if os.geteuid() != 0:
        raise Skip("needs root to drop privileges")


def _user_dir(ctx, name):
    """A directory owned by nobody, as README's /run/fulcrum and log
    directories may be, reachable by nobody."""
    nobody = pwd.getpwnam("nobody")
    d = ctx.path(name)
    os.mkdir(d, 0o755)
    os.chown(d, nobody.pw_uid, nobody.pw_gid)
    os.chmod(ctx.tmp, 0o711)
    return d


def _victim(ctx, name, text):
    path = ctx.path(name)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)
    return path


def test_root_refuses_a_linked_access_log(ctx):
    """Started as root, fulcrum does not follow a symbolic link at the
    access log's path, nor write to a file there with a second name: one
    planted in a log directory the dropped user can write would have root
    create or append to any file, or hand it over (nginx's CVE-2016-1247).
    It is a FILE:LINE error (exit 1); the file behind is untouched.
    The log file fulcrum creates itself is given to the user."""
    _need_root()
    logs = _user_dir(ctx, "logs")
    victim = _victim(ctx, "victim", "root's\n")
    b = ctx.backend("echo")
    link = os.path.join(logs, "access.log")
    for plant, why in ((os.symlink, "symbolic links"), (os.link, "Too many links")):
        plant(victim, link)
        conf = ctx.write("f.ini", tcp_conf(free_port(), [b.server_line()],
                                           glob={"access_log": link, "user": "nobody"}))
        rc, _, err = run_fulcrum(["-c", conf])
        check(rc == 1 and f"{conf}:" in err and why in err and len(err.strip().splitlines()) == 1,
              f"{plant.__name__}: status {rc}, stderr {err!r}")
        st = os.stat(victim)
        check(open(victim).read() == "root's\n" and st.st_uid == 0 and
              stat.S_IMODE(st.st_mode) == 0o600,
              f"{plant.__name__}: the file behind the access log path was touched")
        os.unlink(link)

    own = os.path.join(logs, "own.log")
    f = ctx.fulcrum(tcp_conf(free_port(), [b.server_line()],
                             glob={"access_log": own, "user": "nobody"}))
    check(os.stat(own).st_uid == pwd.getpwnam("nobody").pw_uid,
          "the log file fulcrum created was not given to the user")
    f.stop()

    # In a directory only root can write, a link is the operator's: it is
    # followed, and the file it leads to keeps its owner.
    rootdir = ctx.path("rootlogs")
    os.mkdir(rootdir, 0o755)
    target = _victim(ctx, "target.log", "")
    link = os.path.join(rootdir, "access.log")
    os.symlink(target, link)
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": link, "user": "nobody"}))
    s = connect(("127.0.0.1", port))
    check(echo_roundtrip(s, b"ping"), "relay does not work")
    s.close()
    wait_for(lambda: open(target).read().count("\n") >= 1, 3 * SCALE,
             what="the connection's line in the file the root-made link leads to")
    check(os.stat(target).st_uid == 0, "the file behind the operator's link was given away")
    f.stop()


def test_root_writes_a_pid_file_of_its_own_making(ctx):
    """Started as root, fulcrum removes a second name planted at the pid
    file's path and writes a new file there, which names the process and
    goes to the dropped user; a symbolic link there is refused (exit 2:
    `-p /dev/stdout` is no file to replace either). The file behind stays
    whole and root's either way."""
    _need_root()
    run = _user_dir(ctx, "run")
    victim = _victim(ctx, "victim", "root's secret\n")
    pidfile = os.path.join(run, "fulcrum.pid")
    b = ctx.backend("echo")
    os.symlink(victim, pidfile)
    conf = ctx.write("f.ini", tcp_conf(free_port(), [b.server_line()], glob={"user": "nobody"}))
    rc, _, err = run_fulcrum(["-c", conf, "-p", pidfile])
    check(rc == 2 and "symbolic link" in err and len(err.strip().splitlines()) == 1,
          f"a link at the pid file's path: status {rc}, stderr {err!r}")
    check(os.path.islink(pidfile), "the link was removed")
    os.unlink(pidfile)
    os.link(victim, pidfile)
    f = ctx.fulcrum(tcp_conf(free_port(), [b.server_line()], glob={"user": "nobody"}),
                    args=["-p", pidfile])
    st = os.lstat(pidfile)
    check(stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and
          st.st_uid == pwd.getpwnam("nobody").pw_uid,
          "the pid file is not a file of its own given to the user")
    check(open(pidfile).read().strip() == str(f.pid), "pid file content")
    f.stop()
    check(open(victim).read() == "root's secret\n" and os.stat(victim).st_uid == 0,
          "the file behind the pid file's path was touched")


def test_root_gives_a_log_it_finds_only_where_nobody_else_could_put_it(ctx):
    """A root-owned log that is already there (a start that failed made it,
    or the operator did) goes to the dropped user when its directory is
    root's alone, so a binary upgrade and a reopen can still open it; in a
    directory the user can write it keeps its owner, since the user could
    have arranged it there."""
    _need_root()
    nobody = pwd.getpwnam("nobody").pw_uid
    b = ctx.backend("echo")
    for name, make_dir, given in (("rootonly", lambda: os.mkdir(ctx.path("rootonly"), 0o755), True),
                                  ("userdir", lambda: _user_dir(ctx, "userdir"), False)):
        make_dir()
        os.chmod(ctx.tmp, 0o711)
        log = os.path.join(ctx.path(name), "access.log")
        with open(log, "w"):
            pass
        os.chmod(log, 0o640)
        f = ctx.fulcrum(tcp_conf(free_port(), [b.server_line()],
                                 glob={"access_log": log, "user": "nobody"}))
        owner = os.stat(log).st_uid
        check((owner == nobody) == given, f"{name}: the log's owner is {owner}")
        f.stop()


def test_an_exit_leaves_the_pid_file_a_later_instance_wrote(ctx):
    """Two instances with one -p (as a restart that overlaps the old
    process's drain): the first to exit must not remove the file that now
    names the other."""
    b = ctx.backend("echo")
    pidfile = ctx.path("fulcrum.pid")
    first = ctx.fulcrum(tcp_conf(free_port(), [b.server_line()]), args=["-p", pidfile])
    second = ctx.fulcrum(tcp_conf(free_port(), [b.server_line()]), args=["-p", pidfile])
    wait_for(lambda: open(pidfile).read().strip() == str(second.pid), 2 * SCALE,
             what="the second instance's pid in the file")
    first.stop()
    check(os.path.exists(pidfile) and open(pidfile).read().strip() == str(second.pid),
          "the first instance's exit removed the second's pid file")
    second.stop()
    check(not os.path.exists(pidfile), "the second instance left its pid file")


def test_a_failed_start_leaves_the_running_instance_s_pid_file(ctx):
    """A second start on the same port and pid file fails with exit 2, and
    the first instance's pid file stays: kill -USR2 $(cat PIDFILE), logrotate
    and systemd's PIDFile= need it, as with nginx and HAProxy."""
    b = ctx.backend("echo")
    port = free_port()
    pidfile = ctx.path("fulcrum.pid")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()]), args=["-p", pidfile])
    wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 2 * SCALE,
             what="pid file")
    conf = ctx.write("second.ini", tcp_conf(port, [b.server_line()]))
    rc, _, err = run_fulcrum(["-c", conf, "-p", pidfile])
    check(rc == 2, f"second start: status {rc}, stderr {err!r}")
    check(os.path.exists(pidfile), "the failed start removed the running instance's pid file")
    got = open(pidfile).read().strip()
    check(got == str(f.pid), f"pid file holds {got!r}, the running instance is {f.pid}")


def test_the_dropped_user_keeps_its_groups(ctx):
    """The switch takes the user's supplementary groups along (initgroups,
    as nginx does), so a key readable by a group such as ssl-cert stays
    readable to reloads."""
    _need_root()
    nobody = pwd.getpwnam("nobody")
    want = set(os.getgrouplist(nobody.pw_name, nobody.pw_gid))
    b = ctx.backend("echo")
    f = ctx.fulcrum(tcp_conf(free_port(), [b.server_line()], glob={"user": "nobody"}))
    for task in os.listdir(f"/proc/{f.pid}/task"):
        with open(f"/proc/{f.pid}/task/{task}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        uids = fields["Uid"].split()
        groups = {int(g) for g in fields["Groups"].split()}
        check(uids == [str(nobody.pw_uid)] * 4, f"thread {task} runs as {uids}")
        check(groups == want, f"thread {task} has groups {groups}, "
                              f"nobody's are {want} ({[grp.getgrgid(g).gr_name for g in want]})")
    f.signal(signal.SIGTERM)
