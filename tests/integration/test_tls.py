"""TLS (SPEC §2 tls_* keys, §3): termination with SNI and ALPN, versions,
resumption, TLS to servers with verification and session reuse, SNI
passthrough, handshake timeouts, garbage hellos, certificate errors at -t and
at reload.

Certificates are made at test time with the openssl CLI: a test CA and leaf
certificates for a.test (EC), b.test (RSA), *.w.test (EC), and c.test signed
by an intermediate CA (its file holds the chain). Clients are curl, openssl
s_client and Python's ssl module; servers are Python (http.server, plain or
TLS), openssl s_server -www and the harness's echo backends.
"""

import http.server
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

from harness import (SCALE, Skip, TestFailure, blob, check, closed_by_peer, connect, free_port,
                     ini, read_lines, recv_all, recv_exact, recv_line, run_fulcrum, sha256,
                     wait_for)

MIB = 1 << 20


# ------------------------------------------------------------ certificates --


def _openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise TestFailure(f"openssl {' '.join(args)} failed: {p.stderr.decode()[-1000:]}")


def _key_args(kind):
    return ["-newkey", "rsa:2048"] if kind == "rsa" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]


def _leaf(d, name, cn, san, ca="ca", kind="ec", days="2"):
    _openssl("req", *_key_args(kind), "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", days, "-extfile", f"{name}.ext",
             cwd=d)


def _ca(d, name, cn, parent=None):
    if parent is None:
        _openssl("req", "-x509", *_key_args("ec"), "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.pem", "-days", "2", "-subj", f"/CN={cn}", cwd=d)
        return
    _openssl("req", *_key_args("ec"), "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{parent}.pem", "-CAkey",
             f"{parent}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=d)


class Certs:
    """Paths of the test PKI in a directory: .pem/.key per name."""

    def __init__(self, d):
        self.dir = d

    def __getattr__(self, name):
        return os.path.join(self.dir, name)

    def pem(self, name):
        return os.path.join(self.dir, f"{name}.pem")

    def key(self, name):
        return os.path.join(self.dir, f"{name}.key")


def make_certs(ctx):
    if not shutil.which("openssl"):
        raise Skip("the openssl CLI is not installed")
    d = ctx.path("pki")
    os.makedirs(d)
    _ca(d, "ca", "fulcrum test CA")
    _ca(d, "other", "another CA")
    _leaf(d, "a", "a.test", "DNS:a.test")
    _leaf(d, "b", "b.test", "DNS:b.test,DNS:www.b.test", kind="rsa")
    _leaf(d, "w", "w wildcard", "DNS:*.w.test")
    _leaf(d, "ip", "127.0.0.1", "IP:127.0.0.1")
    _ca(d, "inter", "fulcrum intermediate", parent="ca")
    _leaf(d, "c", "c.test", "DNS:c.test", ca="inter")
    with open(os.path.join(d, "cchain.pem"), "w") as out:
        for part in ("c.pem", "inter.pem"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    return Certs(d)


# ----------------------------------------------------------------- servers --


class HttpServer:
    """An HTTP/1.1 server on loopback, plain or TLS; every answer names it and
    echoes X-Forwarded-Proto: body "NAME xfp=PROTO path=PATH\\n"."""

    def __init__(self, name, cert=None, key=None, keepalive=False):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with outer.lock:
                    outer.conns.add(self.connection)
                    outer.accepted += 1

            def finish(self):
                with outer.lock:
                    outer.conns.discard(self.connection)
                super().finish()

            def do_GET(self):
                body = f"{name} xfp={self.headers.get('X-Forwarded-Proto')} " \
                       f"path={self.path}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Server", name)
                if not keepalive:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)
                with outer.lock:
                    outer.requests += 1

            def log_message(self, *a):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # failed handshakes are part of some tests

        self.lock = threading.Lock()
        self.requests = 0
        self.accepted = 0
        self.conns = set()
        self.server = Server(("127.0.0.1", 0), Handler)
        if cert:
            sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sctx.load_cert_chain(cert, key)
            self.server.socket = sctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        """Stops serving and closes every connection, idle keep-alive ones
        included (fulcrum then drops its pooled connections to us)."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SServer:
    """openssl s_server -www: answers GET with a page that says whether the
    session was New or Reused."""

    def __init__(self, ctx, cert, key):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log = open(ctx.path(f"s_server.{self.port}.log"), "wb")
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", cert, "-key",
             key, "-www", "-quiet"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._listens, 10 * SCALE, what="openssl s_server to listen")

    def _listens(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def http_server(ctx, name, cert=None, key=None, keepalive=False):
    s = HttpServer(name, cert, key, keepalive)
    ctx.backends.append(s)
    return s


def s_server(ctx, cert, key):
    s = SServer(ctx, cert, key)
    ctx.backends.append(s)
    return s


# ----------------------------------------------------------------- clients --


def s_client(port, *args, data=b"", timeout=10):
    """Runs openssl s_client against 127.0.0.1:PORT with ARGS, sends DATA,
    and returns its stdout and stderr together."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"] + list(args)
    try:
        p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout * SCALE)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"{' '.join(cmd)} did not end")
    return (p.stdout + p.stderr).decode("utf-8", "replace")


def subject_cn(out):
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN", 1)[1].lstrip(" =").strip()
    return None


def curl(port, host, path="/", cacert=None, extra=()):
    """GET https://HOST:PORT/PATH resolved to loopback; returns (status, body, stderr)."""
    cmd = ["curl", "-sS", "--max-time", str(int(10 * SCALE)), "--resolve",
           f"{host}:{port}:127.0.0.1", "-o", "-", "-w", "\n%{http_code}"]
    if cacert:
        cmd += ["--cacert", cacert]
    cmd += list(extra) + [f"https://{host}:{port}{path}"]
    p = subprocess.run(cmd, capture_output=True, timeout=20 * SCALE)
    out = p.stdout.decode("utf-8", "replace")
    body, _, status = out.rpartition("\n")
    return int(status or 0), body, p.stderr.decode("utf-8", "replace")


def http_get(port, path="/", host="x"):
    """A plain GET to fulcrum; returns (status, body)."""
    s = connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    return status, body.decode("utf-8", "replace")


def tls_client(port, certs, name="a.test", strict_eof=False):
    """A Python TLS client socket to fulcrum, verified against the test CA.
    strict_eof: a bare FIN without close_notify raises SSLEOFError instead
    of reading as the end."""
    c = ssl.create_default_context(cafile=certs.pem("ca"))
    raw = connect(("127.0.0.1", port))
    return c.wrap_socket(raw, server_hostname=name, suppress_ragged_eofs=not strict_eof)


# ----------------------------------------------------------------- configs --


def glob_section(extra=None):
    g = {"workers": 2, "admin": "", "access_log": "off", "log_level": "info"}
    g.update(extra or {})
    return ("global", g)


def terminating_listener(port, certs, mode="http", pool="p", **kw):
    lst = {
        "bind": f"127.0.0.1:{port}",
        "mode": mode,
        "pool": pool,
        "tls_cert": [certs.pem("a"), certs.pem("b"), certs.pem("w"), certs.pem("cchain")],
        "tls_key": [certs.key("a"), certs.key("b"), certs.key("w"), certs.key("c")],
    }
    lst.update(kw)
    return lst


def https_conf(port, certs, server_addr, glob=None, **kw):
    return ini(glob_section(glob),
               ("pool p", {"check": "none", "server": f"s1 {server_addr}"}),
               ("listener l", terminating_listener(port, certs, **kw)))


# ------------------------------------------------------------------- tests --


def test_termination_with_curl(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "plain1")
    port = free_port()
    f = ctx.fulcrum(https_conf(port, certs, be.addr))
    for host in ("a.test", "b.test", "www.b.test", "x.w.test", "c.test"):
        status, body, err = curl(port, host, "/hello", cacert=certs.pem("ca"))
        check(status == 200, f"{host}: status {status}: {err}")
        check(body == "plain1 xfp=https path=/hello\n", f"{host}: body {body!r}")
    # Keep-alive over TLS: two URLs on one connection.
    status, body, err = curl(port, "a.test", "/one", cacert=certs.pem("ca"),
                             extra=[f"https://a.test:{port}/two", "-v"])
    check("Re-using existing connection" in err or "Reusing existing connection" in err,
          f"curl did not reuse the TLS connection: {err[-1500:]}")
    f.check_alive()


