"""Seamless binary upgrade (SIGUSR2) and reloads (SIGHUP) under load.

A constant load runs through every test: threads making HTTP requests back
to back to an http listener in front of build/backend, two with a new
connection per request and one reusing its connection (keep-alive), and a
tcp-mode tunnel to an echo server exchanging a few bytes every 100 ms. Across ten
reloads, or an upgrade, no request may fail or be reset, the tunnel opened
before must still carry bytes after, and an upgraded process must leave the
new one (its pid in the pid file) serving, then exit 0 once its own
connections are done.

The new process is started by the old one, not by the test. So that its exit
status can still be checked, the test process makes itself a child
subreaper (PR_SET_CHILD_SUBREAPER): once the old process exits, the new one
becomes the test's child, which harness.Ctx then stops and checks like any
fulcrum it started (open fds back to the start-up count, exit 0 on SIGTERM).
"""

import ctypes
import shutil
import os
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import (SCALE, Fulcrum, Skip, TestFailure, _listening_inet, _listening_unix, _socket_inodes,
                     check, connect, echo_roundtrip, free_port, ini, recv_exact, wait_for)
from test_http import cbackend, close_backends_first, get, roundtrip

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise TestFailure(f"prctl(PR_SET_CHILD_SUBREAPER): errno {ctypes.get_errno()}")


def _pid_alive(pid):
    """True while PID runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Adopted:
    """What harness.Fulcrum needs of a subprocess.Popen, for a process the
    test did not start. It can be reaped once it is the test's child (its
    parent gone, the test a subreaper); before that, or if another process
    reaped it, its exit status is unknown (reported as 255)."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is not None:
            return self.returncode
        try:
            r, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            if not _pid_alive(self.pid):
                self.returncode = 255
            return self.returncode
        if r == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)


# ----------------------------------------------------------------- load ----


REQUEST = b"GET /?size=1000 HTTP/1.1\r\nHost: upgrade.test\r\nConnection: close\r\n\r\n"


def _one_request(port):
    """One request on a new connection; returns None or what went wrong."""
    with socket.create_connection(("127.0.0.1", port), timeout=10 * SCALE) as s:
        s.sendall(REQUEST)
        data = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        return f"bad answer {bytes(data[:80])!r}"
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    if not m or int(m.group(1)) != len(body) or len(body) != 1000:
        return f"truncated answer: head {head[:200]!r}, {len(body)} body bytes"
    return None


KEEPALIVE_REQUEST = b"GET /?size=1000 HTTP/1.1\r\nHost: upgrade.test\r\n\r\n"


class KeepAlive:
    """One client connection used for request after request, as a browser or
    wrk would; a new one when the server says Connection: close."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def request(self):
        """One request; returns None or what went wrong."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10 * SCALE)
            self.buf = b""
        self.sock.sendall(KEEPALIVE_REQUEST)
        while b"\r\n\r\n" not in self.buf:
            b = self.sock.recv(65536)
            if not b:
                return f"connection closed with no answer (after {len(self.buf)} bytes)"
            self.buf += b
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
        if not head.startswith(b"HTTP/1.1 200 ") or not m:
            return f"bad answer {head[:200]!r}"
        n = int(m.group(1))
        while len(rest) < n:
            b = self.sock.recv(65536)
            if not b:
                return f"truncated answer: {len(rest)} of {n} body bytes"
            rest += b
        self.buf = rest[n:]
        if re.search(rb"\r\nconnection: *close", head, re.I):
            self.close()
        return None

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Load:
    """N threads making requests back to back, each on a new connection, and
    KEEPALIVE threads reusing theirs."""

    def __init__(self, port, n=2, keepalive=1):
        self.port = port
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(False,), daemon=True)
                        for _ in range(n)]
        self.threads += [threading.Thread(target=self._run, args=(True,), daemon=True)
                         for _ in range(keepalive)]
        for t in self.threads:
            t.start()

    def _run(self, keepalive):
        client = KeepAlive(self.port) if keepalive else None
        while not self.stopping.is_set():
            try:
                err = client.request() if client else _one_request(self.port)
            except OSError as e:
                err = repr(e)
            if err and client:
                client.close()
            with self.lock:
                if err:
                    kind = "keep-alive" if client else "new connection"
                    self.failures.append(f"{time.monotonic():.3f} {kind}: {err}")
                else:
                    self.ok += 1
        if client:
            client.close()

    def count(self):
        with self.lock:
            return self.ok

    def wait_more(self, n, what):
        target = self.count() + n
        wait_for(lambda: self.count() >= target or self.failures, 10 * SCALE, what=what)
        self.check()

    def check(self):
        with self.lock:
            check(not self.failures, f"{len(self.failures)} failed requests (of "
                  f"{self.ok + len(self.failures)}): {self.failures[:5]}")

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(15 * SCALE)
        self.check()


