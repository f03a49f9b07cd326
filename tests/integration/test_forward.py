"""forward mode (SPEC §2 forward keys, §3 "forward mode"): absolute-form
requests sent in origin-form with Via and without the proxy's own fields,
CONNECT tunnels (TLS through curl, raw bytes, half-close, IPv6), keep-alive
across origins and pooled origin connections, connect_ports, allow/deny by
name, glob, CIDR and port (deny also applied to resolved addresses), Basic
proxy authentication with bcrypt and SHA crypt entries (and its reload),
502/504 for unreachable, unknown, silent and slow-to-resolve origins, and the
resolver's cache honouring TTLs.

Names other than localhost come from a fake DNS server on loopback, which
fulcrum is pointed at with FULCRUM_DNS_SERVERS.
"""

import base64
import ctypes
import json
import os
import select
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request

from harness import (SCALE, Skip, check, closed_port, connect, cpu_ticks, free_port, has_ipv6, ini,
                     read_lines, wait_for)
from test_http import (Message, Reader, access_lines, cbackend, client, close_backends_first, expect_error,
                       ok_handler, parse_head, pyserver, read_request, read_response, wait_closed)

# ------------------------------------------------------------ helpers ----


def fwd_conf(port, listener=None, glob=None):
    g = {"workers": 1, "admin": "", "access_log": "off", "log_level": "info"}
    g.update(glob or {})
    l = {"bind": f"127.0.0.1:{port}", "mode": "forward", "connect_timeout": "1s"}
    l.update(listener or {})
    return ini(("global", g), ("listener f", l))


def start(ctx, port, listener=None, glob=None, dns=None, env=None):
    """fulcrum with one forward listener; DNS: a FakeDNS it resolves with;
    ENV: more environment variables for it."""
    env = dict(env or {})
    if dns is not None:
        env["FULCRUM_DNS_SERVERS"] = dns.addr
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return ctx.fulcrum(fwd_conf(port, listener, glob))
    finally:
        for k, v in old.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v


def proxy_get(url, host=None, headers=(), method="GET", version="HTTP/1.1"):
    """An absolute-form request for URL."""
    if host is None:
        host = url.split("/")[2]
    lines = [f"{method} {url} {version}", f"Host: {host}"] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ask(port, data, method="GET"):
    """One request on a new connection: (response, closed afterwards)."""
    r = client(port)
    try:
        r.send(data)
        m = read_response(r, method)
        if m.status < 400 and "close" not in m.tokens("connection"):
            return m, False
        closed, _ = wait_closed(r, 0.3 * SCALE)
        return m, closed
    finally:
        r.close()


def read_connect_response(r):
    """The answer to a CONNECT: a 2xx head is followed by the tunnel, any
    other status by a body as usual."""
    head = r.until(b"\r\n\r\n")
    first, hdrs = parse_head(head)
    m = Message(first, hdrs, head=head)
    check(m.status is not None, f"not a status line: {first!r}")
    if not 200 <= m.status < 300 and m.get("content-length"):
        m.body = r.exact(int(m.get("content-length")))
    return m


def connect_via(port, target, headers=()):
    """Opens a CONNECT tunnel; returns (reader, response head Message)."""
    r = client(port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"] + list(headers)
    r.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    return r, read_connect_response(r)


def curl(*args):
    p = subprocess.run(["curl", "-s", "-S", "--max-time", str(int(10 * SCALE))] + list(args),
                       capture_output=True, timeout=20 * SCALE)
    return p


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def headers_seen(m):
    """build/backend's /headers body: the request head it received, parsed."""
    text = m.body.decode("latin-1")
    lines = text.split("\r\n")
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], fields


# ---------------------------------------------------------- fake DNS ----


class FakeDNS:
    """A UDP DNS server on 127.0.0.1: A and AAAA records from RECORDS
    (name -> list of addresses, with TTL), NXDOMAIN for other names, no
    answer at all for names in DROP, and answers only after LATE[name]
    seconds for those. Counts the queries per name."""

    def __init__(self, records=None, ttl=60, drop=(), late=None, cnames=None):
        self.records = {k.lower(): v for k, v in (records or {}).items()}
        self.cnames = {k.lower(): v for k, v in (cnames or {}).items()}  # alias -> (target, ttl)
        self.ttl = ttl
        self.drop = {d.lower() for d in drop}
        self.late = {k.lower(): v for k, v in (late or {}).items()}
        self.queries = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def count(self, name):
        with self.lock:
            return self.queries.get(name.lower(), 0)

    def _loop(self):
        while not self.closed:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                out, delay = self._answer(data)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue
            if out and delay:
                threading.Timer(delay, self._send_late, (out, peer)).start()
            elif out:
                self.sock.sendto(out, peer)

    def _send_late(self, out, peer):
        try:
            self.sock.sendto(out, peer)
        except OSError:
            pass

    def _answer(self, q):
        qid, _flags, qd = struct.unpack("!HHH", q[:6])
        if qd != 1:
            return None, 0
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        qtype, _qclass = struct.unpack("!HH", q[i + 1:i + 5])
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        with self.lock:
            self.queries[name] = self.queries.get(name, 0) + 1
        if name in self.drop:
            return None, 0
        answers = []
        owner = struct.pack("!H", 0xC00C)  # the question's name
        if name in self.cnames:
            target, cttl = self.cnames[name]
            wire = b"".join(bytes([len(x)]) + x.encode() for x in target.split(".")) + b"\0"
            answers.append(owner + struct.pack("!HHIH", 5, 1, cttl, len(wire)) + wire)
            owner, name = wire, target.lower()
        if name in self.records:
            for a in self.records[name]:
                if qtype == 1 and ":" not in a:
                    answers.append(owner + struct.pack("!HHIH", 1, 1, self.ttl, 4) + socket.inet_aton(a))
                elif qtype == 28 and ":" in a:
                    answers.append(owner + struct.pack("!HHIH", 28, 1, self.ttl, 16)
                                   + socket.inet_pton(socket.AF_INET6, a))
            rcode = 0
        else:
            rcode = 3
        head = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(answers), 0, 0)
        return head + question + b"".join(answers), self.late.get(name, 0)

    def close(self):
        self.closed = True
        self.sock.close()


def fake_dns(ctx, **kw):
    d = FakeDNS(**kw)
    ctx.backends.append(d)
    return d


# ----------------------------------------------------------- servers ----


class TLSServer:
    """A loopback HTTPS server with a fresh self-signed certificate: answers
    every request with 'secret over tls' and closes."""

    def __init__(self, tmp):
        cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "1", "-subj", "/CN=localhost"], capture_output=True)
        if p.returncode != 0:
            raise Skip(f"openssl cannot make a certificate: {p.stderr[-300:]!r}")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.accepted = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(10 * SCALE)
            t = self.ctx.wrap_socket(c, server_side=True)
            r = Reader(t)
            read_request(r)
            body = b"secret over tls\n"
            t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            t.close()
        except (OSError, EOFError, ssl.SSLError):
            pass
        finally:
            c.close()

    def close(self):
        self.closed = True
        self.sock.close()


def silent_handler(r, srv):
    """Reads requests and never answers."""
    while read_request(r) is not None:
        pass


# -------------------------------------------------- absolute-form ----