def test_sni_selects_certificate(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port = free_port()
    ctx.fulcrum(https_conf(port, certs, be.addr))
    cases = [("a.test", "a.test"), ("b.test", "b.test"), ("WWW.B.Test", "b.test"),
             ("x.w.test", "w wildcard"), ("c.test", "c.test"),
             # a wildcard covers one label only; unknown names get the first pair
             ("y.x.w.test", "a.test"), ("w.test", "a.test"), ("unknown.example", "a.test"),
             # one trailing dot names the same host; two name none, as in routes
             ("b.test.", "b.test"), ("b.test..", "a.test"), ("x.w.test..", "a.test")]
    for sni, cn in cases:
        out = s_client(port, "-servername", sni, "-CAfile", certs.pem("ca"))
        check(subject_cn(out) == cn, f"SNI {sni}: subject {subject_cn(out)!r}, want {cn!r}")
    out = s_client(port, "-noservername")
    check(subject_cn(out) == "a.test", f"no SNI: subject {subject_cn(out)!r}")
    # The chain file's intermediate is sent: the client knows only the root.
    out = s_client(port, "-servername", "c.test", "-CAfile", certs.pem("ca"),
                   "-verify_return_error")
    check("Verify return code: 0 (ok)" in out, f"c.test chain not verified:\n{out[-1500:]}")


def test_alpn(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port = free_port()
    ctx.fulcrum(https_conf(port, certs, be.addr))
    out = s_client(port, "-servername", "a.test", "-alpn", "http/1.1")
    check("ALPN protocol: http/1.1" in out, f"http/1.1 not negotiated:\n{out[-1500:]}")
    out = s_client(port, "-servername", "a.test", "-alpn", "h2,http/1.1")
    check("ALPN protocol: http/1.1" in out, f"h2,http/1.1 did not give http/1.1:\n{out[-1500:]}")
    out = s_client(port, "-servername", "a.test")
    check("No ALPN negotiated" in out, f"ALPN without the client asking:\n{out[-1500:]}")
    # RFC 7301 §3.2: none of ours offered -> no_application_protocol.
    out = s_client(port, "-servername", "a.test", "-alpn", "h2,spdy/3")
    check("no application protocol" in out, f"unknown protocols not refused:\n{out[-1500:]}")
    status, body, err = curl(port, "a.test", "/", cacert=certs.pem("ca"), extra=["--http2"])
    check(status == 200, f"curl --http2 (offers h2 and http/1.1): {status} {err}")
    # An http listener serves HTTP/1.0: curl --http1.0 offers only http/1.0.
    out = s_client(port, "-servername", "a.test", "-alpn", "http/1.0")
    check("ALPN protocol: http/1.0" in out, f"http/1.0 alone was not taken:\n{out[-1500:]}")
    status, body, err = curl(port, "a.test", "/", cacert=certs.pem("ca"), extra=["--http1.0"])
    check(status == 200, f"curl --http1.0: {status} {err}")


def test_old_versions_refused(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port, port13 = free_port(), free_port()
    conf = ini(glob_section(),
               ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
               ("listener l", terminating_listener(port, certs)),
               ("listener l13", terminating_listener(port13, certs, tls_min_version="1.3")))
    ctx.fulcrum(conf)
    for flag in ("-tls1", "-tls1_1"):
        out = s_client(port, flag, "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "a.test")
        check("protocol version" in out and "Cipher is (NONE)" in out,
              f"{flag} was not refused:\n{out[-1500:]}")
    out = s_client(port, "-tls1_2", "-servername", "a.test")
    check("New, TLSv1.2" in out, f"TLS 1.2 refused on a 1.2 listener:\n{out[-1500:]}")
    out = s_client(port13, "-tls1_2", "-servername", "a.test")
    check("protocol version" in out, f"TLS 1.2 accepted with tls_min_version = 1.3:\n{out[-1500:]}")
    out = s_client(port13, "-tls1_3", "-servername", "a.test")
    check("New, TLSv1.3" in out, f"TLS 1.3 refused:\n{out[-1500:]}")


def test_ciphers_override(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port = free_port()
    ctx.fulcrum(https_conf(port, certs, be.addr, tls_ciphers="ECDHE-RSA-CHACHA20-POLY1305"))
    out = s_client(port, "-tls1_2", "-servername", "b.test")
    check("Cipher is ECDHE-RSA-CHACHA20-POLY1305" in out, f"cipher override ignored:\n{out[-1500:]}")
    out = s_client(port, "-tls1_2", "-servername", "b.test", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    check("Cipher is (NONE)" in out, f"a cipher outside tls_ciphers was used:\n{out[-1500:]}")


def _resumes(ctx, port, args, rounds=4):
    sess = ctx.path("session.pem")
    req = b"GET / HTTP/1.0\r\n\r\n"
    out = s_client(port, "-servername", "a.test", "-sess_out", sess, "-ign_eof", *args, data=req)
    check("\nNew, " in out, f"first connection:\n{out[-1500:]}")
    for _ in range(rounds):
        out = s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", *args,
                       data=req)
        check("\nReused, " in out, f"session not resumed ({args}):\n{out[-2000:]}")
        check("xfp=https" in out, f"no answer over the resumed session:\n{out[-1500:]}")


def test_resumption(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port = free_port()
    # Two workers: the resumed connections land on either, so the ticket
    # keys and the session cache must be shared.
    ctx.fulcrum(https_conf(port, certs, be.addr))
    _resumes(ctx, port, ["-tls1_3"])  # tickets
    _resumes(ctx, port, ["-tls1_2"])  # tickets
    _resumes(ctx, port, ["-tls1_2", "-no_ticket"])  # the session-ID cache


def test_session_not_resumed_under_another_name(ctx):
    """A session made for a.test offered with the SNI b.test is not resumed
    (RFC 6066 §3): the client gets a full handshake and b.test's
    certificate, with tickets in TLS 1.3 and 1.2 and with session IDs."""
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port = free_port()
    ctx.fulcrum(https_conf(port, certs, be.addr))
    req = b"GET / HTTP/1.0\r\n\r\n"
    for args in (["-tls1_3"], ["-tls1_2"], ["-tls1_2", "-no_ticket"]):
        sess = ctx.path("cross.pem")
        s_client(port, "-servername", "a.test", "-sess_out", sess, "-ign_eof", *args, data=req)
        out = s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", *args,
                       data=req)
        check("\nReused, " in out, f"same name not resumed ({args}):\n{out[-1500:]}")
        out = s_client(port, "-servername", "b.test", "-sess_in", sess, "-ign_eof", *args,
                       data=req)
        check("\nNew, " in out and "CN = b.test" in out,
              f"a.test's session resumed for b.test ({args}):\n{out[-2000:]}")


def test_resumption_survives_reload(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port = free_port()
    f = ctx.fulcrum(https_conf(port, certs, be.addr))
    sess = ctx.path("session.pem")
    req = b"GET / HTTP/1.0\r\n\r\n"
    s_client(port, "-servername", "a.test", "-sess_out", sess, "-ign_eof", data=req)
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), 5 * SCALE, what="the reload")
    out = s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", data=req)
    check("\nReused, " in out, f"ticket not accepted after a reload:\n{out[-1500:]}")


def test_reload_narrowing_ciphers_ends_resumption_with_a_removed_one(ctx):
    """Tickets survive reloads, but a TLS 1.2 session whose cipher the new
    tls_ciphers no longer allow is not resumed: the client gets a full
    handshake with an allowed cipher."""
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port = free_port()
    aes = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384"
    chacha = "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-CHACHA20-POLY1305"
    f = ctx.fulcrum(https_conf(port, certs, be.addr, tls_ciphers=aes))
    sess = ctx.path("session.pem")
    req = b"GET / HTTP/1.0\r\n\r\n"
    both = ["-tls1_2", "-cipher", f"{aes}:{chacha}"]
    s_client(port, "-servername", "a.test", "-sess_out", sess, "-ign_eof", *both, data=req)
    out = s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", *both, data=req)
    check("\nReused, " in out, f"not resumed before the reload:\n{out[-1500:]}")
    with open(f.conf_path, "w") as fh:
        fh.write(https_conf(port, certs, be.addr, tls_ciphers=chacha))
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), 5 * SCALE, what="the reload")
    out = s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", *both, data=req)
    check("\nNew, " in out and "CHACHA20" in out,
          f"a session with a cipher the reload removed was resumed:\n{out[-1500:]}")


def test_tls_backend_verified(ctx):
    certs = make_certs(ctx)
    tb = http_server(ctx, "tlsbe", certs.pem("a"), certs.key("a"))
    ipb = http_server(ctx, "ipbe", certs.pem("ip"), certs.key("ip"))
    ports = {k: free_port() for k in ("ok", "okdot", "badca", "noverify", "wrongname", "ip", "tcp",
                                      "tcpbad")}
    pools = {
        "ok": {"tls": "on", "tls_ca": certs.pem("ca"), "tls_sni": "a.test", "server": f"s1 {tb.addr}"},
        # Sent and verified without the trailing dot (RFC 6066 §3).
        "okdot": {"tls": "on", "tls_ca": certs.pem("ca"), "tls_sni": "a.test.",
                  "server": f"s1 {tb.addr}"},
        "badca": {"tls": "on", "tls_ca": certs.pem("other"), "tls_sni": "a.test",
                  "server": f"s1 {tb.addr}"},
        "noverify": {"tls": "on", "tls_verify": "off", "tls_ca": certs.pem("other"),
                     "server": f"s1 {tb.addr}"},
        "wrongname": {"tls": "on", "tls_ca": certs.pem("ca"), "tls_sni": "b.test",
                      "server": f"s1 {tb.addr}"},
        "ip": {"tls": "on", "tls_ca": certs.pem("ca"), "server": f"s1 {ipb.addr}"},
    }
    log = ctx.path("access.log")
    sections = [glob_section({"access_log": log})]
    for name, p in pools.items():
        sections.append((f"pool {name}", dict({"check": "none", "retries": 0}, **p)))
    for name in pools:
        sections.append((f"listener {name}", {"bind": f"127.0.0.1:{ports[name]}", "mode": "http",
                                              "pool": name}))
    sections.append(("listener tcp", {"bind": f"127.0.0.1:{ports['tcp']}", "mode": "tcp",
                                      "pool": "ok"}))
    sections.append(("listener tcpbad", {"bind": f"127.0.0.1:{ports['tcpbad']}", "mode": "tcp",
                                         "pool": "badca"}))
    f = ctx.fulcrum(ini(*sections))
    for name, want in (("ok", 200), ("okdot", 200), ("noverify", 200), ("ip", 200), ("badca", 502),
                       ("wrongname", 502)):
        for _ in range(2):
            status, body = http_get(ports[name], f"/{name}")
            check(status == want, f"pool {name}: status {status}, want {want}: {body!r}")
            if want == 200:
                check(body.endswith("xfp=http path=/" + name + "\n"), f"pool {name}: {body!r}")
    check("unable to get local issuer certificate" in f.stderr(),
          "the verification failure is not logged")
    # tcp mode: plain client, TLS to the server.
    s = connect(("127.0.0.1", ports["tcp"]))
    s.sendall(b"GET /tcp HTTP/1.0\r\nHost: a\r\n\r\n")
    got = recv_all(s)
    s.close()
    check(got.startswith(b"HTTP/1.") and got.endswith(b"tlsbe xfp=None path=/tcp\n"),
          f"tcp to a TLS server: {got!r}")
    # tcp mode, a server that fails verification: closed, and the log says
    # why as http mode's does.
    s = connect(("127.0.0.1", ports["tcpbad"]))
    check(closed_by_peer(s, 3 * SCALE) is not None, "tcp client kept after a failed verification")
    s.close()
    wait_for(lambda: any(" tcpbad badca/s1 " in l for l in read_lines(log)), 3 * SCALE,
             what="the tcp line")
    line = [l for l in read_lines(log) if " tcpbad badca/s1 " in l][0]
    check(line.endswith(" server_tls_failed"), f"tcp reason for a failed verification: {line!r}")
    http_lines = [l for l in read_lines(log) if " badca badca/s1 " in l]
    check(http_lines and all(l.endswith(" server_tls_failed") for l in http_lines),
          f"http lines for the same failure: {http_lines!r}")


def test_server_handshake_is_part_of_connecting(ctx):
    """TLS to servers: a handshake that stalls (a server that never
    answers the ClientHello) or fails (a certificate for another name) is
    a failed connect: bounded by connect_timeout and retried on the next
    server, in http and tcp mode, so every request reaches the good one."""
    certs = make_certs(ctx)
    good = http_server(ctx, "good", certs.pem("a"), certs.key("a"))
    wrong = http_server(ctx, "wrong", certs.pem("b"), certs.key("b"))
    silent = ctx.backend("silent")
    hport, tport, sport = free_port(), free_port(), free_port()
    log = ctx.path("access.log")
    tls = {"check": "none", "tls": "on", "tls_ca": certs.pem("ca"), "tls_sni": "a.test",
           "connect_timeout": "1s", "retries": 1, "max_fails": 0}
    conf = ini(glob_section({"workers": 1, "access_log": log}),
               ("pool bad", dict(tls, server=[f"wrong {wrong.addr}", f"good {good.addr}"])),
               ("pool stall", dict(tls, server=[f"silent {silent.addr}", f"good {good.addr}"])),
               ("listener h", {"bind": f"127.0.0.1:{hport}", "mode": "http", "pool": "bad"}),
               ("listener t", {"bind": f"127.0.0.1:{tport}", "mode": "tcp", "pool": "bad"}),
               ("listener s", {"bind": f"127.0.0.1:{sport}", "mode": "http", "pool": "stall",
                               "client_timeout": "10s"}))
    f = ctx.fulcrum(conf)
    for i in range(4):
        status, body = http_get(hport, f"/h{i}")
        check(status == 200 and body.startswith("good"), f"http request {i}: {status} {body!r}")
        s = connect(("127.0.0.1", tport))
        s.sendall(b"GET /t HTTP/1.0\r\nHost: a\r\n\r\n")
        got = recv_all(s)
        s.close()
        check(got.startswith(b"HTTP/1.") and b"good" in got, f"tcp connection {i}: {got[-80:]!r}")
    for i in range(2):
        t0 = time.monotonic()
        status, body = http_get(sport, f"/s{i}")
        took = time.monotonic() - t0
        check(status == 200 and body.startswith("good"), f"stalled server, request {i}: {status}")
        check(took < 3 * SCALE, f"a stalled handshake held the request {took:.1f}s")
    check("hostname mismatch" in f.stderr(), "the failed verification is not logged")


def test_last_tls_failure_is_the_logged_reason(ctx):
    """With retries left but no other server to try, the 502 still names
    what went wrong: server_tls_failed, not a generic connect_failed."""
    certs = make_certs(ctx)
    wrong = http_server(ctx, "wrong", certs.pem("b"), certs.key("b"))
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(ini(glob_section({"workers": 1, "access_log": log}),
                    ("pool p", {"check": "none", "tls": "on", "tls_ca": certs.pem("ca"),
                                "tls_sni": "a.test", "retries": 2, "max_fails": 0,
                                "server": f"s1 {wrong.addr}"}),
                    ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p"})))
    status, _ = http_get(port, "/x")
    check(status == 502, f"status {status}")
    lines = wait_for(lambda: read_lines(log), 3 * SCALE, what="the access-log line")
    check(lines[0].endswith(" server_tls_failed"), f"log line: {lines[0]}")


def test_session_reuse_to_servers(ctx):
    certs = make_certs(ctx)
    ss = s_server(ctx, certs.pem("a"), certs.key("a"))
    port = free_port()
    conf = ini(glob_section({"workers": 1}),
               ("pool p", {"check": "none", "keepalive": 0, "server": f"s1 {ss.addr}",
                           "tls": "on", "tls_ca": certs.pem("ca"), "tls_sni": "a.test"}),
               ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p"}))
    ctx.fulcrum(conf)
    seen = []
    for _ in range(4):
        status, body = http_get(port, "/")
        check(status == 200, f"status {status}: {body[-500:]!r}")
        seen.append("Reused" if "\nReused, " in body else "New" if "\nNew, " in body else "?")
    check(seen[0] == "New" and seen[1:] == ["Reused"] * 3, f"sessions to the server: {seen}")


def test_tls_server_connections_are_pooled(ctx):
    """With tls = on, a server connection goes back to the pool after a clean
    response like a plain one (nothing left in the TLS layer): five
    requests from five clients take one connection."""
    certs = make_certs(ctx)
    srv = http_server(ctx, "s", certs.pem("a"), certs.key("a"), keepalive=True)
    port = free_port()
    conf = ini(glob_section({"workers": 1}),
               ("pool p", {"check": "none", "keepalive": 4, "server": f"s1 {srv.addr}",
                           "tls": "on", "tls_ca": certs.pem("ca"), "tls_sni": "a.test"}),
               ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p"}))
    ctx.fulcrum(conf)
    for i in range(5):
        status, body = http_get(port, f"/{i}")
        check(status == 200 and f"path=/{i}" in body, f"request {i}: {status} {body!r}")
    check(srv.accepted == 1, f"{srv.accepted} TLS connections to the server for 5 requests")
    srv.close()  # the pooled connection goes when the server closes it


def test_tcp_termination_both_ways(ctx):
    certs = make_certs(ctx)
    echo = ctx.backend("echo")
    data = blob(4 * MIB, seed=7)
    src = ctx.backend("source", data=data)
    port, port2 = free_port(), free_port()
    conf = ini(glob_section(),
               ("pool e", {"check": "none", "server": echo.server_line()}),
               ("pool s", {"check": "none", "server": src.server_line()}),
               ("listener l", terminating_listener(port, certs, mode="tcp", pool="e")),
               ("listener l2", terminating_listener(port2, certs, mode="tcp", pool="s")))
    f = ctx.fulcrum(conf)
    # Echo through TLS, in pieces and in bulk.
    s = tls_client(port, certs)
    for n in (1, 100, 16384, 100000):
        payload = blob(n, seed=n)
        s.sendall(payload)
        check(recv_exact(s, n) == payload, f"echo of {n} bytes differs")
    # 8 MiB in 128 KiB rounds (an SSL socket is not for two threads at once).
    big = blob(8 * MIB, seed=3)
    got = bytearray()
    for off in range(0, len(big), 128 * 1024):
        piece = big[off:off + 128 * 1024]
        s.sendall(piece)
        got += recv_exact(s, len(piece))
    check(sha256(bytes(got)) == sha256(big), "8 MiB echo differs")
    s.close()
    # The server closes first: the client reads everything and a clean end
    # (close_notify, not a bare FIN, which would raise SSLEOFError here).
    s = tls_client(port2, certs, strict_eof=True)
    got = bytearray()
    while True:
        b = s.recv(262144)
        if not b:
            break
        got += b
    s.close()
    check(len(got) == len(data) and sha256(bytes(got)) == sha256(data),
          f"download over TLS: {len(got)} of {len(data)} bytes")
    f.check_alive()


def test_passthrough_routes_by_sni(ctx):
    certs = make_certs(ctx)
    sa = s_server(ctx, certs.pem("a"), certs.key("a"))
    sb = s_server(ctx, certs.pem("b"), certs.key("b"))
    sw = http_server(ctx, "wild", certs.pem("w"), certs.key("w"))
    port = free_port()
    conf = ini(glob_section({"access_log": "stderr"}),
               ("pool pa", {"check": "none", "server": f"a1 {sa.addr}"}),
               ("pool pb", {"check": "none", "server": f"b1 {sb.addr}"}),
               ("pool pw", {"check": "none", "server": f"w1 {sw.addr}"}),
               ("listener pt", {"bind": f"127.0.0.1:{port}", "mode": "tcp", "pool": "pa"}),
               ("route rb", {"listener": "pt", "host": "b.test", "pool": "pb"}),
               ("route rw", {"listener": "pt", "host": "*.w.test", "pool": "pw"}))
    f = ctx.fulcrum(conf)
    # A name with a port, or two trailing dots, is no server name: no route.
    for sni, cn in (("b.test", "b.test"), ("B.TEST", "b.test"), ("b.test.", "b.test"),
                    ("a.test", "a.test"), ("other.example", "a.test"), ("b.test:443", "a.test"),
                    ("b.test..", "a.test")):
        out = s_client(port, "-servername", sni, "-CAfile", certs.pem("ca"), "-ign_eof",
                       data=b"GET / HTTP/1.0\r\n\r\n")
        check(subject_cn(out) == cn, f"SNI {sni}: server certificate {subject_cn(out)!r}")
        check("Ciphers supported in s_server binary" in out,
              f"SNI {sni}: no answer through the passthrough:\n{out[-1500:]}")
    out = s_client(port, "-noservername", "-ign_eof", data=b"GET / HTTP/1.0\r\n\r\n")
    check(subject_cn(out) == "a.test", f"no SNI: {subject_cn(out)!r}")
    status, body, err = curl(port, "x.w.test", "/deep", cacert=certs.pem("ca"))
    check(status == 200 and body == "wild xfp=None path=/deep\n",
          f"wildcard route: {status} {body!r} {err}")
    # The bytes were relayed untouched: the end-to-end TLS session verified
    # above is proof; the access log names the pools.
    wait_for(lambda: "pt pb/b1" in f.stderr() and "pt pw/w1" in f.stderr(), 3 * SCALE,
             what="access log lines naming the routed pools")


def test_passthrough_hello_in_pieces(ctx):
    """A ClientHello dribbled in small TCP segments is still routed."""
    certs = make_certs(ctx)
    sb = http_server(ctx, "bee", certs.pem("b"), certs.key("b"))
    sa = http_server(ctx, "aye", certs.pem("a"), certs.key("a"))
    port = free_port()
    conf = ini(glob_section(),
               ("pool pa", {"check": "none", "server": f"a1 {sa.addr}"}),
               ("pool pb", {"check": "none", "server": f"b1 {sb.addr}"}),
               ("listener pt", {"bind": f"127.0.0.1:{port}", "mode": "tcp", "pool": "pa"}),
               ("route rb", {"listener": "pt", "host": "b.test", "pool": "pb"}))
    ctx.fulcrum(conf)
    c = ssl.create_default_context(cafile=certs.pem("ca"))
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = c.wrap_bio(inb, outb, server_hostname="b.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outb.read()
    s = connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(0, len(hello), 7):
        s.sendall(hello[i:i + 7])
        time.sleep(0.002)
    # Finish the handshake through the memory BIOs.
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outb.pending:
                s.sendall(outb.read())
            d = s.recv(65536)
            check(d, "closed during the handshake")
            inb.write(d)
    if outb.pending:
        s.sendall(outb.read())
    obj.write(b"GET /pieces HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
    s.sendall(outb.read())
    got = b""
    while b"\n" not in got.partition(b"\r\n\r\n")[2]:
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            d = s.recv(65536)
            if not d:
                break
            inb.write(d)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    s.close()
    check(got.endswith(b"bee xfp=None path=/pieces\n"), f"answer through passthrough: {got!r}")


def _stalled_clients_closed(ctx, port, served):
    """A silent client and one that stops mid-hello are both closed after
    handshake_timeout (1 s), while another client is served meanwhile."""
    silent = connect(("127.0.0.1", port))
    half = connect(("127.0.0.1", port))
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20)
    t0 = time.monotonic()
    served()
    check(time.monotonic() - t0 < 0.9 * SCALE, "serving another client waited for the stalled ones")
    for s, what in ((silent, "silent client"), (half, "half a ClientHello")):
        took = closed_by_peer(s, 5 * SCALE)
        check(took is not None, f"{what} still open after {5 * SCALE:.0f}s")
        took = time.monotonic() - t0
        check(0.8 <= took <= 2.5 * SCALE, f"{what} closed after {took:.2f}s, want about 1s")
        s.close()


def test_handshake_timeout(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    sa = http_server(ctx, "pass", certs.pem("a"), certs.key("a"))
    port, pport = free_port(), free_port()
    conf = ini(glob_section({"workers": 1, "access_log": "stderr"}),
               ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
               ("pool pa", {"check": "none", "server": f"s1 {sa.addr}"}),
               ("listener l", terminating_listener(port, certs, handshake_timeout="1s",
                                                    mode="tcp")),
               ("listener pt", {"bind": f"127.0.0.1:{pport}", "mode": "tcp",
                                "handshake_timeout": "1s"}),
               ("route ra", {"listener": "pt", "host": "a.test", "pool": "pa"}))
    f = ctx.fulcrum(conf)

    def served(p):
        def run():
            status, body, err = curl(p, "a.test", "/", cacert=certs.pem("ca"))
            check(status == 200, f"another client was not served: {status} {err}")
        return run

    _stalled_clients_closed(ctx, port, served(port))
    # Passthrough: no ClientHello in time is no SNI, and this listener has
    # no pool of its own for that.
    _stalled_clients_closed(ctx, pport, served(pport))
    wait_for(lambda: f.stderr().count("tls_handshake_timeout") >= 2 and
             f.stderr().count(" no_server") >= 2, 3 * SCALE,
             what="tls_handshake_timeout and no_server in the access log")


def _passthrough_conf(pport, plain_addr, pass_addr, **listener):
    """A tcp listener on PPORT routing SNI a.test to PASS_ADDR (pool pa);
    everything else goes to its pool p, PLAIN_ADDR."""
    return ini(glob_section({"access_log": "stderr"}),
               ("pool p", {"check": "none", "server": f"s1 {plain_addr}"}),
               ("pool pa", {"check": "none", "server": f"s1 {pass_addr}"}),
               ("listener pt", dict({"bind": f"127.0.0.1:{pport}", "mode": "tcp", "pool": "p"},
                                    **listener)),
               ("route ra", {"listener": "pt", "host": "a.test", "pool": "pa"}))


def test_passthrough_silent_client_goes_to_the_pool(ctx):
    """A client that sends no ClientHello within handshake_timeout has no
    SNI: it goes to the listener's pool (a protocol whose server speaks
    first), as nginx's preread and HAProxy's inspect-delay fall through."""
    certs = make_certs(ctx)
    first = ctx.backend("name", name="speaks-first")
    sa = http_server(ctx, "pass", certs.pem("a"), certs.key("a"))
    pport = free_port()
    conf = _passthrough_conf(pport, first.addr, sa.addr, handshake_timeout="500ms")
    ctx.fulcrum(conf)
    s = connect(("127.0.0.1", pport), timeout=5 * SCALE)
    t0 = time.monotonic()
    line = recv_line(s)
    took = time.monotonic() - t0
    s.close()
    check(line == b"speaks-first\n", f"the silent client got {line!r}")
    check(0.4 <= took <= 2 * SCALE, f"connected to the pool after {took:.2f}s, want about 0.5s")


def test_plain_http_on_a_tls_port_is_told_why(ctx):
    """A plain HTTP request on an https listener gets a plain 400 that says
    why (nginx answers it so) rather than an empty reply; the access log
    counts it. A tcp TLS listener carries other protocols: it just closes."""
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port, tport, fport = free_port(), free_port(), free_port()
    fwd = terminating_listener(fport, certs, mode="forward")
    fwd.pop("pool", None)
    f = ctx.fulcrum(ini(glob_section({"access_log": "stderr"}),
                        ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
                        ("listener l", terminating_listener(port, certs)),
                        ("listener t", terminating_listener(tport, certs, mode="tcp")),
                        ("listener f", fwd)))
    p = subprocess.run(["curl", "-s", "-i", "--max-time", str(int(10 * SCALE)),
                        f"http://127.0.0.1:{port}/"], capture_output=True, timeout=20 * SCALE)
    out = p.stdout.decode("latin-1")
    check(out.startswith("HTTP/1.1 400 ") and out.endswith("plain HTTP sent to a TLS port\n")
          and "\r\nDate: " in out, f"curl http:// to the https port: rc {p.returncode} {out!r}")
    # A client told http:// for a TLS forward proxy sends a plain CONNECT.
    s = connect(("127.0.0.1", fport))
    s.sendall(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n")
    got = recv_all(s)
    s.close()
    check(got.startswith(b"HTTP/1.1 400 ") and got.endswith(b"plain HTTP sent to a TLS port\n"),
          f"a plain CONNECT to the TLS forward port: {got!r}")
    s = connect(("127.0.0.1", tport))
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    got = b""
    while (b := s.recv(4096)):
        got += b
    s.close()
    check(b"HTTP/1.1 400" not in got, f"the tcp listener answered in HTTP: {got!r}")
    status, _, err = curl(port, "a.test", "/", cacert=certs.pem("ca"))
    check(status == 200, f"https after it: {status} {err}")
    lines = [ln for ln in f.stderr().splitlines() if "tls_handshake_failed" in ln]
    check(sum(bool(re.search(r'" 400 \d+ 1\d\d \d+ - tls_handshake_failed', ln)) for ln in lines) == 2,
          f"the 400s and their bytes are not in the log: {lines}")


def test_garbage_hello(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    sa = http_server(ctx, "pass", certs.pem("a"), certs.key("a"))
    port, pport = free_port(), free_port()
    conf = ini(glob_section({"access_log": "stderr"}),
               ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
               ("pool pa", {"check": "none", "server": f"s1 {sa.addr}"}),
               ("listener l", terminating_listener(port, certs, mode="tcp",
                                                    handshake_timeout="2s")),
               ("listener pt", {"bind": f"127.0.0.1:{pport}", "mode": "tcp", "pool": "pa",
                                "handshake_timeout": "2s"}),
               ("route ra", {"listener": "pt", "host": "a.test", "pool": "pa"}))
    f = ctx.fulcrum(conf)
    junk = [
        b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
        os.urandom(3000),
        b"\x16\x03\x01\xff\xff" + b"\x01" * 100,  # record longer than allowed
        b"\x16\x03\x01\x00\x30\x02\x00\x00\x2c" + b"\x00" * 44,  # a ServerHello
        b"\x16\x03\x01\x40\x05\x01\x00\x40\x01" + b"\x00" * 16380,  # oversized hello
        b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10",  # SSLv2 hello
    ]
    for p in (port, pport):
        # The passthrough listener reads the hello for its SNI: garbage that
        # looks like TLS must not trip it. What it cannot read a name from
        # goes to its pool (test_passthrough_plain_client_uses_the_pool),
        # whose TLS server may keep the connection a while: the client
        # closes it, and the line it gets is what shows it was handled.
        for j in junk:
            s = connect(("127.0.0.1", p))
            try:
                s.sendall(j)
            except OSError:
                pass
            took = closed_by_peer(s, (5 if p == port else 0.5) * SCALE)
            check(p == pport or took is not None,
                  f"port {p}: garbage {j[:16]!r} left the connection open")
            s.close()
        status, body, err = curl(p, "a.test", "/", cacert=certs.pem("ca"))
        check(status == 200, f"port {p}: a good client after the garbage: {status} {err}")
    wait_for(lambda: len(re.findall(r" pt \S+ ", f.stderr())) == len(junk) + 1, 5 * SCALE,
             what="a line for each passthrough connection")
    f.check_alive()
    log = f.stderr()
    check("tls_handshake_failed" in log,
          f"close reasons missing from the access log:\n{log[-2000:]}")
    # A failed handshake's line counts the bytes that came and the alerts
    # that went: the 3000 random bytes, the plain request.
    counts = [(int(i), int(o)) for i, o in
              re.findall(r'" - (\d+) (\d+) \d+ - tls_handshake_(?:failed|timeout)', log)]
    check(any(i == 3000 for i, _ in counts),
          f"no line with the 3000 bytes received: {counts}")
    check(any(i == len(junk[0]) for i, _ in counts) and any(o > 0 for _, o in counts),
          f"no line with the plain request's {len(junk[0])} bytes, or none with an alert: {counts}")


def test_passthrough_plain_client_uses_the_pool(ctx):
    """A tcp listener routing by SNI: a client that does not speak TLS has
    no SNI, so no route matches and its bytes go, untouched, to the
    listener's pool (SPEC §2 [route]: "no SNI = no match")."""
    certs = make_certs(ctx)
    echo = ctx.backend("echo", name="plain")
    sa = http_server(ctx, "pass", certs.pem("a"), certs.key("a"))
    pport = free_port()
    conf = _passthrough_conf(pport, echo.addr, sa.addr)
    f = ctx.fulcrum(conf)
    for payload in (b"GET / HTTP/1.0\r\n\r\n", os.urandom(3000)):
        s = connect(("127.0.0.1", pport))
        s.sendall(payload)
        got = recv_exact(s, len(payload))
        check(got == payload, f"plain bytes not relayed to the pool: {got[:40]!r}")
        s.close()
    status, body, err = curl(pport, "a.test", "/", cacert=certs.pem("ca"))
    check(status == 200 and "pass" in body, f"the SNI route after plain clients: {status} {err}")
    wait_for(lambda: f.stderr().count(" pt p/s1 ") >= 2, 3 * SCALE,
             what="two log lines of plain clients relayed through pool p")
    check(" 3000 3000 " in f.stderr(), "bytes of the plain client not counted in its log line")


def test_passthrough_half_a_hello_then_fin_goes_to_the_pool(ctx):
    """A client that sends part of a ClientHello and then its FIN will send
    no more: like one still incomplete at handshake_timeout, it has no SNI,
    so its bytes and the FIN go to the listener's pool at once."""
    certs = make_certs(ctx)
    echo = ctx.backend("echo", name="plain")
    sa = http_server(ctx, "pass", certs.pem("a"), certs.key("a"))
    pport = free_port()
    f = ctx.fulcrum(_passthrough_conf(pport, echo.addr, sa.addr, handshake_timeout="10s"))
    out = ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out, server_hostname="a.test")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    check(len(hello) > 100, f"no ClientHello made: {len(hello)} bytes")
    # Cut before the name: a hello whose SNI has come is routed by it.
    for cut in (1, 5, 50, hello.index(b"a.test")):
        s = connect(("127.0.0.1", pport))
        t0 = time.monotonic()
        s.sendall(hello[:cut])
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        s.close()
        check(got == hello[:cut], f"{cut} bytes of a hello and a FIN: got back {len(got)} bytes")
        check(time.monotonic() - t0 < 2 * SCALE, "the FIN waited for handshake_timeout")
    check("tls_bad_client_hello" not in f.stderr(), f"refused: {f.stderr()[-800:]}")


def test_passthrough_half_a_hello_then_reset_reaches_no_server(ctx):
    """A client that resets in the middle of its ClientHello sends nothing
    for a server: no connection is made to the pool, and the line counts the
    bytes that came. Before, the pool's server got a connection that was
    reset at once, and the line said 0 bytes."""
    certs = make_certs(ctx)
    echo = ctx.backend("echo", name="plain")
    sa = http_server(ctx, "pass", certs.pem("a"), certs.key("a"))
    pport = free_port()
    f = ctx.fulcrum(_passthrough_conf(pport, echo.addr, sa.addr, handshake_timeout="10s"))
    s = connect(("127.0.0.1", pport))
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 29)  # 40 bytes
    time.sleep(0.3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # a reset
    wait_for(lambda: "client_reset" in f.stderr(), 3 * SCALE, what="the reset's log line")
    line = [ln for ln in f.stderr().splitlines() if ln.endswith(" client_reset")][0]
    check(' -/- "- - -" - 40 0 ' in line, f"log line: {line}")
    check(echo.accepted == 0, f"the pool's server got {echo.accepted} connection(s)")


def test_connection_without_a_byte_is_no_tls_error(ctx):
    """A port probe on a TLS listener, terminating or routing by SNI, is
    logged as a client that left without a byte, not a TLS failure."""
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    port, pport = free_port(), free_port()
    conf = ini(glob_section({"access_log": "stderr", "workers": 1}),
               ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
               ("listener l", terminating_listener(port, certs)),
               ("listener pt", {"bind": f"127.0.0.1:{pport}", "mode": "tcp", "pool": "p"}),
               ("route ra", {"listener": "pt", "host": "a.test", "pool": "p"}))
    f = ctx.fulcrum(conf)
    for p in (port, pport):
        s = connect(("127.0.0.1", p))
        time.sleep(0.05)
        s.close()
    lines = wait_for(lambda: (lambda ls: ls if len(ls) >= 2 else None)(
        [ln for ln in f.stderr().splitlines() if '"- - -"' in ln]), 3 * SCALE,
        what="two access-log lines")
    check(all(re.search(r'"- - -" - 0 0 \d+ - client_closed$', ln) for ln in lines),
          f"lines: {lines}")


def _line_of(text, key):
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith(f"{key} ="):
            return i
    raise TestFailure(f"no {key} line")


def test_bad_certificates_at_check(ctx):
    certs = make_certs(ctx)
    d = certs.dir
    _openssl("x509", "-req", "-in", "a.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "expired.pem", "-days", "-1", cwd=d)
    _openssl("pkey", "-in", "a.key", "-aes256", "-passout", "pass:secret", "-out", "enc.key",
             cwd=d)
    with open(os.path.join(d, "junk.pem"), "w") as f:
        f.write("this is not a certificate\n")
    unreadable = os.path.join(d, "noperm.pem")
    shutil.copy(certs.pem("a"), unreadable)
    os.chmod(unreadable, 0)
    cases = [
        ("missing cert", os.path.join(d, "nope.pem"), certs.key("a"), "cannot read tls_cert"),
        ("missing key", certs.pem("a"), os.path.join(d, "nope.key"), "cannot read tls_key"),
        ("mismatched key", certs.pem("a"), certs.key("b"), "does not match"),
        ("not PEM", os.path.join(d, "junk.pem"), certs.key("a"), "no usable PEM certificate"),
        ("encrypted key", certs.pem("a"), os.path.join(d, "enc.key"), "no usable private key"),
    ]
    if os.geteuid() != 0:  # root reads anything
        cases.append(("unreadable", unreadable, certs.key("a"), "cannot read tls_cert"))
    port = free_port()
    for what, cert, key, msg in cases:
        text = ini(glob_section(),
                   ("pool p", {"check": "none", "server": "s1 127.0.0.1:9"}),
                   ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p",
                                   "tls_cert": cert, "tls_key": key}))
        path = ctx.write("bad.ini", text)
        rc, out, err = run_fulcrum(["-t", "-c", path])
        check(rc == 1, f"{what}: -t exited {rc}: {err}")
        check(f"{path}:" in err and msg in err, f"{what}: no FILE:LINE message with {msg!r}: {err}")
        lines = [l for l in err.splitlines() if msg in l]
        # Reported at the tls_key line for the key and the pair, else at
        # the tls_cert line.
        key_line = "tls_key" in msg or msg == "does not match" or "private key" in msg
        want = _line_of(text, "tls_key" if key_line else "tls_cert")
        check(lines and lines[0].startswith(f"{path}:{want}: "), f"{what}: wrong line: {lines}")
    # Settings that OpenSSL must accept.
    for key, value, msg in (("tls_ciphers", "NO-SUCH-CIPHER", "tls_ciphers"),
                            ("alpn", "http/1.1,,h2", "bad alpn")):
        text = ini(glob_section(),
                   ("pool p", {"check": "none", "server": "s1 127.0.0.1:9"}),
                   ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p",
                                   "tls_cert": certs.pem("a"), "tls_key": certs.key("a"),
                                   key: value}))
        path = ctx.write("bad.ini", text)
        rc, out, err = run_fulcrum(["-t", "-c", path])
        check(rc == 1 and f"{path}:{_line_of(text, key)}: " in err and msg in err,
              f"{key} = {value}: {rc} {err}")
    text = ini(glob_section(),
               ("pool p", {"check": "none", "server": "s1 127.0.0.1:9", "tls": "on",
                           "tls_ca": os.path.join(d, "junk.pem")}),
               ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p"}))
    path = ctx.write("bad.ini", text)
    rc, out, err = run_fulcrum(["-t", "-c", path])
    check(rc == 1 and "tls_ca" in err and f"{path}:" in err, f"junk tls_ca: {rc} {err}")
    # And a good one passes.
    text = https_conf(port, certs, "127.0.0.1:9")
    path = ctx.write("good.ini", text)
    rc, out, err = run_fulcrum(["-t", "-c", path])
    check(rc == 0, f"valid TLS configuration refused: {err}")


def test_rsa_and_ecdsa_certificates_for_one_name(ctx):
    """Two pairs for the same names, one RSA and one ECDSA: each client gets
    the one whose signatures it supports (as nginx and HAProxy do), whatever
    the order of the lines."""
    certs = make_certs(ctx)
    _leaf(certs.dir, "arsa", "a.test", "DNS:a.test", kind="rsa")
    be = http_server(ctx, "s")
    for order in (("a", "arsa"), ("arsa", "a")):
        port = free_port()
        f = ctx.fulcrum(ini(glob_section(),
                            ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
                            ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http",
                                            "pool": "p",
                                            "tls_cert": [certs.pem(n) for n in order],
                                            "tls_key": [certs.key(n) for n in order]})))
        for args, bits in ((("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"), "256"),
                           (("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"), "2048"),
                           (("-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"), "256"),
                           (("-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"), "2048")):
            out = s_client(port, "-servername", "a.test", *args)
            check(f"Server public key is {bits} bit" in out,
                  f"{order} {args}: want the {bits}-bit key:\n{out[-1500:]}")
        f.stop()
    # Renewing either certificate ends the sessions of the pair: the RSA
    # one renewed, an RSA session from before is not resumed.
    d = certs.dir
    live = os.path.join(d, "live-rsa.pem")
    shutil.copy(certs.pem("arsa"), live)
    port = free_port()
    f = ctx.fulcrum(ini(glob_section(),
                        ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
                        ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p",
                                        "tls_cert": [live, certs.pem("a")],
                                        "tls_key": [certs.key("arsa"), certs.key("a")]})))
    sess = ctx.path("rsa-session.pem")
    rsa = ("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    req = b"GET / HTTP/1.0\r\n\r\n"
    s_client(port, "-servername", "a.test", "-sess_out", sess, "-ign_eof", *rsa, data=req)
    out = s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", *rsa, data=req)
    check("\nReused, " in out, f"the RSA session is not resumed at all:\n{out[-1500:]}")
    _openssl("x509", "-req", "-in", "arsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "live-rsa.pem", "-days", "2", "-extfile", "arsa.ext",
             cwd=d)
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), 5 * SCALE, what="the reload")
    out = s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", *rsa, data=req)
    check("\nNew, " in out, f"an RSA session resumed after the RSA renewal:\n{out[-1500:]}")


def test_a_client_gets_a_certificate_of_its_key_type_among_those_naming_it(ctx):
    """An ECDSA certificate for a.test and x.test, and an RSA one for a.test
    alone (name lists that differ): an RSA-only client asking for a.test,
    or asking for no name, gets the RSA certificate (as with HAProxy), an
    ECDSA one the ECDSA certificate, and x.test stays ECDSA's; a name no
    pair has goes to the first pair the client can use. An RSA wildcard
    serves an RSA-only client whom an ECDSA exact name cannot."""
    certs = make_certs(ctx)
    _leaf(certs.dir, "ax", "a.test", "DNS:a.test,DNS:x.test")
    _leaf(certs.dir, "arsa", "a.test", "DNS:a.test", kind="rsa")
    _leaf(certs.dir, "aw", "a.w.test", "DNS:a.w.test")
    _leaf(certs.dir, "wrsa", "w wildcard", "DNS:*.w.test", kind="rsa")
    be = http_server(ctx, "s")
    port, wport = free_port(), free_port()
    ctx.fulcrum(ini(glob_section(),
                    ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
                    ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p",
                                    "tls_cert": [certs.pem("ax"), certs.pem("arsa")],
                                    "tls_key": [certs.key("ax"), certs.key("arsa")]}),
                    ("listener w", {"bind": f"127.0.0.1:{wport}", "mode": "http", "pool": "p",
                                    "tls_cert": [certs.pem("aw"), certs.pem("wrsa")],
                                    "tls_key": [certs.key("aw"), certs.key("wrsa")]})))
    rsa12 = ("-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    rsa13 = ("-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256")
    ec13 = ("-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256")
    for name, args, bits in ((("-servername", "a.test"), rsa12, "2048"),
                             (("-servername", "a.test"), rsa13, "2048"),
                             (("-noservername",), rsa13, "2048"),
                             (("-servername", "a.test"), ec13, "256"),
                             (("-servername", "x.test"), ec13, "256"),
                             (("-noservername",), ec13, "256"),
                             (("-servername", "nobody.test"), rsa13, "2048"),
                             (("-servername", "nobody.test"), rsa12, "2048"),
                             (("-servername", "nobody.test"), ec13, "256")):
        out = s_client(port, *name, *args)
        check(f"Server public key is {bits} bit" in out,
              f"{name} {args}: want the {bits}-bit key:\n{out[-1500:]}")
    for name, args, bits in ((("-servername", "a.w.test"), rsa13, "2048"),
                             (("-servername", "a.w.test"), ec13, "256")):
        out = s_client(wport, *name, *args)
        check(f"Server public key is {bits} bit" in out,
              f"wildcard listener {name} {args}: want the {bits}-bit key:\n{out[-1500:]}")


def test_expired_certificate_warned_and_served(ctx):
    """An expired certificate is not a configuration error (nginx and HAProxy
    load one too; a restart after a failed renewal must not take the site
    down): -t passes with a FILE:LINE warning, and the listener serves it."""
    certs = make_certs(ctx)
    d = certs.dir
    _openssl("x509", "-req", "-in", "a.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "expired.pem", "-days", "-1", cwd=d)
    expired = os.path.join(d, "expired.pem")
    be = http_server(ctx, "s")
    port = free_port()
    text = ini(glob_section(),
               ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
               ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p",
                               "tls_cert": expired, "tls_key": certs.key("a")}))
    path = ctx.write("expired.ini", text)
    rc, out, err = run_fulcrum(["-t", "-c", path])
    want = f"{path}:{_line_of(text, 'tls_cert')}: warning: "
    check(rc == 0 and want in err and "has expired" in err, f"-t: {rc} {err}")
    f = ctx.fulcrum(text)
    check(f":{_line_of(text, 'tls_cert')}: warning: " in f.stderr(),
          f"no start-up warning: {f.stderr()}")
    out = s_client(port, "-servername", "a.test", "-showcerts")
    p = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=out.encode(),
                       capture_output=True)
    served = p.stdout.decode().strip()
    p = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", expired],
                       capture_output=True)
    check(served and served == p.stdout.decode().strip(),
          f"served {served!r}, not the expired certificate")


