"""The HTTP cache (SPEC §2 `cache`, §3 "Caching", RFC 9111): hits after a
miss with Age and X-Cache, expiry, what is never stored (no-store, private,
no-cache, Set-Cookie, 500, Expires in the past, Authorization), Vary, HEAD
from a stored GET, chunked and until-close bodies stored decoded, large
bodies, LRU eviction within a small budget, invalidation by unsafe methods,
request directives, one cache shared by the workers, pipelining, HTTP/1.0,
forward mode, the access log, and fulcrum's own errors carrying no X-Cache.

The origin is a Python server whose answers are set per path and which
counts the requests it gets, so "served from the cache" is checked on both
sides: X-Cache: HIT to the client, and no new request at the origin.
"""

import email.utils
import hashlib
import signal
import socket
import struct
import threading
import time

from harness import (SCALE, blob, check, closed_port, connect, free_port, ini, read_lines,
                     recv_all, wait_for)
from test_http import (Reader, access_lines, cbackend, client, close_backends_first, http_conf,
                       pyserver, read_request, read_response, roundtrip)

KIB = 1 << 10


# ------------------------------------------------------------- origin ----


class Origin:
    """A keep-alive origin. route(path, ...) sets the answer for a path (the
    query is ignored when choosing it); BODY may be a callable taking the
    request Message and the request count so far, returning the body or
    (status, more header lines, body). count(target) is the
    number of requests the origin got for the full request target."""

    def __init__(self, ctx, name="o"):
        self.routes = {}
        self.counts = {}
        self.lock = threading.Lock()
        self.srv = pyserver(ctx, self._handler, name=name)

    def server_line(self):
        return self.srv.server_line()

    @property
    def addr(self):
        return self.srv.addr

    def route(self, path, status=200, headers=(), body=b"hello", framing="length", date=True):
        self.routes[path] = (status, list(headers), body, framing, date)

    def count(self, target):
        with self.lock:
            return self.counts.get(target, 0)

    def _handler(self, r, srv):
        while True:
            req = read_request(r)
            if req is None:
                return
            target = req.first.split(" ")[1]
            method = req.first.split(" ")[0]
            with self.lock:
                self.counts[target] = self.counts.get(target, 0) + 1
                n = self.counts[target]
            path = target.split("?")[0]
            status, headers, body, framing, date = self.routes.get(
                path, (404, ["Cache-Control: no-store"], b"no route at the origin\n", "length", True))
            if framing == "drop":  # BODY: seconds to wait before closing unanswered
                time.sleep(body)
                return
            if callable(body):
                body = body(req, n)
                if isinstance(body, tuple):  # (status, more headers, body)
                    status, more, body = body
                    headers = headers + more
            lines = [f"HTTP/1.1 {status} X"]
            if date:
                lines.append("Date: " + email.utils.formatdate(usegmt=True))
            lines += headers
            payload = b"" if method == "HEAD" or status in (204, 304) else body
            if framing == "chunked":
                lines.append("Transfer-Encoding: chunked")
                half = len(payload) // 2
                payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                                   for p in (payload[:half], payload[half:]) if p) + b"0\r\n\r\n"
            elif framing == "close":
                lines.append("Connection: close")
            elif framing == "raw":  # BODY: pieces sent as they are, 0.2 s apart
                r.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body[0])
                for piece in body[1:]:
                    time.sleep(0.2)
                    r.send(piece)
                return
            elif status not in (204, 304):
                lines.append(f"Content-Length: {len(body)}")
            r.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
            if framing == "close":
                return


def start(ctx, origin, cache="1m", glob=None, listener=None, pool=None):
    port = free_port()
    l = {"cache": cache}
    l.update(listener or {})
    f = ctx.fulcrum(http_conf(port, [origin.server_line()], glob=glob, listener=l, pool=pool))
    return f, port


def fetch(port, target, headers=(), method="GET", host="example.com", version="HTTP/1.1"):
    lines = [f"{method} {target} {version}", f"Host: {host}"] + list(headers)
    m, _, _ = roundtrip(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), method,
                        wait_close=0)
    return m


def x_cache(m):
    return m.all("x-cache")


def is_hit(m):
    ages = m.all("age")
    return x_cache(m) == ["HIT"] and len(ages) == 1 and ages[0].isdigit()


def is_miss(m):
    return x_cache(m) == ["MISS"]


def expect_miss_then_hit(port, origin, target, headers=()):
    a = fetch(port, target, headers)
    check(a.status is not None and is_miss(a), f"first {target}: not a MISS: {a!r}")
    b = fetch(port, target, headers)
    check(is_hit(b), f"second {target}: not a HIT: {b!r}")
    check(b.status == a.status and b.body == a.body, f"{target}: the HIT differs: {a!r} {b!r}")
    check(origin.count(target) == 1, f"{target}: origin asked {origin.count(target)} times")
    return a, b


def expect_never_stored(port, origin, target, headers=()):
    for i in range(3):
        m = fetch(port, target, headers)
        check(is_miss(m), f"{target} #{i}: want MISS: {m!r}")
    check(origin.count(target) == 3, f"{target}: origin asked {origin.count(target)} times, want 3")


# -------------------------------------------------------------- tests ----


def test_byte_ranges_from_a_hit(ctx):
    """A GET with one byte range is answered from a stored 200 with 206 and
    that part, or 416 past its end, as nginx does from its cache; several
    ranges, If-Range and HEAD get the whole answer (RFC 9110 §14.2)."""
    body = bytes(range(256)) * 4
    o = Origin(ctx)
    o.route("/r", headers=["Cache-Control: max-age=60", 'ETag: "v1"'], body=body)
    o.route("/c", headers=["Cache-Control: max-age=60"], body=body, framing="chunked")
    _, port = start(ctx, o, glob={"access_log": ctx.path("access.log")})
    for path in ("/r", "/c"):
        expect_miss_then_hit(port, o, path)
        for spec, first, last in (("0-9", 0, 9), ("1000-", 1000, 1023), ("-24", 1000, 1023),
                                  ("1020-5000", 1020, 1023)):
            m = fetch(port, path, [f"Range: bytes={spec}"])
            check(m.status == 206 and is_hit(m), f"{path} {spec}: {m!r}")
            check(m.body == body[first:last + 1], f"{path} {spec}: body {m.body[:32]!r}")
            check(m.all("content-range") == [f"bytes {first}-{last}/1024"] and
                  m.all("content-length") == [str(last - first + 1)],
                  f"{path} {spec}: {m.all('content-range')} {m.all('content-length')}")
        m = fetch(port, path, ["Range: bytes=1024-"])
        check(m.status == 416 and m.all("content-range") == ["bytes */1024"], f"{path} 416: {m!r}")
        # SPEC §3: every answer from the cache says so, a 416 too.
        check(is_hit(m) and m.get("age") is not None, f"{path} 416 without Age/X-Cache: {m!r}")
        check(m.get("date") is not None, f"{path} 416 without Date (RFC 9110 §6.6.1): {m!r}")
        for extra in (["Range: bytes=0-1,5-6"], ["Range: bytes=5-4"], ["Range: items=0-1"],
                      ["Range: bytes=0-9", 'If-Range: "v1"']):
            m = fetch(port, path, extra)
            check(m.status == 200 and is_hit(m) and m.body == body, f"{path} {extra}: {m!r}")
        m = fetch(port, path, ["Range: bytes=0-9"], method="HEAD")
        check(m.status == 200 and m.all("content-length") == ["1024"], f"{path} HEAD: {m!r}")
        check(o.count(path) == 1, f"{path}: the origin was asked {o.count(path)} times")
    check(fetch(port, "/r", ["Range: bytes=0-9"]).all("etag") == ['"v1"'], "the ETag of a 206")
    # A part, then more requests on the same connection.
    r = client(port)
    r.send(b"GET /r HTTP/1.1\r\nHost: example.com\r\nRange: bytes=-1\r\n\r\n"
           b"GET /r HTTP/1.1\r\nHost: example.com\r\n\r\n")
    a, b = read_response(r), read_response(r)
    check(a.status == 206 and a.body == body[-1:] and b.status == 200 and b.body == body,
          f"pipelined behind a 206: {a!r} {b!r}")
    r.close()
    log = ctx.path("access.log")
    lines = wait_for(lambda: [l for l in read_lines(log) if " 206 " in l], 3 * SCALE,
                     what="206 lines in the access log")
    check(all(l.endswith(" -") for l in lines), f"206 lines: {lines[:2]}")
    lines = [l for l in read_lines(log) if " 416 " in l]
    check(len(lines) == 2 and all(l.endswith(" -") for l in lines), f"416 lines: {lines}")


