"""Admin API (SPEC §5): health, status, metrics, server changes at run time,
reloads through the API and SIGHUP, tokens and error statuses."""

import collections
import concurrent.futures
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

from harness import (SANITIZED, SCALE, Skip, TestFailure, check, closed_by_peer, closed_port, connect, echo_roundtrip,
                     connections_to, cpu_ticks, free_port, ini, listening_ports, name_via, recv_all, recv_line,
                     wait_for)

SERVER_KEYS = {"name", "address", "state", "weight", "connections_active", "requests_total"}


# ------------------------------------------------------------- helpers ----


def conf(port, admin_port, servers, glob=None, pool=None, listener=None, mode="tcp"):
    g = {"workers": 1, "admin": f"127.0.0.1:{admin_port}", "access_log": "off",
         "log_level": "info"}
    g.update(glob or {})
    p = {"balance": "roundrobin", "check": "none", "connect_timeout": "1s", "server": servers}
    p.update(pool or {})
    l = {"bind": f"127.0.0.1:{port}", "mode": mode, "pool": "p"}
    l.update(listener or {})
    return ini(("global", g), ("pool p", p), ("listener l", l))


class Admin:
    """A client of one fulcrum's admin API."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token

    def call(self, method, path, body=None, headers=None, token=None, timeout=10):
        """Returns (status, headers dict (lower-case names), body bytes)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SCALE)
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def json(self, method, path, body=None, want=200, **kw):
        st, _, data = self.call(method, path, body, **kw)
        check(st == want, f"{method} {path}: status {st}, want {want}: {data[:300]!r}")
        try:
            return json.loads(data)
        except ValueError:
            raise TestFailure(f"{method} {path}: not JSON: {data[:300]!r}")

    def status(self):
        return self.json("GET", "/status")

    def server(self, pool, name):
        for p in self.status()["pools"]:
            if p["name"] == pool:
                for s in p["servers"]:
                    if s["name"] == name:
                        return s
        return None

    def metrics(self):
        st, h, data = self.call("GET", "/metrics")
        check(st == 200, f"/metrics status {st}")
        check(h.get("content-type", "").startswith("text/plain"), f"/metrics type {h}")
        return data.decode()


def start(ctx, servers, token=None, **kw):
    port, admin_port = free_port(), free_port()
    glob = kw.pop("glob", {})
    if token:
        glob["admin_token"] = token
    f = ctx.fulcrum(conf(port, admin_port, servers, glob=glob, **kw))
    wait_for(lambda: _healthz(admin_port), 5 * SCALE, what="the admin API")
    return f, port, Admin(admin_port, token)


def _healthz(admin_port):
    try:
        return Admin(admin_port).call("GET", "/healthz")[0] == 200
    except OSError:
        return False


def names(ctx, *ns):
    return [ctx.backend("name", name=n) for n in ns]


def spread(port, n):
    return collections.Counter(name_via(("127.0.0.1", port)) for _ in range(n))


class HttpBackend:
    """A threaded HTTP/1.1 server answering 200 with its name, or STATUS."""

    def __init__(self, name, status=200):
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = (outer.name + "\n").encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.name = name
        self.status = status
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def server_line(self, opts=""):
        return f"{self.name} 127.0.0.1:{self.port} {opts}".rstrip()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def http_get(port, path="/"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SCALE)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# ---------------------------------------------- Prometheus text checking ----

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE_RE = re.compile(rf"^({METRIC_NAME})(\{{{LABEL}(?:,{LABEL})*\}})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"')


def parse_metrics(text):
    """A strict reader of the Prometheus text format 0.0.4: every family has
    HELP then TYPE before its samples, samples of one family are contiguous,
    no family appears twice, histograms have cumulative buckets ending in
    +Inf equal to _count. Returns {(name, frozenset(labels)): value}."""
    check(text.endswith("\n"), "metrics text does not end with a newline")
    types, helps, samples, seen = {}, {}, {}, []
    current = None
    for ln in text.split("\n")[:-1]:
        if ln.startswith("# HELP "):
            name = ln.split(" ", 3)[2]
            check(name not in helps, f"HELP twice for {name}")
            helps[name] = True
            current = name
            continue
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(" ")
            check(name == current and name not in types, f"TYPE {name} without its HELP first")
            check(typ in ("counter", "gauge", "histogram"), f"type {typ}")
            types[name] = typ
            seen.append(name)
            continue
        check(not ln.startswith("#") and ln.strip() == ln and ln, f"bad line {ln!r}")
        m = SAMPLE_RE.match(ln)
        check(m, f"bad sample line {ln!r}")
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(bucket|sum|count)$", "", name) if types.get(current) == "histogram" else name
        check(base == current, f"sample {name} outside its family {current}")
        if types[current] == "counter":
            check(name.endswith("_total"), f"counter {name} does not end in _total")
        lab = frozenset(LABEL_RE.findall(labels))
        key = (name, lab)
        check(key not in samples, f"duplicate sample {ln!r}")
        v = float(value)
        check(v >= 0, f"negative value {ln!r}")
        samples[key] = v
    for name, typ in types.items():
        if typ == "histogram":
            _check_histogram(name, samples)
    return samples


def _check_histogram(name, samples):
    series = collections.defaultdict(list)
    for (n, lab), v in samples.items():
        if n == name + "_bucket":
            d = dict(lab)
            le = d.pop("le")
            series[frozenset(d.items())].append((float(le), v))
    for lab, buckets in series.items():
        buckets.sort()
        check(buckets[-1][0] == float("inf"), f"{name}{dict(lab)}: no +Inf bucket")
        vals = [v for _, v in buckets]
        check(vals == sorted(vals), f"{name}{dict(lab)}: buckets not cumulative {vals}")
        check(samples.get((name + "_count", lab)) == vals[-1], f"{name}: _count != +Inf bucket")
        check((name + "_sum", lab) in samples, f"{name}: no _sum")


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def promtool():
    return os.environ.get("PROMTOOL") or shutil.which("promtool")


def check_with_promtool(text):
    tool = promtool()
    if not tool:
        return False
    p = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    check(p.returncode == 0, f"promtool check metrics failed:\n{p.stdout.decode()}{p.stderr.decode()}")
    return True


# ---------------------------------------------------------------- tests ----


def test_healthz_and_status_shape(ctx):
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [bs[0].server_line("weight=2"), bs[1].server_line()])
    st, h, body = adm.call("GET", "/healthz")
    check(st == 200 and body == b"ok", f"/healthz: {st} {body!r}")
    for path in ("/healthz", "/status", "/metrics"):
        raw = socket.create_connection(("127.0.0.1", adm.port), timeout=5 * SCALE)
        raw.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = recv_all(raw)
        raw.close()
        head, _, rest = got.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: " in head and rest == b"",
              f"HEAD {path}: {got[:300]!r}")
    s = adm.status()
    check(set(s) == {"generation", "listeners", "pools"}, f"/status keys {set(s)}")
    check(s["generation"] == 1, f"generation {s['generation']}")
    check(s["listeners"] == [{"name": "l", "mode": "tcp", "binds": [f"127.0.0.1:{port}"],
                              "connections_active": 0}], f"listeners {s['listeners']}")
    check(len(s["pools"]) == 1 and set(s["pools"][0]) == {"name", "balance", "servers"},
          f"pools {s['pools']}")
    p = s["pools"][0]
    check(p["name"] == "p" and p["balance"] == "roundrobin", f"pool {p}")
    check([x["name"] for x in p["servers"]] == ["s1", "s2"], f"servers {p['servers']}")
    for x in p["servers"]:
        check(set(x) == SERVER_KEYS, f"server keys {set(x)}")
        check(x["state"] == "up" and x["connections_active"] == 0, f"server {x}")
    check(p["servers"][0]["weight"] == 2 and p["servers"][0]["address"] == bs[0].addr,
          f"server {p['servers'][0]}")
    # a held connection shows as active on the listener and its server
    c = connect(("127.0.0.1", port))
    who = recv_line(c).decode().strip()
    wait_for(lambda: adm.status()["listeners"][0]["connections_active"] == 1, 3 * SCALE,
             what="connections_active 1")
    check(adm.server("p", who)["connections_active"] == 1, f"{who} not active")
    c.close()
    wait_for(lambda: adm.server("p", who)["connections_active"] == 0, 3 * SCALE,
             what="connections_active back to 0")
    check(adm.server("p", who)["requests_total"] == 1, f"requests_total {adm.server('p', who)}")


