"""Health checking (SPEC §4): active tcp and http checks with rise/fall,
passive max_fails/fail_timeout, backups taking over, health kept across a
reload, established connections kept when their server goes down.

Pools here use retries = 0 where it matters, so a connection that reaches a
dead server fails visibly: traffic that all succeeds then proves the health
thread took that server out, not the retry logic.
"""

import collections
import http.client
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (SCALE, Skip, StuckLog, check, closed_port, connect, echo_roundtrip, free_port,
                     ini, name_via, recv_line, tcp_conf, wait_for)


class Server:
    """A loopback backend on a fixed port that can stop listening and start
    again on the same port (a server going away and coming back).

    kinds:
      name     sends NAME + "\\n" on connect, then echoes
      http     reads a request head, records it, answers STATUS with body NAME
               and closes
      keephttp the same, but it keeps the connection open after the answer
               (ignoring Connection: close) until the client closes
      silent   accepts and never answers
      garbage  sends a line that is not HTTP and closes
      badhttp  reads a request head, answers with two differing
               Content-Length headers (an invalid response) and closes
      cuthttp  reads a request head, answers 200 with Content-Length: 100,
               sends 3 bytes of the body and closes
      cutchunk the same with a chunked body cut inside its first chunk
      stallhttp the same as cuthttp, but the connection stays open, silent
      badbig   on odd connections as badhttp; on even ones a valid 200 with a
               body of 64 MiB, sent until the reader goes away
    TLS: an ssl.SSLContext wraps every accepted connection (server side);
    the SNI names clients sent are kept in sni.
    """

    def __init__(self, name, kind="name", status=200, tls=None):
        self.name = name
        self.kind = kind
        self.status = status
        self.tls = tls
        self.sni = []
        self.port = free_port()
        self.lock = threading.Lock()
        self.heads = []  # http: request heads received
        self.accepted = 0
        self.conns = set()
        self.sock = None
        self.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def server_line(self, opts=""):
        return f"{self.name} {self.addr} {opts}".rstrip()

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        s.settimeout(0.05)
        self.sock = s
        self.accept_thread = threading.Thread(target=self._accept_loop, args=(s,), daemon=True)
        self.accept_thread.start()

    def stop_listening(self):
        """New connections are refused from now on; established ones carry on."""
        s, self.sock = self.sock, None
        if s is None:
            return
        try:
            s.shutdown(socket.SHUT_RDWR)  # stops listening even while accept() runs
        except OSError:
            pass
        self.accept_thread.join()
        s.close()

    def kill(self):
        """Stops listening and drops every connection."""
        self.stop_listening()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    close = kill

    def _accept_loop(self, ls):
        while self.sock is ls:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.add(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(30 * SCALE)
        try:
            if self.tls:
                c = self.tls.wrap_socket(c, server_side=True)
            if self.kind in self.CANNED:
                self._serve_canned(c, self.kind)
            else:
                getattr(self, "_serve_" + self.kind)(c)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.lock:
                self.conns.discard(c)
            c.close()

    def _serve_name(self, c):
        c.sendall(self.name.encode() + b"\n")
        while True:
            b = c.recv(65536)
            if not b:
                return
            c.sendall(b)

    @staticmethod
    def _read_head(c):
        """The request head read from C, or None if C closed first."""
        head = b""
        while b"\r\n\r\n" not in head:
            b = c.recv(4096)
            if not b:
                return None
            head += b
        return head

    def _serve_http(self, c):
        head = self._read_head(c)
        if head is None:
            return
        with self.lock:
            self.heads.append(head.decode("latin-1"))
        body = self.name.encode() + b"\n"
        c.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + body)

    def _serve_keephttp(self, c):
        self._serve_http(c)
        while c.recv(65536):
            pass

    # Kinds that read a request head and send a fixed answer, and whether
    # they then hold the connection open instead of closing it.
    CANNED = {
        "badhttp": (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", False),
        "cuthttp": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", False),
        "cutchunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nabc", False),
        "stallhttp": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", True),
        "barelf": (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", False),
        "interim": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; "
                    b"rel=preload; " + b"x" * 300 + b"\r\n\r\nHTTP/1.1 200 OK\r\n"
                    b"Content-Length: 2\r\n\r\nok", False),
        "interim500": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\n"
                       b"Content-Length: 0\r\n\r\n", False),
        "badfield": (b"HTTP/1.1 200 OK\r\nX-Bad : 1\r\nContent-Length: 2\r\n\r\nok", False),
        "halfhead": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", True),
        "bighead": (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 200)
                                                       for i in range(100))
                    + b"Content-Length: 2\r\n\r\nok", False),
    }

    def _serve_canned(self, c, kind):
        if self._read_head(c) is None:
            return
        answer, hold = self.CANNED[kind]
        c.sendall(answer)
        while hold and c.recv(65536):
            pass

    def _serve_badbig(self, c):
        if self.accepted % 2:
            self._serve_canned(c, "badhttp")
            return
        if self._read_head(c) is None:
            return
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(1024):
            c.sendall(chunk)

    def _serve_silent(self, c):
        while c.recv(65536):
            pass

    def _serve_garbage(self, c):
        c.sendall(b"hello there\r\n")