def test_absolute_form_sent_in_origin_form_with_via(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    start(ctx, port)
    m, closed = ask(port, proxy_get(f"http://127.0.0.1:{b.port}/headers?x=1", host="wrong.example",
                                    headers=["Proxy-Authorization: Basic dTpw", "Proxy-Connection: keep-alive",
                                             "Connection: keep-alive, X-Hop", "X-Hop: 1", "X-Keep: 2"]))
    check(m.status == 200 and not closed, f"absolute-form GET: {m!r}")
    check(m.get("x-server") == "b1", f"not answered by the backend: {m!r}")
    check("1.1 fulcrum" in m.get("via", ""), f"no Via on the response: {m!r}")
    line, f = headers_seen(m)
    check(line == "GET /headers?x=1 HTTP/1.1", f"request line at the origin: {line!r}")
    check(f.get("host") == [f"127.0.0.1:{b.port}"], f"Host at the origin: {f.get('host')}")
    check(f.get("via") == ["1.1 fulcrum"], f"Via at the origin: {f.get('via')}")
    check(f.get("x-keep") == ["2"], f"an end-to-end field was lost: {f}")
    for gone in ("proxy-authorization", "proxy-connection", "x-hop", "x-forwarded-for",
                 "x-forwarded-proto", "x-forwarded-host"):
        check(gone not in f, f"{gone} reached the origin: {f}")
    # Earlier hops and this one in one field, in order (RFC 9110 §7.6.3).
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{b.port}/headers",
                               headers=["Via: 1.0 first", "Via: 1.1 second"]))
    _, f = headers_seen(m)
    check(f.get("via") == ["1.0 first, 1.1 second, 1.1 fulcrum"], f"Via at the origin: {f.get('via')}")
    # Named by Connection, the client's Via is hop-by-hop: it ends here.
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{b.port}/headers",
                               headers=["Via: 1.0 first", "Connection: Via"]))
    _, f = headers_seen(m)
    check(f.get("via") == ["1.1 fulcrum"], f"Via named by Connection went on: {f.get('via')}")


