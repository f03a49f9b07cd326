"""Integration-test harness for fulcrum: the process under test, backends, helpers.

Every test is a function `test_NAME(ctx)` in a `test_*.py` module next to this
file; run.py calls it with a fresh Ctx. Whatever the test starts through the
Ctx (fulcrum processes, backends, temp files) is checked and cleaned up by
Ctx.finish(): a fulcrum still running must be alive with its open fd count
back where it was after start-up, must stop with exit status 0 on SIGTERM, and
its stderr must hold no sanitizer report.

Only the Python standard library is used. Timeouts are multiplied by SCALE
(3 for sanitizer builds, or FULCRUM_TIMEOUT_SCALE) since those run slower.
"""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.abspath(os.path.join(ROOT, os.environ.get("FULCRUM_BIN", "build/fulcrum")))


def _default_scale():
    env = os.environ.get("FULCRUM_TIMEOUT_SCALE")
    if env:
        return float(env)
    return 3.0 if ("asan" in BIN or "tsan" in BIN) else 1.0


SCALE = _default_scale()
# Sanitizer builds are linked without jemalloc (Makefile).
SANITIZED = "asan" in BIN or "tsan" in BIN
# ThreadSanitizer slows memory-heavy work far more than SCALE allows for.
TSAN = "tsan" in BIN

# No socket in the tests may block forever: a hung test fails instead.
socket.setdefaulttimeout(15 * SCALE)

# core/worker.c: pipe_pool_init(&w->pipes, ..., 64) keeps this many free
# pipes per worker; check_fds_settled() lets them stay open.
POOLED_PIPES_PER_WORKER = 64

SANITIZER_MARKS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "WARNING: ThreadSanitizer",
    "runtime error:",
)


class TestFailure(AssertionError):
    pass


class Skip(Exception):
    """Raised by a test that cannot run here; reported as SKIP."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_for(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it returns a true value (returned) or timeout seconds
    (already scaled by the caller where needed) pass, then fails."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TestFailure(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- ports ----


_handed_out = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port):
    """True if PORT is free on every address, v4 and v6 (a 0.0.0.0 bind
    conflicts with any address)."""
    tries = [(socket.AF_INET, "0.0.0.0")]
    if has_ipv6():
        tries.append((socket.AF_INET6, "::"))
    for fam, addr in tries:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((addr, port))
            except OSError:
                return False
    return True


def _port_range():
    """The ports free_port() draws from: below the ephemeral range, and cut
    into run.py's job slices (FULCRUM_TEST_SLICE="i/n") so that tests running
    side by side never hand out the same port."""
    hi = _ephemeral_low() - 1
    lo = 10000 if hi > 12000 else 1024
    i, n = (int(x) for x in os.environ.get("FULCRUM_TEST_SLICE", "0/1").split("/"))
    width = (hi - lo + 1) // n
    if width < 100:
        raise TestFailure(f"only {hi - lo + 1} ports below the ephemeral range for {n} jobs")
    return lo + i * width, lo + (i + 1) * width - 1


def free_port(host="127.0.0.1"):
    """A port for fulcrum to listen on: free on every address right now and
    taken below the ephemeral range, so that no client connection (ours or
    another process's) can grab it as its local port before fulcrum binds.
    HOST is accepted for symmetry; the port is free on all addresses."""
    lo, hi = _port_range()
    for _ in range(1000):
        port = random.randint(lo, hi)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise TestFailure("no free port below the ephemeral range")


def closed_port(host="127.0.0.1"):
    """A port where connecting is refused."""
    return free_port(host)


_ipv6 = None


def has_ipv6():
    global _ipv6
    if _ipv6 is None:
        _ipv6 = _probe_ipv6()
    return _ipv6


def _probe_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --------------------------------------------------------------- config ----


def ini(*sections):
    """Builds INI text from (header, items) pairs; items is a list of
    (key, value) pairs or a dict; a list value repeats the key."""
    out = []
    for header, items in sections:
        out.append(f"[{header}]")
        pairs = items.items() if isinstance(items, dict) else items
        for k, v in pairs:
            if v is None:
                continue
            vals = v if isinstance(v, (list, tuple)) else [v]
            for one in vals:
                out.append(f"{k} = {one}".rstrip())
        out.append("")
    return "\n".join(out)


def tcp_conf(port, servers, glob=None, pool=None, listener=None, bind=None):
    """The common test config: one tcp listener on 127.0.0.1:PORT (or BIND)
    in front of pool "p" with SERVERS ("NAME HOST:PORT [opts]" strings).
    The dicts override or add keys of [global], [pool p] and [listener l]."""
    g = {"workers": 1, "admin": "", "access_log": "off", "log_level": "info"}
    g.update(glob or {})
    p = {"balance": "roundrobin", "check": "none", "connect_timeout": "1s", "server": servers}
    p.update(pool or {})
    l = {"bind": bind or f"127.0.0.1:{port}", "mode": "tcp", "pool": "p"}
    l.update(listener or {})
    return ini(("global", g), ("pool p", p), ("listener l", l))


# -------------------------------------------------------------- fulcrum ----


def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        pass
    return inodes


def _tcp_sockets():
    """(local port, remote port, state hex, inode) of every TCP socket, v4
    and v6, from /proc/net."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    yield (int(parts[1].rsplit(":", 1)[1], 16), int(parts[2].rsplit(":", 1)[1], 16),
                           parts[3], parts[9])
        except OSError:
            pass


