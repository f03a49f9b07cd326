"""http mode: keep-alive, pipelining, bodies both ways, HEAD/204/304, 100-continue,
large downloads, upgrades, hop-by-hop and X-Forwarded-* headers, retries,
server connection pooling and the access log (SPEC §2, §3 "http mode", §6).

This module also holds the helpers the other test_http*.py modules import:
the C backend (build/backend) as a process, scriptable Python servers for
misbehaving backends, and a byte-exact HTTP/1.1 client on raw sockets.
"""

import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

from harness import (ROOT, SCALE, Backend, TestFailure, check, closed_port, connect, cpu_seconds, free_port,
                     ini, read_lines, recv_all, wait_for)

KIB = 1 << 10
MIB = 1 << 20
BACKEND_BIN = os.path.join(ROOT, "build", "backend")


# ------------------------------------------------------------ config ----


def http_conf(port, servers, glob=None, pool=None, listener=None, extra=()):
    """One http listener "l" on 127.0.0.1:PORT in front of pool "p" with
    SERVERS; the dicts override or add keys; EXTRA adds (header, items)
    sections (more pools, routes)."""
    g = {"workers": 1, "admin": "", "access_log": "off", "log_level": "info"}
    g.update(glob or {})
    p = {"balance": "roundrobin", "check": "none", "connect_timeout": "1s", "server": servers}
    p.update(pool or {})
    l = {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p"}
    l.update(listener or {})
    return ini(("global", g), ("pool p", p), ("listener l", l), *extra)


# ---------------------------------------------------------- backends ----


class CBackend:
    """build/backend as a child process (HTTP mode unless -e). Stopped by its
    own pid in close(), which Ctx.finish() calls."""

    def __init__(self, name="b1", args=()):
        if not os.access(BACKEND_BIN, os.X_OK):
            raise TestFailure(f"{BACKEND_BIN} is missing (run make)")
        self.name = name
        self.proc = subprocess.Popen([BACKEND_BIN, "-p", "0", "-b", "127.0.0.1", "-n", name, "-t", "1"]
                                     + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.port = None
        deadline = time.monotonic() + 5 * SCALE
        buf = b""
        while b"ready" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.close()
                raise TestFailure(f"backend {name} did not start: {buf!r}")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                buf += chunk
        self.port = int(re.search(rb"port (\d+)", buf).group(1))

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def server_line(self, opts=""):
        return f"{self.name} {self.addr} {opts}".rstrip()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def cbackend(ctx, name="b1", args=()):
    b = CBackend(name, args)
    ctx.backends.append(b)
    return b


class PyServer(Backend):
    """A loopback TCP server (harness.Backend's accept loop and counters)
    running HANDLER(conn, server) in a thread per connection, conn being a
    Reader over the accepted socket. Records every byte received (raw) and
    the request heads read through read_request(); what the handler raises
    goes to errors."""

    def __init__(self, handler, name="py"):
        self.handler = handler
        self.raw = bytearray()
        self.heads = []
        super().__init__(mode="handler", name=name)

    def _mode_handler(self, c):
        try:
            self.handler(Reader(c, self), self)
        except Exception as e:  # noqa: BLE001 - a bad request from fulcrum is recorded, not raised
            if not self.closed:
                with self.lock:
                    self.errors.append(repr(e))

    def raw_received(self):
        with self.lock:
            return bytes(self.raw)


def pyserver(ctx, handler, name="py"):
    s = PyServer(handler, name)
    ctx.backends.append(s)
    return s


# ------------------------------------------------------------ reading ----


class Reader:
    """A buffered reader over a socket (client or server side). SERVER, when
    given, is a PyServer whose raw record gets every byte read."""

    def __init__(self, sock, server=None):
        self.s = sock
        self.server = server
        self.buf = bytearray()

    def _fill(self):
        b = self.s.recv(262144)
        if not b:
            raise EOFError(f"EOF with {len(self.buf)} bytes buffered: {bytes(self.buf[:200])!r}")
        if self.server is not None:
            with self.server.lock:
                self.server.raw += b
        self.buf += b

    def until(self, delim, limit=1 << 20):
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise TestFailure(f"no {delim!r} within {limit} bytes")
            self._fill()

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def to_eof(self):
        while True:
            try:
                self._fill()
            except EOFError:
                break
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def send(self, data):
        self.s.sendall(data)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def parse_head(head):
    """'LINE\\r\\nName: value\\r\\n...\\r\\n\\r\\n' -> (first line, [(name, value)])."""
    lines = head.decode("latin-1").split("\r\n")
    hdrs = []
    for l in lines[1:]:
        if not l:
            continue
        name, _, value = l.partition(":")
        hdrs.append((name, value.strip(" \t")))
    return lines[0], hdrs


class Message:
    """A parsed request or response."""

    def __init__(self, first, headers, body=b"", raw_len=0, head=b""):
        self.first = first
        self.headers = headers
        self.body = body
        self.raw_len = raw_len
        self.head = head
        parts = first.split(" ", 2)
        self.status = int(parts[1]) if first.startswith("HTTP/") and len(parts) > 1 and \
            parts[1].isdigit() else None
        self.version = parts[0] if first.startswith("HTTP/") else (parts[2] if len(parts) > 2 else "")

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name, default=None):
        v = self.all(name)
        return v[0] if v else default

    def names(self):
        return {n.lower() for n, _ in self.headers}

    def tokens(self, name):
        """Comma-separated tokens of every NAME header, lowercased."""
        return [t.strip().lower() for v in self.all(name) for t in v.split(",") if t.strip()]

    def __repr__(self):
        return f"<{self.first!r} {self.headers} body {len(self.body)} bytes {bytes(self.body[:120])!r}>"


def read_chunked(r):
    """Decodes a chunked body from reader R; returns (body, raw bytes)."""
    body, raw = bytearray(), bytearray()
    while True:
        line = r.until(b"\r\n", limit=4096)
        raw += line
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:
                t = r.until(b"\r\n", limit=65536)
                raw += t
                if t == b"\r\n":
                    return bytes(body), bytes(raw)
        data = r.exact(size + 2)
        raw += data
        check(data.endswith(b"\r\n"), f"chunk data not followed by CRLF: {data[-10:]!r}")
        body += data[:-2]


def read_response(r, method="GET", keep_1xx=False):
    """Reads one response from reader R (1xx interim responses are skipped
    unless KEEP_1XX). Body framing per RFC 9112 §6.3."""
    while True:
        head = r.until(b"\r\n\r\n", limit=256 * KIB)
        first, hdrs = parse_head(head)
        m = Message(first, hdrs, head=head)
        check(m.status is not None, f"not a status line: {first!r}")
        if 100 <= m.status < 200 and m.status != 101 and not keep_1xx:
            continue
        break
    raw_len = len(head)
    te = m.tokens("transfer-encoding")
    if method == "HEAD" or 100 <= m.status < 200 or m.status in (204, 304):
        body = b""
    elif te and te[-1] == "chunked":
        body, raw = read_chunked(r)
        raw_len += len(raw)
    elif te:  # RFC 9112 §6.3: another coding last is read until the close
        body = r.to_eof()
        raw_len += len(body)
    elif m.all("content-length"):
        body = r.exact(int(m.get("content-length")))
        raw_len += len(body)
    else:
        body = r.to_eof()
        raw_len += len(body)
    m.body = body
    m.raw_len = raw_len
    return m


def read_request(r):
    """Reads one request (head and body) from reader R; records the head in
    the PyServer. Returns a Message, or None on EOF before any byte."""
    if not r.buf:
        try:
            r._fill()
        except EOFError:
            return None
    head = r.until(b"\r\n\r\n", limit=256 * KIB)
    first, hdrs = parse_head(head)
    m = Message(first, hdrs, head=head)
    if r.server is not None:
        with r.server.lock:
            r.server.heads.append(head)
    if "chunked" in m.tokens("transfer-encoding"):
        m.body, _ = read_chunked(r)
    elif m.all("content-length"):
        m.body = r.exact(int(m.get("content-length")))
    return m


def wait_closed(r, timeout):
    """Waits up to TIMEOUT s for the peer of reader R to close. Returns
    (closed, extra bytes received before the close or the timeout)."""
    extra = bytearray(r.buf)
    r.buf.clear()
    deadline = time.monotonic() + timeout
    r.s.settimeout(0.05)
    try:
        while time.monotonic() < deadline:
            try:
                b = r.s.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                return True, bytes(extra)
            if not b:
                return True, bytes(extra)
            extra += b
        return False, bytes(extra)
    finally:
        r.s.settimeout(15 * SCALE)


# ------------------------------------------------------------ clients ----


def client(port, timeout=None):
    return Reader(connect(("127.0.0.1", port), timeout=timeout or 15 * SCALE))


def get(path="/", host="example.com", headers=(), method="GET", body=None, version="HTTP/1.1"):
    """Request bytes; HEADERS is a list of 'Name: value' strings."""
    lines = [f"{method} {path} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += list(headers)
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + (body or b"")


def roundtrip(port, data, method="GET", wait_close=1.0):
    """Opens a connection, sends DATA, reads one response; returns
    (response, closed afterwards, extra bytes); with WAIT_CLOSE = 0 the
    close is not waited for (closed is None)."""
    r = client(port)
    try:
        r.send(data)
        m = read_response(r, method)
        if not wait_close:
            return m, None, b""
        closed, extra = wait_closed(r, wait_close * SCALE)
        return m, closed, extra
    finally:
        r.close()


def chunk_encode(data, sizes=(1, 7, 4096, 65536)):
    out, off, i = bytearray(), 0, 0
    while off < len(data):
        n = sizes[i % len(sizes)]
        piece = data[off:off + n]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        off += len(piece)
        i += 1
    return bytes(out + b"0\r\n\r\n")


_PATTERN = bytes(10 if i % 64 == 63 else ord("a") + (i % 64) % 26 for i in range(65536))


def pattern(n):
    """The body build/backend sends for ?size=N."""
    reps = n // len(_PATTERN) + 1
    return (_PATTERN * reps)[:n]


def pattern_sha256(n):
    h = hashlib.sha256()
    full, rest = divmod(n, len(_PATTERN))
    for _ in range(full):
        h.update(_PATTERN)
    h.update(_PATTERN[:rest])
    return h.hexdigest()


def sender(sock, data):
    """Sends DATA from a thread; returns (thread, errors list)."""
    err = []

    def run():
        try:
            sock.sendall(data)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, err


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def expect_error(m, closed, status, must_close=None, what=""):
    """fulcrum's own error: STATUS, a short text body, and Connection: close
    exactly when the connection closes (MUST_CLOSE: it has to close)."""
    check(m.status == status, f"{what}: status {m.status}, want {status}: {m!r}")
    check(0 < len(m.body) <= 512, f"{what}: error body is not short text: {m!r}")
    says_close = "close" in m.tokens("connection")
    if must_close:
        check(closed, f"{what}: connection not closed after the {status}")
    if closed:
        check(says_close, f"{what}: the {status} closes the connection without `Connection: close`: {m!r}")
    if says_close:
        check(closed, f"{what}: `Connection: close` but the connection stays open")


def ok_handler(body=b"ok", extra=b"", close_after=None, linger=0.0):
    """A keep-alive Python HTTP server answering every request with BODY.
    CLOSE_AFTER: close the connection (silently, with no Connection: close)
    after that many responses, LINGER seconds after the last one."""

    def handler(r, srv):
        n = 0
        while True:
            req = read_request(r)
            if req is None:
                return
            r.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body)
            n += 1
            if close_after is not None and n >= close_after:
                if linger:
                    time.sleep(linger)
                return

    return handler


def access_lines(path, n, timeout=3):
    return wait_for(lambda: (lambda ls: ls if len(ls) >= n else None)(read_lines(path)),
                    timeout * SCALE, what=f"{n} access-log lines in {path}")


def close_backends_first(namespace):
    """Wraps every test_* function of a module so that, once the test body
    passed, its backends are closed before Ctx.finish() checks fulcrum's fds:
    idle pooled server connections are open fds by design (keepalive), and
    fulcrum must close each one when its server closes it. Call at the end
    of a module with globals()."""
    for name, fn in list(namespace.items()):
        if not (name.startswith("test_") and callable(fn)) or getattr(fn, "_wrapped", False):
            continue

        def wrapped(ctx, fn=fn):
            fn(ctx)
            for b in ctx.backends:
                b.close()

        wrapped.__name__ = name
        wrapped.__doc__ = fn.__doc__
        wrapped._wrapped = True
        namespace[name] = wrapped


# ------------------------------------------------------------- basics ----


def test_get_with_curl(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    p = subprocess.run(["curl", "-s", "-i", "--max-time", str(int(10 * SCALE)), f"http://127.0.0.1:{port}/"],
                       capture_output=True, timeout=20 * SCALE)
    check(p.returncode == 0, f"curl failed: {p.returncode} {p.stderr!r}")
    out = p.stdout
    check(out.startswith(b"HTTP/1.1 200"), f"curl got {out[:200]!r}")
    check(b"\r\nX-Server: b1\r\n" in out, f"no X-Server: b1 in {out[:400]!r}")
    check(out.endswith(b"\r\n\r\nhello from b1\n"), f"body wrong: {out[-100:]!r}")


def test_keepalive_curl_two_urls(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log}))
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n",
                        f"http://127.0.0.1:{port}/one", f"http://127.0.0.1:{port}/two"],
                       capture_output=True, timeout=20 * SCALE)
    out = p.stdout.decode().split("\n")
    check(out[:2] == ["200 1", "200 0"], f"curl: {out} (want the second URL on the same connection)")
    lines = access_lines(log, 2)
    clients = {l.split(" ")[1] for l in lines}
    check(len(lines) == 2 and len(clients) == 1, f"two requests, one client connection expected: {lines}")