def test_miss_then_hit_with_age(ctx):
    o = Origin(ctx)
    o.route("/a", headers=["Cache-Control: max-age=30", "ETag: \"v1\"", "Content-Type: text/x"],
            body=b"cached body\n")
    _, port = start(ctx, o)
    a, b = expect_miss_then_hit(port, o, "/a")
    check(a.all("age") == [], f"a MISS without Age from the origin has none: {a!r}")
    # The stored head is the origin's, hop-by-hop fields aside.
    for name in ("etag", "content-type", "cache-control", "date", "content-length"):
        check(a.all(name) == b.all(name), f"{name} differs: {a.all(name)} {b.all(name)}")
    time.sleep(1.2)
    c = fetch(port, "/a")
    check(is_hit(c) and int(c.get("age")) >= 1, f"Age does not grow: {c!r}")
    check(o.count("/a") == 1, "origin asked again")


def test_expiry_then_refetch(ctx):
    o = Origin(ctx)
    o.route("/e", headers=["Cache-Control: max-age=2"], body=lambda req, n: b"version %d" % n)
    _, port = start(ctx, o)
    a, b = expect_miss_then_hit(port, o, "/e")
    check(b.body == b"version 1", f"{b!r}")
    time.sleep(2.3)
    c = fetch(port, "/e")
    check(is_miss(c) and c.body == b"version 2", f"stale entry served: {c!r}")
    d = fetch(port, "/e")
    check(is_hit(d) and d.body == b"version 2", f"the new version is not stored: {d!r}")
    check(o.count("/e") == 2, f"origin asked {o.count('/e')} times")


def test_origin_age_counts(ctx):
    o = Origin(ctx)
    o.route("/aged", headers=["Cache-Control: max-age=100", "Age: 40"])
    o.route("/old", headers=["Cache-Control: max-age=100", "Age: 100"])
    _, port = start(ctx, o)
    _, b = expect_miss_then_hit(port, o, "/aged")
    check(int(b.get("age")) >= 40, f"Age below the origin's: {b!r}")
    expect_never_stored(port, o, "/old")


def test_never_stored(ctx):
    o = Origin(ctx)
    o.route("/nostore", headers=["Cache-Control: max-age=60, no-store"])
    o.route("/private", headers=["Cache-Control: private, max-age=60"])
    o.route("/nocache", headers=["Cache-Control: no-cache, max-age=60"])
    o.route("/cookie", headers=["Cache-Control: max-age=60", "Set-Cookie: a=b"])
    o.route("/nolifetime", headers=["Content-Type: text/plain"])
    o.route("/zero", headers=["Cache-Control: max-age=0"])
    o.route("/varystar", headers=["Cache-Control: max-age=60", "Vary: *"])
    o.route("/e500", status=500, headers=["Cache-Control: max-age=60"])
    o.route("/e302", status=302, headers=["Cache-Control: max-age=60", "Location: /a"])
    o.route("/past", headers=["Expires: Thu, 01 Jan 1970 00:00:00 GMT"])
    o.route("/badexpires", headers=["Expires: 0"])
    _, port = start(ctx, o)
    for t in ("/nostore", "/private", "/nocache", "/cookie", "/nolifetime", "/zero",
              "/varystar", "/e500", "/e302", "/past", "/badexpires"):
        expect_never_stored(port, o, t)


def test_storable_statuses_and_expires(ctx):
    o = Origin(ctx)
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    o.route("/n404", status=404, headers=["Cache-Control: max-age=60"], body=b"gone\n")
    o.route("/n410", status=410, headers=["Cache-Control: max-age=60"], body=b"gone\n")
    o.route("/n301", status=301, headers=["Cache-Control: max-age=60", "Location: /x"])
    o.route("/n204", status=204, headers=["Cache-Control: max-age=60"])
    o.route("/exp", headers=[f"Expires: {future}"])
    o.route("/smax", headers=["Cache-Control: max-age=0, s-maxage=60"])
    _, port = start(ctx, o)
    for t in ("/n404", "/n410", "/n301", "/n204", "/exp", "/smax"):
        expect_miss_then_hit(port, o, t)
    m = fetch(port, "/n204")
    check(m.status == 204 and m.body == b"" and not m.all("content-length"), f"{m!r}")


def test_vary_two_entries(ctx):
    o = Origin(ctx)
    o.route("/v", headers=["Cache-Control: max-age=60", "Vary: Accept-Encoding"],
            body=lambda req, n: ("enc=%s n=%d" % (req.get("accept-encoding"), n)).encode())
    _, port = start(ctx, o)
    gz, br = ["Accept-Encoding: gzip"], ["Accept-Encoding: br"]
    a = fetch(port, "/v", gz)
    b = fetch(port, "/v", br)
    check(is_miss(a) and is_miss(b), f"{a!r} {b!r}")
    c = fetch(port, "/v", gz)
    d = fetch(port, "/v", br)
    check(is_hit(c) and c.body == b"enc=gzip n=1", f"{c!r}")
    check(is_hit(d) and d.body == b"enc=br n=2", f"{d!r}")
    e = fetch(port, "/v")
    check(is_miss(e) and e.body == b"enc=None n=3", f"no Accept-Encoding: {e!r}")
    f = fetch(port, "/v")
    check(is_hit(f) and f.body == b"enc=None n=3", f"{f!r}")
    check(o.count("/v") == 3, f"origin asked {o.count('/v')} times")


def test_vary_on_a_field_fulcrum_writes_is_not_stored(ctx):
    """The server saw X-Forwarded-For (or Via, Max-Forwards) as fulcrum
    wrote it, not as the client sent it: a response varying on one would
    be matched against the wrong value (every client without the field
    would get the first client's personalised answer), so it is not kept."""
    o = Origin(ctx)
    for path, field in (("/xff", "X-Forwarded-For"), ("/via", "Via"), ("/mf", "Max-Forwards")):
        o.route(path, headers=["Cache-Control: max-age=60", f"Vary: Accept, {field}"],
                body=lambda req, n, field=field: f"{field}={req.get(field.lower())}".encode())
    _, port = start(ctx, o, glob={"workers": 1})
    for path in ("/xff", "/via", "/mf"):
        expect_never_stored(port, o, path)