def test_curl_through_the_proxy(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    start(ctx, port)
    p = curl("-i", "-x", f"http://127.0.0.1:{port}", f"http://127.0.0.1:{b.port}/headers")
    check(p.returncode == 0, f"curl failed: {p.stderr!r}")
    out = p.stdout.decode("latin-1")
    check(out.startswith("HTTP/1.1 200"), f"curl got {out[:300]!r}")
    check("GET /headers HTTP/1.1\r\n" in out and "Via: 1.1 fulcrum\r\n" in out, f"origin saw: {out!r}")
    check("Proxy-Connection" not in out.split("\r\n\r\n", 1)[1], f"Proxy-Connection forwarded: {out!r}")


def test_empty_path_and_options(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    start(ctx, port)
    r = client(port)
    r.send(proxy_get(f"http://127.0.0.1:{srv.port}"))
    check(read_response(r).status == 200, "GET with an empty path")
    r.send(proxy_get(f"http://127.0.0.1:{srv.port}?q=1", host=f"127.0.0.1:{srv.port}"))
    check(read_response(r).status == 200, "GET with only a query")
    r.send(proxy_get(f"http://127.0.0.1:{srv.port}", method="OPTIONS"))
    check(read_response(r).status == 200, "OPTIONS with an empty path")
    r.close()
    firsts = [h.split(b"\r\n", 1)[0] for h in srv.heads]
    check(firsts == [b"GET / HTTP/1.1", b"GET /?q=1 HTTP/1.1", b"OPTIONS * HTTP/1.1"],
          f"request lines at the origin: {firsts}")


def test_forwarded_headers_on(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    start(ctx, port, listener={"forwarded_headers": "on"})
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{b.port}/headers"))
    _, f = headers_seen(m)
    check(f.get("x-forwarded-for") == ["127.0.0.1"], f"X-Forwarded-For with forwarded_headers = on: {f}")


def test_origin_form_and_bad_targets_get_400(ctx):
    port = free_port()
    start(ctx, port)
    m, closed = ask(port, b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n")
    expect_error(m, closed, 400, what="origin-form on a forward listener")
    # Numeric hosts that are not plain dotted quads are addresses to curl
    # and inet_aton (0177 octal, 127.1, 2130706433), read otherwise by
    # c-ares, and no DNS name: refused, never guessed at.
    for target in ("https://example.com/", "ftp://example.com/", "http://exa%41mple.com/", "http://a..b/",
                   "http://0177.0.0.1/", "http://127.0.0.01/", "http://127.1/", "http://2130706433/"):
        m, closed = ask(port, proxy_get(target, host="example.com"))
        expect_error(m, closed, 400, what=target)
    r, m = connect_via(port, "0177.0.0.1:443")
    check(m.status == 400, f"CONNECT to 0177.0.0.1: {m!r}")
    r.close()


def test_request_body_is_forwarded(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    start(ctx, port)
    body = os.urandom(200000)
    r = client(port)
    r.send(proxy_get(f"http://127.0.0.1:{b.port}/echo", method="POST",
                     headers=[f"Content-Length: {len(body)}"]) + body)
    m = read_response(r, "POST")
    check(m.status == 200 and m.body == body, f"POST body through the proxy: {m.status}, {len(m.body)} bytes")
    r.close()


# -------------------------------------------- keep-alive and pooling ----


def test_keepalive_across_origins_and_pooling(ctx):
    a = pyserver(ctx, ok_handler(body=b"from a"), name="a")
    b = pyserver(ctx, ok_handler(body=b"from b"), name="b")
    port = free_port()
    log = ctx.path("access.log")
    f = start(ctx, port, glob={"access_log": log})
    r = client(port)
    for i in range(20):
        srv = a if i % 2 == 0 else b
        r.send(proxy_get(f"http://127.0.0.1:{srv.port}/{i}"))
        m = read_response(r)
        check(m.status == 200 and m.body == b"from " + srv.name.encode(), f"request {i}: {m!r}")
    r.close()
    check(a.accepted == 1 and b.accepted == 1,
          f"20 requests to two origins opened {a.accepted} + {b.accepted} origin connections")
    lines = access_lines(log, 20)
    check(len({l.split(" ")[1] for l in lines}) == 1, f"not one client connection: {lines[:3]}")
    # new client connections reuse the pooled origin connections
    for i in range(5):
        m, _ = ask(port, proxy_get(f"http://127.0.0.1:{a.port}/new{i}"))
        check(m.status == 200, f"new client {i}: {m!r}")
    check(a.accepted == 1, f"new clients opened {a.accepted} connections to a pooled origin")
    # A reload leaves the origin pool alone (origins are in no pool it drops).
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), 5 * SCALE, what="the reload")
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{a.port}/after-reload"))
    check(m.status == 200 and a.accepted == 1,
          f"after a reload: {m.status}, {a.accepted} connections to the pooled origin")


def test_localhost_resolves_and_pools(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    start(ctx, port)
    r = client(port)
    for i in range(5):
        r.send(proxy_get(f"http://localhost:{srv.port}/{i}"))
        m = read_response(r)
        check(m.status == 200 and m.body == b"ok", f"request {i} to localhost: {m!r}")
    r.close()
    check(srv.accepted == 1, f"5 requests to localhost opened {srv.accepted} connections")
    check(f"\r\nHost: localhost:{srv.port}\r\n".encode() in srv.heads[0], f"Host at the origin: {srv.heads[0]!r}")


# --------------------------------------------------------- CONNECT ----


def test_connect_tls_with_curl(ctx):
    tls = TLSServer(ctx.tmp)
    ctx.backends.append(tls)
    port = free_port()
    log = ctx.path("access.log")
    start(ctx, port, listener={"connect_ports": f"443, {tls.port}"}, glob={"access_log": log})
    p = curl("-k", "-p", "-x", f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls.port}/")
    check(p.returncode == 0, f"curl through a CONNECT tunnel failed: {p.stderr!r}")
    check(p.stdout == b"secret over tls\n", f"curl got {p.stdout!r}")
    p = curl("-k", "-x", f"http://127.0.0.1:{port}", f"https://localhost:{tls.port}/")
    check(p.returncode == 0 and p.stdout == b"secret over tls\n", f"https to localhost: {p.stderr!r} {p.stdout!r}")
    lines = access_lines(log, 2)
    check(all('"CONNECT ' in l and " 200 " in l for l in lines), f"access log: {lines}")


def test_connect_raw_tunnel_halfclose_and_log(ctx):
    echo = ctx.backend("echo")
    port = free_port()
    log = ctx.path("access.log")
    start(ctx, port, listener={"connect_ports": "*"}, glob={"access_log": log})
    r, m = connect_via(port, f"127.0.0.1:{echo.port}")
    check(m.status == 200, f"CONNECT: {m!r}")
    check(m.first.startswith("HTTP/1.1 200 Connection Established"), f"status line: {m.first!r}")
    s = r.s
    data = os.urandom(3 << 20)
    got = bytearray()

    def reader():
        while True:
            b = s.recv(262144)
            if not b:
                return
            got.extend(b)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)  # the echo server sees EOF, shuts down its side
    t.join(20 * SCALE)
    check(not t.is_alive(), "the tunnel did not end after both sides closed")
    check(bytes(got) == data, f"echo through the tunnel: {len(got)} of {len(data)} bytes")
    s.close()
    lines = access_lines(log, 1)
    check(len(lines) == 1, f"one log line per tunnel: {lines}")
    fields = lines[0].split(" ")
    check('"CONNECT' in lines[0] and " 200 " in lines[0], f"log line: {lines[0]}")
    check(any(int(x) >= len(data) for x in fields if x.isdigit()), f"tunnel bytes not counted: {lines[0]}")


def test_a_refused_connect_logs_its_early_bytes_in_its_own_line(ctx):
    """What a client sends optimistically behind a CONNECT (a TLS hello) is
    meant for the tunnel, not a request: when the CONNECT is refused (403)
    or its origin cannot be reached (502), the connection has one log line,
    the CONNECT's, and its BYTES_IN counts those bytes too, whether they
    came with the head or while the connect was pending."""
    hole = ctx.blackhole()
    port = free_port()
    log = ctx.path("access.log")
    start(ctx, port, listener={"connect_ports": "1-65000", "connect_timeout": "500ms"},
          glob={"access_log": log})
    hello = b"\x16\x03\x01\x00\x50" + b"\x01" * 0x50
    cases = ((closed_port(), 502, False), (65001, 403, False), (hole.port, 502, True))
    for i, (target, status, trickled) in enumerate(cases):
        head = f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nHost: 127.0.0.1:{target}\r\n\r\n".encode()
        s = connect(("127.0.0.1", port))
        s.sendall(head if trickled else head + hello)
        if trickled:  # while the connect to the blackhole is pending
            for k in range(0, len(hello), 30):
                time.sleep(0.05)
                s.sendall(hello[k:k + 30])
        m = read_connect_response(Reader(s))
        check(m.status == status, f"CONNECT 127.0.0.1:{target}: {m!r}")
        s.close()
        access_lines(log, i + 1)
        time.sleep(0.3 * SCALE)  # a second line would come with the close
        lines = read_lines(log)
        check(len(lines) == i + 1, f"one line per refused CONNECT: {lines[i:]}")
        fields = lines[i].split(" ")
        check(f'"CONNECT 127.0.0.1:{target}' in lines[i] and fields[7] == str(status)
              and fields[8] == str(len(head) + len(hello)),
              f"BYTES_IN should be {len(head)} + {len(hello)}: {lines[i]}")
    # A CONNECT with a body is refused (400): the body counts once.
    s = connect(("127.0.0.1", port))
    head = b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nContent-Length: 5\r\n\r\n"
    s.sendall(head + b"hello")
    m = read_connect_response(Reader(s))
    check(m.status == 400, f"CONNECT with a body: {m!r}")
    s.close()
    lines = access_lines(log, len(cases) + 1)
    check(lines[-1].split(" ")[8] == str(len(head) + 5), f"CONNECT with a body: {lines[-1]}")


def test_connect_early_data_and_server_first(ctx):
    """Bytes sent right behind the CONNECT head reach the origin; an origin
    that speaks first and closes is relayed with its EOF."""
    echo = ctx.backend("echo")
    greet = ctx.backend("shut_first", greeting=b"hello first\n")
    port = free_port()
    start(ctx, port, listener={"connect_ports": "*"})
    s = connect(("127.0.0.1", port))
    s.sendall(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\nearly bytes".encode())
    r = Reader(s)
    m = read_connect_response(r)
    check(m.status == 200, f"CONNECT: {m!r}")
    check(r.exact(11) == b"early bytes", "bytes pipelined behind CONNECT were lost")
    s.close()
    r, m = connect_via(port, f"127.0.0.1:{greet.port}")
    check(m.status == 200, f"CONNECT to a server that speaks first: {m!r}")
    check(r.to_eof() == b"hello first\n", "greeting and EOF not relayed")
    r.send(b"bye")
    r.s.shutdown(socket.SHUT_WR)
    wait_for(lambda: greet.received == [b"bye"], 3 * SCALE, what="the origin to get the client's bytes and EOF")
    r.close()


def test_connect_ipv6_literal_and_name(ctx):
    if not has_ipv6():
        raise Skip("no IPv6 loopback")
    echo = ctx.backend("echo", host="::1")
    dns = fake_dns(ctx, records={"six.fwd.test": ["::1"]})
    port = free_port()
    start(ctx, port, listener={"connect_ports": "*"}, dns=dns)
    for target in (f"[::1]:{echo.port}", f"six.fwd.test:{echo.port}"):
        r, m = connect_via(port, target)
        check(m.status == 200, f"CONNECT {target}: {m!r}")
        r.send(b"v6 ping")
        check(r.exact(7) == b"v6 ping", f"echo over {target}")
        r.close()


def test_connect_ports(ctx):
    echo = ctx.backend("echo")
    port = free_port()
    f = start(ctx, port)  # default: 443 only
    r = client(port)
    r.send(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + b"\x16\x03\x01hello")
    m = read_connect_response(r)
    check(m.status == 403, f"CONNECT to a port not in connect_ports: {m!r}")
    # The bytes sent behind the CONNECT are no request: the refusal closes.
    closed, extra = wait_closed(r, 2 * SCALE)
    check("close" in m.tokens("connection") and closed and not extra,
          f"after a refused CONNECT: {m!r}, closed={closed}, then {extra!r}")
    r.close()
    lo, hi = echo.port - 1, echo.port + 1
    with open(f.conf_path, "w") as fh:
        fh.write(fwd_conf(port, {"connect_ports": f"443, {lo}-{hi}"}))
    f.signal(__import__("signal").SIGHUP)

    def allowed():
        rr, mm = connect_via(port, f"127.0.0.1:{echo.port}")
        rr.close()
        return mm.status == 200

    wait_for(allowed, 3 * SCALE, interval=0.05, what="connect_ports range after the reload")
    r, m = connect_via(port, f"127.0.0.1:{hi + 1}")
    check(m.status == 403, f"CONNECT just past the range: {m!r}")
    r.close()
    # connect_ports limits CONNECT only; absolute-form requests go to any port
    srv = pyserver(ctx, ok_handler())
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{srv.port}/"))
    check(m.status == 200, f"GET to a port outside connect_ports: {m!r}")


# -------------------------------------------------------------- ACL ----


def test_acl_names_globs_cidr_ports(ctx):
    srv = pyserver(ctx, ok_handler())
    p = srv.port
    dns = fake_dns(ctx, records={n: ["127.0.0.1"] for n in (
        "www.fwd.test", "a.b.fwd.test", "fwd.test", "secret.fwd.test", "other.test", "exact.test")})
    port = free_port()
    start(ctx, port, dns=dns, listener={
        "allow": ["*.fwd.test", f"exact.test:{p}", f"127.0.0.0/8:{p}-{p + 1}", f"[::1]:{p}"],
        "deny": ["secret.fwd.test", "*.fwd.test:1-1000"],
    })
    cases = [
        (f"http://www.fwd.test:{p}/", 200),
        (f"http://a.b.fwd.test:{p}/", 200),  # any depth
        (f"http://WWW.Fwd.Test:{p}/", 200),  # case-insensitive
        (f"http://fwd.test:{p}/", 403),  # the glob does not cover the bare domain
        (f"http://secret.fwd.test:{p}/", 403),  # deny wins
        (f"http://other.test:{p}/", 403),  # not allowed
        (f"http://exact.test:{p}/", 200),
        (f"http://exact.test:{p + 2}/", 403),  # port outside the allow pattern
        (f"http://127.0.0.1:{p}/", 200),  # CIDR with a port range
        (f"http://127.0.0.1:{p + 2}/", 403),
        ("http://www.fwd.test:80/", 403),  # the deny port range
    ]
    for url, want in cases:
        m, closed = ask(port, proxy_get(url))
        check(m.status == want, f"{url}: {m.status}, want {want}")
        if want == 403:
            expect_error(m, closed, 403, what=url)
    r, m = connect_via(port, f"www.fwd.test:{p}")
    check(m.status == 403, f"CONNECT to a port outside the default connect_ports: {m!r}")
    r.close()
    check(dns.count("secret.fwd.test") == 0 and dns.count("other.test") == 0,
          "names refused by the ACL were looked up anyway")


def test_deny_applies_to_resolved_addresses(ctx):
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"intranet.fwd.test": ["127.0.0.1"], "mixed.fwd.test": ["10.0.0.1", "127.0.0.1"],
                                 "public.fwd.test": ["192.0.2.1"]})
    port = free_port()
    # A short connect_timeout: public.fwd.test (192.0.2.1, TEST-NET-1) is
    # unroutable, so its try ends in a refusal or a timeout either way.
    start(ctx, port, dns=dns, listener={"allow": "*.fwd.test", "deny": ["10.0.0.0/8", "127.0.0.0/8"],
                                        "connect_ports": "*", "connect_timeout": "300ms"})
    for name in ("intranet", "mixed"):
        m, closed = ask(port, proxy_get(f"http://{name}.fwd.test:{srv.port}/"))
        expect_error(m, closed, 403, what=f"{name}.fwd.test resolving into a denied network")
        r, m = connect_via(port, f"{name}.fwd.test:{srv.port}")
        check(m.status == 403, f"CONNECT {name}.fwd.test: {m!r}")
        r.close()
    check(srv.accepted == 0, "a denied address was connected to")
    # The positive control: a name resolving outside the denied networks is
    # not refused; it is tried, and fails only because nothing answers there.
    m, closed = ask(port, proxy_get(f"http://public.fwd.test:{srv.port}/"))
    check(m.status in (502, 504), f"public.fwd.test (allowed address, unroutable): {m!r}, want 502 or 504")
    check(dns.count("public.fwd.test") >= 1, "public.fwd.test was never looked up")


def test_deny_localhost_after_resolution(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    start(ctx, port, listener={"deny": "127.0.0.0/8", "connect_ports": "*"})
    for url in (f"http://localhost:{srv.port}/", f"http://127.0.0.1:{srv.port}/",
                f"http://[::ffff:127.0.0.1]:{srv.port}/"):
        m, closed = ask(port, proxy_get(url))
        expect_error(m, closed, 403, what=url)
    r, m = connect_via(port, f"localhost:{srv.port}")
    check(m.status == 403, f"CONNECT localhost with 127.0.0.0/8 denied: {m!r}")
    r.close()
    check(srv.accepted == 0, "a denied address was connected to")


def test_deny_written_as_an_ipv4_mapped_address(ctx):
    """A deny pattern in the IPv4-mapped form stops the IPv4 address it
    carries, however the client spells the destination."""
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    start(ctx, port, listener={"deny": "[::ffff:127.0.0.0/104]", "connect_ports": "*"})
    for url in (f"http://127.0.0.1:{srv.port}/", f"http://[::ffff:127.0.0.1]:{srv.port}/",
                f"http://localhost:{srv.port}/"):
        m, closed = ask(port, proxy_get(url))
        expect_error(m, closed, 403, what=url)
    for dest in (f"[::ffff:127.0.0.1]:{srv.port}", f"127.0.0.1:{srv.port}"):
        r, m = connect_via(port, dest)
        check(m.status == 403, f"CONNECT {dest} with [::ffff:127.0.0.0/104] denied: {m!r}")
        r.close()
    check(srv.accepted == 0, "a denied address was connected to")


def test_bad_acl_pattern_is_a_config_error(ctx):
    from harness import run_fulcrum
    port = free_port()
    text = fwd_conf(port, {"allow": ["*.ok.test", "10.0.0.1/8"], "deny": "[::1"})
    path = ctx.write("bad.ini", text)
    rc, _, err = run_fulcrum(["-t", "-c", path])
    check(rc == 1, f"-t with bad patterns exited {rc}")
    lines = text.splitlines()
    for bad in ("10.0.0.1/8", "[::1"):
        n = next(i for i, l in enumerate(lines, 1) if bad in l)
        check(f"{path}:{n}:" in err, f"no {path}:{n}: error for {bad!r} in {err!r}")


# ------------------------------------------------------------- auth ----


_libcrypt = None


def crypt_hash(prefix, password, cost=None):
    """A crypt(3) hash of PASSWORD with method PREFIX, by libxcrypt."""
    global _libcrypt
    if _libcrypt is None:
        _libcrypt = ctypes.CDLL("libcrypt.so.1")
        _libcrypt.crypt_gensalt.restype = ctypes.c_char_p
        _libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
        _libcrypt.crypt.restype = ctypes.c_char_p
        _libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    if cost is None:
        cost = 5 if prefix.startswith("$2") else 0
    setting = _libcrypt.crypt_gensalt(prefix.encode(), cost, None, 0)
    return _libcrypt.crypt(password.encode(), setting).decode()


def test_basic_auth(ctx):
    b = cbackend(ctx, "b1")
    echo = ctx.backend("echo")
    htpasswd = ctx.write("htpasswd", "# users\n" + "".join(
        f"{u}:{crypt_hash(m, pw)}\n" for u, m, pw in (("sha256", "$5$", "pw5"), ("sha512", "$6$", "pw6"),
                                                        ("bcrypt", "$2y$", "pw2"))))
    check(":$2y$" in open(htpasswd).read(), "no $2y$ entry made")
    port = free_port()
    f = start(ctx, port, listener={"auth": f"basic {htpasswd}", "connect_ports": "*"})
    url = f"http://127.0.0.1:{b.port}/headers"
    m, closed = ask(port, proxy_get(url))
    expect_error(m, closed, 407, what="no credentials")
    check(not closed, "a 407 for missing credentials closed the connection")
    check(m.get("proxy-authenticate") == 'Basic realm="fulcrum"', f"Proxy-Authenticate: {m!r}")
    # Wrong credentials close the connection: guesses cannot be pipelined.
    for hdr in (basic("sha256", "wrong"), basic("nobody", "pw5"), "Bearer abc", "Basic !!!"):
        m, closed = ask(port, proxy_get(url, headers=[f"Proxy-Authorization: {hdr}"]))
        check(m.status == 407 and m.get("proxy-authenticate"), f"{hdr}: {m!r}")
        expect_error(m, closed, 407, must_close=True, what=f"wrong credentials {hdr}")
    # Proxy-Authorization takes one value (RFC 9110 §11.7.2): two fields are
    # refused whichever comes first, as nginx refuses a duplicate
    # Authorization, rather than letting the first decide.
    good, bad = basic("sha256", "pw5"), basic("sha256", "wrong")
    for pair in ((good, bad), (bad, good)):
        m, closed = ask(port, proxy_get(url, headers=[f"Proxy-Authorization: {v}" for v in pair]))
        expect_error(m, closed, 400, must_close=True, what=f"two Proxy-Authorization fields {pair}")
    r = client(port)
    for user, pw in (("sha256", "pw5"), ("sha512", "pw6"), ("bcrypt", "pw2"), ("bcrypt", "pw2")):
        r.send(proxy_get(url, headers=[f"Proxy-Authorization: {basic(user, pw)}"]))
        m = read_response(r)
        check(m.status == 200, f"{user} with the right password: {m!r}")
        _, fields = headers_seen(m)
        check("proxy-authorization" not in fields, f"credentials reached the origin: {fields}")
    r.close()
    p = curl("--proxy-user", "bcrypt:pw2", "-x", f"http://127.0.0.1:{port}", url)
    check(p.returncode == 0 and p.stdout.startswith(b"GET /headers"), f"curl --proxy-user: {p.stderr!r}")
    r, m = connect_via(port, f"127.0.0.1:{echo.port}")
    check(m.status == 407, f"CONNECT without credentials: {m!r}")
    r.close()
    r, m = connect_via(port, f"127.0.0.1:{echo.port}", [f"Proxy-Authorization: {basic('sha512', 'pw6')}"])
    check(m.status == 200, f"CONNECT with credentials: {m!r}")
    r.send(b"authed")
    check(r.exact(6) == b"authed", "tunnel after authentication")
    r.close()

    # the file is read again with the configuration
    with open(htpasswd, "w") as fh:
        fh.write(f"sha256:{crypt_hash('$5$', 'changed')}\n")
    f.signal(__import__("signal").SIGHUP)

    def changed():
        mm, _ = ask(port, proxy_get(url, headers=[f"Proxy-Authorization: {basic('sha256', 'changed')}"]))
        return mm.status == 200

    wait_for(changed, 3 * SCALE, interval=0.05, what="the new password after a reload")
    m, _ = ask(port, proxy_get(url, headers=[f"Proxy-Authorization: {basic('sha256', 'pw5')}"]))
    check(m.status == 407, f"the old password still works after the reload: {m!r}")
    m, _ = ask(port, proxy_get(url, headers=[f"Proxy-Authorization: {basic('bcrypt', 'pw2')}"]))
    check(m.status == 407, f"a removed user still works after the reload: {m!r}")


def test_cache_waiters_are_not_hashed_again(ctx):
    """Requests collapsed behind one cache fill look in the cache again
    every few milliseconds; their credentials were checked once and are
    not hashed again at each look (a long password is past the verdict
    cache, so each look would cost a hash on the one hasher thread)."""
    b = cbackend(ctx, "b1")
    pw = "p" * 300
    htpasswd = ctx.write("htpasswd", f"long:{crypt_hash('$5$', pw, 20000)}\n")
    port = free_port()
    f = start(ctx, port, listener={"auth": f"basic {htpasswd}", "cache": "1m"})
    url = f"http://127.0.0.1:{b.port}/slow?ms=1500&maxage=60"
    req = proxy_get(url, headers=[f"Proxy-Authorization: {basic('long', pw)}"])

    t0 = cpu_ticks(f.pid)
    got = []
    threads = [threading.Thread(target=lambda: got.append(ask(port, req)[0].status))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15 * SCALE)
    used = cpu_ticks(f.pid) - t0
    check(got == [200] * 4, f"answers: {got}")
    # One hash per request (a few tens of ms each), not one per look.
    check(used < 80, f"{used} CPU ticks for 4 collapsed requests: credentials hashed again")


def test_a_burst_with_new_credentials_costs_one_hash(ctx):
    """20 requests that arrive together with the same credentials, on both
    workers, before any verdict: the hasher remembers the first one's, so
    the password is hashed once, not 20 times one after the other (a burst
    of bcrypt at cost 12 took 10 s and ended in 503s). The same after a
    reload, which empties the workers' caches."""
    b = cbackend(ctx, "b1")
    htpasswd = ctx.write("htpasswd", f"u:{crypt_hash('$5$', 'pw', 400000)}\n")
    port = free_port()
    f = start(ctx, port, glob={"workers": 2}, listener={"auth": f"basic {htpasswd}"})
    req = proxy_get(f"http://127.0.0.1:{b.port}/",
                    headers=[f"Proxy-Authorization: {basic('u', 'pw')}"])

    def burst():
        got = []
        threads = [threading.Thread(target=lambda: got.append(ask(port, req)[0].status))
                   for _ in range(20)]
        t0 = cpu_ticks(f.pid)
        for t in threads:
            t.start()
        for t in threads:
            t.join(30 * SCALE)
        return got, cpu_ticks(f.pid) - t0

    t0 = time.process_time()
    crypt_hash("$5$", "x", 400000)
    hash_ticks = (time.process_time() - t0) * 100  # at 100 Hz
    for when in ("at start", "after a reload"):
        got, used = burst()
        check(got == [200] * 20, f"{when}: answers {got}")
        check(used < 5 * hash_ticks + 20,
              f"{when}: {used} CPU ticks for 20 requests, one hash takes {hash_ticks:.0f}")
        reloads = f.stderr().count("reloaded")
        f.signal(signal.SIGHUP)
        wait_for(lambda: f.stderr().count("reloaded") > reloads, 5 * SCALE, what="the reload")


def test_slow_hashes_do_not_stall_or_refuse(ctx):
    """bcrypt at cost 12 (Python bcrypt's default) takes about a quarter of
    a second: a wrong password and then the right one both get their answer
    (407, then 200, never a 503), and while a hash runs the worker serves
    other clients at once. The hash is known to be running when the other
    client asks (fulcrum's CPU time has risen since the guess was sent) and
    still running when that client has its answer (the guess is unanswered)."""
    b = cbackend(ctx, "b1")
    slow = crypt_hash("$2b$", "right", cost=12)
    htpasswd = ctx.write("htpasswd", f"slow:{slow}\n")
    port = free_port()
    f = start(ctx, port, glob={"workers": 1}, listener={"auth": f"basic {htpasswd}"})
    url = f"http://127.0.0.1:{b.port}/headers"
    m, closed = ask(port, proxy_get(url, headers=[f"Proxy-Authorization: {basic('slow', 'wrong')}"]))
    check(m.status == 407, f"wrong password: {m!r}")
    m, _ = ask(port, proxy_get(url, headers=[f"Proxy-Authorization: {basic('slow', 'right')}"]))
    check(m.status == 200, f"the right password straight after a wrong one: {m!r}")

    hashing = client(port)
    ticks = cpu_ticks(f.pid)
    hashing.send(proxy_get(url, headers=[f"Proxy-Authorization: {basic('slow', 'guess')}"]))
    # The hash has started: 30 ms of CPU (3 ticks at 100 Hz) is far more
    # than reading one request takes, and a tenth of the hash.
    wait_for(lambda: cpu_ticks(f.pid) >= ticks + 3, 2 * SCALE, interval=0.005, what="the hash burning CPU")
    t0 = time.monotonic()
    other = client(port)
    other.send(proxy_get(url))
    m = read_response(other)
    took = time.monotonic() - t0
    other.close()
    pending, _, _ = select.select([hashing.s], [], [], 0)
    check(not pending, "the guess was answered before the other client: the hash did not overlap")
    check(m.status == 407 and took < 0.15 * SCALE,
          f"a client without credentials waited {took:.3f}s behind a hash: {m!r}")
    check(read_response(hashing).status == 407, "the guess was not refused")
    hashing.close()


def test_bad_htpasswd_is_a_config_error(ctx):
    from harness import run_fulcrum
    htpasswd = ctx.write("htpasswd", f"ok:{crypt_hash('$6$', 'x')}\nmd5:$apr1$abc$defghijklmnopqrstuvw\n")
    text = fwd_conf(free_port(), {"auth": f"basic {htpasswd}"})
    path = ctx.write("f.ini", text)
    rc, _, err = run_fulcrum(["-t", "-c", path])
    check(rc == 1, f"-t with an unusable htpasswd exited {rc}")
    n = next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith("auth"))
    check(f"{path}:{n}:" in err and "line 2" in err, f"error should name both lines: {err!r}")


# ---------------------------------------------------- failures ----


def test_502_for_unreachable_and_unknown_origins(ctx):
    dns = fake_dns(ctx, records={})
    port = free_port()
    log = ctx.path("access.log")
    start(ctx, port, dns=dns, listener={"connect_ports": "*"}, glob={"access_log": log})
    dead = closed_port()
    m, closed = ask(port, proxy_get(f"http://127.0.0.1:{dead}/"))
    expect_error(m, closed, 502, what="closed port")
    r, m = connect_via(port, f"127.0.0.1:{dead}")
    check(m.status == 502, f"CONNECT to a closed port: {m!r}")
    r.close()
    # Their log lines name the origin that could not be reached.
    lines = access_lines(log, 2)
    check(all(f" -/127.0.0.1:{dead} " in l and " 502 " in l for l in lines), f"log: {lines}")
    m, closed = ask(port, proxy_get("http://nosuch.fwd.test/"))
    expect_error(m, closed, 502, what="unknown name")
    # the client connection stays usable after fulcrum's own 502
    srv = pyserver(ctx, ok_handler())
    r = client(port)
    r.send(proxy_get(f"http://127.0.0.1:{dead}/"))
    check(read_response(r).status == 502, "first request")
    r.send(proxy_get(f"http://127.0.0.1:{srv.port}/"))
    check(read_response(r).status == 200, "second request on the same connection")
    r.close()


def test_502_connect_timeout(ctx):
    hole = ctx.blackhole()
    port = free_port()
    start(ctx, port, listener={"connect_timeout": "500ms", "connect_ports": "*"})
    t0 = time.monotonic()
    m, closed = ask(port, proxy_get(f"http://{hole.addr}/"))
    took = time.monotonic() - t0
    expect_error(m, closed, 502, what="origin that never accepts")
    check(0.4 < took < 3 * SCALE, f"502 after {took:.2f}s with connect_timeout = 500ms")


def test_504_server_timeout(ctx):
    srv = pyserver(ctx, silent_handler)
    port = free_port()
    start(ctx, port, listener={"server_timeout": "1s"})
    t0 = time.monotonic()
    m, closed = ask(port, proxy_get(f"http://127.0.0.1:{srv.port}/"))
    took = time.monotonic() - t0
    expect_error(m, closed, 504, what="silent origin")
    check(0.9 < took < 3 * SCALE, f"504 after {took:.2f}s with server_timeout = 1s")


def test_resolve_timeout_is_502_and_does_not_block(ctx):
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"fast.fwd.test": ["127.0.0.1"]}, drop={"slow.fwd.test"})
    port = free_port()
    start(ctx, port, dns=dns, listener={"connect_timeout": "1s"})
    slow = client(port)
    t0 = time.monotonic()
    slow.send(proxy_get("http://slow.fwd.test/"))
    # while one lookup hangs, the worker serves others
    m, _ = ask(port, proxy_get(f"http://fast.fwd.test:{srv.port}/"))
    check(m.status == 200 and time.monotonic() - t0 < 0.8 * SCALE, f"a hanging lookup blocked another request: {m!r}")
    m = read_response(slow)
    took = time.monotonic() - t0
    check(m.status == 502, f"unanswered lookup: {m!r}")
    check(0.9 < took < 3 * SCALE, f"502 after {took:.2f}s with connect_timeout = 1s")
    slow.send(proxy_get(f"http://fast.fwd.test:{srv.port}/"))
    check(read_response(slow).status == 200, "the connection after a resolve timeout")
    slow.close()