def _server(ctx, name, kind="name", status=200, tls=None):
    s = Server(name, kind, status, tls)
    ctx.backends.append(s)
    return s


def _cert(ctx, name, san):
    """A self-signed certificate for SAN ("IP:127.0.0.1,DNS:x"): (cert, key) paths."""
    cert, key = ctx.path(f"{name}.crt"), ctx.path(f"{name}.key")
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.CalledProcessError) as e:
        raise Skip(f"cannot make a test certificate with openssl: {e}")
    return cert, key


def _tls_server_ctx(server, cert, key):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(cert, key)

    def on_sni(sock, name, _ctx):
        server.sni.append(name)
    c.sni_callback = on_sni
    return c


def _tls_server(ctx, name, cert, key, status=200):
    s = _server(ctx, name, "http", status)
    s.tls = _tls_server_ctx(s, cert, key)
    return s


def _log_has(f, pattern):
    return re.search(pattern, f.stderr(), re.M) is not None


def _wait_log(f, pattern, timeout, what):
    wait_for(lambda: _log_has(f, pattern), timeout * SCALE, interval=0.02, what=what)


def _try_name(port, source_ip=None):
    """The name of the server a new connection reached, or "" when it
    failed (closed without a byte)."""
    try:
        return name_via(("127.0.0.1", port), source_ip)
    except OSError:
        return ""


def _spread(port, n):
    return collections.Counter(_try_name(port) for _ in range(n))


FAST = {"check": "tcp", "check_interval": "200ms", "check_timeout": "200ms",
        "fall": 2, "rise": 2, "max_fails": 0, "retries": 0}


def test_tcp_check_down_then_up(ctx):
    a, b = _server(ctx, "a"), _server(ctx, "b")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [a.server_line(), b.server_line()], pool=FAST))
    cnt = _spread(port, 10)
    check(cnt == {"a": 5, "b": 5}, f"both up: spread {dict(cnt)}")

    b.kill()
    t0 = time.monotonic()
    _wait_log(f, r"server p/b DOWN: connect refused \(2/2\)$", 3,
              "the DOWN line of the killed server")
    dt = time.monotonic() - t0
    check(dt <= 1.0 * SCALE, f"marked down {dt:.2f}s after it died (interval 200ms, fall 2)")
    check(not _log_has(f, r"server p/a DOWN"), "the live server was marked down")
    cnt = _spread(port, 10)
    check(cnt == {"a": 10}, f"one server down, retries = 0: spread {dict(cnt)}")

    b.start()
    t0 = time.monotonic()
    _wait_log(f, r"server p/b UP: check passed \(2/2\)$", 3, "the UP line of the restarted server")
    dt = time.monotonic() - t0
    check(dt <= 1.0 * SCALE, f"back up {dt:.2f}s after it came back (interval 200ms, rise 2)")
    cnt = _spread(port, 10)
    check(set(cnt) == {"a", "b"} and min(cnt.values()) >= 4, f"both up again: spread {dict(cnt)}")
    f.check_fds_settled()


def test_checks_go_on_while_a_worker_is_stuck(ctx):
    """A worker held up (blocked writing to an access log nobody reads)
    does not hold up the health thread: after a lookup table it may still
    read is replaced, checks and their verdicts go on."""
    a, b, c = _server(ctx, "a"), _server(ctx, "b"), _server(ctx, "c")
    port = free_port()
    log = StuckLog(ctx)
    try:
        f = ctx.fulcrum(tcp_conf(port, [s.server_line() for s in (a, b, c)],
                                 glob={"workers": 1, "access_log": log.path},
                                 pool=dict(FAST, balance="maglev")))
        log.block(port)
        for s in (b, c):  # each DOWN replaces the maglev table
            s.kill()
            _wait_log(f, rf"server p/{s.name} DOWN: connect refused \(2/2\)$", 3,
                      f"{s.name}'s DOWN line while the worker is stuck")
    finally:
        log.release()
    check(_try_name(port) == "a", "the one server up once the worker is free again")