def test_a_hit_to_a_half_closed_client_says_close(ctx):
    """A client that sends its request and its FIN gets a hit with
    Connection: close, as it gets a miss, and then the close."""
    o = Origin(ctx)
    o.route("/hc", headers=["Cache-Control: max-age=60"], body=b"stored")
    _, port = start(ctx, o)
    check(is_miss(fetch(port, "/hc")), "the first fetch")
    s = connect(("127.0.0.1", port))
    # Corked, the request and the FIN leave in one segment: fulcrum sees
    # the FIN with the request, whenever it runs.
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    s.sendall(b"GET /hc HTTP/1.1\r\nHost: example.com\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    r = Reader(s)
    m = read_response(r)
    check(is_hit(m) and m.body == b"stored", f"the hit: {m!r}")
    check(m.get("connection") == "close", f"the hit to a half-closed client: {m.headers}")
    check(r.to_eof() == b"", "bytes after the hit")
    s.close()


def test_head_from_stored_get(ctx):
    o = Origin(ctx)
    o.route("/h", headers=["Cache-Control: max-age=60", "Content-Type: text/x"],
            body=b"0123456789")
    o.route("/h2", headers=["Cache-Control: max-age=60"], body=b"abc")
    _, port = start(ctx, o)
    g = fetch(port, "/h")
    check(is_miss(g), f"{g!r}")
    r = client(port)
    try:
        r.send(b"HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n")
        h = read_response(r, "HEAD")
        check(is_hit(h) and h.status == 200, f"HEAD not answered from the GET: {h!r}")
        check(h.get("content-length") == "10" and h.get("content-type") == "text/x", f"{h!r}")
        # Nothing follows the head: the next answer on the connection is clean.
        r.send(b"GET /h HTTP/1.1\r\nHost: example.com\r\n\r\n")
        g2 = read_response(r)
        check(is_hit(g2) and g2.body == b"0123456789", f"{g2!r}")
    finally:
        r.close()
    check(o.count("/h") == 1, f"origin asked {o.count('/h')} times")
    # A HEAD's answer is stored too (SPEC: GET and HEAD responses), for
    # HEADs only: the GET after it has no body to take from it and misses.
    h = fetch(port, "/h2", method="HEAD")
    check(is_miss(h) and h.body == b"", f"first HEAD: {x_cache(h)}")
    h = fetch(port, "/h2", method="HEAD")
    check(is_hit(h) and h.body == b"" and h.get("content-length") == "3",
          f"second HEAD: {x_cache(h)} {h.all('content-length')}")
    check(o.count("/h2") == 1, f"origin asked {o.count('/h2')} times for two HEADs")
    g = fetch(port, "/h2")
    check(is_miss(g) and g.body == b"abc", f"GET after HEADs: {x_cache(g)} {g.body!r}")
    check(is_hit(fetch(port, "/h2")), "GET after GET")
    check(is_hit(fetch(port, "/h2", method="HEAD")), "HEAD after GET")
    # A HEAD that goes to the server anyway (no-cache) does not replace the
    # stored GET: the next GET is still a hit, with its body.
    n = o.count("/h2")
    h = fetch(port, "/h2", method="HEAD", headers=["Cache-Control: no-cache"])
    check(h.status == 200 and o.count("/h2") == n + 1, f"no-cache HEAD: {h!r}")
    g = fetch(port, "/h2")
    check(is_hit(g) and g.body == b"abc", f"GET after a HEAD to the server: {x_cache(g)} {g.body!r}")
    # Unless that HEAD's answer shows new validators: the stored body is
    # out of date then, and the next GET fetches the new one.
    o.route("/h3", headers=["Cache-Control: max-age=60", 'ETag: "a"'], body=b"old")
    check(fetch(port, "/h3").body == b"old" and is_hit(fetch(port, "/h3")), "/h3 stored")
    o.route("/h3", headers=["Cache-Control: max-age=60", 'ETag: "b"'], body=b"new")
    fetch(port, "/h3", method="HEAD", headers=["Cache-Control: no-cache"])
    g = fetch(port, "/h3")
    check(g.body == b"new", f"GET after a HEAD with a new ETag: {x_cache(g)} {g.body!r}")


def test_chunked_and_close_bodies_stored_decoded(ctx):
    o = Origin(ctx)
    body = bytes(range(256)) * 300
    o.route("/ch", headers=["Cache-Control: max-age=60"], body=body, framing="chunked")
    o.route("/cl", headers=["Cache-Control: max-age=60"], body=body, framing="close")
    _, port = start(ctx, o)
    for t in ("/ch", "/cl"):
        a, b = expect_miss_then_hit(port, o, t)
        check(a.body == body, f"{t}: MISS body wrong ({len(a.body)} bytes)")
        check(b.get("content-length") == str(len(body)) and not b.all("transfer-encoding"),
              f"{t}: the HIT is not framed by Content-Length: {b.headers}")
    # An HTTP/1.0 client gets the stored body too.
    m = fetch(port, "/ch", version="HTTP/1.0")
    check(is_hit(m) and m.body == body, f"HTTP/1.0: {m.headers}")


def test_broken_bodies_are_not_stored(ctx):
    o = Origin(ctx)
    te = ["Cache-Control: max-age=60", "Transfer-Encoding: chunked"]
    o.route("/bad1", headers=te, body=[b"5\r\nhello\r\nzz\r\n"], framing="raw")
    o.route("/bad2", headers=te, body=[b"5\r\nhello\r\n", b"zz\r\n"], framing="raw")
    o.route("/short", headers=["Cache-Control: max-age=60", "Content-Length: 100"],
            body=[b"x" * 10, b"y" * 10], framing="raw")
    # Six broken answers in a row: past max_fails, the origin would be down.
    _, port = start(ctx, o, pool={"max_fails": 0})
    for t in ("/bad1", "/bad2", "/short"):
        for i in range(2):
            r = client(port)
            try:
                r.send(b"GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n" % t.encode())
                try:
                    m = read_response(r)
                except (EOFError, ConnectionError):
                    m = None  # the response had started: the connection is closed mid-body
            finally:
                r.close()
            # Never a complete-looking answer (from the origin or the cache):
            # a 502, or the connection cut before the body's end.
            check(m is None or m.status == 502, f"{t} #{i}: a broken body came through whole: {m!r}")
        check(o.count(t) == 2, f"{t}: a broken response was stored ({o.count(t)} asks)")


def test_large_body_through_build_backend(ctx):
    b = cbackend(ctx)
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"cache": "16m"}))
    big = "/large?maxage=60"
    a = fetch(port, big)
    c = fetch(port, big)
    check(is_miss(a) and is_hit(c), f"{a.headers} {c.headers}")
    check(len(a.body) == 1 << 20 and a.body == c.body, "the 1 MiB bodies differ")
    # The budget is one: a 5 MB object in a 16m cache is stored...
    a = fetch(port, "/x?size=5000000&maxage=60")
    c = fetch(port, "/x?size=5000000&maxage=60")
    check(is_miss(a) and is_hit(c) and c.body == a.body, f"5 MB in 16m: {c.headers}")
    # ...and one over the whole budget never is.
    huge = "/x?size=17000000&maxage=60"
    for _ in range(2):
        m = fetch(port, huge)
        check(is_miss(m) and len(m.body) == 17000000, f"{m.headers}")
    # build/backend's chunked answer.
    a = fetch(port, "/chunked?maxage=60")
    c = fetch(port, "/chunked?maxage=60")
    check(is_miss(a) and is_hit(c) and a.body == c.body and c.get("content-length"),
          f"{a!r} {c!r}")


def test_lru_over_the_whole_budget(ctx):
    """A 16m cache keeps objects until 16 MiB is passed, then lets the least
    recently used go first: one budget, one LRU order (SPEC §3)."""
    b = cbackend(ctx)
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"cache": "16m"}))
    url = [f"/x?size=2500000&maxage=60&n={i}" for i in range(8)]
    for u in url[:6]:  # 15 MB
        check(is_miss(fetch(port, u)), f"{u} was cached before it was asked for")
    for u in url[:6]:
        check(is_hit(fetch(port, u)), f"{u} evicted while the cache was under its budget")
    check(is_hit(fetch(port, url[0])), "touching the first object")
    check(is_miss(fetch(port, url[6])), "a new object")  # 17.5 MB: something goes
    gone = [u for u in url[:6] if not is_hit(fetch_only_cached(port, u))]
    check(gone == [url[1]], f"evicted {gone}, not the least recently used {url[1]}")


def fetch_only_cached(port, target):
    """GET TARGET with only-if-cached: a hit, or fulcrum's 504."""
    return fetch(port, target, headers=["Cache-Control: only-if-cached"])


def test_lru_eviction_small_budget(ctx):
    o = Origin(ctx)
    for i in range(1, 6):
        o.route(f"/o{i}", headers=["Cache-Control: max-age=60"], body=bytes([48 + i]) * (20 * KIB))
    _, port = start(ctx, o, cache="64k")
    for i in (1, 2, 3):
        check(is_miss(fetch(port, f"/o{i}")), f"/o{i} first")
    check(is_hit(fetch(port, "/o1")), "/o1 is stored")  # now /o2 is the least recently used
    check(is_miss(fetch(port, "/o4")), "/o4 first")  # evicts /o2
    check(is_hit(fetch(port, "/o1")), "/o1 evicted instead of /o2")
    check(is_hit(fetch(port, "/o3")), "/o3 evicted instead of /o2")
    check(is_hit(fetch(port, "/o4")), "/o4 not stored")
    m = fetch(port, "/o2")
    check(is_miss(m) and m.body == b"2" * (20 * KIB), "/o2 was not evicted")
    check(o.count("/o2") == 2 and o.count("/o1") == 1, "origin counts")
    # An object larger than the whole budget is never stored.
    o.route("/big", headers=["Cache-Control: max-age=60"], body=b"b" * (70 * KIB))
    expect_never_stored(port, o, "/big")


def test_authorization(ctx):
    o = Origin(ctx)
    o.route("/p", headers=["Cache-Control: max-age=60"], body=lambda req, n: b"n=%d" % n)
    o.route("/pub", headers=["Cache-Control: max-age=60, public"], body=lambda req, n: b"n=%d" % n)
    _, port = start(ctx, o)
    auth = ["Authorization: Basic dXNlcjpwYXNz"]
    expect_miss_then_hit(port, o, "/p")
    # Stored without public: never the answer to a request with Authorization,
    # and that request's answer is not stored.
    for i in range(2):
        m = fetch(port, "/p", auth)
        check(is_miss(m), f"Authorization answered from the cache: {m!r}")
    check(o.count("/p") == 3, f"origin asked {o.count('/p')} times")
    check(fetch(port, "/p").body == b"n=1", "the unauthenticated entry was replaced")
    # public: may be stored from and served to requests with Authorization.
    a = fetch(port, "/pub", auth)
    b = fetch(port, "/pub", auth)
    check(is_miss(a) and is_hit(b) and b.body == b"n=1", f"{a!r} {b!r}")