def cpu_ticks(pid, tid=None):
    """User and system CPU time PID (or its thread TID) has used, in clock
    ticks (100 a second here)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(path) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid):
    return cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def connections_to(pid, port):
    """How many of PID's TCP sockets are established to remote PORT."""
    mine = _socket_inodes(pid)
    return sum(1 for _, remote, state, inode in _tcp_sockets()
               if state == "01" and inode in mine and remote == port)


def listening_ports(pid):
    """The TCP ports (v4 and v6) PID has a socket listening on."""
    mine = _socket_inodes(pid)
    return {local for local, _, state, inode in _tcp_sockets() if state == "0A" and inode in mine}


def _listening_inet(port):
    """Inodes of sockets in LISTEN state on PORT (any address, v4 or v6).
    Asked of the kernel through ss (sock_diag filters by port): reading all
    of /proc/net/tcp takes seconds once tests have left tens of thousands of
    TIME_WAIT sockets, and, read in pieces while other tests open and close
    listeners, it can skip one, so that a start-up wait gave up on a
    fulcrum that listened."""
    try:
        out = subprocess.run(["ss", "-Hltne", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=10).stdout
        return set(re.findall(r"\bino:(\d+)", out))
    except (OSError, subprocess.TimeoutExpired):
        return {inode for local, _, state, inode in _tcp_sockets()
                if state == "0A" and local == port}


def _listening_unix(path):
    found = set()
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 8 and parts[7] == path and parts[3] == "00010000":
                    found.add(parts[6])
    except OSError:
        pass
    return found


def parse_bind(text):
    """'127.0.0.1:80', '[::1]:80', 'unix:/p' -> ('inet', host, port) or ('unix', path)."""
    text = text.strip()
    if text.startswith("unix:"):
        return ("unix", text[5:])
    host, port = text.rsplit(":", 1)
    return ("inet", host.strip("[]"), int(port))


def binds_of(conf_text):
    return [parse_bind(m) for m in re.findall(r"^\s*bind\s*=\s*(\S+)", conf_text, re.M)]


class Fulcrum:
    """One fulcrum process on a config text. Start-up waits until the process
    listens on every bind of the config and its fd count is stable; that
    count is the baseline fds_settled() compares against."""

    def __init__(self, tmpdir, conf_text, args=(), name="fulcrum", binary=None):
        self.tmpdir = tmpdir
        self.conf_text = conf_text
        self.conf_path = os.path.join(tmpdir, f"{name}.ini")
        with open(self.conf_path, "w") as f:
            f.write(conf_text)
        self.stdout_path = os.path.join(tmpdir, f"{name}.stdout")
        self.stderr_path = os.path.join(tmpdir, f"{name}.stderr")
        self.args = list(args)
        self.binary = binary or BIN
        self.proc = None
        self.baseline_fds = None
        self.baseline_pipes = 0
        self.exit_code = None
        self.binds = binds_of(conf_text)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait=True):
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [self.binary, "-c", self.conf_path] + self.args,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.tmpdir)
        finally:
            out.close()
            err.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout * SCALE
        for b in self.binds:
            while not self._listens(b):
                if self.proc.poll() is not None:
                    raise TestFailure(f"fulcrum exited with {self.proc.returncode} during start-up; "
                                      f"stderr:\n{self.stderr()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TestFailure(f"fulcrum does not listen on {b} after {timeout * SCALE:.0f}s; "
                                      f"stderr:\n{self.stderr()[-2000:]}")
                time.sleep(0.02)
        self.take_baseline()

    def take_baseline(self):
        """Records the fd counts finish() compares with: after start-up (or,
        for a test that started without waiting, once it saw it ready)."""
        self.baseline_fds = self._stable_fd_count()
        self.baseline_pipes = sum(1 for v in self.fds().values() if v.startswith("pipe:"))

    def _listens(self, b):
        mine = _socket_inodes(self.pid)
        found = _listening_unix(b[1]) if b[0] == "unix" else _listening_inet(b[2])
        return bool(mine & found)

    def _stable_fd_count(self):
        """Fd count once it held still for 150 ms (workers may still be opening
        their epoll and listeners right after the first one listens)."""
        last, same_since = self.fd_count(), time.monotonic()
        deadline = time.monotonic() + 3 * SCALE
        while time.monotonic() < deadline:
            time.sleep(0.03)
            n = self.fd_count()
            if n != last:
                last, same_since = n, time.monotonic()
            elif time.monotonic() - same_since >= 0.15:
                break
        return last

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fds(self):
        out = {}
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out[int(fd)] = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                pass
        return out

    def threads(self):
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def running(self):
        return self.proc is not None and self.exit_code is None and self.proc.returncode is None

    def check_alive(self):
        if not self.alive():
            raise TestFailure(f"fulcrum died (status {self.proc.returncode}); "
                              f"stderr:\n{self.stderr()[-2000:]}")

    def workers(self):
        """The worker count this process runs with (-w, [global] workers, auto)."""
        if "-w" in self.args:
            w = self.args[self.args.index("-w") + 1]
            return os.sysconf("SC_NPROCESSORS_ONLN") if w == "auto" else int(w)
        m = re.search(r"^\s*workers\s*=\s*(\d+)\s*$", self.conf_text, re.M)
        return int(m.group(1)) if m else os.sysconf("SC_NPROCESSORS_ONLN")

    def check_fds_settled(self, timeout=2.0):
        """Open fds return to the start-up baseline (closes are asynchronous,
        so poll for a while). Pipes are the one exception: each worker keeps
        up to POOLED_PIPES_PER_WORKER empty splice pipes for reuse (ARCHITECTURE:
        "pipes come from a per-worker pool"), so up to that many pipe pairs
        per worker may stay open; every other fd must be closed."""
        self.check_alive()
        pipe_allowance = 2 * POOLED_PIPES_PER_WORKER * self.workers()
        deadline = time.monotonic() + timeout * SCALE
        while True:
            fds = self.fds()
            pipes = sum(1 for v in fds.values() if v.startswith("pipe:"))
            others = len(fds) - pipes
            if others <= self.baseline_fds - self.baseline_pipes and \
                    pipes <= self.baseline_pipes + pipe_allowance:
                return
            if time.monotonic() > deadline:
                raise TestFailure(f"fd leak: {len(fds)} open fds ({pipes} pipe ends, at most "
                                  f"{pipe_allowance} pooled), {self.baseline_fds} after start-up: "
                                  f"{sorted(fds.items())}")
            time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits for the process to end; returns its status (negative = signal)."""
        try:
            rc = self.proc.wait(timeout * SCALE)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"fulcrum still running {timeout * SCALE:.1f}s later")
        self.exit_code = rc
        return rc

    def stop(self, timeout=5):
        """SIGTERM; must exit 0 within TIMEOUT seconds."""
        if self.exit_code is not None or self.proc.poll() is not None:
            self.exit_code = self.proc.returncode
            check(self.exit_code == 0, f"fulcrum had exited with status {self.exit_code}")
            return
        self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        check(rc == 0, f"fulcrum exited with status {rc} on SIGTERM; stderr:\n{self.stderr()[-2000:]}")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def check_sanitizers(self):
        text = self.stderr()
        for mark in SANITIZER_MARKS:
            if mark in text:
                i = text.index(mark)
                raise TestFailure(f"sanitizer report in fulcrum's stderr:\n{text[max(0, i - 200):i + 3000]}")
        rc = self.proc.returncode if self.proc else None
        if rc is not None and rc < 0:
            raise TestFailure(f"fulcrum ended by signal {-rc}; stderr:\n{text[-2000:]}")


def run_fulcrum(args, timeout=10, cwd=None):
    """Runs the binary to completion (for -v, -h, -t and start-up failures).
    Returns (status, stdout, stderr)."""
    try:
        p = subprocess.run([BIN] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout * SCALE, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"fulcrum {' '.join(args)} did not exit within {timeout * SCALE:.0f}s")
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        check(mark not in err, f"sanitizer report:\n{err[-3000:]}")
    check(p.returncode >= 0, f"fulcrum {' '.join(args)} ended by signal {-p.returncode}:\n{err[-2000:]}")
    return p.returncode, out, err


# ------------------------------------------------------------- backends ----


class Backend:
    """A threaded TCP server on loopback; one thread per connection.

    modes:
      echo        echoes bytes; on EOF from the peer shuts down its write side
      name        sends NAME + "\\n" on connect, then echoes
      sink        reads until EOF, then sends the sha256 hex of it and closes
      source      sends DATA (at RATE bytes/s if given), then closes
      shut_first  sends GREETING, shuts down its write side, then reads until
                  EOF and records what it got
      silent      accepts and never sends anything (reads until EOF)
    Counters: accepted (connections so far), active (open now); received
    holds (bytes count, sha256 hex) for sink and the bytes for shut_first;
    sent counts the bytes source mode has handed to the kernel.
    """

    def __init__(self, mode="echo", name="b", host="127.0.0.1", data=b"", rate=None, greeting=b"hello\n"):
        self.mode = mode
        self.name = name
        self.host = host
        self.data = data
        self.rate = rate
        self.greeting = greeting
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = 0
        self.active = 0
        self.received = []
        self.sent = 0
        self.errors = []
        self.conns = set()
        self.closed = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def server_line(self, opts=""):
        return f"{self.name} {self.addr} {opts}".rstrip()

    def _accept_loop(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            c.settimeout(60 * SCALE)
            with self.lock:
                self.accepted += 1
                self.active += 1
                self.conns.add(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            getattr(self, "_mode_" + self.mode)(c)
        except OSError as e:
            if not self.closed:
                with self.lock:
                    self.errors.append(repr(e))
        finally:
            with self.lock:
                self.active -= 1
                self.conns.discard(c)
            try:
                c.close()
            except OSError:
                pass

    @staticmethod
    def _echo(c):
        while True:
            b = c.recv(65536)
            if not b:
                c.shutdown(socket.SHUT_WR)
                return
            c.sendall(b)

    def _mode_echo(self, c):
        self._echo(c)

    def _mode_name(self, c):
        c.sendall(self.name.encode() + b"\n")
        self._echo(c)

    def _mode_sink(self, c):
        h, n = hashlib.sha256(), 0
        while True:
            b = c.recv(262144)
            if not b:
                break
            h.update(b)
            n += len(b)
        with self.lock:
            self.received.append((n, h.hexdigest()))
        c.sendall(h.hexdigest().encode())

    def _mode_source(self, c):
        step = 65536
        if self.rate:
            step = max(1024, int(self.rate / 50))
        view = memoryview(self.data)
        for off in range(0, len(view), step):
            c.sendall(view[off:off + step])
            with self.lock:
                self.sent += min(step, len(view) - off)
            if self.rate:
                time.sleep(step / self.rate)

    def _mode_shut_first(self, c):
        c.sendall(self.greeting)
        c.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
        with self.lock:
            self.received.append(bytes(got))

    def _mode_silent(self, c):
        while c.recv(65536):
            pass

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Blackhole:
    """An address where connect() neither succeeds nor fails: a listener with
    backlog 0 whose accept queue is kept full, so the kernel drops new SYNs."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)
            time.sleep(0.05)
            try:
                c.getpeername()
            except OSError:
                return  # this one is left hanging: the queue is full
        raise Skip("cannot make a blackhole address (accept queue never fills)")

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