def test_token(ctx):
    bs = names(ctx, "s1")
    f, port, adm = start(ctx, [bs[0].server_line()], token="s3cr3t-token")
    st, h, _ = adm.call("GET", "/healthz", token="")
    check(st == 200, f"/healthz without a token: {st}")
    st, h, _ = adm.call("HEAD", "/healthz", token="")
    check(st == 200, f"HEAD /healthz without a token: {st}")
    # SPEC §5 exempts GET /healthz only.
    st, h, _ = adm.call("POST", "/healthz", token="")
    check(st == 401, f"POST /healthz without a token: {st}")
    st, h, _ = adm.call("POST", "/healthz")
    check(st == 405, f"POST /healthz with the token: {st}")
    # RFC 9112 §3.2.2: a server accepts the absolute form.
    st, _, _ = adm.call("GET", f"http://127.0.0.1:{adm.port}/status")
    check(st == 200, f"absolute-form GET /status: {st}")
    for tok in ("", "wrong", "s3cr3t-toke", "s3cr3t-token-"):
        st, h, body = adm.call("GET", "/status", token=tok)
        check(st == 401, f"/status with token {tok!r}: {st}")
        check("bearer" in h.get("www-authenticate", "").lower(), f"no WWW-Authenticate: {h}")
    for hdr in ({"Authorization": "Basic s3cr3t-token"}, {"Authorization": "Bearer"}):
        st, _, _ = adm.call("GET", "/status", headers=hdr, token="")
        check(st == 401, f"/status with {hdr}: {st}")
    st, _, _ = adm.call("POST", "/pools/p/servers/s1/drain", token="wrong")
    check(st == 401, f"drain with a wrong token: {st}")
    check(adm.server("p", "s1")["state"] == "up", "a refused drain changed the state")
    st, _, _ = adm.call("GET", "/metrics", token="")
    check(st == 401, f"/metrics without a token: {st}")
    check(adm.status()["generation"] == 1, "the right token is refused")
    st, _, _ = adm.call("GET", "/status", headers={"Authorization": "bearer s3cr3t-token"},
                        token="")
    check(st == 200, f"scheme is case-insensitive: {st}")


def test_error_statuses(ctx):
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [b.server_line() for b in bs])
    cases = [
        ("GET", "/nope", None, 404), ("GET", "/", None, 404), ("GET", "/status/", None, 404),
        ("POST", "/pools/x/servers/s1/drain", None, 404),
        ("POST", "/pools/p/servers/zz/drain", None, 404),
        ("POST", "/pools/p/servers/s1/explode", None, 404),
        ("GET", "/pools/p/servers/zz", None, 404),
        ("DELETE", "/pools/p/servers/zz", None, 404),
        ("PUT", "/pools/x/servers/s1/weight", {"weight": 2}, 404),
        ("POST", "/pools/x/servers", {"name": "n", "address": "127.0.0.1:1"}, 404),
        ("POST", "/status", None, 405), ("DELETE", "/metrics", None, 405),
        ("GET", "/reload", None, 405), ("POST", "/healthz", None, 405),
        ("GET", "/pools/p/servers/s1/drain", None, 405),
        ("POST", "/pools/p/servers/s1/weight", {"weight": 2}, 405),
        ("PUT", "/pools/p/servers/s1", None, 405), ("GET", "/pools/p/servers", None, 405),
        # Paths are exact: a trailing slash names no endpoint (not a server
        # called "", whose methods a 405 would list).
        ("POST", "/pools/p/servers/", {}, 404), ("GET", "/pools/p/servers/", None, 404),
        ("GET", "/pools/p/servers/s1/", None, 404), ("GET", "/pools/p//servers", None, 404),
    ]
    bad_weights = ['', 'x', '{}', '{"weight": "3"}', '{"weight": 3.0}', '{"weight": -1}',
                   '{"weight": 257}', '{"weight": 1, "x": 2}', '{"weight": 1,}', '[1]',
                   '{"weight": 1} {"weight": 2}', '{"weight": 01}', '{"weight": null}',
                   '{"weight":1', '{"weight": true}']
    cases += [("PUT", "/pools/p/servers/s1/weight", b, 400) for b in bad_weights]
    bad_adds = ['{"name": "s3"}', '{"address": "127.0.0.1:1"}',
                '{"name": "s 3", "address": "127.0.0.1:1"}',
                '{"name": "", "address": "127.0.0.1:1"}',
                '{"name": "..", "address": "127.0.0.1:1"}', '{"name": ".", "address": "127.0.0.1:1"}',
                '{"name": "s3", "address": "127.0.0.1"}',
                '{"name": "s3", "address": "127.0.0.1:0"}',
                '{"name": "s3", "address": "no-such-host.invalid:80"}',
                '{"name": "s3", "address": "127.0.0.1:1", "weight": -2}',
                '{"name": "s3", "address": "127.0.0.1:1", "backup": true}',
                '{"name": 3, "address": "127.0.0.1:1"}', 'name=s3',
                '{"name": "s3", "address": "unix:/tmp/c\\u0001d"}',
                b'{"name": "s3", "address": "unix:/tmp/\xff\xfe"}',
                b'{"name": "s3", "address": "unix:/tmp/\xed\xa0\x80"}']
    cases += [("POST", "/pools/p/servers", b, 400) for b in bad_adds]
    cases += [("POST", "/pools/p/servers", {"name": "s1", "address": "127.0.0.1:1"}, 400)]
    for method, path, body, want in cases:
        st, h, data = adm.call(method, path, body)
        check(st == want, f"{method} {path} {body!r}: {st}, want {want}: {data[:200]!r}")
        if st == 405:
            check("allow" in h, f"405 without Allow: {method} {path}")
        if st != 200:
            check("error" in json.loads(data), f"error body {data!r}")
    # size limits and framing
    st, _, _ = adm.call("PUT", "/pools/p/servers/s1/weight", b"{" + b" " * 70000 + b"}")
    check(st == 413, f"70 kB body: {st}")
    st, _, _ = adm.call("GET", "/status", headers={"X-Big": "a" * 70000})
    check(st == 431, f"70 kB head: {st}")
    for chunks in (b"zz\r\n{\r\n0\r\n\r\n", b"2\r\n{}x\r\n0\r\n\r\n", b"1\r\n{\n0\r\n\r\n"):
        s = connect(("127.0.0.1", adm.port))
        s.sendall(b"PUT /pools/p/servers/s1/weight HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        got = s.recv(100)
        check(got.startswith(b"HTTP/1.1 400"), f"malformed chunked body {chunks!r}: {got!r}")
        s.close()
    s = connect(("127.0.0.1", adm.port))
    try:
        s.sendall(b"PUT /pools/p/servers/s1/weight HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n11170\r\n{" + b" " * 70000)
    except OSError:
        pass
    got = s.recv(100)
    check(got.startswith(b"HTTP/1.1 413"), f"70 kB chunked body: {got!r}")
    s.close()
    s = connect(("127.0.0.1", adm.port))
    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
    check(s.recv(100).startswith(b"HTTP/1.1 400"), "malformed head not refused with 400")
    s.close()
    for x in adm.status()["pools"][0]["servers"]:
        check(x["state"] == "up" and x["weight"] == 1, f"a refused request changed {x}")
    f.check_alive()


def test_slow_and_idle_admin_clients(ctx):
    bs = names(ctx, "s1")
    f, port, adm = start(ctx, [bs[0].server_line()])
    idle = [connect(("127.0.0.1", adm.port)) for _ in range(5)]
    half = connect(("127.0.0.1", adm.port))
    half.sendall(b"GET /status HTTP/1.1\r\nHo")
    # others are served meanwhile
    check(adm.status()["generation"] == 1, "the API is blocked by idle clients")
    # a request sent in pieces works
    s = connect(("127.0.0.1", adm.port))
    for piece in (b"PUT /pools/p/servers/s1/wei", b"ght HTTP/1.1\r\nHost: x\r\nContent-Le",
                  b"ngth: 13\r\n\r\n{\"weight\"", b": 4}"):
        s.sendall(piece)
        time.sleep(0.05)
    check(s.recv(100).startswith(b"HTTP/1.1 200"), "request in pieces")
    s.close()
    check(adm.server("p", "s1")["weight"] == 4, "weight from a request in pieces")
    # A chunked body (HTTP/1.1 servers must read one), in pieces too.
    s = connect(("127.0.0.1", adm.port))
    for piece in (b"PUT /pools/p/servers/s1/weight HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n", b"4\r\n{\"w", b"e\r\n9;x=y\r\nigh",
                  b"t\": 5}\r\n0\r\nX-Trailer: t\r\n", b"\r\n"):
        s.sendall(piece)
        time.sleep(0.05)
    got = s.recv(1000)
    check(got.startswith(b"HTTP/1.1 200"), f"chunked request in pieces: {got!r}")
    s.close()
    check(adm.server("p", "s1")["weight"] == 5, "weight from a chunked request")
    for c in idle + [half]:
        c.close()
    f.check_fds_settled()


def test_drain_and_enable(ctx):
    bs = names(ctx, "s1", "s2", "s3")
    f, port, adm = start(ctx, [b.server_line() for b in bs])
    held = connect(("127.0.0.1", port))
    first = recv_line(held).decode().strip()
    r = adm.json("POST", f"/pools/p/servers/{first}/drain")
    check(set(r) == SERVER_KEYS and r["state"] == "drain" and r["name"] == first, f"answer {r}")
    cnt = spread(port, 20)
    check(first not in cnt and sum(cnt.values()) == 20, f"drained {first} got traffic: {cnt}")
    check(echo_roundtrip(held, b"still here\n"), "existing connection broken by drain")
    check(adm.server("p", first)["state"] == "drain", "drain does not stay")
    time.sleep(0.5)  # the health thread must not bring it back
    check(adm.server("p", first)["state"] == "drain", "health overrode drain")
    r = adm.json("POST", f"/pools/p/servers/{first}/enable")
    check(r["state"] == "up", f"enable answer {r}")
    cnt = spread(port, 30)
    check(cnt == {"s1": 10, "s2": 10, "s3": 10}, f"after enable: {cnt}")
    held.close()


def test_drain_closes_idle_pooled_connections(ctx):
    """A drained server takes no new request, so its idle pooled
    connections have no use left: they close at the drain, and one whose
    answer ends after it is not pooled, so the server sees its connections
    fall to none as the requests finish, as with a delete. Before, they
    stayed open until the 30 s idle timeout."""
    from test_http import Reader, pyserver, read_request, read_response

    def handler(r, srv):
        while True:
            req = read_request(r)
            if req is None:
                return
            if "/slow" in req.first:
                time.sleep(0.5 * SCALE)
            r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, handler, name="s")
    f, port, adm = start(ctx, [srv.server_line()], mode="http")
    a, b = connect(("127.0.0.1", port)), connect(("127.0.0.1", port))
    # Two requests at once: two server connections, both pooled after.
    a.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    b.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    for c in (a, b):
        c.settimeout(5 * SCALE)
        m = read_response(Reader(c))
        check(m.status == 200, f"before the drain: {m!r}")
    wait_for(lambda: adm.server("p", "s")["connections_active"] == 0, 3 * SCALE,
             what="both server connections idle in the pool")
    check(srv.active == 2, f"the server holds {srv.active} connections, want 2 pooled")
    a.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")  # takes one of them
    wait_for(lambda: adm.server("p", "s")["connections_active"] == 1, 3 * SCALE,
             what="a request at the server")
    adm.json("POST", "/pools/p/servers/s/drain")
    wait_for(lambda: srv.active == 1, 3 * SCALE, what="the idle one closed at the drain")
    m = read_response(Reader(a))
    check(m.status == 200, f"the request in flight at the drain: {m!r}")
    wait_for(lambda: srv.active == 0, 3 * SCALE,
             what="the last connection closed once its answer ended")
    a.close()
    b.close()