def test_slow_resolver_within_connect_timeout(ctx):
    """A resolver that answers after 3.3 s (past the resolver library's
    own give-up point with few retries) is waited for while connect_timeout
    (10 s) has not passed: the README says it covers resolving too."""
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"late.fwd.test": ["127.0.0.1"]}, late={"late.fwd.test": 3.3})
    port = free_port()
    start(ctx, port, dns=dns, listener={"connect_timeout": "10s"})
    t0 = time.monotonic()
    m, _ = ask(port, proxy_get(f"http://late.fwd.test:{srv.port}/"))
    took = time.monotonic() - t0
    check(m.status == 200 and took > 3, f"slow resolver: {m!r} after {took:.1f}s")


def test_dns_cache_honours_ttl(ctx):
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"ttl.fwd.test": ["127.0.0.1"]}, ttl=2)
    port = free_port()
    start(ctx, port, dns=dns)
    url = f"http://ttl.fwd.test:{srv.port}/"
    for _ in range(5):
        m, _ = ask(port, proxy_get(url))
        check(m.status == 200, f"through the fake DNS: {m!r}")
    first = dns.count("ttl.fwd.test")
    check(1 <= first <= 2, f"5 requests within the TTL made {first} queries (A and AAAA are one lookup)")
    time.sleep(2.5)
    m, _ = ask(port, proxy_get(url))
    check(m.status == 200, f"after the TTL: {m!r}")
    check(dns.count("ttl.fwd.test") > first, "the answer was used past its TTL")