def test_reload_renewed_and_broken_certificates(ctx):
    certs = make_certs(ctx)
    be = http_server(ctx, "s")
    d = certs.dir
    live_pem, live_key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
    shutil.copy(certs.pem("a"), live_pem)
    shutil.copy(certs.key("a"), live_key)
    port = free_port()
    conf = ini(glob_section(),
               ("pool p", {"check": "none", "server": f"s1 {be.addr}"}),
               ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "p",
                               "tls_cert": live_pem, "tls_key": live_key}))
    f = ctx.fulcrum(conf)

    def serial():
        out = s_client(port, "-servername", "a.test", "-showcerts")
        p = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=out.encode(),
                           capture_output=True)
        return p.stdout.decode().strip()

    def file_serial(path):
        p = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", path],
                           capture_output=True)
        return p.stdout.decode().strip()

    first = serial()
    check(first == file_serial(certs.pem("a")), f"serving {first}")
    sess = ctx.path("session.pem")
    req = b"GET / HTTP/1.0\r\n\r\n"
    # Renewal: a new certificate for the same key.
    _openssl("x509", "-req", "-in", "a.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "renewed.pem", "-days", "2", "-extfile", "a.ext", cwd=d)
    shutil.copy(os.path.join(d, "renewed.pem"), live_pem)
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), 5 * SCALE, what="the reload")
    renewed = file_serial(os.path.join(d, "renewed.pem"))
    wait_for(lambda: serial() == renewed, 5 * SCALE, what="the renewed certificate to be served")
    # A session made under the old certificate is not resumed under the new
    # one (the client would go on trusting the certificate it saw first).
    for args in (("-tls1_2",), ("-tls1_3",)):
        s_client(port, "-servername", "a.test", "-sess_out", sess, "-ign_eof", *args,
                 data=req)
        shutil.copy(certs.pem("a"), live_pem)
        f.signal(signal.SIGHUP)
        wait_for(lambda: serial() == first, 5 * SCALE, what="the first certificate again")
        out = s_client(port, "-servername", "a.test", "-sess_in", sess, "-ign_eof", *args,
                       data=req)
        check("\nNew, " in out, f"{args}: session of the renewed certificate resumed "
              f"under the first:\n{out[-1500:]}")
        shutil.copy(os.path.join(d, "renewed.pem"), live_pem)
        f.signal(signal.SIGHUP)
        wait_for(lambda: serial() == renewed, 5 * SCALE, what="the renewed certificate again")
    # A broken renewal (the key no longer matches): the reload is refused
    # with FILE:LINE and the running certificate stays.
    shutil.copy(certs.key("b"), live_key)
    f.signal(signal.SIGHUP)
    wait_for(lambda: "does not match" in f.stderr(), 5 * SCALE, what="the reload error")
    check(f"{f.conf_path}:" in f.stderr(), "the reload error has no FILE:LINE")
    check(serial() == renewed, "the running certificate changed after a failed reload")
    status, body, err = curl(port, "a.test", "/", cacert=certs.pem("ca"))
    check(status == 200, f"serving after a failed reload: {status} {err}")
    f.check_alive()