def test_rise_needs_consecutive_checks(ctx):
    """With rise 3 and a 300ms interval, a server that comes back is not used
    before its third good check."""
    a, b = _server(ctx, "a"), _server(ctx, "b")
    port = free_port()
    pool = dict(FAST, check_interval="300ms", rise=3, fall=1)
    f = ctx.fulcrum(tcp_conf(port, [a.server_line(), b.server_line()], pool=pool))
    b.kill()
    _wait_log(f, r"server p/b DOWN: connect refused \(1/1\)$", 3, "b's DOWN line (fall 1)")
    b.start()
    t0 = time.monotonic()
    _wait_log(f, r"server p/b UP: check passed \(3/3\)$", 4, "b's UP line (rise 3)")
    dt = time.monotonic() - t0
    # Three checks at least 270ms apart: the first may come at once.
    check(dt >= 0.5, f"up after {dt:.2f}s, before three checks could pass")
    f.check_fds_settled()


def test_http_check(ctx):
    good = _server(ctx, "good", "http", 200)
    redirect = _server(ctx, "redir", "http", 302)
    bad = _server(ctx, "bad", "http", 500)
    silent = _server(ctx, "silent", "silent")
    garbage = _server(ctx, "garbage", "garbage")
    port = free_port()
    pool = dict(FAST, check="http GET /healthz?x=1 expect=200-399")
    f = ctx.fulcrum(tcp_conf(port, [s.server_line() for s in (good, redirect, bad, silent,
                                                                garbage)], pool=pool))
    _wait_log(f, r"server p/bad DOWN: HTTP status 500 \(2/2\)$", 3, "the 500 server's DOWN line")
    _wait_log(f, r"server p/silent DOWN: no response within check_timeout \(2/2\)$", 3,
              "the silent server's DOWN line")
    _wait_log(f, r"server p/garbage DOWN: invalid HTTP response \(2/2\)$", 3,
              "the DOWN line of the server answering garbage")
    check(not _log_has(f, r"server p/(good|redir) DOWN"), "a server answering 200 or 302 went down")

    head = wait_for(lambda: good.heads, 3 * SCALE, what="a check at good")[0]
    lines = head.split("\r\n")
    check(lines[0] == "GET /healthz?x=1 HTTP/1.1", f"request line {lines[0]!r}")
    check(f"Host: {good.addr}" in lines, f"Host is not the server's address: {head!r}")
    check("Connection: close" in lines, f"no Connection: close: {head!r}")
    check("User-Agent: fulcrum-health" in lines, f"no User-Agent: {head!r}")

    # The silent one would hold a check open all the time: quiet it first.
    silent.kill()
    bad.status = 200
    _wait_log(f, r"server p/bad UP: check passed \(2/2\)$", 3, "the recovered server's UP line")
    f.check_fds_settled()


def test_http_check_reads_the_answer_as_traffic_does(ctx):
    """The check holds the answer's head to what traffic gets, or a server
    would flap between traffic's 502 (DOWN after max_fails) and the check's
    UP: a status line ended by a bare LF, a field with a space before its
    colon and two different Content-Lengths are invalid, and a head that
    never ends fails at check_timeout. Interim 1xx answers, a long 103
    included, are skipped to the final status, which alone is judged (RFC
    9110 §15.2); a long valid head (20 KB) passes."""
    bad = ("barelf", "badfield", "badhttp")
    good = ("interim", "bighead")
    servers = [_server(ctx, k, k) for k in bad + good + ("interim500", "halfhead")]
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [s.server_line() for s in servers],
                             pool=dict(FAST, check="http GET /")))
    for k in bad:
        _wait_log(f, rf"server p/{k} DOWN: invalid HTTP response \(2/2\)$", 3,
                  f"the DOWN line of the {k} server")
    _wait_log(f, r"server p/interim500 DOWN: HTTP status 500 \(2/2\)$", 3,
              "the DOWN line of the server whose final status, after a 100, is 500")
    _wait_log(f, r"server p/halfhead DOWN: response head incomplete within check_timeout "
              r"\(2/2\)$", 3, "the DOWN line of the server whose head never ends")
    for s in servers[len(bad):len(bad) + len(good)]:
        wait_for(lambda: s.accepted >= 3, 3 * SCALE, what=f"three checks of {s.name}")
        check(not _log_has(f, rf"server p/{s.name} DOWN"), f"{s.name} failed:\n{f.stderr()}")
    f.check_fds_settled()