def test_keepalive_raw_sequential(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    for i in range(5):
        r.send(get(f"/headers?n={i}"))
        m = read_response(r)
        check(m.status == 200 and m.body.startswith(f"GET /headers?n={i} HTTP/1.1\r\n".encode()),
              f"request {i} on one connection: {m!r}")
    closed, extra = wait_closed(r, 0.3)
    check(not closed and not extra, f"keep-alive connection closed ({closed}) or extra bytes {extra!r}")
    r.close()


def test_client_connection_close(ctx):
    """A request with Connection: close is answered with Connection: close
    and the connection ends."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    m, closed, extra = roundtrip(port, get("/headers", headers=["Connection: close"]))
    check(m.status == 200 and "close" in m.tokens("connection"), f"response to Connection: close: {m!r}")
    check(closed and not extra, f"connection not closed after Connection: close (extra {extra!r})")
    # Pipelined behind a Connection: close request: not answered.
    r = client(port)
    r.send(get("/?size=1", headers=["Connection: close"]) + get("/?size=2"))
    m = read_response(r)
    closed, extra = wait_closed(r, 1.0 * SCALE)
    r.close()
    check(m.body == b"a" and closed and not extra,
          f"a request after Connection: close was answered or the connection stayed open: {extra!r}")


def test_pipelined_three_in_order(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    # The first is slow: answers must still come back in request order.
    r.send(get("/headers?n=1&ms=300") + get("/headers?n=2") + get("/headers?n=3&size=5"))
    for i in (1, 2, 3):
        m = read_response(r)
        check(m.status == 200, f"pipelined response {i}: {m!r}")
        line = m.body.split(b"\r\n")[0]
        check(line.startswith(f"GET /headers?n={i}".encode()), f"pipelined response {i} answers {line!r}")
    r.send(get("/x?size=3"))
    m = read_response(r)
    check(m.status == 200 and m.body == b"abc", f"request after the pipeline: {m!r}")
    r.close()


def test_pipelined_with_bodies(ctx):
    """Pipelined requests with bodies (Content-Length and chunked) in one write."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    r.send(get("/echo", method="POST", body=b"first body") +
           get("/echo", method="POST", headers=["Transfer-Encoding: chunked"]) + chunk_encode(b"second") +
           get("/headers?n=3"))
    m1, m2, m3 = read_response(r), read_response(r), read_response(r)
    check(m1.body == b"first body", f"first: {m1!r}")
    check(m2.body == b"second", f"second: {m2!r}")
    check(m3.body.startswith(b"GET /headers?n=3 "), f"third: {m3!r}")
    r.close()