# -------------------------------------------------------------- clients ----


def connect(addr, timeout=None):
    """addr: (host, port) or a unix path."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout if timeout is not None else 10 * SCALE)
    s.connect(addr)
    return s


def recv_line(s, limit=4096):
    buf = bytearray()
    while not buf.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        buf += b
        if len(buf) > limit:
            break
    return bytes(buf)


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(min(262144, n - len(buf)))
        if not b:
            raise TestFailure(f"EOF after {len(buf)} of {n} bytes")
        buf += b
    return bytes(buf)


def recv_all(s):
    """Reads until EOF; returns the bytes."""
    buf = bytearray()
    while True:
        b = s.recv(262144)
        if not b:
            return bytes(buf)
        buf += b


def recv_count(s, timeout):
    """Reads until EOF, a reset or TIMEOUT seconds of silence; returns how
    many bytes came."""
    s.settimeout(timeout)
    n = 0
    try:
        while True:
            b = s.recv(262144)
            if not b:
                break
            n += len(b)
    except (ConnectionResetError, socket.timeout):
        pass
    return n


def recv_hash(s):
    """Reads until EOF; returns (count, sha256 hex)."""
    h, n = hashlib.sha256(), 0
    while True:
        b = s.recv(262144)
        if not b:
            return n, h.hexdigest()
        h.update(b)
        n += len(b)


def refused(port):
    """True once a connection to 127.0.0.1:PORT is refused (nothing listens)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def closed_by_peer(s, timeout):
    """Waits up to TIMEOUT seconds for EOF or a reset on S; any data is
    skipped. Returns the seconds it took, or None if still open."""
    t0 = time.monotonic()
    s.settimeout(0.05)
    while time.monotonic() - t0 < timeout:
        try:
            b = s.recv(65536)
            if not b:
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return time.monotonic() - t0
    return None


