"""Bind addresses: IPv6, unix sockets, several binds per listener (SPEC §2 bind)."""

import ctypes
import os
import shutil
import socket
import stat
import struct
import subprocess
import tempfile

from harness import (BIN, SCALE, Skip, TestFailure, check, connect, echo_roundtrip, free_port, has_ipv6,
                     ini, name_via, run_fulcrum, tcp_conf)


def test_ipv6_bind_and_server(ctx):
    if not has_ipv6():
        raise Skip("no IPv6 loopback")
    b = ctx.backend("echo", host="::1")
    port = free_port("::1")
    ctx.fulcrum(tcp_conf(port, [b.server_line()], bind=f"[::1]:{port}"))
    s = connect(("::1", port))
    check(echo_roundtrip(s, os.urandom(100000)), "relay over IPv6 broken")
    s.close()


def test_unix_bind(ctx):
    b = ctx.backend("echo")
    path = ctx.path("f.sock")
    ctx.fulcrum(tcp_conf(0, [b.server_line()], bind=f"unix:{path}", glob={"workers": 2}))
    for _ in range(5):
        s = connect(path)
        check(echo_roundtrip(s, os.urandom(50000)), "relay from a unix socket broken")
        s.close()


def test_unix_socket_files_have_fixed_modes(ctx):
    """A unix listener's socket file is 0666 whatever the umask, as nginx
    makes it (the directories on its path decide who reaches it; systemd's
    UMask=0027 would otherwise shut every other user out), and the admin
    API's socket is its owner's alone."""
    b = ctx.backend("echo")
    path, admin = ctx.path("f.sock"), ctx.path("admin.sock")
    old = os.umask(0o077)
    try:
        ctx.fulcrum(tcp_conf(0, [b.server_line()], bind=f"unix:{path}",
                             glob={"admin": f"unix:{admin}"}))
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    check(mode == 0o666, f"listener socket mode {mode:o}")
    mode = stat.S_IMODE(os.stat(admin).st_mode)
    check(mode == 0o600, f"admin socket mode {mode:o}")
    s = connect(path)
    check(echo_roundtrip(s, b"ping"), "relay from the unix socket broken")
    s.close()


def test_several_binds_one_listener(ctx):
    b = ctx.backend("name", name="only")
    p1, p2 = free_port(), free_port()
    binds = [f"127.0.0.1:{p1}", f"127.0.0.1:{p2}"]
    if has_ipv6():
        p3 = free_port("::1")
        binds.append(f"[::1]:{p3}")
    ctx.fulcrum(tcp_conf(p1, [b.server_line()], listener={"bind": binds}))
    check(name_via(("127.0.0.1", p1)) == "only", "first bind does not relay")
    check(name_via(("127.0.0.1", p2)) == "only", "second bind does not relay")
    if has_ipv6():
        s = connect(("::1", p3))
        check(s.recv(10) == b"only\n", "IPv6 bind does not relay")
        s.close()


def test_any_address_bind(ctx):
    b = ctx.backend("name", name="any")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()], bind=f"0.0.0.0:{port}"))
    check(name_via(("127.0.0.1", port)) == "any", "0.0.0.0 bind does not relay on loopback")


def test_star_bind_is_every_ipv4_address(ctx):
    """HAProxy's "*:PORT" spelling, for listeners and the admin API."""
    import json
    import urllib.request
    b = ctx.backend("name", name="star")
    port, admin = free_port(), free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()], bind=f"*:{port}", glob={"admin": f"*:{admin}"}))
    check(name_via(("127.0.0.1", port)) == "star", "*:PORT bind does not relay on loopback")
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=3 * SCALE) as r:
        status = json.loads(r.read())
    check(status["listeners"][0]["binds"] == [f"*:{port}"], f"binds as written: {status}")


def test_stale_unix_socket_file(ctx):
    """A socket file left by an earlier run does not stop start-up."""
    b = ctx.backend("echo")
    path = ctx.path("stale.sock")
    old = socket.socket(socket.AF_UNIX)
    old.bind(path)
    old.close()  # the file stays, nobody listens
    ctx.fulcrum(tcp_conf(0, [b.server_line()], bind=f"unix:{path}"))
    s = connect(path)
    check(echo_roundtrip(s, b"x"), "relay broken")
    s.close()


def test_unix_socket_in_use_exits_2(ctx):
    """A socket file some process still accepts on is not taken over."""
    path = ctx.path("busy.sock")
    busy = socket.socket(socket.AF_UNIX)
    busy.bind(path)
    busy.listen(1)
    try:
        rc, out, err = run_fulcrum(["-c", ctx.write("busy.ini", tcp_conf(0, ["a 127.0.0.1:9"],
                                                                          bind=f"unix:{path}"))])
        check(rc == 2, f"unix socket in use: status {rc}, stderr {err!r}")
        check("in use" in err.lower(), f"unix socket in use: message {err!r}")
        check(os.path.exists(path), "the busy socket file was removed")
    finally:
        busy.close()