class Tunnel:
    """A tcp-mode connection through fulcrum (at ADDR: (host, port) or a unix
    path) to an echo server, sending a numbered line every 100 ms and
    checking it comes back."""

    def __init__(self, addr):
        self.sock = connect(addr)
        self.n = 0
        self.error = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.stopping.is_set():
                line = b"tick %08d\n" % self.n
                self.sock.sendall(line)
                got = recv_exact(self.sock, len(line))
                if got != line:
                    raise TestFailure(f"tunnel got {got!r} for {line!r}")
                self.n += 1
                time.sleep(0.1)
        except Exception as e:  # noqa: BLE001 - reported by check()
            self.error = e

    def check(self):
        check(self.error is None, f"tunnel broken after {self.n} exchanges: {self.error!r}")

    def still_carries(self, what):
        """Another 5 exchanges happen."""
        target = self.n + 5
        wait_for(lambda: self.n >= target or self.error, 5 * SCALE, what=f"tunnel bytes {what}")
        self.check()

    def close(self):
        self.stopping.set()
        self.thread.join(5 * SCALE)
        self.check()
        self.sock.close()


# --------------------------------------------------------------- config ----


def _conf(http_port, tcp_port, admin_port, web, echo, workers=2, balance="roundrobin",
          unix_path=None):
    tcp_binds = [f"127.0.0.1:{tcp_port}"] + ([f"unix:{unix_path}"] if unix_path else [])
    return ini(
        ("global", {"workers": workers, "admin": f"127.0.0.1:{admin_port}",
                    "access_log": "off", "log_level": "info", "graceful_timeout": "30s"}),
        ("pool p", {"balance": balance, "check": "none", "connect_timeout": "1s",
                    "server": web.server_line()}),
        ("pool e", {"check": "none", "connect_timeout": "1s", "server": echo.server_line()}),
        ("listener web", {"bind": f"127.0.0.1:{http_port}", "mode": "http", "pool": "p"}),
        ("listener t", {"bind": tcp_binds, "mode": "tcp", "pool": "e"}),
    )