def test_enable_gives_back_the_health_verdict(ctx):
    """Enabling a server its checks hold down answers, and shows, down at
    once: it takes no traffic in between."""
    good = names(ctx, "s1")[0]
    dead = f"s2 127.0.0.1:{closed_port()}"
    f, port, adm = start(ctx, [good.server_line(), dead],
                         pool={"check": "tcp", "check_interval": "200ms", "fall": 1})
    wait_for(lambda: adm.server("p", "s2")["state"] == "down", 3 * SCALE, what="s2 down")
    adm.json("POST", "/pools/p/servers/s2/disable")
    r = adm.json("POST", "/pools/p/servers/s2/enable")
    check(r["state"] == "down", f"enable of a server its checks hold down: {r}")
    check(spread(port, 6) == {"s1": 6}, "traffic right after the enable")


def test_disable_closes_existing(ctx):
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [b.server_line() for b in bs])
    conns = [connect(("127.0.0.1", port)) for _ in range(4)]
    got = [recv_line(c).decode().strip() for c in conns]
    check(sorted(got) == ["s1", "s1", "s2", "s2"], f"spread {got}")
    r = adm.json("POST", "/pools/p/servers/s1/disable")
    check(r["state"] == "disabled", f"answer {r}")
    for c, who in zip(conns, got):
        if who == "s1":
            check(closed_by_peer(c, 2 * SCALE) is not None, "connection to s1 not closed")
        else:
            check(echo_roundtrip(c, b"ok\n"), "connection to s2 broken")
    cnt = spread(port, 10)
    check(cnt == {"s2": 10}, f"disabled s1 got traffic: {cnt}")
    wait_for(lambda: bs[0].active == 0, 3 * SCALE, what="s1's connections to end")
    adm.json("POST", "/pools/p/servers/s1/enable")
    check(spread(port, 10) == {"s1": 5, "s2": 5}, "enable after disable")
    for c in conns:
        c.close()


def test_disable_closes_connections_opened_before_a_reload_changed_the_server(ctx):
    """A reload that changes a server's line (here maxconn) makes a new
    object for the same backend; disabling it still closes the connections
    opened before the reload, and the idle pooled ones too (http)."""
    for mode in ("tcp", "http"):
        if mode == "tcp":
            bs = names(ctx, "s1", "s2")
            servers = [b.server_line() for b in bs]
        else:
            slow = ctx.backend("silent", name="s1")
            other = ctx.backend("silent", name="s2")
            servers = [slow.server_line(), other.server_line()]
        f, port, adm = start(ctx, servers, mode=mode)
        if mode == "tcp":
            conns = [connect(("127.0.0.1", port)) for _ in range(4)]
            got = [recv_line(c).decode().strip() for c in conns]
            check(sorted(got) == ["s1", "s1", "s2", "s2"], f"spread {got}")
        else:
            conns = [connect(("127.0.0.1", port)) for _ in range(2)]
            for c in conns:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(lambda: slow.active == 1 and other.active == 1, 3 * SCALE,
                     what="one request at each server")
        text = f.conf_text.replace(servers[0], servers[0] + " maxconn=50")
        check(text != f.conf_text, "the server line did not change")
        with open(f.conf_path, "w") as fh:
            fh.write(text)
        check("generation" in adm.json("POST", "/reload"), "reload")
        r = adm.json("POST", "/pools/p/servers/s1/disable")
        check(r["state"] == "disabled", f"answer {r}")
        if mode == "tcp":
            for c, who in zip(conns, got):
                if who == "s1":
                    check(closed_by_peer(c, 2 * SCALE) is not None,
                          "tcp: a connection to s1 from before the reload was not closed")
                else:
                    check(echo_roundtrip(c, b"ok\n"), "connection to s2 broken")
        else:
            # Which client went to s1 is the balancer's business: one of
            # the two is cut with s1's request, the other waits on s2.
            wait_for(lambda: slow.active == 0, 3 * SCALE, what="the request at s1 to be cut")
            closed = [closed_by_peer(c, 0.5 * SCALE) is not None for c in conns]
            check(sorted(closed) == [False, True] and other.active == 1,
                  f"http: clients closed {closed}, requests at s2 {other.active}")
        for c in conns:
            c.close()
        # At once: in http mode the request at silent s2 is still in flight.
        f.signal(signal.SIGINT)
        check(f.wait_exit(5) == 0, "SIGINT")


def test_a_server_the_file_disables_keeps_its_connections_through_other_disables(ctx):
    """A reload that marks s1 `disabled` lets its connections finish, as any
    reload does; disabling another server through the API must not sweep
    them. Disabling s1 itself through the API still closes them."""
    bs = names(ctx, "s1", "s2", "s3")
    servers = [b.server_line() for b in bs]
    f, port, adm = start(ctx, servers)
    conns = [connect(("127.0.0.1", port)) for _ in range(3)]
    got = [recv_line(c).decode().strip() for c in conns]
    check(sorted(got) == ["s1", "s2", "s3"], f"spread {got}")
    by = dict(zip(got, conns))
    with open(f.conf_path, "w") as fh:
        fh.write(f.conf_text.replace(servers[0], servers[0] + " disabled"))
    check("generation" in adm.json("POST", "/reload"), "reload")
    check(adm.server("p", "s1")["state"] == "disabled", "the file disabled s1")
    adm.json("POST", "/pools/p/servers/s2/disable")
    check(closed_by_peer(by["s2"], 2 * SCALE) is not None, "connection to s2 kept")
    check(echo_roundtrip(by["s1"], b"still\n"),
          "disabling s2 closed a connection to s1, which only the file disabled")
    check(echo_roundtrip(by["s3"], b"still\n"), "connection to s3 broken")
    adm.json("POST", "/pools/p/servers/s1/disable")
    check(closed_by_peer(by["s1"], 2 * SCALE) is not None,
          "disabling s1 through the API left its connection open")
    check(echo_roundtrip(by["s3"], b"still\n"), "connection to s3 broken")
    for c in conns:
        c.close()


def test_disable_closes_http_in_flight(ctx):
    slow = ctx.backend("silent", name="slow")
    f, port, adm = start(ctx, [slow.server_line()], mode="http")
    s = connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: slow.active == 1, 3 * SCALE, what="the request at the server")
    adm.json("POST", "/pools/p/servers/slow/disable")
    check(closed_by_peer(s, 2 * SCALE) is not None, "in-flight request to a disabled server kept")
    wait_for(lambda: slow.active == 0, 3 * SCALE, what="the server connection closed")
    s.close()
    st, body = http_get(port)
    check(st == 503, f"no server left: {st} {body!r}")