def test_unix_socket_this_user_may_not_connect_to_is_not_taken_over(ctx):
    """Run as another user, fulcrum cannot connect to a live socket of
    root's (mode 0700) in a directory it may write: it must not take the
    path for a stale file, unlink it and bind its own (the live service
    would go on accepting on a path nobody reaches). Exit 2, file kept."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        raise Skip("needs root and setpriv")
    shared = tempfile.mkdtemp(prefix="fulcrum-it-shared-")
    try:
        os.chmod(shared, 0o777)
        path = os.path.join(shared, "live.sock")
        live = socket.socket(socket.AF_UNIX)
        live.bind(path)
        os.chmod(path, 0o700)
        live.listen(1)
        # A copy nobody may run, wherever the checkout is.
        bin_copy = shutil.copy(BIN, os.path.join(shared, "fulcrum"))
        conf = os.path.join(shared, "n.ini")
        with open(conf, "w") as f:
            f.write(tcp_conf(0, ["a 127.0.0.1:9"], bind=f"unix:{path}"))
        os.chmod(conf, 0o644)
        try:
            p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                bin_copy, "-c", conf], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=10 * SCALE)
        except subprocess.TimeoutExpired:
            raise TestFailure("fulcrum started on a live socket's path and stayed up")
        err = p.stderr.decode(errors="replace")
        check(p.returncode == 2 and path in err, f"status {p.returncode}, stderr {err!r}")
        check(os.stat(path).st_uid == 0, "the live socket file was replaced")
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(3 * SCALE)
        c.connect(path)
        conn, _ = live.accept()
        conn.close()
        c.close()
        live.close()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _dir_events(dirpath):
    """Starts watching DIRPATH with inotify (file creations and removals);
    returns a function that gives the [("create"|"delete", name)] seen so
    far, and closes the watch on its first call."""
    libc = ctypes.CDLL(None, use_errno=True)
    in_create, in_delete = 0x100, 0x200
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise Skip(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
    if libc.inotify_add_watch(fd, dirpath.encode(), in_create | in_delete) < 0:
        os.close(fd)
        raise Skip(f"inotify_add_watch: {os.strerror(ctypes.get_errno())}")

    def events():
        buf = bytearray()
        try:
            while True:
                buf += os.read(fd, 65536)
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
        out, off = [], 0
        while off + 16 <= len(buf):
            _, mask, _, n = struct.unpack_from("iIII", buf, off)
            name = bytes(buf[off + 16:off + 16 + n]).rstrip(b"\0").decode()
            out.append(("create" if mask & in_create else "delete", name))
            off += 16 + n
        return out

    return events


def test_failed_start_removes_the_unix_socket_files_it_made(ctx):
    """A start that fails at a later bind (a port in use) exits 2 and
    leaves none of the socket files it had already bound: the unix socket
    file is seen (inotify) to be made, and then removed."""
    sockdir = ctx.path("socks")
    os.mkdir(sockdir)
    path = os.path.join(sockdir, "early.sock")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        conf = ini(("global", {"workers": 2, "admin": ""}),
                   ("pool p", {"server": "a 127.0.0.1:9", "check": "none"}),
                   ("listener a", {"bind": f"unix:{path}", "mode": "tcp", "pool": "p"}),
                   ("listener b", {"bind": f"127.0.0.1:{port}", "mode": "tcp", "pool": "p"}))
        conf_path = ctx.write("fail.ini", conf)
        events = _dir_events(sockdir)
        rc, _, err = run_fulcrum(["-c", conf_path])
        seen = events()
        check(rc == 2 and "in use" in err, f"status {rc}, stderr {err!r}")
        check(("create", "early.sock") in seen,
              f"the unix socket was never bound before the failure (events {seen}): nothing to remove")
        check(seen[-1] == ("delete", "early.sock"),
              f"the unix socket file was not removed after the failure: events {seen}")
        check(not os.path.exists(path), "the unix socket file of the failed start is left")
    finally:
        busy.close()


def test_unix_bind_keeps_a_regular_file(ctx):
    """Only a socket file is replaced: a regular file at the path is left
    alone and start-up fails (exit 2) naming the bind."""
    path = ctx.path("data.sock")
    with open(path, "w") as f:
        f.write("important\n")
    rc, out, err = run_fulcrum(["-c", ctx.write("reg.ini", tcp_conf(0, ["a 127.0.0.1:9"],
                                                                     bind=f"unix:{path}"))])
    check(rc == 2 and path in err, f"a regular file at the bind path: status {rc}, {err!r}")
    with open(path) as f:
        check(f.read() == "important\n", "the regular file was replaced")