class _RecordClient:
    """A TLS client over memory BIOs, so a test decides what goes out in
    which record, and when the close_notify and the FIN go."""

    def __init__(self, port, certs, name="a.test", hold_finished=False):
        """HOLD_FINISHED: stop once the server's handshake messages are in,
        before the client's Finished goes (finish() sends it)."""
        c = ssl.create_default_context(cafile=certs.pem("ca"))
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = c.wrap_bio(self.inb, self.outb, server_hostname=name)
        self.s = connect(("127.0.0.1", port))
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                d = self.s.recv(65536)
                check(d, "closed during the handshake")
                self.inb.write(d)
        if not hold_finished:
            self._flush()

    def finish(self):
        self._flush()

    def _flush(self):
        if self.outb.pending:
            self.s.sendall(self.outb.read())

    def record(self, data):
        self.tls.write(data)
        self._flush()

    def close_notify(self):
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def read_to_end(self):
        """Everything until the server's close; and whether it ended with a
        reset rather than a FIN."""
        data = bytearray()
        while True:
            try:
                d = self.s.recv(262144)
            except ConnectionResetError:
                return bytes(data), True
            if not d:
                return bytes(data), False
            self.inb.write(d)
            try:
                while d := self.tls.read(1 << 20):
                    data += d
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass


