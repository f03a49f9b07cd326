"""PROXY protocol (SPEC §7): listeners with proxy_protocol = accept take the
client address from a v1 or v2 header; servers with proxy_protocol=v1|v2 get
one before the first byte."""

import ipaddress
import socket
import struct
import threading
import time

from harness import (SCALE, check, closed_by_peer, connect, free_port, ini, read_lines,
                     recv_exact, wait_for)

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst, sport, dport, command=1, tlv=b""):
    if ":" in src:
        fam, addrs = 0x21, (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed)
    else:
        fam, addrs = 0x11, (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed)
    body = addrs + struct.pack("!HH", sport, dport) + tlv
    if command == 0:
        fam, body = 0x00, b""
    return V2_SIG + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def conf(port, servers, log, mode="tcp", listener=None, pool=None):
    g = {"workers": 1, "admin": "", "access_log": log, "log_level": "info"}
    p = {"balance": "roundrobin", "check": "none", "connect_timeout": "1s", "server": servers}
    p.update(pool or {})
    l = {"bind": f"127.0.0.1:{port}", "mode": mode, "pool": "p", "proxy_protocol": "accept"}
    l.update(listener or {})
    return ini(("global", g), ("pool p", p), ("listener l", l))


def log_clients(path, n):
    """The CLIENT field of the first N access-log lines, once there are N."""
    lines = wait_for(lambda: (lambda ls: ls if len(ls) >= n else None)(read_lines(path)),
                     3 * SCALE, what=f"{n} access-log lines")
    return [ln.split(" ")[1] for ln in lines[:n]], lines


def roundtrip(port, header, payload=b"hello through\n"):
    """Sends HEADER and PAYLOAD in one write; returns our address and whether
    the echo came back exactly (the header must not reach the server)."""
    s = connect(("127.0.0.1", port))
    me = "%s:%d" % s.getsockname()[:2]
    s.sendall(header + payload)
    ok = recv_exact(s, len(payload)) == payload
    s.close()
    return me, ok


class PPBackend:
    """Reads the PROXY header every connection must start with, records it
    as (version, src, sport, dst, dport) (None for a missing or bad one),
    then echoes (mode echo) or answers HTTP requests with 200 (mode http)."""

    def __init__(self, mode="echo"):
        self.mode = mode
        self.headers = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def server_line(self, name, opts=""):
        return f"{name} 127.0.0.1:{self.port} {opts}".rstrip()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(30 * SCALE)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _read_header(self, c):
        first = b""
        while len(first) < 16 and not first.endswith(b"\r\n"):
            b = c.recv(16 - len(first))
            if not b:
                raise ConnectionError("closed before a whole header")
            first += b
        if first.startswith(V2_SIG):
            ln = struct.unpack("!H", first[14:16])[0]
            rest = recv_exact(c, ln)
            if first[12] != 0x21 or first[13] not in (0x11, 0x21):
                return ("v2-other", first[12], first[13]), b""
            n = 4 if first[13] == 0x11 else 16
            src = str(ipaddress.ip_address(rest[:n]))
            dst = str(ipaddress.ip_address(rest[n:2 * n]))
            sport, dport = struct.unpack("!HH", rest[2 * n:2 * n + 4])
            return ("v2", src, sport, dst, dport), b""
        line = bytearray(first)
        while b"\r\n" not in line:
            line += c.recv(1)
        head, extra = bytes(line).split(b"\r\n", 1)
        parts = head.decode().split(" ")
        if parts[0] != "PROXY" or len(parts) != 6:
            return (None, head), extra
        return ("v1", parts[2], int(parts[4]), parts[3], int(parts[5])), extra

    def _serve(self, c):
        try:
            hdr, extra = self._read_header(c)
            with self.lock:
                self.headers.append(hdr)
            if self.mode == "echo":
                if extra:
                    c.sendall(extra)
                while True:
                    b = c.recv(65536)
                    if not b:
                        c.shutdown(socket.SHUT_WR)
                        return
                    c.sendall(b)
            buf = bytearray(extra)
            while True:
                while b"\r\n\r\n" not in buf:
                    b = c.recv(65536)
                    if not b:
                        return
                    buf += b
                _, buf = bytes(buf).split(b"\r\n\r\n", 1)
                buf = bytearray(buf)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        except Exception:  # noqa: BLE001 - a broken test connection ends it
            pass
        finally:
            c.close()

    def close(self):
        self.closed = True
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def pp_backend(ctx, mode="echo"):
    b = PPBackend(mode)
    ctx.backends.append(b)
    return b