def test_http_check_does_not_wait_for_the_server_to_close(ctx):
    """The head is the verdict: a server that keeps the connection
    open after its answer, whatever Connection: close said, does not hold
    each check (and so the next one) until check_timeout."""
    keep = _server(ctx, "keep", "keephttp", 200)
    port = free_port()
    pool = dict(FAST, check="http GET /", check_interval="100ms", check_timeout="5s")
    f = ctx.fulcrum(tcp_conf(port, [keep.server_line()], pool=pool))
    wait_for(lambda: len(keep.heads) >= 4, 2 * SCALE, what="four checks within 2 s")
    keep.status = 503
    t0 = time.monotonic()
    _wait_log(f, r"server p/keep DOWN: HTTP status 503 \(2/2\)$", 2, "the DOWN line")
    took = time.monotonic() - t0
    check(took < 2 * SCALE, f"down after {took:.2f}s with check_interval = 100ms, fall = 2")


def test_http_check_host_and_expect(ctx):
    s = _server(ctx, "s", "http", 204)
    t = _server(ctx, "t", "http", 200)
    port = free_port()
    pool = dict(FAST, check="http GET / expect=200 host=health.example")
    f = ctx.fulcrum(tcp_conf(port, [s.server_line(), t.server_line()], pool=pool))
    _wait_log(f, r"server p/s DOWN: HTTP status 204 \(2/2\)$", 3, "204 outside expect=200")
    head = wait_for(lambda: t.heads, 3 * SCALE, what="a check at t")[0]
    check("Host: health.example" in head.split("\r\n"), f"host= not sent: {head!r}")
    check(not _log_has(f, r"server p/t DOWN"), "the 200 server went down")
    f.check_fds_settled()


def test_backup_serves_while_normals_down(ctx):
    n1, n2, bk = _server(ctx, "n1"), _server(ctx, "n2"), _server(ctx, "bk")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [n1.server_line(), n2.server_line(), bk.server_line("backup")],
                             pool=FAST))
    cnt = _spread(port, 6)
    check(cnt == {"n1": 3, "n2": 3}, f"normals up: spread {dict(cnt)}")
    n1.kill()
    n2.kill()
    _wait_log(f, r"server p/n1 DOWN", 3, "n1 DOWN")
    _wait_log(f, r"server p/n2 DOWN", 3, "n2 DOWN")
    cnt = _spread(port, 6)
    check(cnt == {"bk": 6}, f"normals down: spread {dict(cnt)}")
    n2.start()
    _wait_log(f, r"server p/n2 UP", 3, "n2 UP")
    cnt = _spread(port, 6)
    check(cnt == {"n2": 6}, f"one normal back: spread {dict(cnt)}")
    f.check_fds_settled()


def test_down_keeps_established_connections(ctx):
    a, b = _server(ctx, "a"), _server(ctx, "b")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [a.server_line(), b.server_line()], pool=FAST))
    held = []
    for _ in range(4):
        s = connect(("127.0.0.1", port))
        held.append((s, recv_line(s).decode().strip()))
    on_b = [s for s, n in held if n == "b"]
    check(len(on_b) == 2, f"held connections went to {[n for _, n in held]}")
    b.stop_listening()  # checks fail, established connections live on
    _wait_log(f, r"server p/b DOWN", 3, "b DOWN")
    for s in on_b:
        check(echo_roundtrip(s, b"still here"), "a connection to the downed server was cut")
    for s, _ in held:
        s.close()
    f.check_fds_settled()


def test_passive_max_fails_then_fail_timeout(ctx):
    a = _server(ctx, "a")
    dead = f"d 127.0.0.1:{closed_port()}"
    port = free_port()
    pool = {"check": "none", "max_fails": 2, "fail_timeout": "1500ms", "retries": 2}
    f = ctx.fulcrum(tcp_conf(port, [a.server_line(), dead], pool=pool))
    fail_line = r"connect to p/d \(.*\) failed"

    # Refusals are retried on a: clients never notice while d is marked down.
    for _ in range(6):
        check(_try_name(port) == "a", "a connection failed while one server was alive")
    down_line = r"server p/d DOWN: \d+ consecutive failures? seen by traffic \(passive\)$"
    _wait_log(f, down_line, 2, "the passive DOWN line")
    t_down = time.monotonic()
    tried = len(re.findall(fail_line, f.stderr()))
    check(tried >= 2, f"d was tried {tried} times before it was marked down (max_fails 2)")

    # Down: not tried at all until fail_timeout passes.
    while time.monotonic() - t_down < 1.0:
        check(_try_name(port) == "a", "a connection failed")
        time.sleep(0.05)
    check(len(re.findall(fail_line, f.stderr())) == tried, "d was tried while marked down")

    _wait_log(f, r"server p/d UP: fail_timeout \(1500 ms\) passed, trying it again$", 2,
              "d tried again after fail_timeout")
    # On probation, as in nginx: its first failure takes it down again.
    for _ in range(6):
        check(_try_name(port) == "a", "a connection failed")
    _wait_log(f, r"server p/d DOWN: failed again after fail_timeout \(passive\)$", 2,
              "d marked down again at its first failure")
    again = len(re.findall(fail_line, f.stderr())) - tried
    check(again == 1, f"d was tried {again} times after fail_timeout, want 1")
    f.check_fds_settled()