def test_requests_before_a_fin_are_read_whatever_the_records(ctx):
    """A client's FIN after requests in separate records (or after a
    close_notify) does not mean fulcrum read them: every request before it
    is answered, whole and in order, the connection ends with a FIN (no
    reset cutting the last answer short), and each request has its line."""
    from test_http import cbackend, pattern

    certs = make_certs(ctx)
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(https_conf(port, certs, b.addr, glob={"access_log": log, "workers": 1}))
    big = 4 * MIB
    first = f"GET /?size={big}&ms=100 HTTP/1.1\r\nHost: a.test\r\n\r\n".encode()
    second = b"GET /second?size=7 HTTP/1.1\r\nHost: a.test\r\n\r\n"
    for how in ("pipelined", "close_notify"):
        cl = _RecordClient(port, certs)
        cl.record(first)
        time.sleep(0.02)
        if how == "pipelined":
            cl.record(second)
        else:
            cl.close_notify()
        cl.s.shutdown(socket.SHUT_WR)
        time.sleep(0.3)  # the FIN is in before the answer starts
        data, reset = cl.read_to_end()
        cl.s.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200") and rest[:big] == pattern(big),
              f"{how}: the first answer: {head!r}, {len(rest)} bytes after it")
        check(not reset, f"{how}: the connection was reset")
        if how == "pipelined":
            check(b"connection: close" not in head.lower(), f"{how}: the first answer closes")
            head2, _, body2 = rest[big:].partition(b"\r\n\r\n")
            check(head2.startswith(b"HTTP/1.1 200") and body2 == pattern(7) and
                  b"connection: close" in head2.lower(), f"{how}: the second answer: {rest[big:]!r}")
        else:
            check(b"connection: close" in head.lower() and len(rest) == big,
                  f"{how}: after a close_notify the answer says close and ends: {head!r}")
    wait_for(lambda: sum("/second?size=7" in l for l in read_lines(log)) == 1 and
             sum(f"/?size={big}" in l for l in read_lines(log)) == 2, 2 * SCALE,
             what="a log line for each request")
    b.close()  # its pooled connection is no leak