# ---------------------------------------------------------------- tests ----


def test_v1_and_v2_accepted_tcp(ctx):
    b = ctx.backend("echo")
    port, log = free_port(), ctx.path("access.log")
    ctx.fulcrum(conf(port, [b.server_line()], log))
    cases = [
        (v1("203.0.113.9", "192.0.2.1", 5555, 80), "203.0.113.9:5555"),
        (v1("2001:db8::7", "2001:db8::1", 6000, 443), "[2001:db8::7]:6000"),
        (v2("198.51.100.20", "192.0.2.1", 40000, 80), "198.51.100.20:40000"),
        (v2("2001:db8::9", "::1", 1, 2), "[2001:db8::9]:1"),
        (v2("198.51.100.21", "192.0.2.1", 7, 8, tlv=b"\x04\x00\x02xy"), "198.51.100.21:7"),
    ]
    for header, _ in cases:
        _, ok = roundtrip(port, header)
        check(ok, f"echo through a {header[:12]!r}... header is wrong")
    clients, lines = log_clients(log, len(cases))
    # A line is written when its connection closes, and closes can finish
    # in any order: compare as sets.
    check(sorted(clients) == sorted(want for _, want in cases), f"clients in the log {clients}")
    check(all(ln.rstrip().endswith(" -") for ln in lines), f"reasons {lines}")


def test_unknown_and_local_keep_peer(ctx):
    b = ctx.backend("echo")
    port, log = free_port(), ctx.path("access.log")
    ctx.fulcrum(conf(port, [b.server_line()], log))
    me1, ok1 = roundtrip(port, b"PROXY UNKNOWN\r\n")
    me2, ok2 = roundtrip(port, b"PROXY UNKNOWN 1.1.1.1 2.2.2.2 3 4\r\n")
    me3, ok3 = roundtrip(port, v2("1.2.3.4", "5.6.7.8", 1, 2, command=0))
    check(ok1 and ok2 and ok3, "echo after UNKNOWN/LOCAL")
    clients, _ = log_clients(log, 3)
    check(sorted(clients) == sorted([me1, me2, me3]),
          f"clients {clients}, want the real peers {[me1, me2, me3]}")


def test_missing_or_bad_header_closed(ctx):
    b = ctx.backend("echo")
    port, log = free_port(), ctx.path("access.log")
    f = ctx.fulcrum(conf(port, [b.server_line()], log))
    bad = [b"hello\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
           b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
           b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", b"PROXY " + b"x" * 120,
           V2_SIG + b"\x11\x11\x00\x0c" + b"\x00" * 12, V2_SIG + b"\x21\x11\x00\x04\x00\x00\x00\x00"]
    for data in bad:
        s = connect(("127.0.0.1", port))
        s.sendall(data)
        check(closed_by_peer(s, 2 * SCALE) is not None, f"not closed after {data[:40]!r}")
        s.close()
    # closing early, before a whole header
    s = connect(("127.0.0.1", port))
    s.sendall(b"PROXY TCP4 1.2")
    s.shutdown(socket.SHUT_WR)
    check(closed_by_peer(s, 2 * SCALE) is not None, "not closed after a partial header and FIN")
    s.close()
    _, lines = log_clients(log, len(bad) + 1)
    check(all(ln.split(" ")[-1] == "proxy_protocol" for ln in lines), f"reasons {lines}")
    check(b.accepted == 0, f"the server got {b.accepted} connections")
    check("PROXY" in f.stderr(), "no logged reason in the error log")


def test_connection_without_a_byte_is_no_header_error(ctx):
    """A port probe (a load balancer's tcp check) on an accepting listener,
    tcp or http, sends nothing and closes or resets: logged like any client
    that left without a byte (`client_closed`, `client_reset`), not as a
    PROXY protocol error."""
    b = ctx.backend("echo")
    for mode in ("tcp", "http"):
        port, log = free_port(), ctx.path(f"access-{mode}.log")
        f = ctx.fulcrum(conf(port, [b.server_line()], log, mode=mode))
        s = connect(("127.0.0.1", port))
        time.sleep(0.05)
        s.close()
        s = connect(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.05)
        s.close()  # a reset
        _, lines = log_clients(log, 2)
        check(lines[0].endswith(" client_closed") and lines[1].endswith(" client_reset"),
              f"{mode}: {lines}")
        check("PROXY" not in f.stderr(), f"{mode}: a PROXY error for a probe: {f.stderr()}")
    check(b.accepted == 0, f"the server got {b.accepted} connections")