def test_http10_no_host_closes(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    m, closed, extra = roundtrip(port, b"GET /?size=10 HTTP/1.0\r\n\r\n")
    check(m.status == 200 and m.body == pattern(10), f"HTTP/1.0 without Host: {m!r}")
    check(closed and not extra, f"HTTP/1.0 connection not closed after the response (extra {extra!r})")
    check(m.version in ("HTTP/1.0", "HTTP/1.1"), f"status line {m.first!r}")


def test_http10_keepalive(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    r.send(b"GET /?size=10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    m = read_response(r)
    check(m.status == 200 and m.body == pattern(10), f"first HTTP/1.0 keep-alive request: {m!r}")
    check("keep-alive" in m.tokens("connection") and m.get("content-length") == "10",
          f"HTTP/1.0 keep-alive response needs Connection: keep-alive and a length: {m!r}")
    r.send(b"GET /?size=5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    m = read_response(r)
    check(m.status == 200 and m.body == pattern(5), f"second request on the HTTP/1.0 connection: {m!r}")
    r.close()


def test_http10_chunked_response_is_unchunked(ctx):
    """An HTTP/1.0 client cannot take chunked: a chunked response reaches it
    decoded, delimited by the close."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    r.send(b"GET /chunked?size=10000 HTTP/1.0\r\n\r\n")
    head = r.until(b"\r\n\r\n")
    first, hdrs = parse_head(head)
    m = Message(first, hdrs)
    check(m.status == 200 and not m.all("transfer-encoding"), f"chunked to an HTTP/1.0 client: {head!r}")
    body = r.exact(int(m.get("content-length"))) if m.all("content-length") else r.to_eof()
    check(body == pattern(10000), f"body of {len(body)} bytes differs")
    r.close()


def _tiny_chunks_handler(n):
    """Answers every request with pattern(N) as N one-byte chunks, sent in
    one go (6 N bytes of framing and payload)."""
    data = pattern(n)
    framed = bytearray(6 * n)
    for i, b in enumerate((b"1", b"\r", b"\n", None, b"\r", b"\n")):
        framed[i::6] = data if b is None else b * n
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + bytes(framed)
              + b"0\r\n\r\n")

    def handler(r, srv):
        while read_request(r) is not None:
            r.s.sendall(answer)
    return handler


def test_tiny_chunks_response_is_relayed_in_bulk(ctx):
    """A server answering in one-byte chunks (a hostile origin on a forward
    listener, a broken backend) must not cost a send per chunk: that held
    the worker for seconds and stalled its other clients. The body arrives
    intact, chunked to an HTTP/1.1 client and decoded to an HTTP/1.0 one,
    and the whole of it costs fulcrum a fraction of a second of CPU (it was
    about 5 s for these 2 x 10^6 chunks)."""
    n = 1000000
    srv = pyserver(ctx, _tiny_chunks_handler(n))
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"workers": 1}))
    t0 = cpu_seconds(f.pid)
    r = client(port, timeout=30 * SCALE)
    r.send(get("/"))
    m = read_response(r)
    check(m.status == 200 and m.body == pattern(n), f"HTTP/1.1: {m!r}, {len(m.body or b'')} bytes")
    r.close()
    r = client(port, timeout=30 * SCALE)
    r.send(b"GET / HTTP/1.0\r\n\r\n")
    head = r.until(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200 ") and b"chunked" not in head.lower(),
          f"HTTP/1.0: {head!r}")
    body = r.to_eof()
    check(body == pattern(n), f"HTTP/1.0: the decoded body of {len(body)} bytes differs")
    r.close()
    spent = cpu_seconds(f.pid) - t0
    check(spent < 1.0 * SCALE, f"fulcrum spent {spent:.2f} s of CPU on 2 x {n} one-byte chunks")


# ------------------------------------------------------------- bodies ----


def _echo_check(port, size, chunked):
    data = os.urandom(size)
    r = client(port)
    if chunked:
        head = get("/echo", method="POST", headers=["Transfer-Encoding: chunked"])
        payload = head + chunk_encode(data)
    else:
        payload = get("/echo", method="POST", body=data)
    t, err = sender(r.s, payload)
    m = read_response(r)
    t.join(30 * SCALE)
    check(not err, f"sending {size} bytes failed: {err}")
    check(m.status == 200, f"POST /echo with {size} bytes ({'chunked' if chunked else 'length'}): {m!r}")
    check(len(m.body) == size and m.body == data,
          f"{size}-byte {'chunked' if chunked else 'length'} body echoed as {len(m.body)} bytes, "
          f"{'intact' if m.body == data else 'different'}")
    # The connection goes on.
    r.send(get("/?size=4"))
    m = read_response(r)
    check(m.status == 200 and m.body == b"abcd", f"request after a {size}-byte body: {m!r}")
    r.close()


def test_request_body_content_length(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    for size in (0, 1, 100 * KIB, 5 * MIB):
        _echo_check(port, size, chunked=False)


def test_bodies_5mib_repeated(ctx):
    """5 MiB bodies down, and up and echoed back down, again and again on
    fresh connections (the spliced paths, one way and both ways at once)."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": ctx.path("access.log")}))
    for i in range(24):
        data = os.urandom(5 * MIB) if i % 2 else pattern(5 * MIB)
        what = "POST /echo of 5 MiB" if i % 2 else "GET of 5 MiB"
        r = client(port, timeout=5 * SCALE)
        req = get("/echo", method="POST", body=data) if i % 2 else get(f"/?size={5 * MIB}")
        t, err = sender(r.s, req)
        try:
            m = read_response(r)
        except socket.timeout:
            raise TestFailure(f"round {i}, {what}: the response stalled with {len(r.buf)} of "
                              f"{5 * MIB + 84} bytes received by the client")
        finally:
            t.join(10 * SCALE)
            r.close()
        check(not err, f"round {i}: sending failed: {err}")
        check(m.status == 200 and m.body == data, f"round {i}, {what}: came back as {len(m.body)} bytes")


def test_request_body_chunked(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    for size in (0, 1, 100 * KIB, 5 * MIB):
        _echo_check(port, size, chunked=True)


def test_request_chunked_with_extensions_and_trailers(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    r.send(get("/t", method="POST", headers=["Transfer-Encoding: chunked"]) +
           b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")
    m = read_response(r)
    check(m.status == 200, f"chunked body with an extension and a trailer: {m!r}")
    wait_for(lambda: srv.heads, 3 * SCALE, what="the request at the server")
    raw = srv.raw_received()
    body = raw[raw.index(b"\r\n\r\n") + 4:]
    # Whatever the framing on the way to the server, the content is intact.
    if b"chunked" in srv.heads[0].lower():
        dec, _ = read_chunked(_BytesReader(body))
        check(dec == b"hello world", f"server got body {body!r}")
    else:
        check(body == b"hello world", f"server got body {body!r}")
    r.close()


class _BytesReader(Reader):
    def __init__(self, data):
        super().__init__(None)
        self.buf = bytearray(data)

    def _fill(self):
        raise EOFError("end of bytes")


def test_response_framings(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    r.send(get("/?size=100000"))
    m = read_response(r)
    check(m.status == 200 and m.get("content-length") == "100000" and m.body == pattern(100000),
          f"content-length response: {m.first} {m.headers} {len(m.body)} bytes")
    r.send(get("/chunked?size=50000"))
    m = read_response(r)
    check(m.status == 200 and m.body == pattern(50000), f"chunked response: {m.headers} {len(m.body)} bytes")
    r.send(get("/chunked?size=0"))
    m = read_response(r)
    check(m.status == 200 and m.body == b"", f"empty chunked response: {m!r}")
    r.send(get("/close?size=70000"))
    m = read_response(r)
    check(m.status == 200 and m.body == pattern(70000),
          f"read-until-close response: {m.headers} {len(m.body)} bytes")
    framed = m.all("content-length") or m.all("transfer-encoding")
    if framed:
        # Re-framed for the client: the connection may go on.
        r.send(get("/?size=3"))
        m = read_response(r)
        check(m.body == b"abc", f"after a re-framed until-close response: {m!r}")
    else:
        # Passed on as read-until-close: only the close ends the body, so the
        # connection must close, and say so.
        closed, extra = wait_closed(r, 1.0 * SCALE)
        check(closed and not extra, f"after an until-close response: closed={closed}, extra {extra!r}")
        check("close" in m.tokens("connection"), f"an until-close response without Connection: close: {m!r}")
    r.close()


def test_head_204_304_have_no_body(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    r.send(get("/?size=1000", method="HEAD"))
    m = read_response(r, "HEAD")
    check(m.status == 200 and m.get("content-length") == "1000", f"HEAD: {m!r}")
    r.send(get("/?status=204"))
    m = read_response(r)
    check(m.status == 204, f"204: {m!r}")
    r.send(get("/?status=304"))
    m = read_response(r)
    check(m.status == 304, f"304: {m!r}")
    r.send(get("/chunked?size=100", method="HEAD"))
    m = read_response(r, "HEAD")
    check(m.status == 200, f"HEAD of a chunked resource: {m!r}")
    # Nothing was left over: the next response starts right away.
    r.send(get("/?size=7"))
    m = read_response(r)
    check(m.status == 200 and m.body == pattern(7), f"after HEAD/204/304 the stream is off: {m!r}")
    closed, extra = wait_closed(r, 0.3)
    check(not extra, f"bytes after the last response: {extra!r}")
    r.close()


def test_204_304_from_a_server_sending_bytes_after(ctx):
    """A 204 with no length is complete at its head: fulcrum must not wait
    for a body or the server's close."""

    def handler(r, srv):
        while True:
            req = read_request(r)
            if req is None:
                return
            st = b"204 No Content" if b"204" in req.first.encode() else b"304 Not Modified"
            r.send(b"HTTP/1.1 " + st + b"\r\nX-N: 1\r\n\r\n")

    srv = pyserver(ctx, handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"server_timeout": "5s"}))
    r = client(port)
    t0 = time.monotonic()
    for path in ("/204", "/304", "/204"):
        r.send(get(path))
        m = read_response(r)
        check(m.status == int(path[1:]), f"{path}: {m!r}")
    check(time.monotonic() - t0 < 2 * SCALE, "204/304 answers waited for a body")
    r.close()


def test_204_goes_on_without_framing_fields(ctx):
    """A 204 has no body and must not frame one (RFC 9110 §8.6, RFC 9112
    §6.1): a server's Content-Length or Transfer-Encoding on it is dropped,
    so a lenient client does not wait for a body; a 304 keeps its
    Content-Length, which describes the representation."""

    def handler(r, srv):
        while True:
            req = read_request(r)
            if req is None:
                return
            path = req.first.split(" ")[1]
            if path == "/204-length":
                r.send(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\nX-N: 1\r\n\r\n")
            elif path == "/204-chunked":
                r.send(b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nX-N: 2\r\n\r\n")
            else:
                r.send(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nX-N: 3\r\n\r\n")

    srv = pyserver(ctx, handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
    r = client(port)
    for path, n in (("/204-length", "1"), ("/204-chunked", "2")):
        r.send(get(path))
        m = read_response(r)
        check(m.status == 204 and m.get("x-n") == n and
              not {"content-length", "transfer-encoding"} & m.names(),
              f"{path}: framing fields went on: {m!r}")
    r.send(get("/304"))
    m = read_response(r)
    check(m.status == 304 and m.get("content-length") == "10", f"/304: {m!r}")
    r.close()


def read_interim(r, what):
    """The interim head reader R gets within 3 s (a TestFailure naming
    WHAT if none comes)."""
    r.s.settimeout(3 * SCALE)
    try:
        return r.until(b"\r\n\r\n")
    except socket.timeout:
        raise TestFailure(f"no 100 Continue within 3s {what}")
    finally:
        r.s.settimeout(15 * SCALE)


def test_expect_100_continue(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    body = b"x" * 5000
    r = client(port)
    r.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
    interim = read_interim(r, "of a head with Expect: 100-continue")
    check(interim.startswith(b"HTTP/1.1 100 "), f"interim response: {interim!r}")
    r.send(body)
    m = read_response(r)
    check(m.status == 200 and m.body == body, f"final response: {m!r}")
    # Once more, chunked.
    r.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
    interim = read_interim(r, "for a chunked request with Expect")
    check(interim.startswith(b"HTTP/1.1 100 "), f"interim response (chunked): {interim!r}")
    r.send(chunk_encode(b"y" * 3000))
    m = read_response(r)
    check(m.status == 200 and m.body == b"y" * 3000, f"final response (chunked): {m!r}")
    r.close()


def _answers_bodies_without_100(r, srv):
    while (m := read_request(r)) is not None:
        r.s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(m.body) + m.body)


def test_expect_named_in_connection_is_met_by_fulcrum(ctx):
    """Connection: Expect makes the expectation the first hop's (RFC 9110
    §7.6.1): the field is not forwarded, so the server cannot answer it,
    and fulcrum sends the 100 itself once the head is on its way, as nginx
    does. Before, the client waited for a 100 that could never come."""
    srv = pyserver(ctx, _answers_bodies_without_100)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"server_timeout": "10s"}))
    r = client(port)
    r.send(b"POST /x HTTP/1.1\r\nHost: a\r\nConnection: Expect\r\n"
           b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    interim = read_interim(r, "for an Expect named in Connection")
    check(interim == b"HTTP/1.1 100 Continue\r\n\r\n", f"interim response: {interim!r}")
    r.send(b"hello")
    m = read_response(r)
    check(m.status == 200 and m.body == b"hello", f"final response: {m!r}")
    head = srv.heads[0].lower()
    check(b"expect" not in head, f"the hop's Expect reached the server: {head!r}")
    # An HTTP/1.0 client gets no interim answer (RFC 9110 §15.2); it sends
    # its body anyway.
    r.send(b"POST /y HTTP/1.0\r\nHost: a\r\nConnection: Expect, keep-alive\r\n"
           b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
    m = read_response(r)
    check(m.status == 200 and m.body == b"abc", f"HTTP/1.0 response: {m!r}")
    r.close()


def _reads_heads_never_answers(r, srv):
    while read_request(r) is not None:
        pass


def test_expect_100_continue_from_a_silent_server_is_504(ctx):
    """A client that asked for 100-continue and waits for it has done its
    part; a server that sends neither the 100 nor an answer is the one that
    is silent: 504 at server_timeout (HAProxy's answer too), not a 408 at
    client_timeout. It is not counted against the server, though: many
    wait for the body instead, and a client holding its body back must not
    take servers down (here at max_fails = 1)."""
    srv = pyserver(ctx, _reads_heads_never_answers)
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log},
                          pool={"server_timeout": "1s", "max_fails": 1, "fail_timeout": "30s"},
                          listener={"client_timeout": "30s"}))
    for i in range(2):
        r = client(port)
        t0 = time.monotonic()
        r.send(b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        m = read_response(r)
        took = time.monotonic() - t0
        check(m.status == 504 and took < 5 * SCALE, f"request {i + 1}, after {took:.1f}s: {m!r}")
        r.close()
    lines = access_lines(log, 2)
    check(all(l.endswith(" server_timeout") for l in lines), f"log (a 503 means the server "
          f"was marked down): {lines}")


def test_download_100mib_rss_flat(ctx):
    size = 100 * MIB
    b = cbackend(ctx, "b1")
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [b.server_line()]))
    # Warm up (buffers, pools) before the baseline.
    for _ in range(3):
        m, _, _ = roundtrip(port, get("/?size=100000"), wait_close=0)
        check(m.status == 200, f"warm-up: {m!r}")
    base = vm_rss_kib(f.pid)
    peak = base
    r = client(port)
    r.send(get(f"/?size={size}"))
    head = r.until(b"\r\n\r\n")
    first, hdrs = parse_head(head)
    m = Message(first, hdrs)
    check(m.status == 200 and m.get("content-length") == str(size), f"100 MiB response head: {head!r}")
    h = hashlib.sha256()
    h.update(r.buf)
    got = len(r.buf)
    r.buf.clear()
    paused = False
    while got < size:
        if not paused and got >= 10 * MIB:
            # A slow client: fulcrum must push back, not buffer.
            paused = True
            time.sleep(1.0)
            peak = max(peak, vm_rss_kib(f.pid))
        chunk = r.s.recv(min(1 << 20, size - got))
        if not chunk:
            break
        h.update(chunk)
        got += len(chunk)
        if got % (8 * MIB) < len(chunk):
            peak = max(peak, vm_rss_kib(f.pid))
    r.close()
    check(got == size, f"downloaded {got} of {size} bytes")
    check(h.hexdigest() == pattern_sha256(size), "100 MiB body differs")
    check(peak - base < 20 * 1024, f"RSS grew by {(peak - base) / 1024:.1f} MiB during a 100 MiB download "
                                   f"({base} KiB -> {peak} KiB)")


def test_upload_and_download_sizes_through_pool(ctx):
    """Large bodies both ways in turn on one connection: the pooled server
    connection stays in step."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    for size in (3 * MIB, 17, 1 * MIB + 1):
        r.send(get(f"/?size={size}"))
        m = read_response(r)
        check(m.body == pattern(size), f"download {size}: {len(m.body)} bytes")
        data = os.urandom(size // 3)
        t, err = sender(r.s, get("/echo", method="POST", body=data))
        m = read_response(r)
        t.join(20 * SCALE)
        check(m.body == data, f"upload {len(data)}: echoed {len(m.body)} bytes")
    r.close()


# ----------------------------------------------------------- upgrades ----


def _ws_handler(r, srv):
    req = read_request(r)
    if req is None:
        return
    # A Content-Length on a 101 is the server's mistake (RFC 9110 §8.6):
    # the bytes after the head are the new protocol's.
    r.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Content-Length: 3\r\n"
           b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nserver-first\n")
    # From here a raw echo, over what the reader already holds too.
    if r.buf:
        r.s.sendall(bytes(r.buf))
        r.buf.clear()
    while True:
        b = r.s.recv(65536)
        if not b:
            r.s.shutdown(socket.SHUT_WR)
            return
        r.s.sendall(b)


WS_REQUEST = (b"GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_upgrade_websocket_tunnel(ctx):
    srv = pyserver(ctx, _ws_handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    r.send(WS_REQUEST)
    m = read_response(r)
    check(m.status == 101, f"upgrade answered {m!r}")
    check(m.get("upgrade", "").lower() == "websocket" and "upgrade" in m.tokens("connection"),
          f"101 must keep Upgrade and Connection: upgrade: {m!r}")
    check(m.get("content-length") is None, f"a 101 passed on with a Content-Length: {m!r}")
    wait_for(lambda: srv.heads, 3 * SCALE, what="the upgrade request at the server")
    _, sh = parse_head(srv.heads[0])
    seen = Message("GET / HTTP/1.1", sh)
    check(seen.get("upgrade", "").lower() == "websocket" and "upgrade" in seen.tokens("connection"),
          f"the server must see the Upgrade request: {srv.heads[0]!r}")
    check(r.exact(len(b"server-first\n")) == b"server-first\n", "server's first tunnel bytes lost")
    for size in (1, 1000, 2 * MIB):
        data = os.urandom(size)
        t, err = sender(r.s, data)
        got = r.exact(size)
        t.join(20 * SCALE)
        check(got == data, f"{size} bytes through the tunnel came back different")
    # Bytes that look like HTTP are just bytes now.
    junk = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    r.send(junk)
    check(r.exact(len(junk)) == junk, "HTTP-looking bytes in the tunnel were not passed as they are")
    r.s.shutdown(socket.SHUT_WR)
    closed, extra = wait_closed(r, 3 * SCALE)
    check(closed and not extra, f"tunnel end: closed={closed} extra={extra!r}")
    r.close()


def raw_handler(data):
    """A server answering every request with the raw bytes DATA (heads and
    all: interim heads, odd versions, framings to try)."""

    def handler(r, srv):
        while read_request(r) is not None:
            r.send(data)

    return handler


def slow_handler(r, srv):
    """A server that takes requests and answers none within 3 s each."""
    while read_request(r) is not None:
        time.sleep(3 * SCALE)


def closer_handler(r, srv):
    """A server that reads one request and closes without an answer."""
    read_request(r)


UNANSWERING_HANDLERS = ((slow_handler, "server_timeout"), (closer_handler, "close without answer"))


def test_upgrade_retried_on_another_server(ctx):
    """SPEC §3: a GET that times out or is closed unanswered is retried on
    another server; one asking for an Upgrade too (as nginx does). Tunnel
    bytes the client sent early wait for the 101 and go to the server that
    gave it, once."""
    for bad_handler, what in UNANSWERING_HANDLERS:
        bad = pyserver(ctx, bad_handler, name="bad")
        good = pyserver(ctx, _ws_handler, name="good")
        port = free_port()
        ctx.fulcrum(http_conf(port, [bad.server_line(), good.server_line()],
                              glob={"workers": 1},
                              pool={"server_timeout": "500ms", "max_fails": 1000}))
        r = client(port, timeout=5 * SCALE)
        r.send(WS_REQUEST + b"early\n")
        m = read_response(r)
        check(m is not None and m.status == 101, f"{what}: upgrade not retried: {m!r}")
        check(r.exact(len(b"server-first\nearly\n")) == b"server-first\nearly\n",
              f"{what}: the early tunnel bytes did not come back once")
        r.send(b"later\n")
        check(r.exact(6) == b"later\n", f"{what}: the tunnel does not echo")
        r.close()
        check(len(bad.heads) == 1 and b"Upgrade: websocket" in bad.heads[0],
              f"{what}: the bad server did not get the upgrade first: {bad.heads!r}")


def test_http10_requests_reuse_pooled_server_connections(ctx):
    """An HTTP/1.0 request goes to the server with Connection: keep-alive
    (it would close by default), and the server connection is pooled when
    the server answers keep-alive, as HAProxy does; a server that does not
    say so gets a new connection each time."""
    def handler(r, srv, say_keep_alive):
        while True:
            req = read_request(r)
            if req is None:
                return
            ka = b"Connection: keep-alive\r\n" if say_keep_alive else b""
            r.send(b"HTTP/1.1 200 OK\r\n" + ka + b"Content-Length: 2\r\n\r\nok")

    for say in (True, False):
        srv = pyserver(ctx, lambda r, s, say=say: handler(r, s, say))
        port = free_port()
        ctx.fulcrum(http_conf(port, [srv.server_line()]))
        for i in range(3):
            m, _, _ = roundtrip(port, b"GET /%d HTTP/1.0\r\nHost: a\r\n\r\n" % i)
            check(m.status == 200 and m.body == b"ok", f"HTTP/1.0 request {i}: {m!r}")
        wait_for(lambda: len(srv.heads) == 3, 3 * SCALE, what="three requests at the server")
        check(all(b"\r\nConnection: keep-alive\r\n" in h for h in srv.heads),
              f"HTTP/1.0 requests went without Connection: keep-alive: {srv.heads}")
        want = 1 if say else 3
        check(srv.accepted == want, f"server says keep-alive: {say}; {srv.accepted} server "
              f"connections for 3 requests, want {want}")


def test_fast_chunked_upload_does_not_hold_the_worker(ctx):
    """A client sending a chunked body as fast as the server takes it must
    not keep the worker to itself: another client's request on the same
    (single) worker is answered while the upload still runs."""
    srv = cbackend(ctx, "s1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"workers": 1}))
    piece = b"1\r\na\r\n" * (1 << 17)  # 768 KiB of one-byte chunks
    done = threading.Event()
    failed = []
    answers = []

    def upload():
        try:
            with connect(("127.0.0.1", port)) as s:
                s.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                          b"Connection: close\r\n\r\n")
                deadline = time.monotonic() + 15 * SCALE
                for _ in range(800):  # at most ~600 MiB, at most 15 s
                    if time.monotonic() > deadline:
                        break
                    s.sendall(piece)
                s.sendall(b"0\r\n\r\n")
                answers.append(recv_all(s))
        except OSError as e:
            failed.append(repr(e))
        finally:
            done.set()

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    time.sleep(0.3 * SCALE)  # the upload is under way
    check(not done.is_set(), f"the upload ended before the probe: {failed}")
    m, _, _ = roundtrip(port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    check(m.status == 200, f"probe during the upload: {m!r}")
    check(not done.is_set(), "the probe was answered only once the upload had ended")
    t.join(30 * SCALE)
    check(not t.is_alive() and not failed, f"the upload did not end: {failed}")
    check(answers and answers[0].startswith(b"HTTP/1.1 200 "),
          f"the upload's own answer: {answers[:1]!r}")


def test_upgrade_ignored_in_http10(ctx):
    """RFC 9110 §7.8: a server ignores Upgrade in an HTTP/1.0 request, so
    fulcrum does not pass it on; a server that answers 101 anyway gets the
    client a 502, never a tunnel."""
    srv = pyserver(ctx, _ws_handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    r.send(WS_REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"))
    m = read_response(r)
    check(m.status == 502, f"an HTTP/1.0 upgrade was tunnelled: {m!r}")
    r.close()
    wait_for(lambda: srv.heads, 3 * SCALE, what="the request at the server")
    check(b"upgrade" not in srv.heads[0].lower(), f"Upgrade passed on for 1.0: {srv.heads[0]!r}")


def test_reload_turning_tls_on_does_not_reuse_plain_connections(ctx):
    """Idle pooled server connections were made under the old settings: a
    reload that turns tls on for the pool must not send the next request
    in clear text over one of them."""
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [srv.server_line()]))
    m, _, _ = roundtrip(port, get("/"), wait_close=0)
    check(m.status == 200 and srv.accepted == 1, f"before the reload: {m!r}")
    with open(f.conf_path, "w") as fh:
        fh.write(http_conf(port, [srv.server_line()], pool={"tls": "on", "tls_verify": "off"}))
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), 5 * SCALE, what="the reload")
    m, _, _ = roundtrip(port, get("/"), wait_close=0)
    check(m.status == 502, f"a request after tls = on was answered in clear text: {m!r}")
    check(srv.accepted == 2, f"the server saw {srv.accepted} connections, want a new one for TLS")


def test_a_connection_opened_before_a_reload_keeps_alive(ctx):
    """A connection accepted before a reload whose first request comes
    after it is served under the new file and kept alive, as one that was
    idle between two requests is."""
    a, b = cbackend(ctx, "a"), cbackend(ctx, "b")
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [a.server_line()]))
    r = client(port)
    check(roundtrip(port, get("/"), wait_close=0)[0].get("x-server") == "a", "before the reload")
    with open(f.conf_path, "w") as fh:
        fh.write(http_conf(port, [b.server_line()]))
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), 5 * SCALE, what="the reload")
    for i in range(2):
        r.send(get("/"))
        m = read_response(r)
        check(m.get("x-server") == "b" and "close" not in m.tokens("connection"),
              f"request {i + 1} of a connection opened before the reload: {m!r}")
    r.close()


def test_higher_minor_versions_are_taken_for_1_1(ctx):
    """RFC 9112 §2.3: HTTP/1.2 and up are taken for 1.1, the highest fulcrum
    speaks, and passed on written as HTTP/1.1 in both directions (nginx
    does the same); HTTP/2.0 in a request line gets 505."""
    seen = []

    def future_server(r, srv):
        while True:
            req = read_request(r)
            if req is None:
                return
            seen.append(req.first)
            r.send(b"HTTP/1.3 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, future_server)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    for i in range(2):  # keep-alive, as 1.1
        r.send(get("/next", version="HTTP/1.2"))
        m = read_response(r)
        check(m.first == "HTTP/1.1 200 OK" and m.body == b"ok", f"answer {i}: {m!r}")
    r.close()
    check(seen == ["GET /next HTTP/1.1"] * 2, f"the server saw {seen!r}")
    m, closed, _ = roundtrip(port, get("/", version="HTTP/1.2", host=None))
    expect_error(m, closed, 400, must_close=True, what="HTTP/1.2 without Host")
    m, closed, _ = roundtrip(port, get("/", version="HTTP/2.0"))
    expect_error(m, closed, 505, must_close=True, what="HTTP/2.0")


def test_versions_and_connection_fields_towards_clients(ctx):
    """RFC 9110 §6.2: fulcrum sends its own version, so an HTTP/1.1 client
    keeps its connection after an HTTP/1.0 server's answer; RFC 9112 §6.1:
    no Transfer-Encoding to an HTTP/1.0 client, HEAD included; SPEC §3:
    Connection: close exactly when the connection will close (a client that
    half-closed after its request), and an HTTP/1.0 client kept alive is
    told so on fulcrum's own errors too."""
    def old_server(r, srv):
        while read_request(r) is not None:
            r.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")

    srv = pyserver(ctx, old_server)
    b = cbackend(ctx, "b1")
    port, bport, dport = free_port(), free_port(), free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    for i in range(2):
        r.send(get("/"))
        m = read_response(r)
        check(m.first == "HTTP/1.1 200 OK" and m.body == b"ok", f"answer {i}: {m!r}")
    r.close()

    ctx.fulcrum(http_conf(bport, [b.server_line()]))
    m, _, _ = roundtrip(bport, get("/chunked?size=10", method="HEAD", version="HTTP/1.0"),
                        method="HEAD")
    check(m.status == 200 and m.get("transfer-encoding") is None, f"HEAD from 1.0: {m!r}")

    ctx.fulcrum(http_conf(dport, [f"dead 127.0.0.1:{closed_port()}"], pool={"retries": 0}))
    r = client(dport)
    for i in range(2):
        r.send(get("/", version="HTTP/1.0", headers=["Connection: keep-alive"]))
        m = read_response(r)
        check(m.status in (502, 503) and m.get("connection") == "keep-alive",
              f"HTTP/1.0 keep-alive error {i}: {m!r}")
    r.close()

    def slow_server(rr, srv_):
        while read_request(rr) is not None:
            time.sleep(0.3)  # the client's FIN comes first
            rr.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    slow = pyserver(ctx, slow_server)
    sport = free_port()
    ctx.fulcrum(http_conf(sport, [slow.server_line()]))
    r = client(sport)
    r.send(get("/"))
    r.s.shutdown(socket.SHUT_WR)
    m = read_response(r)
    closed, _ = wait_closed(r, 2 * SCALE)
    check(m.status == 200 and m.get("connection") == "close" and closed,
          f"after the client's FIN: {m!r}, closed {closed}")
    r.close()


def test_upgrade_refused_keeps_http(ctx):
    """A server that answers an Upgrade request with a plain 200 keeps the
    connection in HTTP: the next request is parsed as one."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    r.send(WS_REQUEST.replace(b"/chat", b"/?size=3"))
    m = read_response(r)
    check(m.status == 200 and m.body == b"abc", f"refused upgrade: {m!r}")
    r.send(get("/headers?n=2"))
    m = read_response(r)
    check(m.status == 200 and m.body.startswith(b"GET /headers?n=2 "), f"request after a refused upgrade: {m!r}")
    r.close()


def test_upgrade_to_h2c_alone_is_dropped(ctx):
    """RFC 9113 §3.1 retired the h2c upgrade, and its HTTP2-Settings is
    named in Connection, so it cannot go on: fulcrum drops such an Upgrade
    and sends a plain request, as nginx does, rather than one that asks for
    h2c without its settings. An Upgrade that offers more goes on."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    r.send(get("/headers", headers=["Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
                                     "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]))
    m = read_response(r)
    seen = m.body.lower()
    check(m.status == 200 and b"upgrade" not in seen and b"http2-settings" not in seen,
          f"the server saw {m.body!r}")
    r.send(get("/headers", headers=["Connection: Upgrade", "Upgrade: h2c, websocket"]))
    m = read_response(r)
    check(m.status == 200 and b"upgrade: h2c, websocket" in m.body.lower(),
          f"an Upgrade that offers more than h2c: the server saw {m.body!r}")
    r.close()


def test_101_before_the_request_body_ended_is_refused(ctx):
    """A server that switches protocols while the client's request body is
    still coming (it did not read it) breaks the exchange: the bytes still
    to come cannot be both body and tunnel. The client gets a 502 and a
    close, and nothing the body held (a splice pipe) stays behind."""

    def handler(r, srv):
        r.until(b"\r\n\r\n")
        r.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
               b"Upgrade: websocket\r\n\r\n")
        time.sleep(1.0)

    srv = pyserver(ctx, handler)
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
    for _ in range(3):
        r = client(port)
        r.send(b"POST /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
               b"Upgrade: websocket\r\nContent-Length: 1000000\r\n\r\n")
        r.send(b"b" * 300000)  # enough to switch the body to splice
        m = read_response(r)
        closed, _ = wait_closed(r, 2.0 * SCALE)
        r.close()
        check(m.status == 502 and closed, f"a 101 before the body's end: {m!r}, closed {closed}")
    f.check_fds_settled()


# ---------------------------------------------------------- robustness ----


def test_client_half_close_after_request(ctx):
    """A client that sends its request and then shuts down its write side
    (nc, some scripts) still gets the whole response."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    for path, size in (("/?size=10", 10), ("/?size=300000", 300000), ("/?size=50&ms=200", 50)):
        r = client(port)
        r.send(get(path))
        r.s.shutdown(socket.SHUT_WR)
        m = read_response(r)
        r.close()
        check(m.status == 200 and m.body == pattern(size), f"{path} after the client's FIN: {m!r}")


def test_half_close_after_requests_pipelined_in_separate_writes(ctx):
    """A client that pipelines requests in separate writes, then shuts down
    its write side, gets every answer, in order and whole, the last with
    Connection: close: the FIN that came does not mean that what the client
    sent before it was read. Each request has its log line."""
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log}))
    for size in (10, 4 * MIB):
        r = client(port)
        r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
        r.send(get(f"/?size={size}&ms=100"))  # the answer comes after the rest
        time.sleep(0.02)
        r.send(get("/second?size=7"))
        r.s.shutdown(socket.SHUT_WR)
        time.sleep(0.3)  # the FIN is in before the first answer starts
        m1 = read_response(r)
        m2 = read_response(r)
        check(m1.status == 200 and m1.body == pattern(size), f"the first answer ({size} bytes): {m1!r}")
        check(m1.get("connection") is None, f"the first answer closes: {m1!r}")
        check(m2.status == 200 and m2.body == pattern(7), f"the pipelined request's answer: {m2!r}")
        check(m2.get("connection") == "close", f"the last answer does not say close: {m2!r}")
        check(r.to_eof() == b"", "bytes after the last answer")
        r.close()
    wait_for(lambda: sum("/second?size=7" in l for l in read_lines(log)) == 2, 2 * SCALE,
             what="the pipelined requests' log lines")


def test_request_behind_a_close_in_a_later_write_is_logged_not_reset(ctx):
    """Connection: close, and the client sends another request in a later
    write all the same: fulcrum reads it in to log it (unanswered), and
    lingers instead of closing on unread bytes, whose reset could destroy
    the end of the answer in flight."""
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log}))
    size = 4 * MIB
    r = client(port)
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KIB)
    r.send(get(f"/?size={size}&ms=100", headers=["Connection: close"]))
    time.sleep(0.02)
    r.send(get("/behind?size=7"))
    time.sleep(0.3)
    m = read_response(r)
    check(m.status == 200 and m.body == pattern(size), f"the answer: {m!r}")
    check(r.to_eof() == b"", "bytes after the answer")
    r.close()
    wait_for(lambda: any('"GET /behind?size=7 HTTP/1.1"' in l and l.endswith(" unanswered_pipelined")
                         for l in read_lines(log)), 2 * SCALE, what="the unanswered request's line")


def test_client_aborts_mid_response(ctx):
    """Clients that vanish during a large download or while their request is
    being served leave nothing behind, and fulcrum keeps serving."""
    b = cbackend(ctx, "b1")
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [b.server_line()]))
    for i in range(6):
        r = client(port)
        r.send(get("/?size=%d" % (50 * MIB)))
        r.exact(256 * KIB)
        if i % 2:
            r.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        r.close()
    for i in range(4):
        r = client(port)
        r.send(get("/?ms=300"))
        time.sleep(0.05)
        r.close()
    r = client(port)
    r.send(get("/echo", method="POST", headers=["Content-Length: 1000000"]) + b"x" * 1000)
    time.sleep(0.1)
    r.close()
    time.sleep(0.5)
    m, _, _ = roundtrip(port, get("/?size=5"), wait_close=0)
    check(m.status == 200 and m.body == pattern(5), f"request after aborted clients: {m!r}")
    f.check_alive()


def test_concurrent_keepalive_clients(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"workers": 2}))
    errors = []

    def worker(k):
        try:
            r = client(port)
            for i in range(20):
                size = (k * 31 + i * 7) % 5000
                if i % 4 == 3:
                    data = os.urandom(size)
                    r.send(get("/echo", method="POST", body=data))
                    m = read_response(r)
                    if m.body != data:
                        errors.append(f"client {k} request {i}: echo differs")
                else:
                    r.send(get(f"/?size={size}&c={k}"))
                    m = read_response(r)
                    if m.status != 200 or m.body != pattern(size):
                        errors.append(f"client {k} request {i}: {m!r}")
            r.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"client {k}: {e!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * SCALE)
    check(not errors, f"{len(errors)} failures among 40 concurrent clients: {errors[:5]}")


def test_maxconn_caps_in_flight_requests(ctx):
    """maxconn caps a server's in-flight requests across workers: while one
    is in flight a second gets 503 (there is no queue). A request stops
    being in flight once its whole answer has come from the server, so a
    client that sends its next request the moment it has read the last one,
    on whichever connection and worker, is never refused: with small,
    chunked and spliced bodies."""
    gate = threading.Event()

    def slow(r, srv):
        read_request(r)
        gate.wait(10 * SCALE)
        r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")

    py = pyserver(ctx, slow)
    port = free_port()
    log = ctx.path("maxconn.log")
    ctx.fulcrum(http_conf(port, [py.server_line("maxconn=1")],
                          glob={"workers": 2, "access_log": log}))
    first = client(port)
    first.send(get("/first"))
    wait_for(lambda: len(py.heads) == 1, 5 * SCALE, what="the first request at the server")
    second = client(port)
    second.send(get("/second"))
    m = read_response(second)
    check(m.status == 503, f"a second request past maxconn=1: {m.status}")
    # Full, not down: the log says which.
    wait_for(lambda: any('"GET /second' in l and l.endswith(" servers_full")
                         for l in read_lines(log)),
             3 * SCALE, what="the 503 logged servers_full")
    gate.set()
    m = read_response(first)
    check(m.status == 200 and m.body == b"slow", f"the request in flight: {m!r}")
    first.close()
    second.close()

    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line("maxconn=1")], glob={"workers": 2}))
    conns = [client(port) for _ in range(6)]
    statuses = {}
    for i in range(600):
        path = "/large" if i % 20 == 0 else "/chunked" if i % 3 == 0 else f"/?size={i}"
        r = conns[i % len(conns)]
        r.send(get(path))
        m = read_response(r)
        statuses[m.status] = statuses.get(m.status, 0) + 1
    for r in conns:
        r.close()
    check(statuses == {200: 600}, f"600 requests one at a time under maxconn=1: {statuses}")


# ------------------------------------------------------------ headers ----


HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-foo", "x-bar",
       "transfer-encoding")


def _hop_free(m, allowed_connection=("close", "keep-alive")):
    """Names of hop-by-hop headers present in M (a Connection header of
    fulcrum's own, close or keep-alive, is allowed)."""
    bad = []
    for n, v in m.headers:
        ln = n.lower()
        if ln == "connection":
            if all(t in allowed_connection for t in m.tokens("connection")):
                continue
            bad.append(f"{n}: {v}")
        elif ln in HOP and ln != "transfer-encoding":
            bad.append(f"{n}: {v}")
    return bad


def test_hop_by_hop_request_headers_removed(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    r = client(port)
    r.send(get("/headers", headers=[
        "Connection: X-Foo, keep-alive", "X-Foo: 1", "Keep-Alive: timeout=5", "Proxy-Connection: keep-alive",
        "TE: trailers", "Trailer: X-Checksum", "Upgrade: h2c", "X-End-To-End: kept"]))
    m = read_response(r)
    check(m.status == 200, f"GET /headers: {m!r}")
    first, hdrs = parse_head(m.body)
    seen = Message(first, hdrs)
    bad = _hop_free(seen)
    check(not bad, f"the server saw hop-by-hop headers {bad}:\n{m.body.decode('latin-1')}")
    check(seen.get("x-end-to-end") == "kept", f"an end-to-end header was lost:\n{m.body.decode('latin-1')}")
    # Connection naming a header in another case, with several listed.
    r.send(get("/headers", headers=["connection: x-one,X-TWO", "X-One: a", "x-two: b", "X-Three: c"]))
    m = read_response(r)
    seen = Message(*parse_head(m.body))
    check(not ({"x-one", "x-two"} & seen.names()) and seen.get("x-three") == "c",
          f"headers named by Connection reached the server:\n{m.body.decode('latin-1')}")
    r.close()


def test_hop_by_hop_response_headers_removed(ctx):
    def handler(r, srv):
        while True:
            req = read_request(r)
            if req is None:
                return
            r.send(b"HTTP/1.1 200 OK\r\nConnection: X-Bar, keep-alive\r\nX-Bar: 1\r\nKeep-Alive: timeout=5, max=100\r\n"
                   b"Proxy-Connection: keep-alive\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\nTE: trailers\r\n"
                   b"X-End-To-End: kept\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    for _ in range(2):
        r.send(get("/"))
        m = read_response(r)
        check(m.status == 200 and m.body == b"ok", f"response: {m!r}")
        bad = _hop_free(m)
        check(not bad, f"the client saw hop-by-hop headers {bad}: {m.head!r}")
        check(m.get("x-end-to-end") == "kept", f"an end-to-end response header was lost: {m.head!r}")
    r.close()


def _seen_by_server(port, extra_headers, host="www.example.com:81"):
    m, _, _ = roundtrip(port, get("/headers", host=host, headers=extra_headers), wait_close=0)
    check(m.status == 200, f"GET /headers: {m!r}")
    return Message(*parse_head(m.body)), m.body.decode("latin-1")


def test_forwarded_headers(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    seen, text = _seen_by_server(port, ["X-Forwarded-For: 1.2.3.4"])
    check(seen.all("x-forwarded-for") == ["1.2.3.4, 127.0.0.1"], f"X-Forwarded-For not appended:\n{text}")
    check(seen.all("x-forwarded-proto") == ["http"], f"X-Forwarded-Proto:\n{text}")
    check(seen.all("x-forwarded-host") == ["www.example.com:81"], f"X-Forwarded-Host:\n{text}")
    seen, text = _seen_by_server(port, [])
    check(seen.all("x-forwarded-for") == ["127.0.0.1"], f"X-Forwarded-For without one from the client:\n{text}")
    # Named by Connection, the client's field is hop-by-hop: it ends here.
    seen, text = _seen_by_server(port, ["X-Forwarded-For: 6.6.6.6", "Connection: X-Forwarded-For"])
    check(seen.all("x-forwarded-for") == ["127.0.0.1"],
          f"X-Forwarded-For named by Connection went on:\n{text}")
    check(seen.all("x-forwarded-host") == ["www.example.com:81"] and seen.all("x-forwarded-proto") == ["http"],
          f"X-Forwarded-Host/Proto:\n{text}")


def test_forwarded_for_ipv6_client(ctx):
    """An IPv6 client's address goes into X-Forwarded-For bare: no port,
    no brackets, on every request of a kept-alive connection."""
    b = cbackend(ctx, "b1")
    port = free_port("::1")
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"bind": f"[::1]:{port}"}))
    r = Reader(connect(("::1", port), timeout=15 * SCALE))
    for _ in range(2):
        r.send(get("/headers", headers=["X-Forwarded-For: 10.0.0.1"]))
        m = read_response(r)
        check(m.status == 200, f"GET /headers over IPv6: {m!r}")
        seen = Message(*parse_head(m.body))
        check(seen.all("x-forwarded-for") == ["10.0.0.1, ::1"], f"X-Forwarded-For from ::1: {m.body!r}")
    r.close()


def test_forwarded_proto_and_host_are_set_not_added(ctx):
    """X-Forwarded-Proto and -Host are *set*: a client's own values do not
    reach the server beside fulcrum's."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    seen, text = _seen_by_server(port, ["X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example"])
    check(seen.all("x-forwarded-proto") == ["http"], f"X-Forwarded-Proto from the client kept:\n{text}")
    check(seen.all("x-forwarded-host") == ["www.example.com:81"], f"X-Forwarded-Host from the client kept:\n{text}")


def test_forwarded_headers_off(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"forwarded_headers": "off"}))
    seen, text = _seen_by_server(port, [])
    check(not ({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"} & seen.names()),
          f"forwarded_headers = off, yet:\n{text}")
    seen, text = _seen_by_server(port, ["X-Forwarded-For: 1.2.3.4"])
    check(seen.all("x-forwarded-for") == ["1.2.3.4"], f"forwarded_headers = off changed X-Forwarded-For:\n{text}")


def test_request_head_forwarded_faithfully(ctx):
    """End-to-end headers reach the server with their values (including
    repeated fields in order and odd but valid bytes)."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"forwarded_headers": "off"}))
    hdrs = ["Accept: */*", "X-Multi: one", "X-Multi: two", "X-Tab: a\tb", "X-Empty:", "X-Utf8: caf\xe9",
            "Cookie: a=1; b=2"]
    seen, text = _seen_by_server(port, hdrs, host="h.example")
    check(seen.first == "GET /headers HTTP/1.1", f"request line at the server: {seen.first!r}")
    check(seen.all("x-multi") == ["one", "two"], f"repeated header:\n{text}")
    check(seen.get("x-tab") == "a\tb" and seen.get("x-utf8") == "caf\xe9", f"values altered:\n{text}")
    check(seen.all("x-empty") == [""], f"empty header:\n{text}")
    check(seen.all("host") == ["h.example"], f"Host:\n{text}")


# ----------------------------------------------------------- retries ----


def test_retry_connect_failure_on_other_server(ctx):
    b = cbackend(ctx, "live")
    port = free_port()
    dead = f"dead 127.0.0.1:{closed_port()}"
    ctx.fulcrum(http_conf(port, [dead, b.server_line()], pool={"retries": 2, "max_fails": 1000}))
    for i in range(12):
        m, _, _ = roundtrip(port, get(f"/?n={i}"), wait_close=0)
        check(m.status == 200 and m.get("x-server") == "live", f"GET {i} with a dead server in the pool: {m!r}")
    r = client(port)
    for i in range(12):
        data = os.urandom(100 + i)
        r.send(get("/echo", method="POST", body=data))
        m = read_response(r)
        check(m.status == 200 and m.body == data, f"POST {i} (connect failures are retried for any method): {m!r}")
    r.close()


# ----------------------------------------------------------- pooling ----


def test_server_connections_reused(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    for i in range(50):
        r.send(get(f"/{i}"))
        m = read_response(r)
        check(m.status == 200 and m.body == b"ok", f"request {i}: {m!r}")
    r.close()
    check(srv.accepted == 1, f"50 keep-alive requests opened {srv.accepted} server connections")
    for i in range(50):
        m, _, _ = roundtrip(port, get(f"/new{i}"), wait_close=0)
        check(m.status == 200, f"request {i} on its own client connection: {m!r}")
    check(srv.accepted == 1,
          f"50 requests on 50 client connections opened {srv.accepted - 1} more server connections")
    check(len(srv.heads) == 100, f"server saw {len(srv.heads)} requests, want 100")


def test_server_connections_reused_after_large_answers(ctx):
    """A connection that carried a large answer goes back to the pool and
    serves the next request. Before, the wake-up for the answer's last
    bytes, already read, came in once the connection was idle, reported as
    writable only, and was taken for the server closing it: 9 connections
    for 10 answers of 1 MiB."""
    srv = pyserver(ctx, ok_handler(body=b"x" * (1 << 20)))
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    for i in range(10):
        r.send(get(f"/{i}"))
        m = read_response(r)
        check(m.status == 200 and len(m.body) == 1 << 20, f"request {i}: {m.status} {len(m.body)} bytes")
    r.close()
    check(srv.accepted == 1, f"10 answers of 1 MiB took {srv.accepted} server connections")


def test_pool_keepalive_caps_idle_connections(ctx):
    """keepalive = 2: five requests at once take five server connections;
    once they are answered only two stay open, and later requests reuse
    them."""
    gate = threading.Barrier(5)

    def handler(r, srv):
        first = True
        while True:
            req = read_request(r)
            if req is None:
                return
            if first:
                gate.wait(timeout=10 * SCALE)  # all five connections in use at once
                first = False
            r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"keepalive": 2}))
    results = []

    def one(i):
        m, _, _ = roundtrip(port, get(f"/at-once{i}"), wait_close=0)
        results.append(m.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20 * SCALE)
    check(results == [200] * 5, f"five concurrent requests: {results}")
    check(srv.accepted == 5, f"five concurrent requests used {srv.accepted} server connections")
    wait_for(lambda: srv.active == 2, 3 * SCALE, what=f"2 idle server connections kept (open: {srv.active})")
    for i in range(4):
        m, _, _ = roundtrip(port, get(f"/later{i}"), wait_close=0)
        check(m.status == 200, f"later request {i}: {m!r}")
    check(srv.accepted == 5, f"later requests opened new server connections ({srv.accepted} in all)")


def test_pool_keepalive_zero_no_reuse(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"keepalive": 0}))
    r = client(port)
    for i in range(5):
        r.send(get(f"/{i}"))
        m = read_response(r)
        check(m.status == 200, f"request {i}: {m!r}")
    r.close()
    wait_for(lambda: srv.accepted == 5, 2 * SCALE, what=f"5 server connections with keepalive = 0 "
                                                       f"(got {srv.accepted})")
    # The server is told so: it may close after each answer.
    heads = srv.raw_received().split(b"\r\n\r\n")
    told = [h for h in heads if b"GET /" in h and b"\r\nConnection: close" in h]
    check(len(told) == 5, f"{len(told)} of 5 requests told the server Connection: close")