def test_request_directives(ctx):
    o = Origin(ctx)
    o.route("/r", headers=["Cache-Control: max-age=60"], body=lambda req, n: b"n=%d" % n)
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/r")
    m = fetch(port, "/r", ["Cache-Control: no-cache"])
    check(is_miss(m) and m.body == b"n=2", f"no-cache served from the cache: {m!r}")
    m = fetch(port, "/r")
    check(is_hit(m) and m.body == b"n=2", f"the no-cache answer was not stored: {m!r}")
    m = fetch(port, "/r", ["Pragma: no-cache"])
    check(is_miss(m) and m.body == b"n=3", f"Pragma: no-cache: {m!r}")
    m = fetch(port, "/r", ["Cache-Control: no-store"])
    check(is_miss(m) and m.body == b"n=4", f"no-store: {m!r}")
    m = fetch(port, "/r")
    check(is_hit(m) and m.body == b"n=3", f"a no-store request's answer was stored: {m!r}")


def _conditional_origin(ctx, validator_header, validator, cond_header):
    """An origin for /rv whose answer carries VALIDATOR_HEADER: VALIDATOR and
    max-age=1; a request with COND_HEADER: VALIDATOR gets a 304 (with an
    X-Checked line counting the checks), others a full 200."""
    o = Origin(ctx)

    def answer(req, n):
        if req.get(cond_header) == validator:
            return 304, [f"X-Checked: {n}"], b""
        return 200, ["X-Checked: never"], b"full body %d" % n

    o.route("/rv", headers=["Cache-Control: max-age=1", f"{validator_header}: {validator}"],
            body=answer)
    return o


def test_revalidation_with_etag(ctx):
    o = _conditional_origin(ctx, "ETag", '"v1"', "if-none-match")
    log = ctx.path("access.log")
    _, port = start(ctx, o, glob={"access_log": log})
    expect_miss_then_hit(port, o, "/rv")
    time.sleep(1.3)
    m = fetch(port, "/rv")
    check(is_hit(m) and m.status == 200 and m.body == b"full body 1",
          f"the 304 did not refresh the stored answer: {m!r}")
    check(m.all("x-checked") == ["2"] and m.all("etag") == ['"v1"'],
          f"the stored head was not updated from the 304: {m.headers}")
    check(o.count("/rv") == 2, f"origin asked {o.count('/rv')} times")
    check(b'If-None-Match: "v1"' in o.srv.heads[-1], f"no validator sent: {o.srv.heads[-1]!r}")
    n = fetch(port, "/rv")
    check(is_hit(n) and n.all("x-checked") == ["2"], f"the refreshed entry is not fresh: {n!r}")
    check(o.count("/rv") == 2, "origin asked again")
    lines = access_lines(log, 4)
    check(lines[2].split(" ")[-1] == "cache_revalidated" and lines[2].split(" ")[7] == "200",
          lines[2])


def test_revalidation_by_a_304_without_date(ctx):
    """A 304 without Date refreshes the entry as well: fulcrum dates it
    (RFC 9110 §6.6.1), so the stored answer is fresh again for its max-age
    rather than aged from the first answer's Date."""
    o = Origin(ctx)

    def answer(req, n):
        if req.get("if-none-match") == '"v1"':
            return 304, [f"X-Checked: {n}"], b""
        return 200, ["Date: " + email.utils.formatdate(usegmt=True)], b"full body %d" % n

    o.route("/nd", headers=["Cache-Control: max-age=2", 'ETag: "v1"'], body=answer, date=False)
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/nd")
    time.sleep(2.3)
    m = fetch(port, "/nd")
    check(is_hit(m) and m.all("x-checked") == ["2"], f"revalidated answer: {m!r}")
    n = fetch(port, "/nd")
    check(is_hit(n) and int(n.get("age")) <= 1, f"the refreshed entry is not fresh: {n!r}")
    check(o.count("/nd") == 2, f"origin asked {o.count('/nd')} times, want 2")


def test_a_304_naming_another_etag_refreshes_nothing(ctx):
    """RFC 9111 §4.3.4: a 304 whose strong ETag is not the stored one
    updates nothing. The request gets the stored answer as it was, and the
    entry goes: the next request fetches the resource whole."""
    o = Origin(ctx)

    def answer(req, n):
        if req.get("if-none-match"):
            return 304, ['ETag: "other"', "Cache-Control: max-age=60"], b""
        return 200, ['ETag: "e%d"' % n, "Cache-Control: max-age=1"], b"body %d" % n

    o.route("/et", body=answer)
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/et")
    time.sleep(2.1)
    m = fetch(port, "/et")
    check(m.status == 200 and m.body == b"body 1" and m.all("etag") == ['"e1"'],
          f"the 304 for another ETag was merged: {m!r}")
    check(o.count("/et") == 2 and b'If-None-Match: "e1"' in o.srv.heads[-1],
          f"no revalidation: {o.count('/et')} {o.srv.heads[-1]!r}")
    n = fetch(port, "/et")
    check(is_miss(n) and n.body == b"body 3" and o.count("/et") == 3,
          f"the entry outlived a 304 for another representation: {n!r}")
    m = fetch(port, "/et", ['If-None-Match: "other"'])
    check(m.status == 200 and m.body == b"body 3", f"a client could pin \"other\": {m!r}")


def test_conditions_hold_for_a_stored_2xx_only(ctx):
    """RFC 9110 §13.2.1: preconditions are ignored when the answer would not
    be a 2xx. A client whose If-None-Match matches a stored 404 gets the
    404, not a 304 that would keep its old copy alive."""
    o = Origin(ctx)
    o.route("/gone", status=404, headers=["Cache-Control: max-age=60", 'ETag: "e1"',
                                          "Last-Modified: Sun, 01 Nov 2026 00:00:00 GMT"],
            body=b"not here")
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/gone")
    for cond in ('If-None-Match: "e1"', "If-Modified-Since: Sun, 01 Nov 2026 00:00:00 GMT"):
        m = fetch(port, "/gone", [cond])
        check(m.status == 404 and m.body == b"not here" and is_hit(m), f"{cond}: {m!r}")
    o.route("/ok", headers=["Cache-Control: max-age=60", 'ETag: "e1"'])
    expect_miss_then_hit(port, o, "/ok")
    m = fetch(port, "/ok", ['If-None-Match: "e1"'])
    check(m.status == 304 and is_hit(m), f"a stored 200 and a matching ETag: {m!r}")


def test_list_valued_age_counts_its_first_member(ctx):
    """RFC 9111 §5.1: a cache uses the first member of a list-valued Age.
    "Age: 100, 1" with max-age=60 is stale on arrival, not fresh for a
    minute."""
    o = Origin(ctx)
    for path, age in (("/a1", "100, 1"), ("/a2", "100,"), ("/a3", "100")):
        o.route(path, headers=["Cache-Control: max-age=60", f"Age: {age}"])
    o.route("/a4", headers=["Cache-Control: max-age=60", "Age: 5, 100"])
    _, port = start(ctx, o)
    for path in ("/a1", "/a2", "/a3"):
        fetch(port, path)
        m = fetch(port, path)
        check(is_miss(m) and o.count(path) == 2, f"{path}: served from the cache: {m!r}")
    fetch(port, "/a4")
    m = fetch(port, "/a4")
    check(is_hit(m) and int(m.get("age")) >= 5, f"Age 5, 100: {m!r}")


def test_empty_path_with_a_query_is_one_key(ctx):
    """An absolute-form target with an empty path goes to the server as
    "/?q" (RFC 9112 §3.2.2): it is the same cache entry as "/?q", for hits
    and for invalidation."""
    o = Origin(ctx)
    o.route("/", headers=["Cache-Control: max-age=60"], body=lambda req, n: b"v%d" % n)
    _, port = start(ctx, o)
    a = fetch(port, "/?q")
    b = fetch(port, "http://example.com?q")
    check(is_miss(a) and is_hit(b) and b.body == a.body, f"/?q then http://h?q: {a!r} {b!r}")
    fetch(port, "http://example.com?q", method="POST")
    c = fetch(port, "/?q")
    check(is_miss(c) and o.count("/?q") == 3, f"a POST to http://h?q left /?q stored: {c!r}")