def test_disable_sends_what_is_still_connecting_to_another_server(ctx):
    """A server disabled while a connection or request is still connecting
    to it has had nothing of the client's: that goes to another server, as
    a failed connect would but without using up a retry (retries = 0 here)
    or counting against the server. Before, the client was closed with no
    answer."""
    from test_http import Reader, access_lines, cbackend, read_response
    for mode in ("tcp", "http"):
        hole = ctx.blackhole()
        good = ctx.backend("name", name="good") if mode == "tcp" else cbackend(ctx, "good")
        log = ctx.path(f"access-{mode}.log")
        f, port, adm = start(ctx, [f"hole {hole.addr}", good.server_line()], mode=mode,
                             glob={"access_log": log},
                             pool={"connect_timeout": "20s", "retries": 0, "max_fails": 1})
        s = connect(("127.0.0.1", port))  # roundrobin: the first goes to hole
        if mode == "http":
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: adm.server("p", "hole")["connections_active"] == 1, 3 * SCALE,
                 what="a connection on its way to hole")
        adm.json("POST", "/pools/p/servers/hole/disable")
        s.settimeout(5 * SCALE)
        if mode == "tcp":
            got = recv_line(s).decode().strip()
            check(got == "good", f"tcp: after the disable the client got {got!r}")
        else:
            m = read_response(Reader(s))
            check(m.status == 200 and m.get("x-server") == "good",
                  f"http: after the disable the client got {m!r}")
        s.close()
        line = access_lines(log, 1)[0]
        check(" p/good " in line and not line.endswith("server_disabled"), f"{mode}: {line}")
        check(adm.server("p", "hole")["state"] == "disabled" and
              adm.json("POST", "/pools/p/servers/hole/enable")["state"] == "up",
              f"{mode}: the withdrawn connect counted as a failure (max_fails = 1)")
        f.signal(signal.SIGINT)
        check(f.wait_exit(5) == 0, "SIGINT")


def test_withdrawn_request_goes_out_on_an_idle_pooled_connection(ctx):
    """The server a withdrawn request moves to may have an idle pooled
    connection: no connect then announces itself, so the request must be
    sent without waiting for an event. Before, it sat until
    client_timeout and got 408 (an audit's add/disable/delete churn)."""
    from test_http import Reader, ok_handler, pyserver, read_response
    hole = ctx.blackhole()
    good = pyserver(ctx, ok_handler(extra=b"X-Server: good\r\n"), name="good")
    f, port, adm = start(ctx, [f"hole {hole.addr}", good.server_line()], mode="http",
                         pool={"connect_timeout": "20s", "retries": 0})
    a = connect(("127.0.0.1", port))  # roundrobin: hole first
    a.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: adm.server("p", "hole")["connections_active"] == 1, 3 * SCALE,
             what="a request on its way to hole")
    b = connect(("127.0.0.1", port))  # then good, whose connection stays pooled
    b.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    b.settimeout(5 * SCALE)
    m = read_response(Reader(b))
    check(m.status == 200 and m.get("x-server") == "good", f"second request: {m!r}")
    wait_for(lambda: adm.server("p", "good")["connections_active"] == 0, 3 * SCALE,
             what="good's connection back in the pool")
    adm.json("POST", "/pools/p/servers/hole/disable")
    a.settimeout(3 * SCALE)
    m = read_response(Reader(a))
    check(m.status == 200 and m.get("x-server") == "good",
          f"the withdrawn request got {m!r}")
    check(good.accepted == 1, f"good took {good.accepted} connections: the pooled one was not used")
    a.close()
    b.close()
    good.close()  # fulcrum closes its pooled connection in turn (the end-of-test fd check)


def test_weight_change_spread(ctx):
    bs = names(ctx, "a", "b")
    f, port, adm = start(ctx, [b.server_line() for b in bs])
    check(spread(port, 20) == {"a": 10, "b": 10}, "equal weights")
    r = adm.json("PUT", "/pools/p/servers/a/weight", {"weight": 3})
    check(r["weight"] == 3, f"answer {r}")
    cnt = spread(port, 40)
    check(cnt == {"a": 30, "b": 10}, f"weights 3:1 gave {cnt}")
    adm.json("PUT", "/pools/p/servers/b/weight", {"weight": 0})
    check(spread(port, 10) == {"a": 10}, "weight 0 still gets traffic")
    check(adm.server("p", "b")["weight"] == 0, "status weight")
    # As in HAProxy, weight 0 takes no new traffic even when it is all
    # that is left: with its peer out of rotation a connection is closed.
    adm.json("POST", "/pools/p/servers/a/disable")
    s = connect(("127.0.0.1", port))
    s.settimeout(3 * SCALE)
    got = s.recv(100)
    s.close()
    check(got == b"", f"weight 0 with its peer disabled answered {got!r}")
    adm.json("PUT", "/pools/p/servers/b/weight", {"weight": 1})
    check(spread(port, 4) == {"b": 4}, "weight 1 again")


def test_weight_change_maglev(ctx):
    bs = names(ctx, "a", "b")
    f, port, adm = start(ctx, [b.server_line() for b in bs], pool={"balance": "maglev"})
    adm.json("PUT", "/pools/p/servers/b/weight", {"weight": 0})
    # the table is rebuilt by the health thread: wait for it
    wait_for(lambda: spread(port, 5) == {"a": 5}, 5 * SCALE, what="maglev table without b")
    adm.json("POST", "/pools/p/servers/a/drain")
    adm.json("PUT", "/pools/p/servers/b/weight", {"weight": 1})
    wait_for(lambda: spread(port, 5) == {"b": 5}, 5 * SCALE, what="maglev table with b only")


def test_weight_and_state_changes_while_tables_are_rebuilt(ctx):
    """The health thread rebuilds a ring or maglev table from the servers'
    weights and states while the admin API changes them. A weight raised or
    a server enabled between the build's sizing and its filling must not
    write past the table (a heap overflow that the ASan run of the suite
    sees at once). Large rings make each build take long enough to race."""
    good = ctx.backend("name", name="s01")
    dead = closed_port()
    for balance, what in (("ring", "weight"), ("maglev", "state")):
        servers = [good.server_line("weight=256")] + \
            [f"s{i:02d} 127.0.0.1:{dead} weight=256" for i in range(2, 20)] + \
            [f"s20 127.0.0.1:{dead} weight=1"]
        f, port, adm = start(ctx, servers, pool={"balance": balance, "max_fails": 0})
        for rnd in range(6):
            adm.json("PUT", "/pools/p/servers/s02/weight", {"weight": 255 - rnd % 2})
            time.sleep(0.01 * (rnd % 3))
            if what == "weight":
                adm.json("PUT", "/pools/p/servers/s20/weight", {"weight": 256})
                time.sleep(0.2)
                adm.json("PUT", "/pools/p/servers/s20/weight", {"weight": 1})
            else:
                adm.json("POST", "/pools/p/servers/s20/drain")
                time.sleep(0.2)
                adm.json("POST", "/pools/p/servers/s20/enable")
            time.sleep(0.2)
        f.check_alive()
        s02, s20 = adm.server("p", "s02"), adm.server("p", "s20")
        check(s02["weight"] == 254 and s20["weight"] == 1 and s20["state"] == "up",
              f"{balance}: the last changes are not what /status says: {s02} {s20}")
        # The tables built during the race are sound: once every other
        # server is out, every key leads to s01.
        for i in range(2, 21):
            adm.json("POST", f"/pools/p/servers/s{i:02d}/disable")
        wait_for(lambda: all(name_via(("127.0.0.1", port)) == "s01" for _ in range(10)),
                 5 * SCALE, what=f"{balance}: all traffic on s01, the one server left")
        f.stop()


def test_admin_out_of_descriptors_does_not_spin(ctx):
    """With every descriptor in use, the admin listener pauses like the
    workers' listeners instead of waking the main loop at once for ever;
    once descriptors are free again it answers."""
    import shutil
    import subprocess
    if not shutil.which("prlimit"):
        raise Skip("prlimit is not installed")
    b = ctx.backend("silent")
    # Clients that owe a PROXY header hold one descriptor each, and keep it.
    f, port, adm = start(ctx, [b.server_line()], listener={"proxy_protocol": "accept"})
    subprocess.run(["prlimit", f"--pid={f.pid}", "--nofile=64:64"], check=True)
    clients = []
    try:
        for _ in range(70):  # past the limit: the rest wait in the backlog
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        wait_for(lambda: f.fd_count() >= 64, 3 * SCALE, what="fulcrum out of descriptors")
        socket.create_connection(("127.0.0.1", adm.port), timeout=2).close()
        wait_for(lambda: "admin: out of file descriptors" in f.stderr(), 2 * SCALE,
                 what="the admin API's pause")

        t0 = cpu_ticks(f.pid, f.pid)
        time.sleep(1.0)
        used = cpu_ticks(f.pid, f.pid) - t0
        check(used < 30, f"the main thread used {used} ticks of 100 while out of descriptors")
        # Paused and retried every 100 ms meanwhile, but said once.
        said = f.stderr().count("admin: out of file descriptors")
        check(said == 1, f"the admin pause warned {said} times in a second")
    finally:
        for c in clients:
            c.close()
    wait_for(lambda: _healthz(adm.port), 5 * SCALE, what="the admin API after descriptors freed")
    check("admin: out of file descriptors" in f.stderr(), "no warning about the admin pause")