class Site:
    """A fulcrum with a pid file in front of build/backend and an echo
    server, and the load on it."""

    def __init__(self, ctx, workers=2, unix=False, user=None, binary=None):
        _become_subreaper()
        self.ctx = ctx
        self.user = user
        self.web = cbackend(ctx, "web1")
        self.echo = ctx.backend("echo")
        self.http_port, self.tcp_port, self.admin_port = free_port(), free_port(), free_port()
        self.unix_path = ctx.path("t.sock") if unix else None
        self.pidfile = ctx.path("fulcrum.pid")
        if user:
            # As the systemd unit has it: a run directory the user may write.
            os.chmod(ctx.tmp, 0o711)
            os.mkdir(ctx.path("run"), 0o777)
            os.chmod(ctx.path("run"), 0o777)
            self.pidfile = ctx.path("run/fulcrum.pid")
        self.f = ctx.fulcrum(self.conf(workers), args=["-p", self.pidfile], binary=binary)
        wait_for(lambda: self.pid_in_file() == self.f.pid, 2 * SCALE, what="the pid file")

    def conf(self, workers=2, balance="roundrobin"):
        text = _conf(self.http_port, self.tcp_port, self.admin_port, self.web, self.echo,
                     workers, balance, self.unix_path)
        return text.replace("[global]\n", f"[global]\nuser = {self.user}\n") if self.user else text

    def rewrite(self, conf_text):
        with open(self.f.conf_path, "w") as fh:
            fh.write(conf_text)

    def pid_in_file(self):
        try:
            with open(self.pidfile) as fh:
                return int(fh.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def admin_healthz(self):
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=5 * SCALE) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            data = s.recv(4096)
        return data.startswith(b"HTTP/1.1 200 ")

    def upgrade(self, old, conf_text):
        """SIGUSR2 to OLD (a harness.Fulcrum), waits for the new process to
        take over and returns it (see adopt)."""
        mark = len(old.stderr())
        old.signal(signal.SIGUSR2)
        wait_for(lambda: "upgrade: the new process" in old.stderr()[mark:] or
                 "upgrade failed" in old.stderr()[mark:],
                 10 * SCALE, what="the new process to take over")
        tail = old.stderr()[mark:]
        check("upgrade failed" not in tail, f"upgrade failed:\n{tail[-2000:]}")
        new_pid = int(re.search(r"upgrade: the new process (\d+) runs", tail).group(1))
        return self.adopt(old, new_pid, conf_text)

    def adopt(self, old, new_pid, conf_text):
        """The process NEW_PID that took over from OLD, as a harness.Fulcrum
        that Ctx.finish checks and stops."""
        check(new_pid != old.pid, "the new process has the old pid")
        check(self.pid_in_file() == new_pid,
              f"pid file holds {self.pid_in_file()}, not the new process {new_pid}")
        new = Fulcrum(self.ctx.tmp, conf_text, name=f"upgraded{new_pid}")
        new.proc = Adopted(new_pid)
        new.stderr_path = old.stderr_path  # inherited
        new.stdout_path = old.stdout_path
        new.baseline_fds, new.baseline_pipes = _idle_baseline(new)
        self.ctx.fulcrums.append(new)
        return new


def _idle_baseline(f):
    """F's fd count, and pipe count, without its connections: what it must
    come back to once the load is gone. (A process that took over under load
    never had an idle moment to count at.)"""
    listening = set()
    for table, state in (("/proc/net/tcp", "0A"), ("/proc/net/tcp6", "0A")):
        with open(table) as fh:
            next(fh)
            listening |= {ln.split()[9] for ln in fh if ln.split()[3] == state}
    with open("/proc/net/unix") as fh:
        next(fh)
        listening |= {ln.split()[6] for ln in fh if ln.split()[3] == "00010000"}
    fds = f.fds()
    conns = sum(1 for v in fds.values() if v.startswith("socket:[") and v[8:-1] not in listening)
    pipes = sum(1 for v in fds.values() if v.startswith("pipe:"))
    return len(fds) - conns, pipes


def _listening_sockets(pid, site):
    """The inodes of PID's listening sockets on SITE's ports and unix path;
    every one of them must be there."""
    mine = _socket_inodes(pid)
    found = {}
    for port in (site.http_port, site.tcp_port, site.admin_port):
        found[port] = _listening_inet(port) & mine
        check(found[port], f"process {pid} does not listen on port {port}")
    if site.unix_path:
        found[site.unix_path] = _listening_unix(site.unix_path) & mine
        check(found[site.unix_path], f"process {pid} does not listen on {site.unix_path}")
    return found


def _listeners_of(pid, port):
    """The listening sockets on PORT that PID holds."""
    return _listening_inet(port) & _socket_inodes(pid)


def _exit_status_soon(f, timeout):
    rc = f.wait_exit(timeout)
    check(rc == 0, f"the old process exited with status {rc}; stderr:\n{f.stderr()[-2000:]}")


# ---------------------------------------------------------------- tests ----