def test_header_in_pieces_and_payload_kept(ctx):
    b = ctx.backend("echo")
    port, log = free_port(), ctx.path("access.log")
    ctx.fulcrum(conf(port, [b.server_line()], log))
    for header in (v1("203.0.113.50", "192.0.2.1", 1234, 80),
                   v2("203.0.113.51", "192.0.2.1", 1235, 80)):
        s = connect(("127.0.0.1", port))
        for i in range(len(header)):
            s.sendall(header[i:i + 1])
            time.sleep(0.003)
        s.sendall(b"after\n")
        check(recv_exact(s, 6) == b"after\n", "payload after a header sent in pieces")
        s.close()
    # header and a large payload in one write: nothing past the header is eaten
    s = connect(("127.0.0.1", port))
    payload = bytes(range(256)) * 512
    s.sendall(v1("203.0.113.52", "192.0.2.1", 1236, 80) + payload)
    check(recv_exact(s, len(payload)) == payload, "payload in the header's segment")
    s.close()
    clients, _ = log_clients(log, 3)
    check(sorted(clients) == ["203.0.113.50:1234", "203.0.113.51:1235", "203.0.113.52:1236"],
          f"clients {clients}")


def test_header_timeout(ctx):
    b = ctx.backend("echo")
    port, log = free_port(), ctx.path("access.log")
    ctx.fulcrum(conf(port, [b.server_line()], log, listener={"request_timeout": "300ms"}))
    s = connect(("127.0.0.1", port))
    s.sendall(b"PROXY TCP4 ")
    t = closed_by_peer(s, 3 * SCALE)
    check(t is not None and 0.2 <= t <= 1.5 * SCALE, f"closed after {t}s (request_timeout 300ms)")
    s.close()
    s = connect(("127.0.0.1", port))  # nothing at all
    t = closed_by_peer(s, 3 * SCALE)
    check(t is not None and t <= 1.5 * SCALE, f"silent client closed after {t}s")
    s.close()
    check(b.accepted == 0, "the server got a connection")