def test_add_server(ctx):
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [b.server_line() for b in bs], pool={"check": "tcp",
                                                                    "check_interval": "200ms"})
    held = connect(("127.0.0.1", port))
    held_on = recv_line(held).decode().strip()
    new = ctx.backend("name", name="s3")
    r = adm.json("POST", "/pools/p/servers", {"name": "s3", "address": new.addr, "weight": 2},
                 want=201)
    check(r == {"name": "s3", "address": new.addr, "state": "up", "weight": 2,
                "connections_active": 0, "requests_total": 0}, f"answer {r}")
    cnt = spread(port, 40)
    check(cnt == {"s1": 10, "s2": 10, "s3": 20}, f"after adding s3 (weight 2): {cnt}")
    check([x["name"] for x in adm.status()["pools"][0]["servers"]] == ["s1", "s2", "s3"],
          "status order")
    check(echo_roundtrip(held, b"x\n"), "existing connection broken by an add")
    # the servers that stay are the same objects: their active count too
    # (once spread's own connections have gone, which takes its time)
    wait_for(lambda: adm.server("p", held_on)["connections_active"] == 1, 3 * SCALE,
             what="the held connection alone counted after an add")
    # counters of the servers that were there carry on
    check(adm.server("p", "s1")["requests_total"] >= 10, f"s1 {adm.server('p', 's1')}")
    # health checks run on the new server
    wait_for(lambda: metric(parse_metrics(adm.metrics()), "fulcrum_health_checks_total",
                            pool="p", server="s3", result="ok"), 5 * SCALE,
             what="a health check of s3")
    # a second add, and changes to an added server
    new4 = ctx.backend("name", name="s4")
    adm.json("POST", "/pools/p/servers", {"name": "s4", "address": new4.addr}, want=201)
    adm.json("POST", "/pools/p/servers/s3/drain")
    cnt = spread(port, 30)
    check(cnt == {"s1": 10, "s2": 10, "s4": 10}, f"after adding s4, draining s3: {cnt}")
    held.close()
    wait_for(lambda: adm.server("p", held_on)["connections_active"] == 0, 3 * SCALE,
             what="the held connection's end counted")
    f.check_fds_settled()


def test_delete_server(ctx):
    bs = names(ctx, "s1", "s2", "s3")
    f, port, adm = start(ctx, [b.server_line() for b in bs])
    held = [connect(("127.0.0.1", port)) for _ in range(3)]
    who = [recv_line(c).decode().strip() for c in held]
    r = adm.json("DELETE", "/pools/p/servers/s2")
    check(r["name"] == "s2" and r["state"] == "drain", f"answer {r}")
    cnt = spread(port, 20)
    check(cnt == {"s1": 10, "s3": 10}, f"deleted s2 got traffic: {cnt}")
    for c in held:
        check(echo_roundtrip(c, b"still\n"), f"existing connection broken ({who})")
    # Drained first: listed as drain while its connection lasts, then gone.
    listed = {x["name"]: x for x in adm.status()["pools"][0]["servers"]}
    check(sorted(listed) == ["s1", "s2", "s3"] and listed["s2"]["state"] == "drain"
          and listed["s2"]["connections_active"] == 1, f"/status while s2 drains: {listed}")
    st, _, _ = adm.call("POST", "/pools/p/servers/s2/enable")
    check(st == 404, f"enable of a deleted server: {st}")
    # A new s2 while the old one drains, then deleted too with a connection
    # of its own: still one s2 entry, in /status and in /metrics.
    again = ctx.backend("name", name="s2b")
    adm.json("POST", "/pools/p/servers", {"name": "s2", "address": again.addr}, want=201)
    extra = []
    while not extra or extra[-1][1] != "s2b":
        c = connect(("127.0.0.1", port))
        extra.append((c, recv_line(c).decode().strip()))
    adm.json("DELETE", "/pools/p/servers/s2")
    names_now = [x["name"] for x in adm.status()["pools"][0]["servers"]]
    check(sorted(names_now) == ["s1", "s2", "s3"], f"/status with two draining s2: {names_now}")
    text = adm.metrics()
    check(text.count('fulcrum_server_up{pool="p",server="s2"}') == 1, "s2 twice in /metrics")
    for c, _ in extra:
        c.close()
    held.pop(who.index("s2")).close()
    wait_for(lambda: [x["name"] for x in adm.status()["pools"][0]["servers"]] == ["s1", "s3"],
             3 * SCALE, what="the deleted servers to leave /status once drained")
    check('server="s2"' not in adm.metrics(), "deleted server still in /metrics")
    # the name is free again
    again = ctx.backend("name", name="s2b")
    adm.json("POST", "/pools/p/servers", {"name": "s2", "address": again.addr}, want=201)
    cnt = spread(port, 30)
    check(cnt == {"s1": 10, "s2b": 10, "s3": 10}, f"after re-adding s2: {cnt}")
    for c in held:
        c.close()


def test_idle_pooled_connections_to_a_gone_server_close(ctx):
    """Idle pooled keep-alive connections to a server deleted through the
    API, or dropped by a reload, are closed at once: nothing can reuse them,
    and under add/delete churn they would pile up until their idle timeout."""
    from test_http import cbackend

    s1, s2, s3 = (cbackend(ctx, n) for n in ("s1", "s2", "s3"))
    servers = [f"s1 127.0.0.1:{s1.port}", f"s3 127.0.0.1:{s3.port}"]
    f, port, adm = start(ctx, servers, mode="http")
    adm.json("POST", "/pools/p/servers", {"name": "s2", "address": f"127.0.0.1:{s2.port}"},
             want=201)

    def pool_up(n):
        # N clients at once keep N server connections busy, then pooled.
        def one(_):
            with connect(("127.0.0.1", port)) as c:
                c.sendall(b"GET /?ms=50 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return recv_all(c).startswith(b"HTTP/1.1 200")
        with concurrent.futures.ThreadPoolExecutor(n) as ex:
            check(all(ex.map(one, range(n))), "requests through the pool")

    pool_up(12)
    check(connections_to(f.pid, s2.port) >= 2, "no pooled connection to s2 to begin with")
    adm.json("DELETE", "/pools/p/servers/s2")
    wait_for(lambda: connections_to(f.pid, s2.port) == 0, 2 * SCALE,
             what="the pooled connections to deleted s2 closed")
    check(connections_to(f.pid, s3.port) >= 2, "pooled connections to s3 went too")
    with open(f.conf_path, "w") as fh:
        fh.write(conf(port, adm.port, servers[:1], mode="http"))
    check("generation" in adm.json("POST", "/reload"), "reload")
    wait_for(lambda: connections_to(f.pid, s3.port) == 0, 2 * SCALE,
             what="the pooled connections to s3, dropped by the reload, closed")
    check(connections_to(f.pid, s1.port) >= 1, "pooled connections to s1, which stays, went too")
    s1.close()  # and with it the pooled connections to it
    f.check_fds_settled()


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:"))


def test_server_deleted_then_brought_back_by_a_reload_starts_from_0(ctx):
    """A server deleted through the API is gone: the reload that brings it
    back from the file (same name, same address) starts its counters from
    0, as an API add under its name does."""
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [b.server_line() for b in bs])
    spread(port, 6)
    check(adm.server("p", "s2")["requests_total"] == 3, f"before: {adm.server('p', 's2')}")
    adm.json("DELETE", "/pools/p/servers/s2")
    check("generation" in adm.json("POST", "/reload"), "reload")
    back = adm.server("p", "s2")
    check(back["state"] == "up" and back["requests_total"] == 0,
          f"s2 brought back by the reload: {back}")
    check(adm.server("p", "s1")["requests_total"] == 3, "s1's count lost across the reload")