def test_concurrent_lookups_share_one_query(ctx):
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"many.fwd.test": ["127.0.0.1"]})
    port = free_port()
    start(ctx, port, dns=dns)
    readers = [client(port) for _ in range(20)]
    for r in readers:
        r.send(proxy_get(f"http://many.fwd.test:{srv.port}/"))
    for i, r in enumerate(readers):
        m = read_response(r)
        check(m.status == 200, f"client {i}: {m!r}")
        r.close()
    check(dns.count("many.fwd.test") <= 2, f"20 concurrent clients made {dns.count('many.fwd.test')} queries")


def test_client_gone_while_resolving(ctx):
    """A client that closes while its name is being looked up is not called
    back: the process stays up and frees the connection."""
    dns = fake_dns(ctx, records={}, drop={"hang.fwd.test"})
    port = free_port()
    f = start(ctx, port, dns=dns, listener={"connect_timeout": "1s"})
    for _ in range(10):
        s = connect(("127.0.0.1", port))
        s.sendall(proxy_get("http://hang.fwd.test/"))
        s.close()
    time.sleep(1.5 * SCALE)
    f.check_alive()
    srv = pyserver(ctx, ok_handler())
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{srv.port}/"))
    check(m.status == 200, f"after abandoned lookups: {m!r}")