def echo_roundtrip(s, payload):
    s.sendall(payload)
    return recv_exact(s, len(payload)) == payload


class StuckLog:
    """A fifo for access_log that nobody reads until release(): once the
    log lines of block(port) fill it, the worker writing them is held up."""

    def __init__(self, ctx):
        self.path = ctx.path("access.fifo")
        os.mkfifo(self.path)
        # Open for reading (without blocking), so that fulcrum's open returns.
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def block(self, port):
        """Connects through PORT (a tcp listener to a 'name' backend) until a
        connection gets no answer: its worker is stuck in a log write."""
        for _ in range(2000):
            s = connect(("127.0.0.1", port), timeout=0.5 * SCALE)
            try:
                recv_line(s)
            except (OSError, TestFailure):
                return
            finally:
                s.close()
        raise TestFailure("the worker never blocked on its access log")

    def release(self):
        """Reads the fifo from now on, until fulcrum closes it."""
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        os.set_blocking(self.fd, True)
        try:
            while os.read(self.fd, 1 << 16):
                pass
        finally:
            os.close(self.fd)


def name_via(addr, source_ip=None):
    """Connects through fulcrum to a 'name' backend; returns its name."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10 * SCALE)
    if source_ip:
        s.bind((source_ip, 0))
    try:
        s.connect(addr)
        line = recv_line(s)
    finally:
        s.close()
    return line.decode().strip()


_BLOBS = {}


def blob(n, seed=0):
    """N random bytes, the same within a run for the same (n, seed)."""
    key = (n, seed)
    if key not in _BLOBS:
        _BLOBS[key] = os.urandom(n)
    return _BLOBS[key]


def sha256(b):
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------- logs ----


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
    except OSError:
        return []


def parse_json_line(line):
    return json.loads(line)


# ---------------------------------------------------------------- ctx ----


class Ctx:
    """Per-test resources; finish() checks and releases them."""

    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="fulcrum-it-")
        self.fulcrums = []
        self.backends = []
        self._n = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def fulcrum(self, conf_text, args=(), wait=True, binary=None):
        """Starts fulcrum (BINARY, else the one under test) on CONF_TEXT."""
        self._n += 1
        f = Fulcrum(self.tmp, conf_text, args, name=f"fulcrum{self._n}", binary=binary)
        self.fulcrums.append(f)
        return f.start(wait=wait)

    def backend(self, mode="echo", name=None, **kw):
        b = Backend(mode, name=name or f"s{len(self.backends) + 1}", **kw)
        self.backends.append(b)
        return b

    def blackhole(self):
        b = Blackhole()
        self.backends.append(b)
        return b

    def finish(self, ok):
        """Runs the end-of-test checks when the test passed; always stops
        and releases everything. Raises the first problem found."""
        problem = None
        for f in self.fulcrums:
            try:
                if f.proc is None:
                    continue
                if ok and f.running():
                    f.check_fds_settled()
                if f.running():
                    f.stop()
                f.check_sanitizers()
            except Exception as e:  # noqa: BLE001 - collect the first, clean up the rest
                problem = problem or e
            finally:
                f.kill()
        for b in self.backends:
            b.close()
        if problem is None and ok:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if problem is not None:
            raise problem

    def stderr_tails(self):
        out = []
        for f in self.fulcrums:
            t = f.stderr()
            if t:
                out.append(f"--- {f.stderr_path} (tail)\n{t[-1500:]}")
        return "\n".join(out)