def test_upgrade_under_load(ctx):
    site = Site(ctx, unix=True)
    old = site.f
    load = Load(site.http_port)
    tunnel = Tunnel(("127.0.0.1", site.tcp_port))
    unix_tunnel = Tunnel(site.unix_path)
    load.wait_more(200, "requests before the upgrade")
    tunnel.still_carries("before the upgrade")
    sockets = _listening_sockets(old.pid, site)

    new = site.upgrade(old, old.conf_text)
    # The very same sockets, not new ones on the same ports: closing a
    # listening socket resets the connections queued in it, and the old
    # process closes its own.
    check(_listening_sockets(new.pid, site) == sockets,
          "the new process listens on other sockets than the ones handed over")
    load.wait_more(300, "requests after the upgrade")
    check(site.admin_healthz(), "the admin API does not answer after the upgrade")
    # The old process keeps its connections past the hand-over and the
    # drain that starts UPGRADE_HANDOFF_MS (1 s) later, and serves them.
    time.sleep(1.5 * SCALE)
    check(old.alive(), "the old process exited with a tunnel still open")
    tunnel.still_carries("after the upgrade")
    unix_tunnel.still_carries("after the upgrade")
    check(os.path.exists(site.unix_path), "the unix socket file went away")

    # The new process serves new connections on every listener.
    fresh = Tunnel(("127.0.0.1", site.tcp_port))
    fresh.still_carries("through the new process")
    fresh_unix = Tunnel(site.unix_path)
    fresh_unix.still_carries("through the new process's unix socket")
    fresh.close()
    fresh_unix.close()

    tunnel.close()
    unix_tunnel.close()
    _exit_status_soon(old, 10)
    load.wait_more(100, "requests after the old process exited")
    load.stop()
    check(os.path.exists(site.unix_path), "the old process removed the unix socket file")
    check(site.pid_in_file() == new.pid, "the old process's exit changed the pid file")
    new.check_alive()


def test_reloads_under_load(ctx):
    site = Site(ctx)
    f = site.f
    load = Load(site.http_port)
    tunnel = Tunnel(("127.0.0.1", site.tcp_port))
    load.wait_more(100, "requests before the reloads")
    for i in range(10):
        site.rewrite(site.conf(balance="leastconn" if i % 2 == 0 else "roundrobin"))
        f.signal(signal.SIGHUP)
        wait_for(lambda: f"generation {i + 2}" in f.stderr(), 5 * SCALE,
                 what=f"reload {i + 1}")
        load.wait_more(30, f"requests after reload {i + 1}")
        tunnel.check()
    tunnel.still_carries("after 10 reloads")
    load.stop()
    tunnel.close()
    check("failed" not in f.stderr(), f"a reload failed:\n{f.stderr()[-2000:]}")


def test_reloads_and_upgrade_under_load(ctx):
    """The issue's bar: ten reloads and one upgrade under one constant load."""
    site = Site(ctx)
    old = site.f
    load = Load(site.http_port)
    tunnel = Tunnel(("127.0.0.1", site.tcp_port))
    load.wait_more(100, "requests before")
    for i in range(10):
        old.signal(signal.SIGHUP)
        wait_for(lambda: f"generation {i + 2}" in old.stderr(), 5 * SCALE,
                 what=f"reload {i + 1}")
        load.wait_more(20, f"requests after reload {i + 1}")
    new = site.upgrade(old, old.conf_text)
    load.wait_more(300, "requests after the upgrade")
    tunnel.still_carries("after the reloads and the upgrade")
    tunnel.close()
    _exit_status_soon(old, 10)
    load.stop()
    new.check_alive()


def test_upgrade_to_fewer_then_more_workers(ctx):
    """Three workers hand over three sockets per bind to one worker, which
    takes them all (closing one would reset what is queued in it); that one
    hands them on to two workers, again under load."""
    site = Site(ctx, workers=3)
    first = site.f
    load = Load(site.http_port)
    load.wait_more(100, "requests before")

    one = site.conf(workers=1)
    site.rewrite(one)
    second = site.upgrade(first, one)
    load.wait_more(200, "requests after the first upgrade")
    _exit_status_soon(first, 10)
    check(len(_listeners_of(second.pid, site.http_port)) == 3,
          "the single worker does not hold the three http sockets")

    two = site.conf(workers=2)
    site.rewrite(two)
    third = site.upgrade(second, two)
    load.wait_more(200, "requests after the second upgrade")
    _exit_status_soon(second, 10)
    load.stop()
    check(len(_listeners_of(third.pid, site.http_port)) == 3,
          "the three http sockets did not all reach the third process")