def test_revalidation_by_a_304_that_forbids_storing(ctx):
    """RFC 9111 §4.3.4: a 304 updates the stored head. When the updated head
    forbids storing (no-store, Vary: *), the request still gets the stored
    body with the new head, but the entry goes: the next request is a plain
    miss, not one more revalidation of an answer served stale."""
    o = Origin(ctx)

    def answer(req, n):
        if req.get("if-none-match") == '"v1"':
            return 304, [f"X-Checked: {n}", BAD_304[req.first.split(" ")[1]]], b""
        return 200, ["Cache-Control: max-age=1"], b"full body %d" % n

    BAD_304 = {"/ns": "Cache-Control: max-age=60, no-store", "/vs": "Vary: *"}
    for path in BAD_304:
        o.route(path, headers=['ETag: "v1"'], body=answer)
    _, port = start(ctx, o)
    for path in BAD_304:
        expect_miss_then_hit(port, o, path)
    time.sleep(1.3)
    for path, field in BAD_304.items():
        m = fetch(port, path)
        check(m.status == 200 and m.body == b"full body 1" and m.all("x-checked") == ["2"],
              f"{path}: the revalidated answer: {m!r}")
        name, value = field.split(": ")
        check(m.get(name) == value, f"{path}: the head was not updated from the 304: {m!r}")
        n = fetch(port, path)
        check(is_miss(n) and n.body == b"full body 3", f"{path}: still served from the cache: {n!r}")
        check(b"If-None-Match" not in o.srv.heads[-1],
              f"{path}: revalidated again: {o.srv.heads[-1]!r}")


def test_a_304_that_changes_vary_drops_the_entry(ctx):
    """A 304 whose Vary differs from the stored answer's (RFC 9111 §4.3.4:
    its fields replace the stored ones) changes what the entry varies on:
    kept, it would go on matching requests on the old field and be served
    to requests the new one sets apart. The request that revalidated gets
    the body with the new head; the entry goes, whether the 304 answered
    fulcrum's revalidation or the client's own conditional request."""
    o = Origin(ctx)

    def answer(req, n):
        if req.get("if-none-match") == '"v1"':
            return 304, ["Vary: X-B", "Cache-Control: max-age=60", 'ETag: "v1"'], b""
        return 200, ["Vary: X-A", "Cache-Control: max-age=1", 'ETag: "v1"'], b"body %d" % n

    for path in ("/vf", "/vc"):
        o.route(path, body=answer)
    _, port = start(ctx, o)
    both = ["X-A: 1", "X-B: 1"]
    for path in ("/vf", "/vc"):
        expect_miss_then_hit(port, o, path, both)
    time.sleep(1.3)
    m = fetch(port, "/vf", both)
    check(is_hit(m) and m.body == b"body 1" and m.get("vary") == "X-B",
          f"/vf: fulcrum's revalidation: {m!r}")
    m = fetch(port, "/vc", both + ['If-None-Match: "v1"'])
    check(m.status == 304 and m.get("vary") == "X-B", f"/vc: the client's revalidation: {m!r}")
    for path in ("/vf", "/vc"):
        n = fetch(port, path, ["X-A: 1", "X-B: 2"])
        check(is_miss(n), f"{path}: served to another X-B after the 304 set Vary: X-B: {n!r}")


def test_revalidation_with_last_modified_and_change(ctx):
    lm = "Sat, 01 Jan 2000 00:00:00 GMT"
    o = _conditional_origin(ctx, "Last-Modified", lm, "if-modified-since")
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/rv")
    time.sleep(1.3)
    m = fetch(port, "/rv")
    check(is_hit(m) and m.body == b"full body 1", f"{m!r}")
    check(f"If-Modified-Since: {lm}".encode() in o.srv.heads[-1], f"{o.srv.heads[-1]!r}")
    # The resource changes: a 200 to the revalidation replaces the entry.
    o.route("/rv", headers=["Cache-Control: max-age=30", "Last-Modified: " + lm.replace("2000", "2001")],
            body=lambda req, n: b"changed %d" % n)
    time.sleep(1.3)
    m = fetch(port, "/rv")
    check(is_miss(m) and m.body == b"changed 3", f"{m!r}")
    m = fetch(port, "/rv")
    check(is_hit(m) and m.body == b"changed 3", f"{m!r}")


def test_revalidation_left_to_conditional_clients(ctx):
    o = _conditional_origin(ctx, "ETag", '"v1"', "if-none-match")
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/rv")
    time.sleep(1.3)
    # The client's own conditional request goes through as it is, and its
    # 304 reaches the client. That 304 names the stored answer by its ETag,
    # so it updates it (RFC 9111 §4.3.4): the next request is a hit with the
    # 304's fields, not another trip to the origin.
    m = fetch(port, "/rv", ['If-None-Match: "v1"'])
    check(m.status == 304 and is_miss(m) and m.all("x-checked") == ["2"], f"{m!r}")
    check(b'If-None-Match: "v1"' in o.srv.heads[-1], f"not as the client sent it: "
          f"{o.srv.heads[-1]!r}")
    m = fetch(port, "/rv")
    check(is_hit(m) and m.body == b"full body 1" and m.all("x-checked") == ["2"] and
          int(m.get("age")) < 1, f"the client's 304 did not update the entry: {m!r}")
    # Cache-Control: no-cache on a fresh entry with a validator: checked
    # with the origin, answered from the cache.
    m = fetch(port, "/rv", ["Cache-Control: no-cache"])
    check(is_hit(m) and m.body == b"full body 1", f"{m!r}")
    check(o.count("/rv") == 3, f"origin asked {o.count('/rv')} times")


def test_a_304_for_another_copy_updates_nothing(ctx):
    """A client's conditional request whose validator is not the stored
    answer's: the origin's 304 speaks of the client's copy, so the stored
    answer stays as it was (stale, and checked again next time)."""
    o = Origin(ctx)

    def answer(req, n):
        if req.get("if-none-match") == '"old"':
            return 304, ['ETag: "old"', f"X-Checked: {n}"], b""
        return 200, ['ETag: "v1"', "X-Checked: never"], b"full body %d" % n

    o.route("/rv", headers=["Cache-Control: max-age=1"], body=answer)
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/rv")
    time.sleep(1.3)
    m = fetch(port, "/rv", ['If-None-Match: "old"'])
    check(m.status == 304 and is_miss(m) and m.get("etag") == '"old"', f"{m!r}")
    m = fetch(port, "/rv")
    check(is_miss(m) and m.body == b"full body 3" and o.count("/rv") == 3,
          f"a 304 for another ETag updated the stored answer: {m!r}")


def test_conditional_requests_answered_from_the_cache(ctx):
    o = Origin(ctx)
    lm = "Sat, 01 Jan 2000 00:00:00 GMT"
    o.route("/c", headers=["Cache-Control: max-age=60", 'ETag: W/"v1"', f"Last-Modified: {lm}",
                           "Content-Type: text/x", "X-Other: 1"], body=b"0123456789")
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/c")
    for cond in ('If-None-Match: "v1"', 'If-None-Match: "x", W/"v1"', "If-None-Match: *",
                 f"If-Modified-Since: {lm}", "If-Modified-Since: Sun, 02 Jan 2000 00:00:00 GMT"):
        m = fetch(port, "/c", [cond])
        check(m.status == 304 and is_hit(m) and m.body == b"", f"{cond}: {m!r}")
        check(m.get("etag") == 'W/"v1"' and m.get("cache-control") == "max-age=60" and
              not m.all("content-length") and not m.all("x-other"), f"{cond}: {m.headers}")
    for cond in ('If-None-Match: "v2"', "If-Modified-Since: Fri, 31 Dec 1999 00:00:00 GMT",
                 # If-None-Match wins over If-Modified-Since
                 f'If-None-Match: "v2"\r\nIf-Modified-Since: {lm}'):
        m = fetch(port, "/c", [cond])
        check(m.status == 200 and is_hit(m) and m.body == b"0123456789", f"{cond}: {m!r}")
    check(o.count("/c") == 1, f"origin asked {o.count('/c')} times")
    # Preconditions are the server's to judge.
    m = fetch(port, "/c", ['If-Match: "v1"'])
    check(is_miss(m) and o.count("/c") == 2, f"If-Match: {m!r}")