def test_a_stop_lets_handshakes_under_way_finish(ctx):
    """SIGTERM while clients are half-way through their handshakes: they
    finish it; on an http listener the request that follows is answered
    with Connection: close, on a tcp listener the connection is relayed
    (up to graceful_timeout). A connection that has sent nothing yet is
    closed at once, as a plain one is."""
    certs = make_certs(ctx)
    web = http_server(ctx, "s")
    echo = ctx.backend("echo")
    hport, tport = free_port(), free_port()
    log = ctx.path("access.log")
    conf = ini(glob_section({"access_log": log, "graceful_timeout": "5s"}),
               ("pool p", {"check": "none", "server": f"s1 {web.addr}"}),
               ("pool e", {"check": "none", "server": echo.server_line()}),
               ("listener l", terminating_listener(hport, certs)),
               ("listener t", terminating_listener(tport, certs, mode="tcp", pool="e")))
    f = ctx.fulcrum(conf)
    silent = connect(("127.0.0.1", hport))
    hc = _RecordClient(hport, certs, hold_finished=True)
    tc = _RecordClient(tport, certs, hold_finished=True)
    f.signal(signal.SIGTERM)
    wait_for(lambda: "stopping gracefully" in f.stderr(), 2 * SCALE, what="the stop")
    check(closed_by_peer(silent, 2 * SCALE) is not None, "the silent connection stays open")
    silent.close()
    hc.finish()
    hc.record(b"GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n")
    data, reset = hc.read_to_end()
    check(data.startswith(b"HTTP/1.1 200") and b"connection: close" in data.lower() and not reset,
          f"the request after a handshake the stop came in: {data[:300]!r}, reset {reset}")
    tc.finish()
    tc.record(b"echo me\n")
    got = b""
    while not got.endswith(b"\n"):
        d = tc.s.recv(65536)
        if not d:
            break
        tc.inb.write(d)
        try:
            got += tc.tls.read(65536)
        except ssl.SSLWantReadError:
            pass
    check(got == b"echo me\n", f"the tcp connection after the stop: {got!r}")
    tc.s.close()
    check(f.wait_exit(5 * SCALE) == 0, "exit status")
    lines = read_lines(log)
    check(any(" l " in l and '"GET /x HTTP/1.1" 200' in l for l in lines), f"log: {lines}")
    check(any(l.endswith(" shutdown") and " 0 0 " in l for l in lines),
          f"the silent connection's line: {lines}")