def test_upgrade_after_reloads_that_changed_listeners(ctx):
    """A reload adds a listener and renames another, moving it from its
    port to a unix path; the upgrade that follows hands the new process
    what runs now (the added listener's very sockets), not what the process
    started with."""
    site = Site(ctx)
    old = site.f
    load = Load(site.http_port)
    load.wait_more(50, "requests before")
    extra = free_port()
    text = site.conf().replace("[listener t]", "[listener moved]") + \
        f"\n[listener extra]\nbind = 127.0.0.1:{extra}\nmode = tcp\npool = e\n"
    text = text.replace(f"bind = 127.0.0.1:{site.tcp_port}\n", "bind = unix:" +
                        site.ctx.path("moved.sock") + "\n")
    site.rewrite(text)
    old.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in old.stderr(), 5 * SCALE, what="the reload")
    inodes = _listeners_of(old.pid, extra)
    check(len(inodes) == 2, f"{len(inodes)} sockets on the added listener, not one per worker")
    check(not _listeners_of(old.pid, site.tcp_port), "the dropped bind still listens")
    tunnel = Tunnel(("127.0.0.1", extra))
    new = site.upgrade(old, text)
    check(_listeners_of(new.pid, extra) == inodes,
          "the new process does not hold the added listener's sockets")
    check(not _listeners_of(new.pid, site.tcp_port), "the new process listens on the dropped bind")
    load.wait_more(200, "requests after the upgrade")
    tunnel.still_carries("through the added listener, after the upgrade")
    tunnel.close()
    _exit_status_soon(old, 10)
    load.stop()
    s = connect(("127.0.0.1", extra))
    check(echo_roundtrip(s, b"new process"), "the added listener in the new process")
    s.close()
    new.check_alive()


def test_upgrades_under_connection_churn(ctx):
    """Six upgrades in a row while clients open and close connections
    without pause, on the http and the tcp listener. Between the spawn of
    the new process and its exec closing them, the child holds a copy of
    every fd of the old one: a connection the old one closes then must
    leave its workers' epolls first, or its events outlive it (a
    use-after-free that the ASan run of this suite reports)."""
    site = Site(ctx)
    f = site.f
    load = Load(site.http_port, n=3, keepalive=0)
    stop, errors = threading.Event(), []

    def tcp_churn():
        while not stop.is_set():
            try:
                s = connect(("127.0.0.1", site.tcp_port))
                if not echo_roundtrip(s, b"ping\n"):
                    errors.append("echo")
                s.close()
            except (OSError, TestFailure) as e:
                errors.append(repr(e))

    churn = [threading.Thread(target=tcp_churn, daemon=True) for _ in range(2)]
    for t in churn:
        t.start()
    try:
        for i in range(6):
            load.wait_more(30, f"requests before upgrade {i + 1}")
            new = site.upgrade(f, f.conf_text)
            _exit_status_soon(f, 10)
            f = new
    finally:
        stop.set()
        for t in churn:
            t.join()
    load.stop()
    check(not errors, f"{len(errors)} tcp connections failed: {errors[:3]}")
    f.check_alive()


def test_upgrade_to_a_file_that_renamed_a_listener(ctx):
    """The new process adopts a socket by its address when the listener
    that has it is renamed: the very sockets, so nothing queued in them is
    reset; not a fresh bind beside them."""
    site = Site(ctx)
    old = site.f
    load = Load(site.http_port)
    load.wait_more(50, "requests before")
    before = _listeners_of(old.pid, site.http_port)
    text = old.conf_text.replace("[listener web]", "[listener www]")
    site.rewrite(text)
    new = site.upgrade(old, text)
    check(_listeners_of(new.pid, site.http_port) == before,
          "the renamed listener's sockets were not handed over")
    load.wait_more(200, "requests after the upgrade")
    _exit_status_soon(old, 10)
    load.stop()
    check("which this configuration does not use" not in old.stderr(),
          "a socket handed over was closed")