def test_unsafe_method_invalidates(ctx):
    o = Origin(ctx)
    o.route("/u", headers=["Cache-Control: max-age=60"], body=lambda req, n: b"n=%d" % n)
    _, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/u")
    r = client(port)
    try:
        r.send(b"POST /u HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi")
        p = read_response(r)
        check(is_miss(p), f"POST: {p!r}")
    finally:
        r.close()
    m = fetch(port, "/u")
    check(is_miss(m) and m.body == b"n=3", f"still served after a POST: {m!r}")
    check(is_hit(fetch(port, "/u")), "stored again")


def test_key_has_host_and_query(ctx):
    o = Origin(ctx)
    o.route("/k", headers=["Cache-Control: max-age=60"],
            body=lambda req, n: ("%s %s" % (req.get("host"), req.first.split(" ")[1])).encode())
    _, port = start(ctx, o)
    a = fetch(port, "/k?x=1", host="one.example")
    b = fetch(port, "/k?x=1", host="two.example")
    c = fetch(port, "/k?x=2", host="one.example")
    check(all(is_miss(m) for m in (a, b, c)), "different keys hit")
    d = fetch(port, "/k?x=1", host="ONE.example:80")
    check(is_hit(d) and d.body == b"one.example /k?x=1", f"host case or default port: {d!r}")
    e = fetch(port, "/k?x=2", host="one.example")
    check(is_hit(e) and e.body == b"one.example /k?x=2", f"{e!r}")
    # A port is a number: leading zeros, or an empty one, name the same origin.
    for host in ("one.example:080", "one.example:"):
        m = fetch(port, "/k?x=1", host=host)
        check(is_hit(m) and m.body == b"one.example /k?x=1", f"Host {host}: {m!r}")
    m = fetch(port, "/k?x=1", host="one.example:0081")
    check(is_miss(m), f"port 81 is another origin: {m!r}")
    m = fetch(port, "/k?x=1", host="one.example:81")
    check(is_hit(m) and m.body == b"one.example:0081 /k?x=1", f"port 81 written without zeros: {m!r}")