def test_passive_takes_server_out_at_max_fails_exactly(ctx):
    """SPEC §4: max_fails consecutive failures mark the server down. Back to
    back traffic must not get past that count while the health thread has
    not looked yet: with retries = 0, exactly max_fails clients fail."""
    a = _server(ctx, "a")
    dead = f"d 127.0.0.1:{closed_port()}"
    tport, hport = free_port(), free_port()
    pool = {"check": "none", "max_fails": 2, "fail_timeout": "1h", "retries": 0}
    ctx.fulcrum(tcp_conf(tport, [a.server_line(), dead], pool=pool))
    names = [_try_name(tport) for _ in range(20)]
    check(names.count("") == 2, f"tcp: {names.count('')} of 20 clients failed, want 2: {names}")

    http_srv = _server(ctx, "h", kind="http")
    conf = ini(("global", {"workers": 1, "admin": "", "access_log": "off"}),
               ("pool p", dict(pool, balance="roundrobin",
                               server=[http_srv.server_line(), f"d 127.0.0.1:{closed_port()}"])),
               ("listener l", {"bind": f"127.0.0.1:{hport}", "mode": "http", "pool": "p"}))
    ctx.fulcrum(conf)
    statuses = [_http_status(hport)[0] for _ in range(20)]
    check(statuses.count(502) == 2, f"http: {statuses.count(502)} of 20 got 502, want 2: {statuses}")


def _http_status(port):
    """(status, body) of GET / through an http listener on PORT."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5 * SCALE)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace").strip()
    finally:
        c.close()


def _passive_counts(ctx, kind, pool=None):
    good = _server(ctx, "good", "http", 200)
    bad = _server(ctx, "bad", kind)
    port = free_port()
    pool = dict({"check": "none", "max_fails": 2, "fail_timeout": "1h", "retries": 0}, **(pool or {}))
    f = ctx.fulcrum(tcp_conf(port, [good.server_line(), bad.server_line()], pool=pool,
                             listener={"mode": "http"}))

    def status():
        try:
            return _http_status(port)[0]
        except http.client.IncompleteRead:
            return "cut"

    seen = collections.Counter(status() for _ in range(4))
    want = {200: 2, {"badhttp": 502, "silent": 504}.get(kind, "cut"): 2}
    check(seen == want, f"{kind}: round robin over good and bad: {dict(seen)}")
    _wait_log(f, r"server p/bad DOWN: 2 consecutive failures seen by traffic \(passive\)$", 2,
              f"bad marked down by its {kind} responses")
    for _ in range(6):
        check(_http_status(port) == (200, "good"), "a request went to the server marked down")
    check(bad.accepted == 2, f"bad got {bad.accepted} connections, not 2")


def test_passive_counts_invalid_responses(ctx):
    """SPEC §4: invalid responses count toward max_fails like failed
    connections, although the connect before each of them succeeds."""
    _passive_counts(ctx, "badhttp")


def test_passive_counts_responses_cut_short(ctx):
    """A response whose body the server cuts short is a failure too: only
    a whole response ends a server's run of failures."""
    _passive_counts(ctx, "cuthttp")


def test_passive_run_goes_on_across_a_reload_that_changes_the_server(ctx):
    """A reload that changes a server's options but not its address keeps
    its run of passive failures: reloads do not buy a failing server more
    tries."""
    bad = _server(ctx, "bad", "badhttp")
    spare = _server(ctx, "spare", "http", 200)
    port = free_port()
    pool = {"check": "none", "max_fails": 2, "fail_timeout": "1h", "retries": 0}

    def text(opts):
        return tcp_conf(port, [bad.server_line(opts), spare.server_line("backup")], pool=pool,
                        listener={"mode": "http"})

    f = ctx.fulcrum(text(""))
    check(_http_status(port)[0] == 502, "the first invalid response")
    with open(f.conf_path, "w") as fh:
        fh.write(text("maxconn=5"))
    f.signal(signal.SIGHUP)
    _wait_log(f, r"reloaded .*: generation 2$", 3, "the reload")
    check(_http_status(port)[0] == 502, "the second invalid response")
    _wait_log(f, r"server p/bad DOWN: 2 consecutive failures seen by traffic \(passive\)$", 2,
              "bad marked down by failures on both sides of a reload")
    check(_http_status(port) == (200, "spare"), "the backup after bad went down")