def test_two_workers_many_clients(ctx):
    """Every worker has its own resolver, origin table and credential cache."""
    srv = pyserver(ctx, ok_handler())
    echo = ctx.backend("echo")
    dns = fake_dns(ctx, records={f"w{i}.fwd.test": ["127.0.0.1"] for i in range(8)})
    htpasswd = ctx.write("htpasswd", f"u:{crypt_hash('$2y$', 'p')}\n")
    port = free_port()
    start(ctx, port, dns=dns, glob={"workers": 2},
          listener={"connect_ports": "*", "auth": f"basic {htpasswd}"})
    cred = f"Proxy-Authorization: {basic('u', 'p')}"
    errors = []

    def one(i):
        try:
            r = client(port)
            for j in range(5):
                r.send(proxy_get(f"http://w{(i + j) % 8}.fwd.test:{srv.port}/{j}", headers=[cred]))
                m = read_response(r)
                if m.status != 200:
                    errors.append(f"client {i} request {j}: {m!r}")
            r.close()
            r, m = connect_via(port, f"w{i % 8}.fwd.test:{echo.port}", [cred])
            r.send(b"x%d" % i)
            if m.status != 200 or r.exact(len(b"x%d" % i)) != b"x%d" % i:
                errors.append(f"tunnel {i}: {m!r}")
            r.close()
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30 * SCALE)
    check(not errors, f"{len(errors)} failures, first: {errors[:3]}")