def test_add_delete_churn_does_not_grow_the_pool(ctx):
    """Service discovery adds and deletes servers all day: a deleted server
    with no connection left must not stay in the pool each later change
    copies, nor keep the generations it was listed in alive. Memory stays
    flat over 1500 add/delete cycles (it grew by over 10 MB, and each
    change took longer, before), and a server still draining stays."""
    if SANITIZED:
        raise Skip("the sanitizer's quarantine keeps freed memory")
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [bs[0].server_line()], pool={"balance": "maglev"})
    held = connect(("127.0.0.1", port))
    check(recv_line(held).decode().strip() == "s1", "the held connection reached s1")
    adm.json("DELETE", "/pools/p/servers/s1")  # drains while held lasts
    new = {"name": "z", "address": bs[1].addr}
    for i in range(1500):
        if i == 300:
            base = _rss_kib(f.pid)
        adm.json("POST", "/pools/p/servers", new, want=201)
        adm.json("DELETE", "/pools/p/servers/z")
    grown = _rss_kib(f.pid) - base
    check(grown < 3072, f"RSS grew by {grown} KiB over 1200 add/delete cycles")
    listed = {x["name"]: x["state"] for x in adm.status()["pools"][0]["servers"]}
    check(listed == {"s1": "drain"}, f"/status after the churn: {listed}")
    check(echo_roundtrip(held, b"still\n"), "the draining server's connection broke")
    held.close()
    wait_for(lambda: adm.status()["pools"][0]["servers"] == [], 3 * SCALE,
             what="s1 gone once its connection closed")


def test_deleted_server_is_no_longer_checked(ctx):
    """A server deleted through the API is gone for the health thread too:
    no more probes of its address, no more UP/DOWN lines about it."""
    b = ctx.backend("name", name="s1")
    f, port, adm = start(ctx, [b.server_line()],
                         pool={"check": "tcp", "check_interval": "100ms", "fall": 1, "rise": 1})
    gone = closed_port()
    adm.json("POST", "/pools/p/servers", {"name": "gone", "address": f"127.0.0.1:{gone}"}, want=201)
    wait_for(lambda: "p/gone DOWN" in f.stderr(), 3 * SCALE, what="the added server's first check")
    adm.json("DELETE", "/pools/p/servers/gone")
    # A listener on its address now would bring it UP, were it still checked.
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", gone))
    srv.listen(8)
    srv.settimeout(0.2)
    probes = 0
    deadline = time.monotonic() + 1.0 * SCALE
    while time.monotonic() < deadline:
        try:
            srv.accept()[0].close()
            probes += 1
        except socket.timeout:
            pass
    srv.close()
    check(probes == 0, f"{probes} health probes reached the deleted server")
    check("p/gone UP" not in f.stderr(), f"the deleted server came UP: {f.stderr()}")


def test_requests_total_agrees_with_the_log_when_clients_reset(ctx):
    """Clients that reset as soon as their request is out: some leave
    before the answer's head went to them, and their line shows the
    server's 200 with client_reset or client_write_failed. requests_total
    counts each request as its line shows it; it missed those (4 in 100
    here), so the log's 2xx lines outnumbered the metric."""
    from test_http import access_lines, cbackend
    b = cbackend(ctx, "b1")
    log = ctx.path("access.log")
    f, port, adm = start(ctx, [b.server_line()], mode="http",
                         glob={"access_log": log, "workers": 2})
    for _ in range(100):
        s = connect(("127.0.0.1", port))
        s.sendall(b"GET /large HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.0005)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    lines = access_lines(log, 100)
    ok = sum(1 for line in lines if '" 200 ' in line)
    wait_for(lambda: metric(parse_metrics(adm.metrics()), "fulcrum_request_duration_seconds_count",
                            pool="p") == 100, 5 * SCALE, what="100 requests counted")
    counted = metric(parse_metrics(adm.metrics()), "fulcrum_requests_total", pool="p",
                     server="b1", code="2xx")
    check(counted == ok, f"{ok} lines with 200, {counted} in requests_total; reasons: "
          f"{collections.Counter(line.rsplit(' ', 1)[1] for line in lines)}")
    b.close()  # fulcrum closes its pooled connections in turn (the end-of-test fd check)


def test_metrics_http_traffic(ctx):
    b1, b2 = HttpBackend("h1"), HttpBackend("h2", status=404)
    ctx.backends += [b1, b2]
    # keepalive = 0: no pooled server connection outlives the test's fd check
    f, port, adm = start(ctx, [b1.server_line(), b2.server_line()], mode="http",
                         pool={"keepalive": 0})
    text0 = adm.metrics()
    m0 = parse_metrics(text0)
    for name in ("fulcrum_listener_connections_active", "fulcrum_listener_connections_total",
                 "fulcrum_listener_bytes_received_total", "fulcrum_listener_bytes_sent_total",
                 "fulcrum_listener_connections_refused_total"):
        check(metric(m0, name, listener="l") == 0, f"{name} at start")
    for code in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        check(metric(m0, "fulcrum_requests_total", pool="p", server="h1", code=code) == 0,
              f"requests_total {code}")
    check(metric(m0, "fulcrum_server_up", pool="p", server="h1") == 1, "server_up")
    check(metric(m0, "fulcrum_workers") == 1, "workers")
    check(metric(m0, "fulcrum_config_generation") == 1, "config_generation")
    check(metric(m0, "fulcrum_config_reloads_total", result="ok") == 0, "reloads ok")
    check(metric(m0, "fulcrum_config_reloads_total", result="error") == 0, "reloads error")
    check(metric(m0, "fulcrum_retries_total", pool="p") == 0, "retries")
    check(metric(m0, "fulcrum_request_duration_seconds_count", pool="p") == 0, "histogram")
    for _ in range(10):
        st, body = http_get(port)
        check(st in (200, 404), f"status {st}")
    # A request is counted as it ends, which may be just after its client
    # read the answer.
    wait_for(lambda: metric(parse_metrics(adm.metrics()), "fulcrum_request_duration_seconds_count",
                            pool="p") == 10, 5 * SCALE, what="10 requests counted")
    m1 = parse_metrics(adm.metrics())
    ok = metric(m1, "fulcrum_requests_total", pool="p", server="h1", code="2xx")
    nf = metric(m1, "fulcrum_requests_total", pool="p", server="h2", code="4xx")
    check(ok == 5 and nf == 5, f"requests_total 2xx {ok}, 4xx {nf}")
    check(metric(m1, "fulcrum_request_duration_seconds_count", pool="p") == 10, "histogram count")
    check(metric(m1, "fulcrum_request_duration_seconds_bucket", pool="p", le="+Inf") == 10,
          "+Inf bucket")
    # Sub-millisecond requests still add up: the sum is kept in microseconds.
    total = metric(m1, "fulcrum_request_duration_seconds_sum", pool="p")
    check(0 < total < 10, f"request_duration_seconds_sum {total} for 10 requests")
    check(metric(m1, "fulcrum_listener_connections_total", listener="l") == 10, "conn total")
    check(metric(m1, "fulcrum_listener_bytes_received_total", listener="l") > 0, "bytes in")
    check(metric(m1, "fulcrum_listener_bytes_sent_total", listener="l") > 0, "bytes out")
    for key, v in m0.items():
        if key[0].endswith(("_total", "_count", "_bucket", "_sum")):
            check(m1.get(key, 0) >= v, f"counter {key} went down")
    # a server marked down shows 0
    adm.json("POST", "/pools/p/servers/h2/drain")
    check(metric(parse_metrics(adm.metrics()), "fulcrum_server_up", pool="p", server="h2") == 0,
          "server_up of a drained server")
    check_with_promtool(adm.metrics())


def test_metrics_retries(ctx):
    good = ctx.backend("name", name="ok")
    dead = free_port()
    f, port, adm = start(ctx, [f"dead 127.0.0.1:{dead}", good.server_line()],
                         pool={"retries": 2, "max_fails": 100})
    for _ in range(4):
        check(name_via(("127.0.0.1", port)) == "ok", "retry did not reach the live server")
    # Counted when each connection ends, which may be just after the
    # client read its answer.
    wait_for(lambda: metric(parse_metrics(adm.metrics()), "fulcrum_retries_total", pool="p") == 2,
             5 * SCALE, what="fulcrum_retries_total{pool=p} to be 2")
    tool = check_with_promtool(adm.metrics())
    if not tool:
        print("(promtool not installed: checked with the strict reader only)")


def test_requests_total_counts_failed_connects_and_upgrades(ctx):
    """requests_total counts every answer of a server's requests: the 502s
    of a server that cannot be reached (against the last server tried) and
    the 101 that starts a WebSocket tunnel."""
    from test_http import WS_REQUEST, _ws_handler, client, pyserver, read_response
    ws = pyserver(ctx, _ws_handler)
    dead = free_port()
    f, port, adm = start(ctx, [f"dead 127.0.0.1:{dead}", f"ws {ws.server_line().split()[1]}"],
                         mode="http", pool={"retries": 0, "max_fails": 100, "keepalive": 0})
    adm.json("POST", "/pools/p/servers/ws/drain")
    for i in range(3):
        st, _ = http_get(port, f"/{i}")
        check(st == 502, f"request {i} to a dead server: {st}")
    adm.json("POST", "/pools/p/servers/ws/enable")
    adm.json("POST", "/pools/p/servers/dead/drain")
    for i in range(2):
        r = client(port)
        r.send(WS_REQUEST)
        m = read_response(r)
        check(m.status == 101, f"upgrade {i}: {m!r}")
        r.close()
    # A request is counted as its answer goes out: the client may read the
    # answer a moment before the worker's count lands.
    def counts():
        m = parse_metrics(adm.metrics())
        return (metric(m, "fulcrum_requests_total", pool="p", server="dead", code="5xx"),
                metric(m, "fulcrum_requests_total", pool="p", server="ws", code="1xx"))

    try:
        wait_for(lambda: counts() == (3, 2), 3 * SCALE, what="the counts")
    except TestFailure:
        raise TestFailure(f"requests_total 5xx of the dead server, 1xx of the WebSocket one: {counts()}")


def test_requests_total_counts_answers_without_a_server(ctx):
    """A 503 because no server is up (or free) has no server to count
    against: it counts in the pool's series with an empty server, as the
    log shows POOL/-, so an outage shows in the 5xx series, and the pool's
    series add up to its requests (the histogram's count)."""
    b = HttpBackend("s1")
    ctx.backends.append(b)
    f, port, adm = start(ctx, [b.server_line()], mode="http", pool={"keepalive": 0})
    for i in range(2):
        st, _ = http_get(port, f"/ok{i}")
        check(st == 200, f"request {i}: {st}")
    adm.json("POST", "/pools/p/servers/s1/disable")
    for i in range(3):
        st, _ = http_get(port, f"/none{i}")
        check(st == 503, f"request {i} with no server: {st}")

    def counts():
        m = parse_metrics(adm.metrics())
        every = sum(v for (name, labels), v in m.items()
                    if name == "fulcrum_requests_total" and ("pool", "p") in labels)
        return (metric(m, "fulcrum_requests_total", pool="p", server="", code="5xx"),
                metric(m, "fulcrum_requests_total", pool="p", server="s1", code="2xx"),
                every, metric(m, "fulcrum_request_duration_seconds_count", pool="p"))

    try:
        wait_for(lambda: counts() == (3, 2, 5, 5), 3 * SCALE, what="the counts")
    except TestFailure:
        raise TestFailure(f"(no server 5xx, s1 2xx, all of p, histogram count): {counts()}")


def test_connections_older_than_a_reload_follow_the_servers(ctx):
    """A reload that leaves a server as it was hands the same server on:
    connections opened before it count in its connections_active, a
    later disable closes them (tcp), and a later drain keeps their next
    requests off it (http keep-alive)."""
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [b.server_line() for b in bs])
    held = connect(("127.0.0.1", port))
    first = recv_line(held).decode().strip()
    check(adm.json("POST", "/reload") == {"generation": 2}, "reload")
    check(adm.server("p", first)["connections_active"] == 1,
          f"the held connection is not counted after the reload: {adm.server('p', first)}")
    adm.json("POST", f"/pools/p/servers/{first}/disable")
    check(closed_by_peer(held, 2 * SCALE) is not None,
          "a connection from before the reload survived its server's disable")
    held.close()

    from test_http import cbackend
    b1, b2 = cbackend(ctx, "b1"), cbackend(ctx, "b2")
    hport, haport = free_port(), free_port()
    h = ctx.fulcrum(conf(hport, haport, [b1.server_line(), b2.server_line()], mode="http"))
    wait_for(lambda: _healthz(haport), 5 * SCALE, what="the admin API")
    hadm = Admin(haport)
    c = http.client.HTTPConnection("127.0.0.1", hport, timeout=5 * SCALE)

    def served_by():
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        return r.getheader("X-Server")

    check({served_by() for _ in range(2)} == {"b1", "b2"}, "round robin before the reload")
    check(hadm.json("POST", "/reload") == {"generation": 2}, "reload")
    hadm.json("POST", "/pools/p/servers/b1/drain")
    got = [served_by() for _ in range(6)]
    check(got == ["b2"] * 6, f"a keep-alive connection from before the reload ignored a drain: {got}")
    c.close()
    for b in (b1, b2):  # fulcrum closes its pooled connections to them
        b.close()
    h.check_fds_settled()