def test_upgrade_to_a_file_without_a_unix_bind_removes_its_file(ctx):
    site = Site(ctx, unix=True)
    old = site.f
    check(os.path.exists(site.unix_path), "no unix socket file")
    text = _conf(site.http_port, site.tcp_port, site.admin_port, site.web, site.echo)
    site.rewrite(text)
    new = site.upgrade(old, text)
    _exit_status_soon(old, 10)
    # The new process removes it just after it reports ready.
    wait_for(lambda: not os.path.exists(site.unix_path), 2 * SCALE,
             what="the dropped unix bind's socket file to go")
    new.check_alive()


def test_upgrade_keeps_a_unix_socket_file_written_another_way(ctx):
    """A unix bind written another way in the new file ("dir//x.sock") is
    not adopted; the new process binds its own socket there, and the file,
    now its own, must stay."""
    site = Site(ctx, unix=True)
    old = site.f
    d, name = os.path.split(site.unix_path)
    text = old.conf_text.replace(f"unix:{site.unix_path}", f"unix:{d}//{name}")
    site.rewrite(text)
    new = site.upgrade(old, text)
    _exit_status_soon(old, 10)
    check(os.path.exists(site.unix_path), "the new process's socket file was removed")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5 * SCALE)
    s.connect(site.unix_path)
    check(echo_roundtrip(s, b"still there"), "the unix listener after the upgrade")
    s.close()
    new.check_alive()


def test_failed_upgrade_keeps_serving(ctx):
    site = Site(ctx)
    f = site.f
    load = Load(site.http_port)
    tunnel = Tunnel(("127.0.0.1", site.tcp_port))
    load.wait_more(100, "requests before")

    good = f.conf_text
    site.rewrite(good + "\n[no such section]\n")
    mark = len(f.stderr())
    f.signal(signal.SIGUSR2)
    wait_for(lambda: "upgrade failed" in f.stderr()[mark:], 10 * SCALE,
             what="the failed upgrade to be logged")
    tail = f.stderr()[mark:]
    check(re.search(r"upgrade failed: the new process \d+ exited with status 1", tail),
          f"the failure does not say why:\n{tail}")
    check(re.search(r"\.ini:\d+: ", tail), f"the configuration error is not logged:\n{tail}")
    # Written back just after the failure is logged.
    wait_for(lambda: site.pid_in_file() == f.pid, 2 * SCALE,
             what="the pid file to hold the running process again")
    load.wait_more(200, "requests after the failed upgrade")
    tunnel.still_carries("after the failed upgrade")
    check(site.admin_healthz(), "the admin API does not answer after the failed upgrade")

    # Fixed, the next upgrade goes through.
    site.rewrite(good)
    new = site.upgrade(f, good)
    load.wait_more(200, "requests after the upgrade")
    tunnel.close()
    _exit_status_soon(f, 10)
    load.stop()
    new.check_alive()


# Installed over the binary: closes the ready pipe it was handed (R,FD in
# FULCRUM_INHERIT) without writing to it, then hangs on.
_HANGS_AFTER_CLOSING = """#!/bin/bash
fd=$(printf '%s' "$FULCRUM_INHERIT" | tr ';' '\\n' | sed -n 's/^R,//p')
eval "exec $fd>&-"
exec sleep 30
"""