def test_pooled_connection_closed_while_idle(ctx):
    """The server closes each connection shortly after its response (no
    Connection: close): the next request still succeeds."""
    srv = pyserver(ctx, ok_handler(close_after=1, linger=0.05))
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    for i in range(8):
        r.send(get(f"/{i}"))
        m = read_response(r)
        check(m.status == 200 and m.body == b"ok", f"request {i} after the server closed the idle connection: {m!r}")
        time.sleep(0.3)
    r.close()


def test_bytes_past_a_response_never_reach_the_next_client(ctx):
    """A server that sends bytes past its response's end (a second,
    unasked-for response in the same segment as the last body bytes) must
    not have them read as the answer to the next request, another client's,
    sent over the pooled connection: such a connection is not reused. Bodies
    that end in the bounce buffer, in splice mode, and through the cache's
    copy (a storable answer) all meet the same check."""

    def handler(r, srv):
        while True:
            req = read_request(r)
            if req is None:
                return
            path = req.first.split(" ")[1]
            if not path.startswith("/evil"):
                body = b"clean " + path.encode()
                r.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                continue
            size = int(path.split("/")[-1])
            body = b"e" * size
            r.send(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=%d\r\nContent-Length: %d\r\n\r\n"
                   % (60 if "cached" in path else 0, size) + body[:-5])
            time.sleep(0.2)
            r.send(body[-5:] + b"HTTP/1.1 200 OK\r\nX-Injected: yes\r\n"
                   b"Content-Length: 4\r\n\r\nEVIL")

    srv = pyserver(ctx, handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"keepalive": 4},
                          listener={"cache": "16m"}))
    for size, kind in ((10, "plain"), (100000, "plain"), (3 * MIB, "plain"),
                       (10, "cached"), (100000, "cached")):
        a = client(port)
        a.send(get(f"/evil/{kind}/{size}"))
        m = read_response(a)
        check(m.status == 200 and len(m.body) == size, f"the {size}-byte answer: {m!r}")
        a.close()
        b = client(port)
        b.send(get(f"/next-{kind}-{size}"))
        m = read_response(b)
        b.close()
        check(m.get("x-injected") is None and m.body == f"clean /next-{kind}-{size}".encode(),
              f"after a {size}-byte {kind} body, the next client got the server's extra "
              f"bytes: {m!r}")