def test_passive_counts_chunked_responses_cut_short(ctx):
    _passive_counts(ctx, "cutchunk")


def test_passive_counts_servers_that_never_answer(ctx):
    """A server that takes the request and never answers (504 at
    server_timeout) counts toward max_fails also when no retry follows: a
    hung server leaves the rotation, as nginx's max_fails counts timeouts."""
    _passive_counts(ctx, "silent", pool={"server_timeout": "300ms"})


def test_passive_counts_responses_stalled_midway(ctx):
    _passive_counts(ctx, "stallhttp", pool={"server_timeout": "300ms"})


def test_passive_count_ends_when_the_client_gives_up_on_a_good_response(ctx):
    """A client that leaves in the middle of a valid response is no fault
    of the server's: like a whole response, it ends the run of failures."""
    bad = _server(ctx, "bad", "badbig")
    port = free_port()
    pool = {"check": "none", "max_fails": 2, "fail_timeout": "1h", "retries": 0}
    f = ctx.fulcrum(tcp_conf(port, [bad.server_line()], pool=pool,
                             glob={"access_log": "stderr"}, listener={"mode": "http"}))
    for i in range(3):
        check(_http_status(port)[0] == 502, f"round {i}: the invalid response")
        s = connect(("127.0.0.1", port))
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        check(s.recv(4096).startswith(b"HTTP/1.1 200"), f"round {i}: the good response's head")
        s.close()  # with unread bytes: a reset
        wait_for(lambda: len(re.findall(r'"GET /big HTTP/1\.1" 200 .* client_', f.stderr())) == i + 1,
                 2 * SCALE, what=f"round {i}: the log line of the response the client left")
    check(not _log_has(f, r"server p/bad DOWN"), f"bad was marked down: {f.stderr()[-600:]}")
    check(_http_status(port)[0] == 502, "bad still takes requests")


def test_passive_down_then_active_check_brings_back(ctx):
    """max_fails marks a server down; with an active check, its rise brings
    it back (not fail_timeout)."""
    a, b = _server(ctx, "a"), _server(ctx, "b")
    port = free_port()
    pool = {"check": "tcp", "check_interval": "300ms", "rise": 2, "fall": 1000,
            "max_fails": 1, "fail_timeout": "1h", "retries": 1}
    f = ctx.fulcrum(tcp_conf(port, [a.server_line(), b.server_line()], pool=pool))
    # b refuses for a moment: the traffic sees it first (fall 1000 keeps the
    # active check from marking it), then b is back for the check to find.
    b.stop_listening()
    for _ in range(4):
        check(_try_name(port) == "a", "a connection failed")
    _wait_log(f, r"server p/b DOWN: \d+ consecutive failures? seen by traffic \(passive\)$", 2,
              "b's passive DOWN line")
    b.start()
    _wait_log(f, r"server p/b UP: check passed \(2/2\)$", 3, "b back up by its active check")
    cnt = _spread(port, 6)
    check(set(cnt) == {"a", "b"}, f"b back: spread {dict(cnt)}")
    f.check_fds_settled()


def test_reload_keeps_health(ctx):
    a, b = _server(ctx, "a"), _server(ctx, "b")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [a.server_line(), b.server_line()], pool=FAST))
    b.kill()
    _wait_log(f, r"server p/b DOWN", 3, "b DOWN")
    f.signal(signal.SIGHUP)
    _wait_log(f, r"reloaded .*generation 2", 3, "the reload")
    cnt = _spread(port, 10)
    check(cnt == {"a": 10}, f"after a reload the down server got traffic: {dict(cnt)}")
    check(len(re.findall(r"server p/b DOWN", f.stderr())) == 1,
          "the server was marked up and down again across the reload")
    b.start()
    _wait_log(f, r"server p/b UP: check passed \(2/2\)$", 3, "b UP in the new generation")
    f.check_fds_settled()