def test_a_new_process_that_hangs_after_closing_its_pipe_is_killed_without_blocking(ctx):
    """A new binary that closes its ready pipe and does not exit: the old
    process waits for its exit in its event loop, serving the admin API
    meanwhile, kills it after a second and serves on. Before, the main
    thread slept in a waitpid loop for that second."""
    exe = ctx.path("fulcrum-installed")
    shutil.copy(harness.BIN, exe)
    site = Site(ctx, workers=1, binary=exe)
    f = site.f
    with open(exe + ".new", "w") as fh:
        fh.write(_HANGS_AFTER_CLOSING)
    os.chmod(exe + ".new", 0o755)
    os.rename(exe + ".new", exe)  # as an install over the running binary does
    mark = len(f.stderr())
    f.signal(signal.SIGUSR2)
    wait_for(lambda: "closed its pipe without saying it runs" in f.stderr()[mark:], 5 * SCALE,
             what="the new process to close its pipe")
    check(site.admin_healthz(), "the admin API while the new process is awaited")
    check("killed by signal" not in f.stderr()[mark:],
          "the admin API answered only once the new process was killed")
    wait_for(lambda: "upgrade failed: the new process" in f.stderr()[mark:], 5 * SCALE,
             what="the hung process to be killed and reaped")
    tail = f.stderr()[mark:]
    check("closed its pipe but has not exited; killing it" in tail and
          re.search(r"killed by signal 9 \(Killed\); this one carries on", tail), tail)
    m, _, _ = roundtrip(site.http_port, get("/"))
    check(m.status == 200, f"a request after the failed upgrade: {m}")
    check(site.pid_in_file() == f.pid, "the pid file does not name the running process")


def test_upgrade_after_dropping_privileges_rewrites_the_pid_file(ctx):
    """Started as root with user = nobody and -p in a directory nobody may
    write: the new process (started by nobody) must be able to write the
    pid file root created, or every upgrade fails."""
    if os.geteuid() != 0:
        raise Skip("needs root to drop privileges")
    site = Site(ctx, workers=1, user="nobody")
    old = site.f
    new = site.upgrade(old, old.conf_text)  # checks the pid file names it
    _exit_status_soon(old, 10)
    check(site.admin_healthz(), "the admin API after the upgrade")
    m, _, _ = roundtrip(site.http_port, get("/"))
    check(m.get("x-server") == "web1", f"a request after the upgrade: {m}")
    new.signal(signal.SIGTERM)
    check(new.wait_exit(5) == 0, "exit status of the new process")
    check(not os.path.exists(site.pidfile), "the pid file is left after the exit")


class NotifySocket:
    """systemd's end of NOTIFY_SOCKET: a unix datagram socket that keeps
    every message fulcrum sends, as lists of KEY=VALUE lines."""

    def __init__(self, ctx, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.name = f"@fulcrum-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + self.name[1:])
        else:
            self.name = ctx.path("notify.sock")
            self.sock.bind(self.name)
        self.sock.settimeout(10 * SCALE)
        self.got = []

    def next(self, key):
        """The next message with line KEY (e.g. "READY=1"), as a dict;
        fails after 10 s."""
        while True:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                raise TestFailure(f"no {key} after {self.got}")
            msg = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.got.append(msg)
            k, v = key.split("=", 1)
            if msg.get(k) == v:
                return msg

    def pending(self):
        """What came since, without waiting."""
        self.sock.settimeout(0)
        out = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        self.sock.settimeout(10 * SCALE)
        return out


def _with_env(name, value, fn):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return fn()
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def test_systemd_hears_ready_reloads_stops_and_the_new_main_pid(ctx):
    """With NOTIFY_SOCKET set (Type=notify), fulcrum says READY=1 with its
    MAINPID once it listens, RELOADING=1 then READY=1 around a reload (a
    failed one too), READY=1 with the new process's MAINPID after a binary
    upgrade (the old one then stops without STOPPING=1: the service is the
    new one's), and STOPPING=1 on SIGTERM."""
    ns = NotifySocket(ctx)
    site = _with_env("NOTIFY_SOCKET", ns.name, lambda: Site(ctx, workers=1))
    old = site.f
    msg = ns.next("READY=1")
    check(msg.get("MAINPID") == str(old.pid), f"READY without the main pid: {msg}")
    old.signal(signal.SIGHUP)
    ns.next("RELOADING=1")
    msg = ns.next("READY=1")
    check("generation 2" in msg.get("STATUS", ""), f"after the reload: {msg}")
    site.rewrite("[global\n")
    old.signal(signal.SIGHUP)
    ns.next("RELOADING=1")
    msg = ns.next("READY=1")
    check("failed" in msg.get("STATUS", ""), f"after a failed reload: {msg}")
    site.rewrite(old.conf_text)
    new = site.upgrade(old, old.conf_text)
    msg = ns.next("READY=1")
    check(msg.get("MAINPID") == str(new.pid), f"the new process did not say it is main: {msg}")
    _exit_status_soon(old, 10)
    check(not any("STOPPING=1" in m for m in ns.pending()), "the old process said the service stops")
    new.signal(signal.SIGTERM)
    ns.next("STOPPING=1")
    check(new.wait_exit(5) == 0, "exit status of the new process")


def test_an_abstract_notify_socket(ctx):
    """NOTIFY_SOCKET may name an abstract socket ("@name"), as systemd's
    does in some setups."""
    ns = NotifySocket(ctx, abstract=True)
    b = ctx.backend("echo")
    port = free_port()
    conf = ini(("global", {"workers": 1, "admin": ""}), ("pool p", {"server": f"s 127.0.0.1:{b.port}"}),
               ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "tcp", "pool": "p"}))
    f = _with_env("NOTIFY_SOCKET", ns.name, lambda: ctx.fulcrum(conf))
    msg = ns.next("READY=1")
    check(msg.get("MAINPID") == str(f.pid), f"READY: {msg}")