def test_pooled_connection_closed_race(ctx):
    """The server closes right after each response; the next GET follows at
    once and may meet the dead pooled connection: it is retried on a new one."""
    srv = pyserver(ctx, ok_handler(close_after=1))
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
    r = client(port)
    for i in range(30):
        r.send(get(f"/{i}"))
        m = read_response(r)
        check(m.status == 200 and m.body == b"ok", f"GET {i} right after the server closed: {m!r}")
    r.close()


def test_post_after_server_closed_pooled_connection(ctx):
    """The server closes each connection right after its response (no
    Connection: close). A POST a moment later must not be sent on that dead
    pooled connection (it could not be retried): every POST succeeds."""
    srv = pyserver(ctx, ok_handler(close_after=1))
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
    r = client(port)
    for i in range(20):
        r.send(get(f"/get{i}"))
        m = read_response(r)
        check(m.status == 200, f"GET {i}: {m!r}")
        time.sleep(0.2)  # the server's FIN has long arrived
        r.send(get(f"/post{i}", method="POST", body=b"payload %d" % i))
        m = read_response(r)
        check(m.status == 200 and m.body == b"ok",
              f"POST {i}, 200 ms after the server closed the pooled connection: {m!r}")
    r.close()


def test_post_on_a_pooled_connection_whose_close_is_not_seen_yet(ctx):
    """The server closes an idle pooled connection, and a POST comes in
    before fulcrum has taken in that close (here forced: fulcrum is
    stopped while the POST arrives first and the FIN second, so one batch
    brings both, the POST's first). A POST cannot be sent again if the
    connection fails, so fulcrum looks at the socket before reusing it for
    one, and takes a fresh connection. Before, the POST got 502."""
    close_now = threading.Event()

    def handler(r, srv):
        req = read_request(r)
        if req is None:
            return
        r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        if "/first" in req.first:
            close_now.wait(10 * SCALE)
            return  # the server closes this connection, idle in the pool

    srv = pyserver(ctx, handler)
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"workers": 1},
                              pool={"max_fails": 1000}))
    r = client(port)
    r.send(get("/first", method="POST", body=b"one"))
    m = read_response(r)
    check(m.status == 200, f"first POST: {m!r}")
    wait_for(lambda: srv.accepted == 1, 3 * SCALE, what="the first server connection")
    f.signal(signal.SIGSTOP)
    try:
        r.send(get("/second", method="POST", body=b"two"))
        time.sleep(0.1)
        close_now.set()
        wait_for(lambda: srv.active == 0, 3 * SCALE, what="the server closing its connection")
        time.sleep(0.1)
    finally:
        f.signal(signal.SIGCONT)
    m = read_response(r)
    check(m.status == 200 and m.body == b"ok", f"the POST after the unseen close: {m!r}")
    check(srv.accepted == 2, f"{srv.accepted} server connections, want 2")
    r.close()