def test_http_listener(ctx):
    srv = pp_backend(ctx, "http")
    port, log = free_port(), ctx.path("access.log")
    f = ctx.fulcrum(conf(port, [srv.server_line("h1")], log, mode="http",
                         pool={"keepalive": 0}))
    # the server here takes no PROXY header: it records the first line as "bad"
    s = connect(("127.0.0.1", port))
    s.sendall(v1("203.0.113.77", "192.0.2.1", 999, 80) +
              b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while got.count(b"ok\n") < 2:
        chunk = s.recv(65536)
        check(chunk, f"connection closed after {got!r}")
        got += chunk
    check(got.startswith(b"HTTP/1.1 200"), f"answer {got[:80]!r}")
    s.close()
    clients, lines = log_clients(log, 2)
    check(clients == ["203.0.113.77:999"] * 2, f"clients {clients}: {lines}")
    with srv.lock:
        first = [h[1] for h in srv.headers]
    check(all(x.startswith(b"GET /") for x in first), f"request lines {first}")
    check(f.alive(), "fulcrum died")


def _sending_tier(ctx, version, bind, accept=False):
    """fulcrum with a tcp listener on BIND in front of a server that wants a
    VERSION header; the listener takes one too when ACCEPT. (fulcrum, server)."""
    srv = pp_backend(ctx)
    l = {"bind": bind, "mode": "tcp", "pool": "p"}
    if accept:
        l["proxy_protocol"] = "accept"
    f = ctx.fulcrum(ini(("global", {"workers": 1, "admin": "", "access_log": "off"}),
                        ("pool p", {"check": "none",
                                    "server": srv.server_line("s1", f"proxy_protocol={version}")}),
                        ("listener l", l)))
    return f, srv


def _header_sent_on(srv, s, first):
    """Sends FIRST and a payload on S, the client's connected socket, and
    returns the one header SRV got for it."""
    s.sendall(first + b"tiers\n")
    check(recv_exact(s, 6) == b"tiers\n", f"the payload after {first[:16]!r}")
    s.close()
    wait_for(lambda: srv.headers, 3 * SCALE, what="a header at the server")
    check(len(srv.headers) == 1, f"headers {srv.headers}")
    return srv.headers.pop()


def test_server_proxy_protocol(ctx):
    for version in ("v1", "v2"):
        port = free_port()
        f, srv = _sending_tier(ctx, version, f"127.0.0.1:{port}")
        s = connect(("127.0.0.1", port))
        me = s.getsockname()
        got = _header_sent_on(srv, s, b"")
        check(got == (version, "127.0.0.1", me[1], "127.0.0.1", port),
              f"{version}: header {got}, want client {me} to port {port}")
        f.stop()


def test_address_carried_through_tiers(ctx):
    """Both addresses of an accepted header go on unchanged, as HAProxy
    passes them: the server learns which address the client reached at
    the first tier, not fulcrum's own. UNKNOWN and LOCAL keep the real
    connection's addresses, and those go on."""
    for version in ("v1", "v2"):
        port = free_port()
        f, srv = _sending_tier(ctx, version, f"127.0.0.1:{port}", accept=True)
        for src, dst in (("198.51.100.7", "192.0.2.10"), ("2001:db8::7", "2001:db8::10")):
            for make in (v1, v2):
                got = _header_sent_on(srv, connect(("127.0.0.1", port)),
                                      make(src, dst, 4444, 443))
                check(got == (version, src, 4444, dst, 443),
                      f"{make.__name__} in, {version} out: header {got}")
        for hdr in (b"PROXY UNKNOWN\r\n", v2("1.2.3.4", "5.6.7.8", 1, 2, command=0)):
            s = connect(("127.0.0.1", port))
            me = s.getsockname()
            got = _header_sent_on(srv, s, hdr)
            check(got == (version, "127.0.0.1", me[1], "127.0.0.1", port),
                  f"after {hdr[:14]!r}, {version} out: header {got}")
        f.stop()


def test_address_carried_from_a_unix_socket_listener(ctx):
    """A PROXY header accepted on a unix-socket listener: the addresses
    it gave still go on to the server."""
    for version in ("v1", "v2"):
        path = ctx.path(f"l-{version}.sock")
        f, srv = _sending_tier(ctx, version, f"unix:{path}", accept=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3 * SCALE)
        s.connect(path)
        got = _header_sent_on(srv, s, v1("198.51.100.7", "192.0.2.10", 4444, 443))
        check(got == (version, "198.51.100.7", 4444, "192.0.2.10", 443),
              f"{version}: header {got}")
        f.stop()


def test_server_proxy_protocol_http_not_pooled(ctx):
    srv = pp_backend(ctx, "http")
    port = free_port()
    f = ctx.fulcrum(ini(("global", {"workers": 1, "admin": "", "access_log": "off"}),
                        ("pool p", {"check": "none", "keepalive": 32,
                                    "server": srv.server_line("s1", "proxy_protocol=v1")}),
                        ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http",
                                        "pool": "p"})))
    clients = []
    for _ in range(2):
        s = connect(("127.0.0.1", port))
        clients.append(s.getsockname()[1])
        for path in ("/1", "/2"):
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = b""
            while not got.endswith(b"ok\n"):
                chunk = s.recv(4096)
                check(chunk, "connection closed")
                got += chunk
        s.close()
    wait_for(lambda: len(srv.headers) >= 4, 3 * SCALE, what="4 server connections")
    time.sleep(0.1)
    check([h[0] for h in srv.headers] == ["v1"] * 4, f"headers {srv.headers}")
    check([h[2] for h in srv.headers] == [clients[0]] * 2 + [clients[1]] * 2,
          f"client ports {[h[2] for h in srv.headers]}, want {clients}")
    f.check_fds_settled()


def test_health_checks_send_a_header_of_their_own(ctx):
    """A server that expects PROXY headers gets one on every check connection
    too (v1 UNKNOWN, v2 LOCAL: the check speaks for no client), so the
    header it requires never fails its checks (tcp and http checks)."""
    want = {"v1": (None, b"PROXY UNKNOWN"), "v2": ("v2-other", 0x20, 0x00)}
    for kind in ("tcp", "http GET /health"):
        for version in ("v1", "v2"):
            srv = pp_backend(ctx, "http")
            port = free_port()
            f = ctx.fulcrum(ini(("global", {"workers": 1, "admin": "", "access_log": "off"}),
                                ("pool p", {"check": kind, "check_interval": "100ms",
                                            "server": srv.server_line("s1", f"proxy_protocol={version}")}),
                                ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http",
                                                "pool": "p"})))
            wait_for(lambda: len(srv.headers) >= 2, 3 * SCALE, what="two checks at the server")
            with srv.lock:
                got = list(srv.headers[:2])
            check(got == [want[version]] * 2, f"{kind}, {version}: check connections began with {got}")
            f.stop()