def test_failed_login_time_is_logged(ctx):
    """The log's total_ms of a refused login includes the hashing (a
    costly bcrypt entry takes tens of milliseconds)."""
    b = cbackend(ctx, "b1")
    log = ctx.path("access.log")
    htpasswd = ctx.write("htpasswd", f"slow:{crypt_hash('$2y$', 'right', cost=11)}\n")
    port = free_port()
    start(ctx, port, listener={"auth": f"basic {htpasswd}"}, glob={"access_log": log})
    t0 = time.monotonic()
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{b.port}/",
                               headers=[f"Proxy-Authorization: {basic('slow', 'wrong')}"]))
    took_ms = (time.monotonic() - t0) * 1000
    check(m.status == 407, f"wrong password: {m!r}")
    line = access_lines(log, 1)[0]
    logged = int(line.split(" ")[-3])
    check(took_ms > 20, f"bcrypt cost 11 took only {took_ms:.0f} ms: cannot tell")
    check(logged >= took_ms / 3, f"total_ms {logged} for a login that took {took_ms:.0f} ms: {line}")


def test_json_log_nulls_and_tunnel_bytes_counted_live(ctx):
    """Forward lines in the JSON log have "pool": null (there is no pool)
    and a tunnel's normal end "reason": null; the listener's byte counters
    grow while a CONNECT tunnel is open, not only when it closes."""
    b = cbackend(ctx, "b1")
    echo = ctx.backend("echo")
    log = ctx.path("access.log")
    aport, port = free_port(), free_port()
    start(ctx, port, listener={"connect_ports": "*"},
          glob={"access_log": log, "access_log_format": "json", "admin": f"127.0.0.1:{aport}"})
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{b.port}/"))
    check(m.status == 200, f"absolute-form GET: {m!r}")

    def received():
        with urllib.request.urlopen(f"http://127.0.0.1:{aport}/metrics", timeout=5) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith('fulcrum_listener_bytes_received_total{listener="f"}'):
                return int(float(line.split()[-1]))
        return 0

    before = received()
    r, m = connect_via(port, f"127.0.0.1:{echo.port}")
    check(m.status == 200, f"CONNECT: {m!r}")
    payload = b"t" * 200000
    r.send(payload)
    check(r.exact(len(payload)) == payload, "echo through the tunnel")
    wait_for(lambda: received() - before >= len(payload), 3 * SCALE, interval=0.1,
             what="tunnel bytes in the listener's counter while the tunnel is open")
    r.close()
    lines = [json.loads(l) for l in access_lines(log, 2)]
    for rec in lines:
        check(rec["pool"] is None, f"pool on a forward line: {rec}")
    tunnel = [rec for rec in lines if rec["method"] == "CONNECT"]
    check(len(tunnel) == 1 and tunnel[0]["reason"] is None, f"the tunnel's line: {lines}")


def test_proxy_connection_from_clients(ctx):
    """Without a Connection field, a forward listener honours the
    Proxy-Connection field older clients send (curl -0 -x), as Squid does:
    keep-alive keeps an HTTP/1.0 client's connection, close closes an
    HTTP/1.1 one. The field itself is never forwarded."""
    b = cbackend(ctx, "b1")
    port = free_port()
    start(ctx, port)
    url = f"http://127.0.0.1:{b.port}/headers"
    r = client(port)
    for i in range(2):
        r.send(proxy_get(url, version="HTTP/1.0", headers=["Proxy-Connection: Keep-Alive"]))
        m = read_response(r)
        check(m.status == 200 and m.get("connection") == "keep-alive", f"1.0 request {i}: {m!r}")
        _, fields = headers_seen(m)
        check("proxy-connection" not in fields, f"Proxy-Connection reached the origin: {fields}")
    r.close()
    m, closed = ask(port, proxy_get(url, headers=["Proxy-Connection: close"]))
    check(m.status == 200 and m.get("connection") == "close" and closed,
          f"HTTP/1.1 with Proxy-Connection: close: {m!r}, closed {closed}")
    m, closed = ask(port, proxy_get(url, version="HTTP/1.0"))
    check(m.get("connection") == "close" and closed, f"plain HTTP/1.0: {m!r}")
    p = curl("-0", "-x", f"http://127.0.0.1:{port}", url, url, "-v", "-o", "/dev/null")
    check(b"Re-using existing connection" in p.stderr or b"Reusing existing connection" in p.stderr,
          f"curl -0 -x did not keep its connection: {p.stderr[-600:]!r}")


def test_unspecified_address_is_denied_like_loopback(ctx):
    """A connect to 0.0.0.0 reaches this host: a deny of loopback denies it
    too, by CONNECT and by absolute-form request."""
    b = cbackend(ctx, "b1")
    port = free_port()
    start(ctx, port, listener={"connect_ports": "*", "deny": ["127.0.0.0/8", "[::1]"]})
    r, m = connect_via(port, f"0.0.0.0:{b.port}")
    check(m.status == 403, f"CONNECT 0.0.0.0: {m!r}")
    r.close()
    m, _ = ask(port, proxy_get(f"http://0.0.0.0:{b.port}/"))
    check(m.status == 403, f"GET http://0.0.0.0/: {m!r}")