def test_maxconn_counts_connections_from_before_a_reload(ctx):
    """maxconn caps a server's active connections; a reload that changes
    the server's options (maxconn itself here) or its place in the file
    still counts the connections opened before it."""
    bs = names(ctx, "s1")
    f, port, adm = start(ctx, [bs[0].server_line("maxconn=1")])

    def opens():
        s = connect(("127.0.0.1", port))
        try:
            return s, recv_line(s).decode().strip() == "s1"
        except OSError:
            return s, False

    def refused(what):
        s = connect(("127.0.0.1", port))
        check(closed_by_peer(s, 2 * SCALE) is not None, f"{what} was not closed")
        s.close()

    held, ok = opens()
    check(ok, "the first connection")
    refused("a second connection past maxconn=1")

    def reload_to(servers, generation):
        with open(f.conf_path, "w") as fh:
            fh.write(conf(port, adm.port, servers))
        check(adm.json("POST", "/reload") == {"generation": generation}, "reload")
        check(adm.server("p", "s1")["connections_active"] == generation - 1,
              f"after reload {generation}: {adm.server('p', 's1')}")

    reload_to([bs[0].server_line("maxconn=2")], 2)
    second, ok = opens()
    check(ok, "a second connection under maxconn=2")
    refused("a third connection past maxconn=2, one of them from before the reload")
    reload_to([f"x 127.0.0.1:{closed_port()} disabled", bs[0].server_line("maxconn=2")], 3)
    refused("a third connection past maxconn=2 after the server moved down the file")
    for s in (held, second):
        s.close()
    wait_for(lambda: adm.server("p", "s1")["connections_active"] == 0, 3 * SCALE,
             what="connections_active back to 0")


def test_reload_through_api(ctx):
    bs = names(ctx, "s1", "s2", "s3")
    f, port, adm = start(ctx, [b.server_line() for b in bs[:2]])
    adm.json("POST", "/pools/p/servers/s1/drain")
    text = f.conf_text.replace(f"server = {bs[1].server_line()}",
                               f"server = {bs[1].server_line()}\nserver = {bs[2].server_line()}")
    with open(f.conf_path, "w") as fh:
        fh.write(text)
    r = adm.json("POST", "/reload")
    check(r == {"generation": 2}, f"reload answer {r}")
    s = adm.status()
    check(s["generation"] == 2, f"status generation {s['generation']}")
    servers = {x["name"]: x for x in s["pools"][0]["servers"]}
    check(set(servers) == {"s1", "s2", "s3"}, f"servers after reload {servers}")
    check(servers["s1"]["state"] == "drain", "a drained server stays drained over a reload")
    check(spread(port, 30) == {"s2": 15, "s3": 15}, "traffic after reload")
    adm.json("POST", "/pools/p/servers/s1/enable")
    check(spread(port, 30) == {"s1": 10, "s2": 10, "s3": 10}, "traffic after enable")
    # a bad file: 400 with FILE:LINE errors; the running configuration stays
    with open(f.conf_path, "w") as fh:
        fh.write(text + "\n[pool q]\nbalance = nonsense\nbogus_key = 1\n")
    st, _, data = adm.call("POST", "/reload")
    check(st == 400, f"bad reload status {st}: {data!r}")
    errs = json.loads(data)["errors"]
    check(len(errs) >= 2, f"errors {errs}")
    for e in errs:
        check(re.match(re.escape(f.conf_path) + r":\d+: \S", e), f"error {e!r} is not FILE:LINE: ...")
    check(adm.status()["generation"] == 2, "a bad reload changed the generation")
    check(spread(port, 3) and f.alive(), "traffic after a bad reload")
    m = parse_metrics(adm.metrics())
    check(metric(m, "fulcrum_config_reloads_total", result="ok") == 1, "reloads ok")
    check(metric(m, "fulcrum_config_reloads_total", result="error") == 1, "reloads error")
    check(metric(m, "fulcrum_config_generation") == 2, "config_generation")
    # A bind on a port another socket holds fails the reload, naming the bind
    # line; the listener stays where it was.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    changed = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{taken}")
    with open(f.conf_path, "w") as fh:
        fh.write(changed)
    st, _, data = adm.call("POST", "/reload")
    holder.close()
    check(st == 400 and b"Address already in use" in data, f"bind in use: {st} {data!r}")
    bind_line = next(i for i, l in enumerate(changed.splitlines(), 1) if l.startswith("bind"))
    check(f"{f.conf_path}:{bind_line}: ".encode() in data,
          f"the error does not point at the bind line {bind_line}: {data!r}")
    check(spread(port, 3), "traffic after a refused listener change")