def test_upgrades_pass_on_no_access_log_descriptor(ctx):
    """access_log = stderr writes to a copy of fd 2; each new process makes
    its own, so the copies must not pile up across upgrades."""
    site = Site(ctx, workers=1)
    conf = site.f.conf_text.replace("access_log = off", "access_log = stderr")
    site.rewrite(conf)
    site.f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in site.f.stderr(), 5 * SCALE, what="the reload")
    stderr_file = site.f.fds()[2]

    def on_stderr(f):
        return sum(1 for target in f.fds().values() if target == stderr_file)

    start = on_stderr(site.f)
    old = site.f
    for _ in range(2):
        new = site.upgrade(old, conf)
        _exit_status_soon(old, 10)
        check(on_stderr(new) == start,
              f"the new process has {on_stderr(new)} descriptors on stderr's file, not {start}")
        old = new
    m, _, _ = roundtrip(site.http_port, get("/"))
    check(m.status == 200, f"a request after the upgrades: {m}")
    wait_for(lambda: '"GET / HTTP/1.1" 200' in old.stderr(), 2 * SCALE,
             what="the request's access-log line on stderr")


def test_second_sigusr2_while_upgrading_is_refused(ctx):
    """A SIGUSR2 while the new process is still starting is refused with a
    warning, and only one upgrade runs. The new file has a 2^24-entry maglev
    table to build, so the new process takes long enough to be caught
    starting."""
    site = Site(ctx)
    f = site.f
    conf = f.conf_text + ("[pool big]\nbalance = maglev\nmaglev_table_size = 16777213\n"
                          "check = none\nserver = x 127.0.0.1:1\n")
    site.rewrite(conf)
    f.signal(signal.SIGUSR2)
    wait_for(lambda: "upgrade: started" in f.stderr(), 5 * SCALE, what="the upgrade to start")
    check("upgrade: the new process" not in f.stderr(), "the new process took over at once")
    f.signal(signal.SIGUSR2)
    wait_for(lambda: "SIGUSR2: an upgrade is already under way" in f.stderr(), 5 * SCALE,
             what="the second SIGUSR2 to be refused")
    wait_for(lambda: "upgrade: the new process" in f.stderr(), 10 * SCALE,
             what="the new process to take over")
    pids = re.findall(r"upgrade: started .* as process (\d+)", f.stderr())
    check(len(pids) == 1, f"{len(pids)} upgrades started")
    new = site.adopt(f, int(pids[0]), conf)
    _exit_status_soon(f, 10)
    new.check_alive()


close_backends_first(globals())