def test_requests_pipelined_behind_a_closing_refusal_are_logged(ctx):
    """Wrong credentials (407) close the connection, and so does a 403 with
    a body still to come; a request pipelined behind either goes unanswered
    but gets its line (unanswered_pipelined, with its bytes), as behind any
    answer that closes. A body of known length in between is stepped over."""
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    htpasswd = ctx.write("htpasswd", f"u:{crypt_hash('$5$', 'pw')}\n")
    start(ctx, port, listener={"deny": "127.0.0.2", "auth": f"basic {htpasswd}"},
          glob={"access_log": log, "access_log_format": "json"})
    good = f"Proxy-Authorization: {basic('u', 'pw')}"
    second = proxy_get(f"http://127.0.0.1:{b.port}/second", headers=[good])
    firsts = [(407, proxy_get(f"http://127.0.0.1:{b.port}/first",
                              headers=[f"Proxy-Authorization: {basic('u', 'bad')}"])),
              (403, b"POST http://127.0.0.2:%d/first HTTP/1.1\r\nHost: x\r\n%s\r\n"
                    b"Content-Length: 3\r\n\r\nabc" % (b.port, good.encode()))]
    for status, first in firsts:
        r = client(port)
        r.s.sendall(first + second)
        m = read_response(r)
        check(m.status == status, f"the first request: {m!r}")
        check(r.to_eof() == b"", f"the connection after the {status} answered more")
        r.s.close()
    lines = [json.loads(l) for l in access_lines(log, 4)]
    for k, (status, _) in zip((0, 2), firsts):
        check(lines[k]["status"] == status, f"line {k}: {lines[k]}")
        nxt = lines[k + 1]
        check(nxt["reason"] == "unanswered_pipelined" and nxt["bytes_in"] == len(second),
              f"the request pipelined behind the {status}: {nxt}")


def test_max_forwards(ctx):
    """RFC 9110 §7.6.2: OPTIONS and TRACE go on with Max-Forwards one less;
    at 0 fulcrum answers them itself (OPTIONS 200 with Allow; TRACE 405,
    fulcrum does not reflect requests). Other methods leave it alone."""
    b = cbackend(ctx, "b1")
    port = free_port()
    start(ctx, port)
    url = f"http://127.0.0.1:{b.port}/headers"
    m, _ = ask(port, proxy_get(url, method="OPTIONS", headers=["Max-Forwards: 3"]))
    _, fields = headers_seen(m)
    check(m.status == 200 and fields.get("max-forwards") == ["2"], f"OPTIONS, 3: {m!r} {fields}")
    m, _ = ask(port, proxy_get(url, method="OPTIONS", headers=["Max-Forwards: 0"]))
    check(m.status == 200 and "OPTIONS" in (m.get("allow") or ""), f"OPTIONS, 0: {m!r}")
    check(not m.body.startswith(b"OPTIONS /headers"), f"OPTIONS at 0 reached the origin: {m!r}")
    m, _ = ask(port, proxy_get(url, method="TRACE", headers=["Max-Forwards: 0"]))
    check(m.status == 405 and m.get("allow"), f"TRACE, 0: {m!r}")
    m, _ = ask(port, proxy_get(url, headers=["Max-Forwards: 0"]))
    _, fields = headers_seen(m)
    check(m.status == 200 and fields.get("max-forwards") == ["0"], f"GET, 0: {m!r} {fields}")
    # Any count is decremented exactly, however many digits it has.
    for sent, want in (("10000000", "9999999"), ("12345678901", "12345678900"),
                       ("007", "6"), ("99999999999999999999", str((1 << 63) - 2))):
        m, _ = ask(port, proxy_get(url, method="OPTIONS", headers=[f"Max-Forwards: {sent}"]))
        _, fields = headers_seen(m)
        check(m.status == 200 and fields.get("max-forwards") == [want],
              f"OPTIONS, {sent}: want {want}, the origin saw {fields.get('max-forwards')}")


def _origin_challenges(r, srv):
    """Answers every request with the origin's own proxy challenge fields."""
    while read_request(r) is not None:
        r.send(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
               b"Proxy-Authenticate: Basic realm=\"origin\"\r\n"
               b"Proxy-Authentication-Info: nextnonce=\"x\"\r\n"
               b"WWW-Authenticate: Basic realm=\"site\"\r\nContent-Length: 2\r\n\r\nno")


def test_origin_proxy_challenge_is_not_passed_on(ctx):
    """RFC 9110 §11.7.1: Proxy-Authenticate concerns only the client that
    chose the proxy. An origin's (or one behind it) would read, to the
    client, as a challenge of fulcrum's own, so forward mode drops it, and
    Proxy-Authentication-Info, as squid does; WWW-Authenticate goes on."""
    srv = pyserver(ctx, _origin_challenges)
    port = free_port()
    start(ctx, port)
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:{srv.port}/"))
    check(m.status == 407 and m.body == b"no", f"the origin's answer: {m!r}")
    check(m.get("proxy-authenticate") is None and m.get("proxy-authentication-info") is None,
          f"the origin's proxy fields reached the client: {m!r}")
    check(m.get("www-authenticate") == 'Basic realm="site"', f"WWW-Authenticate lost: {m!r}")


def test_port_with_leading_zeros(ctx):
    """RFC 3986 §3.2.3: port = *DIGIT, so 0PORT is PORT, as squid reads it."""
    b = cbackend(ctx, "b1")
    echo = ctx.backend("echo")
    port = free_port()
    start(ctx, port, listener={"connect_ports": "*"})
    m, _ = ask(port, proxy_get(f"http://127.0.0.1:00{b.port}/?size=5"))
    check(m.status == 200 and m.get("x-server") == "b1", f"absolute-form, 00PORT: {m!r}")
    r, m = connect_via(port, f"127.0.0.1:0{echo.port}")
    check(m.status == 200, f"CONNECT to 0PORT: {m!r}")
    r.send(b"ping")
    check(r.exact(4) == b"ping", "the tunnel to 0PORT")
    r.close()
    m, _ = ask(port, proxy_get("http://127.0.0.1:0000065536/"))
    check(m.status == 400, f"a port past 65535 with zeros in front: {m!r}")


def test_admin_api_is_never_a_destination(ctx):
    """Whatever the ACL allows, proxy clients do not reach fulcrum's own
    admin API (it drains servers and reloads): 403 denied_admin, for
    CONNECT and absolute-form, by address and by name."""
    aport, port = free_port(), free_port()
    start(ctx, port, listener={"connect_ports": "*"}, glob={"admin": f"127.0.0.1:{aport}"})
    for target in (f"127.0.0.1:{aport}", f"localhost:{aport}", f"0.0.0.0:{aport}",
                   f"[::ffff:127.0.0.1]:{aport}"):
        r, m = connect_via(port, target)
        check(m.status == 403, f"CONNECT {target}: {m!r}")
        r.close()
        m, _ = ask(port, proxy_get(f"http://{target}/status"))
        check(m.status == 403, f"GET http://{target}/status: {m!r}")


def test_reload_applies_to_the_next_request_of_a_kept_alive_connection(ctx):
    """A reload that denies a destination applies to the requests that come
    after it on connections opened before, as Squid re-checks them: a
    client cannot keep using what the new file forbids by keeping its
    connection alive."""
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    f = start(ctx, port)
    r = client(port)
    r.send(proxy_get(f"http://127.0.0.1:{srv.port}/before"))
    m = read_response(r)
    check(m.status == 200, f"before the reload: {m!r}")
    with open(f.conf_path, "w") as fh:
        fh.write(fwd_conf(port, {"deny": "127.0.0.1"}))
    f.signal(__import__("signal").SIGHUP)
    wait_for(lambda: ask(port, proxy_get(f"http://127.0.0.1:{srv.port}/new"))[0].status == 403,
             3 * SCALE, interval=0.05, what="the reload's deny on new connections")
    r.send(proxy_get(f"http://127.0.0.1:{srv.port}/after"))
    m = read_response(r)
    r.close()
    check(m.status == 403, f"the kept-alive connection after the reload: {m!r}")


close_backends_first(globals())