def test_one_cache_for_all_workers(ctx):
    o = Origin(ctx)
    o.route("/w", headers=["Cache-Control: max-age=60"], body=b"w" * 1000)
    _, port = start(ctx, o, glob={"workers": 2})
    check(is_miss(fetch(port, "/w")), "first")
    results = []

    def worker():
        for _ in range(10):
            results.append(fetch(port, "/w"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(len(results) == 40 and all(is_hit(m) and m.body == b"w" * 1000 for m in results),
          "a connection on another worker missed")
    check(o.count("/w") == 1, f"origin asked {o.count('/w')} times")


def test_pipelined_and_keepalive_hits(ctx):
    o = Origin(ctx)
    o.route("/p1", headers=["Cache-Control: max-age=60"], body=b"one")
    o.route("/p2", headers=["Cache-Control: max-age=60"], body=b"two")
    _, port = start(ctx, o)
    fetch(port, "/p1")
    r = client(port)
    try:
        req = b"".join(b"GET /p%d HTTP/1.1\r\nHost: example.com\r\n\r\n" % i for i in (1, 2, 1, 2))
        r.send(req)
        got = [read_response(r) for _ in range(4)]
        check([m.body for m in got] == [b"one", b"two", b"one", b"two"], f"{got!r}")
        check([is_hit(m) for m in got] == [True, False, True, True], f"{got!r}")
        # HTTP/1.0 keep-alive on a hit.
        r.send(b"GET /p1 HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n")
        m = read_response(r)
        check(is_hit(m) and "keep-alive" in m.tokens("connection"), f"{m!r}")
        r.send(b"GET /p1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        m = read_response(r)
        check(is_hit(m) and "close" in m.tokens("connection"), f"{m!r}")
    finally:
        r.close()


def _concurrent(port, target, n, headers=lambda i: ()):
    """N clients ask for TARGET at the same time (client I with the header
    lines HEADERS(I)); returns their responses."""
    out, errors = [None] * n, []
    gate = threading.Barrier(n)

    def one(i):
        try:
            gate.wait()
            out[i] = fetch(port, target, headers(i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"clients failed: {errors}")
    return out


def test_concurrent_misses_collapse(ctx):
    o = Origin(ctx)

    def slow(req, n):
        time.sleep(0.5)
        return b"slow %d" % n

    o.route("/slow", headers=["Cache-Control: max-age=60"], body=slow)
    o.route("/nocache", headers=["Cache-Control: no-store"], body=slow)
    _, port = start(ctx, o, glob={"workers": 2})
    got = _concurrent(port, "/slow", 8)
    check(all(m.status == 200 and m.body == b"slow 1" for m in got), f"{got!r}")
    check(sum(is_miss(m) for m in got) == 1 and sum(is_hit(m) for m in got) == 7,
          f"want one MISS and seven HITs: {[x_cache(m) for m in got]}")
    check(o.count("/slow") == 1, f"origin asked {o.count('/slow')} times")
    # A response that turns out not storable lets the waiters go on...
    got = _concurrent(port, "/nocache", 4)
    check(all(m.status == 200 and is_miss(m) for m in got), f"{got!r}")
    check(o.count("/nocache") == 4, f"origin asked {o.count('/nocache')} times")
    # ...and is remembered: later misses of it no longer queue behind one
    # another (four 0.5 s answers in parallel, not one after the first).
    t0 = time.monotonic()
    got = _concurrent(port, "/nocache", 4)
    took = time.monotonic() - t0
    check(all(m.status == 200 and is_miss(m) for m in got), f"{got!r}")
    check(took < 0.9 * SCALE, f"uncacheable misses still collapsed: {took:.2f}s")


def test_a_slow_reader_filling_the_cache_does_not_hold_up_others(ctx):
    """The client whose miss fills the cache reads a few bytes of a large
    answer and stops. The fill goes at its pace, so the others waiting for
    it stop waiting once it has been held up by its client for a moment
    (CACHE_PENDING_STUCK_MS), and go to the server, not after the 5 s wait."""
    o = Origin(ctx)
    big = blob(8 << 20, seed=3)
    o.route("/big", headers=["Cache-Control: max-age=60"], body=big)
    _, port = start(ctx, o, cache="64m", glob={"workers": 2})
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    slow.sendall(b"GET /big HTTP/1.1\r\nHost: example.com\r\n\r\n")
    check(slow.recv(100).startswith(b"HTTP/1.1 200"), "the slow reader's answer")
    wait_for(lambda: o.count("/big") == 1, 2 * SCALE, what="the fill to start")
    time.sleep(0.3)  # the fill is held up by its client by now
    t0 = time.monotonic()
    m = fetch(port, "/big")
    took = time.monotonic() - t0
    check(m.status == 200 and m.body == big, f"the other client's answer: {m!r}"[:300])
    check(took < 2.0 * SCALE, f"the other client waited {took:.2f}s behind the slow reader")
    check(o.count("/big") == 2, f"origin asked {o.count('/big')} times")
    slow.close()


def test_answers_held_by_slow_readers_count_against_the_budget(ctx):
    """A client that reads a hit slowly keeps its entry in memory after the
    cache evicted it. Those held entries count against the budget: once
    they fill it, new answers are passed on without being stored (else slow
    readers could make fulcrum hold any number of evicted answers), and
    once the readers go, storing works again."""
    o = Origin(ctx)
    size = 6 << 20  # more than the socket buffers take: the reader holds it
    for i in range(6):
        o.route(f"/o{i}", headers=["Cache-Control: max-age=600"], body=bytes([65 + i]) * size)
    _, port = start(ctx, o, cache="16m", glob={"workers": 1})
    readers = []
    for i in range(4):
        fetch(port, f"/o{i}")  # stored (evicting the one before)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /o%d HTTP/1.1\r\nHost: example.com\r\n\r\n" % i)
        check(b"X-Cache: HIT" in s.recv(4096), f"/o{i} for the slow reader is a hit")
        readers.append(s)
    # Two evicted answers (12 MiB) are held, two stored: /o4 is not.
    check(is_miss(fetch(port, "/o4")) and is_miss(fetch(port, "/o4")),
          "an answer was stored while slow readers held more than the budget")
    for s in readers:
        s.close()
    wait_for(lambda: fetch(port, "/o5") and is_hit(fetch(port, "/o5")), 3 * SCALE,
             what="storing to work again once the slow readers left")


def test_misses_that_cannot_share_an_answer_do_not_queue(ctx):
    """Requests that could not take another's answer (credentials,
    no-cache) and waiters whose fill left nothing for them (a server error,
    another Vary variant) go to the origin side by side, not one at a time
    behind each other."""
    o = Origin(ctx)

    def slow(status, more=()):
        def body(req, n):
            time.sleep(0.5)
            return status, list(more), b"answer %d" % n
        return body

    o.route("/me", headers=["Cache-Control: private"], body=slow(200))
    o.route("/err", headers=["Cache-Control: max-age=60"], body=slow(500))
    o.route("/lang", headers=["Cache-Control: max-age=60", "Vary: Accept-Language"], body=slow(200))
    _, port = start(ctx, o, glob={"workers": 2})
    cases = (("/me", lambda i: [f"Authorization: Bearer u{i}"]),
             ("/me?reload", lambda i: ["Cache-Control: no-cache"]),
             ("/err", lambda i: ()),
             ("/lang", lambda i: [f"Accept-Language: l{i}-{time.monotonic_ns()}"]))
    for target, headers in cases:
        for burst in range(2):
            t0 = time.monotonic()
            got = _concurrent(port, target, 5, headers)
            took = time.monotonic() - t0
            check(all(m.status in (200, 500) and is_miss(m) for m in got),
                  f"{target}: {[(m.status, x_cache(m)) for m in got]}")
            # Five 0.5 s answers: at most two rounds, never five.
            check(took < 1.6 * SCALE, f"{target}, burst {burst}: {took:.2f}s, the misses queued")


def test_waiters_go_together_after_fulcrums_own_502(ctx):
    """The fill fails with no answer to pass on (the origin closes): fulcrum
    answers 502 itself, and the key's waiters then go to the origin side by
    side, as after an origin's own 500, not one at a time."""
    o = Origin(ctx)
    o.route("/gone", body=0.5 * SCALE, framing="drop")
    port = free_port()
    # keepalive = 0: a close on a pooled connection would be retried on a
    # fresh one; max_fails: the origin stays up through the bursts.
    ctx.fulcrum(http_conf(port, [o.server_line()], glob={"workers": 2},
                          pool={"keepalive": 0, "max_fails": 1000}, listener={"cache": "1m"}))
    for burst in range(2):
        t0 = time.monotonic()
        got = _concurrent(port, "/gone", 5)
        took = time.monotonic() - t0
        check(all(m.status == 502 for m in got), f"burst {burst}: {[m.status for m in got]}")
        # Five failures of 0.5 s (times SCALE): two rounds, never five.
        check(took < 1.6 * SCALE, f"burst {burst}: {took:.2f}s, the waiters queued")


def test_waiters_go_together_after_a_body_cut_short(ctx):
    """The origin closes in the middle of the body of a storable answer:
    the fill fails as surely as with no answer at all, so the key's
    waiters go to the origin side by side. Before, they took the fetch
    over one at a time, each as slow as the first (up to the 5 s wait)."""
    o = Origin(ctx)
    o.route("/cut", headers=["Cache-Control: max-age=60", "Content-Length: 20000"],
            body=[b"x" * 100] * 4, framing="raw")  # 0.6 s of body, then a close
    port = free_port()
    ctx.fulcrum(http_conf(port, [o.server_line()],
                          pool={"keepalive": 0, "max_fails": 1000}, listener={"cache": "1m"}))
    done = []
    gate = threading.Barrier(5)

    def one():
        s = connect(("127.0.0.1", port))
        s.settimeout(10 * SCALE)
        gate.wait()
        s.sendall(b"GET /cut HTTP/1.1\r\nHost: example.com\r\n\r\n")
        got = recv_all(s)
        s.close()
        done.append(got)

    t0 = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15 * SCALE)
    took = time.monotonic() - t0
    check(len(done) == 5 and all(g.startswith(b"HTTP/1.1 200") for g in done),
          f"answers: {[g[:12] for g in done]}")
    # Two rounds of 0.6 s (times SCALE), not five.
    check(took < 2.0 * SCALE, f"{took:.2f}s for five clients: the waiters queued")
    check(o.count("/cut") == 5, f"origin asked {o.count('/cut')} times, want 5")


def test_head_miss_does_not_hold_up_gets(ctx):
    """A HEAD's answer is stored for HEADs only: a GET of the same URL
    does not wait for it, it goes to the origin at once."""
    o = Origin(ctx)
    seen = []

    def slow(req, n):
        seen.append((req.first.split(" ")[0], time.monotonic()))
        time.sleep(1.0)
        return b"body %d" % n

    o.route("/h", headers=["Cache-Control: max-age=60"], body=slow)
    _, port = start(ctx, o)
    head = threading.Thread(target=lambda: fetch(port, "/h", method="HEAD"))
    head.start()
    wait_for(lambda: seen, 3 * SCALE, what="the HEAD at the origin")
    m = fetch(port, "/h")
    head.join(5 * SCALE)
    check(m.status == 200 and m.body.startswith(b"body"), f"GET: {m!r}")
    methods = [s[0] for s in seen]
    check(methods == ["HEAD", "GET"], f"origin saw {methods}")
    lag = seen[1][1] - seen[0][1]
    check(lag < 0.9 * SCALE, f"the GET reached the origin {lag:.2f}s after the HEAD: it waited for it")


def test_waiters_of_a_fill_whose_client_left_do_not_stampede(ctx):
    """The client fetching a key for others leaves: one waiter takes the
    fetch over and the others wait on for it, so the origin sees two
    requests, not one per waiter."""
    o = Origin(ctx)

    def slow(req, n):
        time.sleep(0.6)
        return b"slow %d" % n

    o.route("/hot", headers=["Cache-Control: max-age=60"], body=slow)
    _, port = start(ctx, o, glob={"workers": 2})
    first = client(port)
    first.send(b"GET /hot HTTP/1.1\r\nHost: example.com\r\n\r\n")
    wait_for(lambda: o.count("/hot") == 1, 3 * SCALE, what="the first fetch at the origin")
    out = []
    threads = [threading.Thread(target=lambda: out.append(fetch(port, "/hot"))) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the five wait on the first fetch
    first.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    first.close()  # ...whose client leaves with a reset
    for t in threads:
        t.join(10 * SCALE)
    check(len(out) == 5 and all(m.status == 200 for m in out), f"{[m.status for m in out]}")
    check(o.count("/hot") == 2, f"origin asked {o.count('/hot')} times, want 2 (no stampede)")


def test_server_x_cache_is_replaced(ctx):
    """A server's own X-Cache (a cache in front of it) never reaches the
    client next to fulcrum's: MISS and HIT carry one X-Cache, fulcrum's."""
    o = Origin(ctx)
    o.route("/x", headers=["Cache-Control: max-age=60", "X-Cache: HIT from inner"])
    _, port = start(ctx, o)
    a = fetch(port, "/x")
    b = fetch(port, "/x")
    check(x_cache(a) == ["MISS"] and x_cache(b) == ["HIT"], f"{x_cache(a)} then {x_cache(b)}")


def test_response_without_date_gets_one(ctx):
    """RFC 9110 §6.6.1: a response without Date gets one from fulcrum when
    it is forwarded and when it is stored (a hit shows the stored one)."""
    o = Origin(ctx)
    o.route("/nodate", headers=["Cache-Control: max-age=60"], date=False)
    o.route("/dated", headers=["Cache-Control: max-age=60"])
    _, port = start(ctx, o)
    a = fetch(port, "/nodate")
    time.sleep(1.1)
    b = fetch(port, "/nodate")
    for m in (a, b):
        dates = m.all("date")
        check(len(dates) == 1 and email.utils.parsedate_to_datetime(dates[0]) is not None,
              f"Date of {x_cache(m)}: {dates}")
    check(is_miss(a) and is_hit(b) and a.all("date") == b.all("date"),
          f"the hit's Date is not the stored one: {a.all('date')} {b.all('date')}")
    c = fetch(port, "/dated")
    check(len(c.all("date")) == 1, f"a server's Date is kept alone: {c.all('date')}")


def test_other_transfer_codings_are_not_stored(ctx):
    """A body still under a transfer coding fulcrum does not undo (gzip)
    is passed on with its Transfer-Encoding but never stored: a hit would
    serve it without."""
    o = Origin(ctx)
    o.route("/gz", headers=["Cache-Control: max-age=60", "Transfer-Encoding: gzip"],
            body=b"\x1f\x8b pretend", framing="close")
    _, port = start(ctx, o)
    for i in range(2):
        s = connect(("127.0.0.1", port))
        s.sendall(b"GET /gz HTTP/1.1\r\nHost: example.com\r\n\r\n")
        got = recv_all(s)
        s.close()
        head = got.split(b"\r\n\r\n", 1)[0].lower()
        check(b"\r\nx-cache: miss" in head and b"\r\ntransfer-encoding: gzip" in head,
              f"request {i}: {head!r}")
    check(o.count("/gz") == 2, f"origin asked {o.count('/gz')} times")


def test_reload_changes_the_size(ctx):
    o = Origin(ctx)
    o.route("/z", headers=["Cache-Control: max-age=60"], body=lambda req, n: b"n=%d" % n)
    f, port = start(ctx, o)
    expect_miss_then_hit(port, o, "/z")

    def reload_with(size):
        before = f.stderr().count("reloaded")
        with open(f.conf_path, "w") as fh:
            fh.write(http_conf(port, [o.server_line()], listener={"cache": size}))
        f.signal(signal.SIGHUP)
        wait_for(lambda: f.stderr().count("reloaded") > before, 5 * SCALE, what="the reload")

    reload_with("0")
    m = fetch(port, "/z")
    check(m.body == b"n=2" and x_cache(m) == [], f"cache = 0 still caches or marks: {m!r}")
    reload_with("1m")
    m = fetch(port, "/z")
    check(is_miss(m) and m.body == b"n=3", f"turning the cache off did not empty it: {m!r}")
    check(is_hit(fetch(port, "/z")), "caching again after the reload")


def test_errors_of_fulcrum_have_no_x_cache(ctx):
    port = free_port()
    g = {"workers": 1, "admin": "", "access_log": "off"}
    dead = closed_port()
    conf = ini(("global", g),
               ("pool p", {"check": "none", "connect_timeout": "1s", "retries": 0,
                           "server": f"s1 127.0.0.1:{dead}"}),
               ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "cache": "1m"}),
               ("route r", {"listener": "l", "host": "a.example", "pool": "p"}))
    ctx.fulcrum(conf)
    m = fetch(port, "/x", host="b.example")
    check(m.status == 404 and x_cache(m) == [] and m.all("age") == [], f"404: {m!r}")
    m = fetch(port, "/x", host="a.example")
    check(m.status == 502 and x_cache(m) == [] and m.all("age") == [], f"502: {m!r}")


def test_forward_mode(ctx):
    o = Origin(ctx)
    o.route("/f", headers=["Cache-Control: max-age=60"], body=b"via proxy")
    port = free_port()
    g = {"workers": 1, "admin": "", "access_log": "off"}
    ctx.fulcrum(ini(("global", g), ("listener f", {"bind": f"127.0.0.1:{port}",
                                                   "mode": "forward", "cache": "1m"})))
    url = f"http://{o.addr}/f"
    a = fetch(port, url, host=o.addr)
    b = fetch(port, url, host=o.addr)
    check(is_miss(a) and is_hit(b) and b.body == b"via proxy", f"{a!r} {b!r}")
    check(b.all("via") == ["1.1 fulcrum"] and a.all("via") == ["1.1 fulcrum"], f"Via: {b!r}")
    # Another origin (port) is another key.
    other = f"http://127.0.0.1:{closed_port()}/f"
    m = fetch(port, other, host="x")
    check(m.status == 502 and x_cache(m) == [], f"{m!r}")
    check(o.count("/f") == 1, f"origin asked {o.count('/f')} times")


def test_access_log_shows_hits(ctx):
    o = Origin(ctx)
    o.route("/l", headers=["Cache-Control: max-age=60"])
    log = ctx.path("access.log")
    _, port = start(ctx, o, glob={"access_log": log})
    fetch(port, "/l")
    fetch(port, "/l")
    lines = access_lines(log, 2)
    first, second = lines[0].split(" "), lines[1].split(" ")
    check(first[7] == "200" and first[-1] == "-" and first[3].startswith("p/o"), lines[0])
    # A hit ends normally: REASON "-" (SPEC §6); it shows as no server.
    check(second[7] == "200" and second[-1] == "-" and second[3] == "p/-", lines[1])


def test_slow_client_keeps_entry_through_eviction(ctx):
    """A hit written to a client that reads slowly holds its entry while
    another response evicts it from the cache; the client still gets every
    byte (and the sanitizer build sees no use after free)."""
    o = Origin(ctx)
    body = hashlib.sha256(b"seed").digest() * (6 * (1 << 20) // 32)
    o.route("/slow", headers=["Cache-Control: max-age=60"], body=body)
    o.route("/evictor", headers=["Cache-Control: max-age=60"], body=b"e" * (3 << 20))
    _, port = start(ctx, o, cache="7m")  # one shard: the evictor must push /slow out
    check(is_miss(fetch(port, "/slow")), "/slow first")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30 * SCALE)
    s.connect(("127.0.0.1", port))
    r = Reader(s)
    try:
        r.send(b"GET /slow HTTP/1.1\r\nHost: example.com\r\n\r\n")
        time.sleep(0.3)
        check(is_miss(fetch(port, "/evictor")), "/evictor")
        check(is_miss(fetch(port, "/slow?other")), "another key")
        m = read_response(r)
        check(is_hit(m) and m.body == body, "the slow hit lost its bytes")
    finally:
        r.close()
    check(is_miss(fetch(port, "/slow")), "/slow was not evicted meanwhile")


def test_request_cache_control_limits(ctx):
    """RFC 9111 §5.2.1: the client's max-age and min-fresh limit what the
    cache may answer with; only-if-cached never asks the server (504)."""
    o = Origin(ctx)
    o.route("/rq", headers=["Cache-Control: max-age=100", "Age: 5"], body=b"rq")
    _, port = start(ctx, o)
    check(is_miss(fetch(port, "/rq")), "first /rq")
    m = fetch(port, "/rq", ["Cache-Control: max-age=10"])
    check(is_hit(m), f"max-age=10 on an entry 5 s old: {m!r}")
    m = fetch(port, "/rq", ["Cache-Control: max-age=3"])
    check(is_miss(m), f"max-age=3 on an entry 5 s old was answered from the cache: {m!r}")
    m = fetch(port, "/rq", ["Cache-Control: min-fresh=10"])
    check(is_hit(m), f"min-fresh=10 with 95 s of freshness left: {m!r}")
    m = fetch(port, "/rq", ["Cache-Control: min-fresh=200"])
    check(is_miss(m), f"min-fresh=200 with 95 s left was answered from the cache: {m!r}")
    asked = o.count("/rq")
    m = fetch(port, "/rq", ["Cache-Control: only-if-cached"])
    check(is_hit(m), f"only-if-cached on a stored URL: {m!r}")
    m = fetch(port, "/nothing-here", ["Cache-Control: only-if-cached"])
    check(m.status == 504 and x_cache(m) == [], f"only-if-cached on a URL not stored: {m!r}")
    check(o.count("/nothing-here") == 0 and o.count("/rq") == asked,
          "only-if-cached asked the server")


def test_forward_hit_checks_deny_after_reload(ctx):
    """A stored response is not served once a reload denies the address it
    came from (SPEC §2: a deny address pattern applies to every address a
    name resolves to); the hit answers 403 as a fetch would."""
    o = Origin(ctx)
    o.route("/d", headers=["Cache-Control: max-age=300"], body=b"internal")
    port = free_port()
    g = {"workers": 1, "admin": "", "access_log": "off"}
    listener = {"bind": f"127.0.0.1:{port}", "mode": "forward", "cache": "1m"}
    f = ctx.fulcrum(ini(("global", g), ("listener f", listener)))
    url = f"http://localhost:{o.srv.port}/d"
    a = fetch(port, url, host=f"localhost:{o.srv.port}")
    b = fetch(port, url, host=f"localhost:{o.srv.port}")
    check(is_miss(a) and is_hit(b) and b.body == b"internal", f"{a!r} {b!r}")
    listener["deny"] = ["127.0.0.0/8", "[::1]"]
    with open(f.conf_path, "w") as fh:
        fh.write(ini(("global", g), ("listener f", listener)))
    f.signal(signal.SIGHUP)
    wait_for(lambda: fetch(port, url, host=f"localhost:{o.srv.port}").status == 403, 3 * SCALE,
             interval=0.05, what="403 for the stored response after the reload")
    check(o.count("/d") == 1, f"origin asked {o.count('/d')} times")


close_backends_first(globals())