def test_invalid_response_connection_not_reused(ctx):
    """After an invalid response (CL and TE) the server connection is
    dropped: the next request goes on a new connection."""
    seen = []

    def handler(r, srv):
        me = object()
        while True:
            req = read_request(r)
            if req is None:
                return
            seen.append((me, req.first.split(" ")[1]))
            if req.first.startswith("GET /bad "):
                r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n")
            else:
                r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
    r = client(port)
    r.send(get("/good"))
    check(read_response(r).body == b"ok", "first request")
    m, closed, _ = roundtrip(port, get("/bad"))
    expect_error(m, closed, 502, what="response with Content-Length and Transfer-Encoding")
    r.send(get("/good2"))
    m = read_response(r)
    check(m.status == 200 and m.body == b"ok", f"after the invalid response: {m!r}")
    conn_of = {path: c for c, path in seen}
    check("/bad" in conn_of and conn_of["/good2"] is not conn_of["/bad"],
          "the server connection that sent an invalid response (CL and TE) was reused")
    r.close()


# -------------------------------------------------------- access log ----

LOG_RE = re.compile(
    r'^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(?:Z|\+00:00)) (?P<client>\S+) (?P<listener>\S+) '
    r'(?P<ps>\S+) "(?P<method>\S+) (?P<target>\S+) (?P<proto>\S+)" (?P<status>\d{3}|-) '
    r'(?P<bytes_in>\d+) (?P<bytes_out>\d+) (?P<total_ms>\d+(?:\.\d+)?) (?P<ttfb_ms>\S+) (?P<reason>\S+)$')