def test_drain_survives_reload_in_a_maglev_pool(ctx):
    """The drained server stays out of a consistent-hash pool's table after
    a reload, and a file that newly disables a server wins over the API."""
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [b.server_line() for b in bs], pool={"balance": "maglev"})
    first = spread(port, 5)
    check(len(first) == 1, f"one client address, one server: {dict(first)}")
    victim = next(iter(first))
    other = "s2" if victim == "s1" else "s1"
    adm.json("POST", f"/pools/p/servers/{victim}/drain")
    check(spread(port, 5) == {other: 5}, "drained: its keys move")
    f.signal(signal.SIGHUP)
    wait_for(lambda: adm.status()["generation"] == 2, 5 * SCALE, what="generation 2")
    check(adm.server("p", victim)["state"] == "drain", "drain lost at reload")
    check(spread(port, 5) == {other: 5}, "after the reload the drained server got traffic")
    # The file now says `disabled` for the other one: that is the file's call.
    b_other = bs[0] if other == "s1" else bs[1]
    with open(f.conf_path, "w") as fh:
        fh.write(f.conf_text.replace(b_other.server_line(), b_other.server_line("disabled")))
    f.signal(signal.SIGHUP)
    wait_for(lambda: adm.status()["generation"] == 3, 5 * SCALE, what="generation 3")
    check(adm.server("p", other)["state"] == "disabled" and
          adm.server("p", victim)["state"] == "drain", f"states: {adm.status()['pools']}")


def test_idle_admin_clients_cannot_lock_out_healthz(ctx):
    """More silent admin connections than the API keeps: the oldest give way
    and /healthz still answers at once."""
    f, port, adm = start(ctx, [f"s1 127.0.0.1:{free_port()}"])
    silent = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", adm.port), timeout=5 * SCALE)
            s.sendall(b"GET /heal")
            silent.append(s)
        t0 = time.monotonic()
        st, _, body = adm.call("GET", "/healthz")
        check(st == 200 and body == b"ok", f"/healthz with 100 silent clients: {st} {body!r}")
        check(time.monotonic() - t0 < 1.0 * SCALE, "/healthz waited")
    finally:
        for s in silent:
            s.close()


def test_request_followed_by_the_clients_fin_is_answered(ctx):
    """A client that shuts its side right behind a whole request (as
    `printf ... | nc -N` does) still gets the answer, and the change is made."""
    f, port, adm = start(ctx, ["s1 127.0.0.1:%d" % free_port()])

    def send_and_shut(raw):
        s = socket.create_connection(("127.0.0.1", adm.port), timeout=5 * SCALE)
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        s.close()
        return got

    for i in range(10):
        got = send_and_shut(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        check(got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"ok"), f"try {i}: {got!r}")
    body = b'{"weight": 7}'
    got = send_and_shut(b"PUT /pools/p/servers/s1/weight HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(body), body))
    check(got.startswith(b"HTTP/1.1 200 "), f"PUT weight: {got!r}")
    check(adm.server("p", "s1")["weight"] == 7, "the weight was not changed")
    # Half a request and then the FIN: nothing to answer, the connection ends.
    got = send_and_shut(b"GET /heal")
    check(got == b"", f"an unfinished request was answered: {got!r}")


def test_status_is_utf8_json_whatever_bytes_the_file_holds(ctx):
    """A unix socket path in the file may hold any byte: /status stays valid
    UTF-8 JSON, other bytes escaped, UTF-8 kept."""
    f, port, adm = start(ctx, [f"s1 127.0.0.1:{free_port()}"])
    with open(f.conf_path, "rb") as fh:
        text = fh.read()
    extra = b"server = s2 unix:/tmp/\xff\xfe-\xc3\xa9.sock\n"
    with open(f.conf_path, "wb") as fh:
        fh.write(text.replace(b"[listener l]", extra + b"\n[listener l]", 1))
    st, _, body = adm.call("POST", "/reload")
    check(st == 200, f"reload: {st} {body!r}")
    st, _, body = adm.call("GET", "/status")
    try:
        doc = json.loads(body.decode("utf-8"))
    except ValueError as e:
        raise TestFailure(f"/status is not UTF-8 JSON ({e}): {body!r}")
    addrs = [x["address"] for x in doc["pools"][0]["servers"]]
    check("unix:/tmp/\u00ff\u00fe-\u00e9.sock" in addrs, f"addresses {addrs!r}")


def test_reload_warnings_compare_with_what_runs(ctx):
    """Settings that wait for a restart are compared with what runs, not
    with the last file; a failed POST /reload logs its FILE:LINE errors."""
    bs = names(ctx, "s1")
    f, port, adm = start(ctx, [bs[0].server_line()])
    base = f.conf_text
    warn = r"workers = \d+ needs a restart; \d+ keep running"

    def reload_with(text, generation):
        with open(f.conf_path, "w") as fh:
            fh.write(text)
        check(adm.json("POST", "/reload") == {"generation": generation}, "reload")

    reload_with(base.replace("workers = 1", "workers = 2"), 2)
    check(re.findall(warn, f.stderr()) == ["workers = 2 needs a restart; 1 keep running"],
          f"first reload: {f.stderr()}")
    reload_with(base, 3)  # back to what runs: nothing to warn about
    reload_with(base.replace("workers = 1", "workers = 2"), 4)
    check(re.findall(warn, f.stderr()) == ["workers = 2 needs a restart; 1 keep running"] * 2,
          f"warnings: {re.findall(warn, f.stderr())}")
    with open(f.conf_path, "w") as fh:
        fh.write(base + "\n[pool q]\nbogus_key = 1\n")
    st, _, _ = adm.call("POST", "/reload")
    check(st == 400, f"bad reload: {st}")
    wait_for(lambda: re.search(re.escape(f.conf_path) + r":\d+: .*bogus_key", f.stderr()),
             2 * SCALE, what="the FILE:LINE error of a failed POST /reload in the log")


def test_sighup_reload(ctx):
    bs = names(ctx, "s1", "s2")
    f, port, adm = start(ctx, [b.server_line() for b in bs])
    check(spread(port, 10) == {"s1": 5, "s2": 5}, "before")
    adm.json("PUT", "/pools/p/servers/s1/weight", {"weight": 4})
    with open(f.conf_path, "w") as fh:
        fh.write(f.conf_text.replace(bs[1].server_line(), bs[1].server_line("weight=3")))
    f.signal(signal.SIGHUP)
    wait_for(lambda: adm.status()["generation"] == 2, 5 * SCALE, what="generation 2")
    check(adm.server("p", "s1")["weight"] == 1, "SIGHUP must reset weights changed at run time")
    check(adm.server("p", "s1")["requests_total"] == 5, "counters carry over a reload")
    check(spread(port, 40) == {"s1": 10, "s2": 30}, "weights from the new file")
    with open(f.conf_path, "w") as fh:
        fh.write("[global]\nworkers = x\n")
    f.signal(signal.SIGHUP)
    wait_for(lambda: metric(parse_metrics(adm.metrics()), "fulcrum_config_reloads_total",
                            result="error") == 1, 5 * SCALE, what="a failed reload")
    check(adm.status()["generation"] == 2 and spread(port, 4), "bad SIGHUP reload broke things")
    check(re.search(r"\.ini:\d+: ", f.stderr()), "no FILE:LINE error logged for a bad SIGHUP")


def test_admin_disabled_when_empty(ctx):
    """admin = (empty) opens no admin socket at all, not even the default
    127.0.0.1:9900: the listener's port is the only one fulcrum listens on."""
    bs = names(ctx, "s1")
    port, admin_port = free_port(), free_port()
    f = ctx.fulcrum(conf(port, admin_port, [bs[0].server_line()], glob={"admin": ""}))
    check(name_via(("127.0.0.1", port)) == "s1", "traffic")
    listening = listening_ports(f.pid)
    check(listening == {port}, f"fulcrum listens on ports {sorted(listening)}, expected only {port}")


def test_admin_port_in_use(ctx):
    bs = names(ctx, "s1")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    admin_port = blocker.getsockname()[1]
    try:
        f = ctx.fulcrum(conf(free_port(), admin_port, [bs[0].server_line()]), wait=False)
        rc = f.wait_exit(10)
        check(rc == 2, f"exit status {rc} with the admin port taken")
        check("admin" in f.stderr(), f"stderr does not name the admin listener: {f.stderr()!r}")
    finally:
        blocker.close()


def test_curl_expect_continue(ctx):
    bs = names(ctx, "s1")
    f, port, adm = start(ctx, [bs[0].server_line()])
    t0 = time.monotonic()
    p = subprocess.run(["curl", "-sS", "-X", "PUT", "-H", "Expect: 100-continue",
                        "-H", "Content-Type: application/json", "--data", '{"weight": 7}',
                        f"http://127.0.0.1:{adm.port}/pools/p/servers/s1/weight"],
                       capture_output=True, timeout=10 * SCALE)
    dt = time.monotonic() - t0
    check(p.returncode == 0, f"curl failed: {p.stderr!r}")
    check(json.loads(p.stdout)["weight"] == 7, f"answer {p.stdout!r}")
    check(dt < 0.9 * SCALE, f"curl waited {dt:.2f}s: no 100 Continue")