def test_checks_run_to_their_verdict_while_generations_come_fast(ctx):
    """Reloads (and API adds and deletes) coming faster than a check takes
    must not abort the checks: one running goes on in the new generation,
    and the next stays due when it was. A silent server whose checks each
    run into check_timeout still goes DOWN after `fall` of them, and the
    good one gets its checks too."""
    good = _server(ctx, "good", "http", 200)
    # It answers until the churn is under way: a test slow to start must
    # not see it go DOWN before the first reload.
    silent = _server(ctx, "silent", "http", 200)
    port = free_port()
    pool = dict(FAST, check="http GET /", check_interval="400ms", check_timeout="600ms",
                fall=3, rise=1)
    f = ctx.fulcrum(tcp_conf(port, [good.server_line(), silent.server_line()], pool=pool))
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 * SCALE and not _log_has(f, r"server p/silent DOWN"):
        f.signal(signal.SIGHUP)
        time.sleep(0.25)
        if silent.kind != "silent" and len(re.findall(r"reloaded", f.stderr())) >= 2:
            silent.kind = "silent"
            silenced = len(re.findall(r"reloaded", f.stderr()))
    reloads = len(re.findall(r"reloaded", f.stderr()))
    check(silent.kind == "silent", f"only {reloads} reloads in 10 s: the churn did not happen")
    check(_log_has(f, r"server p/silent DOWN: no response within check_timeout \(3/3\)$"),
          f"the silent server never went DOWN through {reloads - silenced} reloads 250 ms apart")
    check(reloads >= 4 and reloads - silenced >= 2,
          f"{reloads} reloads, {reloads - silenced} while it was silent: the churn did not happen")
    check(len(good.heads) >= 2, f"the good server got {len(good.heads)} checks")
    silent.kill()
    f.check_fds_settled()


def test_reload_turning_checks_off_brings_their_down_server_back(ctx):
    """A server taken down by active checks, then a reload to check =
    none: nothing would ever check it again, so it is back in rotation
    (fail_timeout is for what traffic saw, SPEC §4)."""
    a, b = _server(ctx, "a"), _server(ctx, "b")
    port = free_port()
    pool = dict(FAST, check="http GET /")  # a name server's answer is no HTTP: both DOWN
    f = ctx.fulcrum(tcp_conf(port, [a.server_line(), b.server_line()], pool=pool))
    _wait_log(f, r"server p/b DOWN", 3, "b DOWN")
    _wait_log(f, r"server p/a DOWN", 3, "a DOWN")
    with open(f.conf_path, "w") as fh:
        fh.write(tcp_conf(port, [a.server_line(), b.server_line()], pool=dict(FAST, check="none")))
    f.signal(signal.SIGHUP)
    _wait_log(f, r"server p/b UP: active checks turned off", 3, "b back UP after the reload")
    _wait_log(f, r"server p/a UP: active checks turned off", 3, "a back UP after the reload")
    # The verdicts are given while the new generation is being adopted;
    # the workers run it once the reload is logged. Before, the first
    # connection could still take the old generation's round robin.
    _wait_log(f, r"reloaded .*: generation 2$", 3, "the reload done")
    cnt = _spread(port, 10)
    check(cnt == {"a": 5, "b": 5}, f"after the reload b got no traffic: {dict(cnt)}")


def test_maglev_pool_follows_health(ctx):
    """A maglev pool: its table is rebuilt when a server goes down and again
    when it comes back; keys of the live servers stay where they were."""
    srv = [_server(ctx, n) for n in ("s1", "s2", "s3")]
    port = free_port()
    pool = dict(FAST, balance="maglev")
    f = ctx.fulcrum(tcp_conf(port, [s.server_line() for s in srv], pool=pool, glob={"workers": 2}))
    ips = [f"127.0.0.{i}" for i in range(2, 32)]
    before = {ip: _try_name(port, ip) for ip in ips}
    check("" not in before.values(), f"a connection failed: {before}")
    srv[1].kill()
    _wait_log(f, r"server p/s2 DOWN", 3, "s2 DOWN")
    during = {ip: _try_name(port, ip) for ip in ips}
    check("" not in during.values() and "s2" not in during.values(),
          f"s2 down, retries = 0: {during}")
    moved = [ip for ip in ips if before[ip] != "s2" and during[ip] != before[ip]]
    check(not moved, f"keys of live servers moved: {moved}")
    srv[1].start()
    _wait_log(f, r"server p/s2 UP", 3, "s2 UP")
    # The table is rebuilt just after the state changes (a moment under
    # sanitizers): until then s2's keys still go to their fallback.
    last = {}

    def mapping_restored():
        last.update({ip: _try_name(port, ip) for ip in ips})
        return last == before
    try:
        wait_for(mapping_restored, 2 * SCALE, interval=0.1, what="the mapping to come back")
    except Exception:
        check(False, f"after s2 came back the mapping changed: {before} -> {last}")
    f.check_fds_settled()