def _log_scenario(port, b):
    """Two requests on a keep-alive connection, one malformed request, one
    504. Returns what each line must show."""
    r = client(port)
    me = "%s:%d" % r.s.getsockname()[:2]
    req1 = get("/a?size=10")
    r.send(req1)
    m1 = read_response(r)
    req2 = get("/echo", method="POST", body=b"z" * 100)
    r.send(req2)
    m2 = read_response(r)
    r.close()
    check(m1.status == 200 and m2.status == 200, f"{m1!r} {m2!r}")
    r = client(port)
    me3 = "%s:%d" % r.s.getsockname()[:2]
    r.send(b"BROKEN\r\n\r\n")
    m3 = read_response(r)
    r.close()
    r = client(port)
    me4 = "%s:%d" % r.s.getsockname()[:2]
    req4 = get("/slow?ms=3000")
    r.send(req4)
    m4 = read_response(r)
    r.close()
    check(m3.status == 400 and m4.status == 504, f"{m3!r} {m4!r}")
    return [
        dict(client=me, method="GET", target="/a?size=10", proto="HTTP/1.1", status="200",
             bytes_in=len(req1), bytes_out=m1.raw_len, reason="-", server=b.name),
        dict(client=me, method="POST", target="/echo", proto="HTTP/1.1", status="200",
             bytes_in=len(req2), bytes_out=m2.raw_len, reason="-", server=b.name),
        dict(client=me3, status="400", bytes_in=len(b"BROKEN\r\n\r\n"), bytes_out=m3.raw_len, reason="error"),
        dict(client=me4, method="GET", target="/slow?ms=3000", proto="HTTP/1.1", status="504",
             bytes_in=len(req4), bytes_out=m4.raw_len, reason="error", server=b.name),
    ]


def _check_fields(got, want, line):
    for k, v in want.items():
        if k == "reason":
            if v == "-":
                # JSON may say null for a field that does not apply.
                check(got["reason"] in ("-", None), f"reason {got['reason']!r} for a normal end: {line}")
            else:
                check(got["reason"] not in ("-", "", None), f"no close reason on an error: {line}")
        elif k == "server":
            continue
        else:
            check(str(got[k]) == str(v), f"{k} is {got[k]!r}, want {v!r}: {line}")


def test_access_log_http_text(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log},
                          pool={"server_timeout": "1s"}))
    want = _log_scenario(port, b)
    lines = access_lines(log, 4)
    time.sleep(0.2)
    lines = read_lines(log)
    check(len(lines) == 4, f"4 requests, {len(lines)} lines: {lines}")
    for w in want:
        match = [l for l in lines if l.split(" ")[1] == w["client"] and
                 (w.get("method") is None or f'"{w["method"]} ' in l)]
        check(len(match) == 1, f"one line for {w}, got {match} in {lines}")
        line = match[0]
        mm = LOG_RE.match(line)
        check(mm, f"access-log line does not have the SPEC §6 shape: {line!r}")
        check(mm["listener"] == "l", f"listener: {line}")
        if "server" in w:
            check(mm["ps"] == f"p/{w['server']}", f"POOL/SERVER {mm['ps']!r}, want p/{w['server']}: {line}")
        _check_fields(mm.groupdict(), w, line)


def test_access_log_http_json(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log, "access_log_format": "json"},
                          pool={"server_timeout": "1s"}))
    want = _log_scenario(port, b)
    access_lines(log, 4)
    time.sleep(0.2)
    lines = read_lines(log)
    check(len(lines) == 4, f"4 requests, {len(lines)} lines: {lines}")
    objs = []
    for l in lines:
        try:
            objs.append(json.loads(l))
        except ValueError:
            raise TestFailure(f"not a JSON object: {l!r}")
    keys = {"time", "client", "listener", "pool", "server", "method", "target", "proto", "status",
            "bytes_in", "bytes_out", "total_ms", "ttfb_ms", "reason"}
    for o, l in zip(objs, lines):
        check(set(o) == keys, f"JSON keys {sorted(o)}, want {sorted(keys)}: {l}")
    for w in want:
        match = [(o, l) for o, l in zip(objs, lines) if o["client"] == w["client"] and
                 (w.get("method") is None or o["method"] == w["method"])]
        check(len(match) == 1, f"one line for {w}, got {match}")
        o, l = match[0]
        check(o["listener"] == "l", f"listener: {l}")
        if "server" in w:
            check(o["pool"] == "p" and o["server"] == w["server"], f"pool/server: {l}")
        check(isinstance(o["bytes_in"], int) and isinstance(o["bytes_out"], int), f"byte counts are not numbers: {l}")
        _check_fields(o, w, l)


def test_access_log_keeps_utf8_targets_and_escapes_other_bytes(ctx):
    """A UTF-8 path is logged as text (JSON readers get the same characters
    back); a byte that is not UTF-8 is escaped, and so are C1 controls and
    bidirectional overrides; either way a text line stays one line with its
    fields."""
    b = cbackend(ctx, "b1")
    for fmt in ("json", "text"):
        port = free_port()
        log = ctx.path(f"access-{fmt}.log")
        f = ctx.fulcrum(http_conf(port, [b.server_line()],
                                  glob={"access_log": log, "access_log_format": fmt}))
        for target in ("/caf\u00e9/\u65e5\u672c".encode(), b"/bad\xff\xfe\xc3",
                       "/x\u202egpj.exe\u0085".encode()):
            r = client(port)
            r.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            read_response(r)
            r.close()
        lines = access_lines(log, 3)
        with open(log, "rb") as fh:
            raw = fh.read()
        raw.decode("utf-8")  # the whole log is valid UTF-8
        # Characters that would make a line read otherwise stay escaped.
        check("\u202e".encode() not in raw and "\u0085".encode() not in raw,
              f"an override or C1 control reached the log raw: {raw!r}")
        check("\\u202egpj.exe\\u0085" in lines[2], f"line {lines[2]!r}")
        if fmt == "json":
            got = [json.loads(l)["target"] for l in lines[:2]]
            check(got == ["/caf\u00e9/\u65e5\u672c", "/bad\u00ff\u00fe\u00c3"], f"targets {got!r}")
        else:
            check('"GET /caf\u00e9/\u65e5\u672c HTTP/1.1"' in lines[0], f"line {lines[0]!r}")
            check('"GET /bad\\u00ff\\u00fe\\u00c3 HTTP/1.1"' in lines[1], f"line {lines[1]!r}")
        f.stop()


def test_access_log_escapes_a_refused_request_line(ctx):
    """A request line refused for a control byte in its target or method
    (400) is still logged with its method and target, the bytes escaped."""
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log}))
    for line in (b"GET /a\x01b\x1b[31m HTTP/1.1", b"G\x7fT / HTTP/1.1"):
        r = client(port)
        r.send(line + b"\r\nHost: x\r\n\r\n")
        m = read_response(r)
        r.close()
        check(m.status == 400, f"{line!r}: {m!r}")
    lines = access_lines(log, 2)
    check('"GET /a\\u0001b\\u001b[31m HTTP/1.1" 400 ' in lines[0], f"line {lines[0]!r}")
    check('"G\\u007fT / HTTP/1.1" 400 ' in lines[1], f"line {lines[1]!r}")


def test_access_log_unfinished_requests(ctx):
    """A request that never completes its head is logged with the bytes that
    came and, when a whole request line came, its method and target."""
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log},
                          listener={"request_timeout": "500ms"}))
    partial = b"GET /half?x=1 HTTP/1.1\r\nHost: x\r\n"
    garbage = b"\x16\x03\x01"
    bad_field = b"HEAD /bad HTTP/1.1\r\nHost : x\r\n\r\n"
    sent = {}
    for data in (partial, garbage, bad_field):
        r = client(port)
        sent["%s:%d" % r.s.getsockname()[:2]] = data
        r.send(data)
        m = read_response(r, method="HEAD" if data is bad_field else "GET")
        check(m.status == (408 if data is partial else 400), f"{data!r}: {m.status}")
        r.close()
    lines = access_lines(log, 3)
    time.sleep(0.2)
    lines = read_lines(log)
    by_client = {l.split(" ")[1]: l for l in lines}
    want = {partial: '"GET /half?x=1 HTTP/1.1" 408 ', garbage: '"- - -" 400 ',
            bad_field: '"HEAD /bad HTTP/1.1" 400 '}
    for me, data in sent.items():
        line = by_client.get(me, "")
        mm = LOG_RE.match(line)
        check(mm and want[data] in line and int(mm["bytes_in"]) == len(data),
              f"{data!r}: want {want[data]!r} and {len(data)} bytes in: {line!r} of {lines}")