def test_a_broken_record_is_logged_as_a_tls_error(ctx):
    """A client whose record fails to decrypt, after the handshake, gets an
    alert and a close, logged client_tls_error (not client_reset: it did
    not reset), on http and tcp listeners."""
    certs = make_certs(ctx)
    web = http_server(ctx, "s")
    echo = ctx.backend("echo")
    hport, tport = free_port(), free_port()
    log = ctx.path("access.log")
    conf = ini(glob_section({"access_log": log}),
               ("pool p", {"check": "none", "server": f"s1 {web.addr}"}),
               ("pool e", {"check": "none", "server": echo.server_line()}),
               ("listener l", terminating_listener(hport, certs)),
               ("listener t", terminating_listener(tport, certs, mode="tcp", pool="e")))
    ctx.fulcrum(conf)
    for port, name in ((hport, "l"), (tport, "t")):
        cl = _RecordClient(port, certs)
        if name == "t":
            cl.record(b"first\n")  # the server connection is up
            time.sleep(0.2)
        cl.tls.write(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        rec = bytearray(cl.outb.read())
        rec[-3] ^= 0xFF
        cl.s.sendall(bytes(rec))
        check(closed_by_peer(cl.s, 3 * SCALE) is not None, f"{name}: still open")
        cl.s.close()
    wait_for(lambda: sum(l.endswith(" client_tls_error") for l in read_lines(log)) == 2, 3 * SCALE,
             what="two client_tls_error lines")