def test_http_check_over_tls(ctx):
    """tls = on: the http check speaks TLS and verifies the certificate
    against tls_ca and the server's address; a plain server, or one whose
    certificate names someone else, is down."""
    good_crt, good_key = _cert(ctx, "good", "IP:127.0.0.1")
    other_crt, other_key = _cert(ctx, "other", "DNS:other.test")
    ca = ctx.write("ca.pem", open(good_crt).read() + open(other_crt).read())
    good = _tls_server(ctx, "good", good_crt, good_key)
    other = _tls_server(ctx, "other", other_crt, other_key)
    plain = _server(ctx, "plain", "http", 200)
    port = free_port()
    pool = dict(FAST, check="http GET /tls", tls="on", tls_verify="on", tls_ca=ca)
    f = ctx.fulcrum(tcp_conf(port, [good.server_line(), other.server_line(),
                                    plain.server_line()], pool=pool))
    _wait_log(f, r"server p/other DOWN: TLS handshake: .*\(2/2\)$", 3,
              "the DOWN line of the server whose certificate does not match")
    _wait_log(f, r"server p/plain DOWN: TLS handshake.*\(2/2\)$", 3,
              "the DOWN line of the server without TLS")
    wait_for(lambda: len(good.heads) >= 3, 3 * SCALE, what="three checks on the TLS server")
    check(not _log_has(f, r"server p/good DOWN"), f"the good TLS server went down:\n{f.stderr()}")
    check(good.heads[0].startswith("GET /tls HTTP/1.1\r\n"), f"request {good.heads[0]!r}")
    check(good.sni == [] or set(good.sni) == {None}, f"SNI sent for an address: {good.sni}")
    f.check_fds_settled()


def test_http_check_over_tls_sni(ctx):
    """tls_sni is sent, and the certificate is verified against it."""
    crt, key = _cert(ctx, "named", "DNS:svc.example")
    s = _tls_server(ctx, "s", crt, key)
    port = free_port()
    pool = dict(FAST, check="http GET /", tls="on", tls_ca=crt, tls_sni="svc.example")
    f = ctx.fulcrum(tcp_conf(port, [s.server_line()], pool=pool))
    wait_for(lambda: len(s.heads) >= 3, 3 * SCALE, what="three checks on the TLS server")
    check(set(s.sni) == {"svc.example"}, f"SNI sent: {s.sni}")
    check(not _log_has(f, r"server p/s DOWN"), f"the server went down:\n{f.stderr()}")
    f.check_fds_settled()


def test_requests_from_before_a_recovery_do_not_count_against_it(ctx):
    """On probation after fail_timeout, a server goes down again at its
    next failure; but the requests it was given before it went down (hung
    there until server_timeout) are not that failure. Here two requests
    hang, two invalid answers take the server down, it comes back after
    fail_timeout, and the hung requests' 504s come after that: it stays up
    and serves."""
    from test_http import get, http_conf, pyserver, read_request, roundtrip

    def handler(r, srv):
        while True:
            req = read_request(r)
            if req is None:
                return
            target = req.first.split()[1]
            if target == "/hang":
                time.sleep(10 * SCALE)
                return
            if target == "/bad":
                r.send(b"HTTP/1.1 2OO Bad\r\n\r\n")
                return
            r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, handler)
    port = free_port()
    pool = {"max_fails": 2, "fail_timeout": "1s", "server_timeout": "3s", "retries": 0,
            "keepalive": 0}
    f = ctx.fulcrum(http_conf(port, [srv.server_line()], pool=pool))
    hung = []
    for _ in range(2):
        s = connect(("127.0.0.1", port))
        s.sendall(get("/hang"))
        hung.append(s)
    time.sleep(0.2)
    for _ in range(2):
        m, _, _ = roundtrip(port, get("/bad"), wait_close=0)
        check(m.status == 502, f"an invalid answer: {m!r}")
    _wait_log(f, r"server p/py DOWN: 2 consecutive failures", 2, "the server marked down")
    _wait_log(f, r"server p/py UP: fail_timeout \(1000 ms\) passed", 3, "back on probation")
    for s in hung:
        s.settimeout(5 * SCALE)
        check(s.recv(4096).startswith(b"HTTP/1.1 504"), "a hung request's 504")
        s.close()
    time.sleep(0.3)  # the health thread samples every 100 ms
    check("failed again" not in f.stderr(), f"old requests took it down: {f.stderr()[-600:]}")
    m, _, _ = roundtrip(port, get("/ok"), wait_close=0)
    check(m.status == 200, f"after the old requests ended: {m!r}")