def test_garbage_is_answered_at_once(ctx):
    """Bytes that cannot begin a valid head are refused as they come, as
    nginx refuses them, not when a timeout passes (both are 60 s here): a
    TLS hello sent to a plain port (in one piece, or after a method's first
    bytes) and a request line of four parts get 400 before the head ends,
    and a server that answers something other
    than HTTP, and keeps its connection open, gives 502 at once."""
    srv = pyserver(ctx, raw_handler(b"hello, I am not HTTP\r\n"))
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log},
                          pool={"server_timeout": "60s"},
                          listener={"request_timeout": "60s", "client_timeout": "60s"}))
    for pieces in ((b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",),
                   (b"GET / HTTP/1.1 extra\r\nHost: x\r\n",),
                   (b"GE", b"\x16\x03\x01")):  # the method goes wrong in a later read
        r = client(port, timeout=5 * SCALE)
        for piece in pieces:
            r.send(piece)
            time.sleep(0.1)
        m = read_response(r)
        check(m.status == 400, f"{pieces!r}: {m!r}")
        r.close()
    r = client(port, timeout=5 * SCALE)
    r.send(get("/"))
    m = read_response(r)
    check(m.status == 502, f"a server answering garbage: {m!r}")
    r.close()
    lines = access_lines(log, 4)
    for want in ("bad_method", "bad_request_line", "bad_response"):
        check(any(l.endswith(" " + want) for l in lines), f"no line ending {want}: {lines}")


def test_access_log_one_line_per_pipelined_request(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log}))
    r = client(port)
    reqs = [get(f"/p{i}?size={i}") for i in range(5)]
    r.send(b"".join(reqs))
    resps = [read_response(r) for _ in range(5)]
    r.close()
    lines = access_lines(log, 5)
    time.sleep(0.2)
    lines = read_lines(log)
    check(len(lines) == 5, f"5 pipelined requests, {len(lines)} lines: {lines}")
    for i, (q, m) in enumerate(zip(reqs, resps)):
        match = [l for l in lines if f'"GET /p{i}?size={i} HTTP/1.1" 200 ' in l]
        check(len(match) == 1, f"line for request {i}: {lines}")
        mm = LOG_RE.match(match[0])
        check(mm and int(mm["bytes_in"]) == len(q) and int(mm["bytes_out"]) == m.raw_len,
              f"bytes of pipelined request {i} (want {len(q)} in, {m.raw_len} out): {match[0]}")



def test_sigterm_finishes_the_request_in_flight(ctx):
    """SPEC §1 SIGTERM: idle keep-alive connections close at once; a request
    in flight is answered, with Connection: close. What the client pipelined
    behind it goes unanswered (RFC 9112 §9.6) but is logged with the reason
    shutdown, since nothing is dropped silently."""
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    f = ctx.fulcrum(http_conf(port, [b.server_line()],
                              glob={"access_log": log, "graceful_timeout": "10s"}))
    idle = client(port)
    idle.send(get("/?size=1"))
    check(read_response(idle).status == 200, "the first request")
    busy = client(port)
    busy.send(get("/?ms=800") + get("/second") + b"\r\n")
    time.sleep(0.3)
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)
    closed, extra = wait_closed(idle, 1.0 * SCALE)
    check(closed and not extra, f"the idle connection was not closed at once: {extra!r}")
    m = read_response(busy)
    check(m.status == 200 and "close" in m.tokens("connection"),
          f"the request in flight: {m!r}")
    closed, extra = wait_closed(busy, 1.0 * SCALE)
    check(closed and not extra, f"the pipelined request was answered: {extra!r}")
    check(f.wait_exit(3) == 0, "exit status after the drain")
    check(time.monotonic() - t0 < 3.0 * SCALE, "the stop waited on graceful_timeout")
    lines = read_lines(log)
    check(len(lines) == 3 and '"GET /?ms=800 HTTP/1.1" 200 ' in lines[1]
          and lines[1].endswith(" -"), f"access log: {lines}")
    want = len(get("/second")) + 2
    check(f'"GET /second HTTP/1.1" - {want} 0 ' in lines[2] and lines[2].endswith(" shutdown"),
          f"the unanswered request's line: {lines[2] if len(lines) > 2 else lines}")



def test_sigterm_resets_no_busy_keepalive_client(ctx):
    """SIGTERM closes idle keep-alive connections, but one whose next
    request is already in (unseen by its worker yet) is answered, with
    Connection: close, and one closed gets a FIN: what a client sends just
    before it sees the FIN is read and dropped, never answered by a reset
    (which would destroy a response, and with it what the client knows)."""
    b = cbackend(ctx, "b1")
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [b.server_line()],
                              glob={"workers": 2, "graceful_timeout": "5s"}))
    stop = threading.Event()
    lock = threading.Lock()
    seen = {"ok": 0, "resets": []}

    def keep_asking():
        try:
            r = client(port, timeout=5 * SCALE)
        except OSError:
            return
        try:
            while not stop.is_set():
                r.send(get("/"))
                m = read_response(r)
                with lock:
                    seen["ok"] += 1
                if "close" in m.tokens("connection"):
                    return
        except ConnectionResetError as e:
            with lock:
                seen["resets"].append(repr(e))
        except (EOFError, OSError, TestFailure):
            pass  # a FIN before the answer: the keep-alive race RFC 9112 allows
        finally:
            r.close()

    threads = [threading.Thread(target=keep_asking, daemon=True) for _ in range(48)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    f.signal(signal.SIGTERM)
    check(f.wait_exit(6) == 0, "exit status after the drain")
    stop.set()
    for t in threads:
        t.join(5 * SCALE)
    check(seen["ok"] > 0, "no request was answered before the stop")
    check(not seen["resets"], f"{len(seen['resets'])} busy keep-alive clients were reset "
          f"at the stop: {seen['resets'][:3]}")


def test_sigterm_serves_requests_accepted_with_it(ctx):
    """Connections a worker accepts in the same turn as the stop, their
    request already in, are served (with Connection: close) rather than
    closed unread, which resets them. Brought about by stopping the process
    while the clients connect and send; whether the worker accepts before
    the main thread closes the listener is the scheduler's choice (those
    left in the accept queue are reset by the kernel, as README says), so
    the stop is tried until a worker has accepted some."""
    b = cbackend(ctx, "b1")
    answered = 0
    for attempt in range(20):
        port = free_port()
        log = ctx.path(f"access{attempt}.log")
        f = ctx.fulcrum(http_conf(port, [b.server_line()],
                                  glob={"access_log": log, "graceful_timeout": "5s"}))
        f.signal(signal.SIGSTOP)
        try:
            clients = []
            for _ in range(16):
                r = client(port, timeout=5 * SCALE)
                r.send(get("/"))
                clients.append(r)
            time.sleep(0.2)
            f.signal(signal.SIGTERM)
        finally:
            f.signal(signal.SIGCONT)
        for r in clients:
            try:
                m = read_response(r)
                if "close" not in m.tokens("connection"):
                    # Served before its worker learnt of the stop (the
                    # signal goes to the main thread first): then closed
                    # as an idle keep-alive connection, with a FIN.
                    r.s.settimeout(3 * SCALE)
                    check(r.s.recv(100) == b"", f"a keep-alive answer during the stop, "
                          f"then the connection was not closed: {m!r}")
                answered += 1
            except (ConnectionResetError, EOFError):
                pass  # still in the accept queue when the listener closed: the kernel resets it
            r.close()
        check(f.wait_exit(6) == 0, "exit status after the drain")
        unread = [ln for ln in read_lines(log) if ln.endswith(" shutdown")]
        check(not unread, f"{len(unread)} connections closed with their request unread "
              f"({answered} answered): {unread[:2]}")
        if answered:
            break
    check(answered > 0, "no connection was answered in 20 stops")


def test_sigterm_deadline_cuts_tunnels_not_requests_in_flight(ctx):
    """SPEC §1 SIGTERM: in-flight requests finish, answered with Connection:
    close, while tunnels run only up to graceful_timeout. A response slower
    than the deadline still arrives whole; a WebSocket tunnel is closed at
    the deadline and logged with the reason shutdown."""
    b = cbackend(ctx, "b1")
    ws = pyserver(ctx, _ws_handler)
    port, wsport = free_port(), free_port()
    log = ctx.path("access.log")
    f = ctx.fulcrum(ini(("global", {"workers": 1, "admin": "", "access_log": log,
                                    "graceful_timeout": "1s"}),
                        ("pool p", {"check": "none", "server": b.server_line()}),
                        ("pool w", {"check": "none", "server": ws.server_line()}),
                        ("listener web", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p"}),
                        ("listener ws", {"bind": f"127.0.0.1:{wsport}", "mode": "http",
                                         "pool": "w"})))
    tunnel = client(wsport)
    tunnel.send(WS_REQUEST)
    check(read_response(tunnel).status == 101, "the upgrade")
    check(tunnel.exact(len(b"server-first\n")) == b"server-first\n", "the tunnel's first bytes")
    busy = client(port)
    busy.send(get("/?ms=2500&size=100000"))
    time.sleep(0.3)
    t0 = time.monotonic()
    f.signal(signal.SIGTERM)
    closed, extra = wait_closed(tunnel, 3.0 * SCALE)
    cut = time.monotonic() - t0
    check(closed and not extra and cut >= 0.8,
          f"the tunnel: closed={closed} {cut:.2f}s after SIGTERM (graceful_timeout = 1s)")
    m = read_response(busy)
    took = time.monotonic() - t0
    check(m.status == 200 and m.body == pattern(100000) and "close" in m.tokens("connection"),
          f"the request in flight past the deadline: {m!r}")
    check(took >= 1.9, f"the answer came {took:.2f}s after SIGTERM, not past the deadline")
    check(f.wait_exit(3 * SCALE) == 0, "exit status after the last answer")
    lines = read_lines(log)
    check(len(lines) == 2 and any('"GET /chat HTTP/1.1" 101 ' in ln and ln.endswith(" shutdown")
                                  for ln in lines)
          and any('"GET /?ms=2500&size=100000 HTTP/1.1" 200 ' in ln and ln.endswith(" -")
                  for ln in lines), f"access log: {lines}")



def _odd_answers(r, srv):
    """An answer per path: /conn-date names its Date in Connection;
    /bad has a status past 599."""
    while (req := read_request(r)) is not None:
        if req.first.split(" ")[1] == "/conn-date":
            r.send(b"HTTP/1.1 200 OK\r\nConnection: Date\r\n"
                   b"Date: Mon, 01 Jan 2001 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok")
        else:
            r.send(b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok")


def test_dropped_date_is_replaced_and_own_errors_have_no_ttfb(ctx):
    """A Date the server's Connection names is hop-by-hop and dropped, so
    the answer gets fulcrum's own Date (RFC 9110 §6.6.1). A 502 fulcrum
    makes of an invalid answer is its own: TTFB is - in the log (README)."""
    srv = pyserver(ctx, _odd_answers)
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log},
                          pool={"max_fails": 1000}))
    r = client(port)
    r.send(get("/conn-date"))
    m = read_response(r)
    dates = m.all("date")
    check(m.status == 200 and len(dates) == 1 and "2001" not in dates[0],
          f"Date of an answer whose Connection named Date: {dates} {m!r}")
    r.send(get("/bad"))
    m = read_response(r)
    check(m.status == 502, f"a status of 600: {m!r}")
    r.close()
    lines = access_lines(log, 2)
    mm = LOG_RE.match(lines[1])
    check(mm and mm["reason"] == "bad_response" and mm["ttfb_ms"] == "-",
          f"the log line of fulcrum's own 502: {lines[1]}")


close_backends_first(globals())
