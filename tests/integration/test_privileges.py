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


def test_a_linked_access_log_is_written_but_not_given_away(ctx):
    """A symbolic link at the access log's path is followed (a link is the
    operator's to make), but the file behind it keeps its owner: a link the
    dropped user planted must not hand it a file of root's (nginx's
    CVE-2016-1247). The log's own file, created by fulcrum, is still given."""
    _need_root()
    logs = _user_dir(ctx, "logs")
    victim = _victim(ctx, "victim", "root's\n")
    link = os.path.join(logs, "access.log")
    os.symlink(victim, link)
    b = ctx.backend("echo")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": link,
                                                             "user": "nobody"}))
    s = connect(("127.0.0.1", port))
    check(echo_roundtrip(s, b"ping"), "relay does not work")
    s.close()
    wait_for(lambda: open(victim).read().count("\n") >= 2, 3 * SCALE,
             what="the connection's line in the linked file")
    st = os.stat(victim)
    check(st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600,
          f"the file behind the link changed hands: uid {st.st_uid}, mode {st.st_mode:o}")
    f.stop()

    own = os.path.join(logs, "own.log")
    f = ctx.fulcrum(tcp_conf(free_port(), [b.server_line()],
                             glob={"access_log": own, "user": "nobody"}))
    check(os.stat(own).st_uid == pwd.getpwnam("nobody").pw_uid,
          "the log file fulcrum created was not given to the user")
    f.stop()


def test_a_hard_linked_access_log_keeps_its_owner(ctx):
    """A root file with a second name in the log directory stays root's."""
    _need_root()
    logs = ctx.path("logs")
    os.mkdir(logs)
    victim = _victim(ctx, "victim", "")
    log = os.path.join(logs, "access.log")
    os.link(victim, log)
    b = ctx.backend("echo")
    f = ctx.fulcrum(tcp_conf(free_port(), [b.server_line()],
                             glob={"access_log": log, "user": "nobody"}))
    check(os.stat(victim).st_uid == 0, "a file with two names was given to the user")
    f.stop()


def test_a_pid_file_that_is_a_link_is_refused(ctx):
    """`-p` at a symbolic link exits 2 with the cause and leaves the file
    behind it whole: started as root, fulcrum would otherwise truncate
    whatever a link in a directory the service user writes points at. A
    name with a second hard link is refused the same way."""
    _need_root()
    run = _user_dir(ctx, "run")
    victim = _victim(ctx, "victim", "root's secret\n")
    pidfile = os.path.join(run, "fulcrum.pid")
    os.symlink(victim, pidfile)
    b = ctx.backend("echo")
    port = free_port()
    conf = ctx.write("f.ini", tcp_conf(port, [b.server_line()], glob={"user": "nobody"}))
    rc, _, err = run_fulcrum(["-c", conf, "-p", pidfile])
    check(rc == 2 and "symbolic link" in err and len(err.strip().splitlines()) == 1,
          f"status {rc}, stderr {err!r}")
    check(open(victim).read() == "root's secret\n", "the file behind the link was written")
    check(os.stat(victim).st_uid == 0, "the file behind the link changed hands")

    os.unlink(pidfile)
    os.link(victim, pidfile)
    rc, _, err = run_fulcrum(["-c", conf, "-p", pidfile])
    check(rc == 2 and "hard links" in err, f"status {rc}, stderr {err!r}")
    check(open(victim).read() == "root's secret\n", "the hard-linked file was written")
    check(os.stat(victim).st_uid == 0, "the hard-linked file changed hands")


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
