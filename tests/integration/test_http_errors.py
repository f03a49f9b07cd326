"""http mode: the errors fulcrum answers itself (SPEC §3 "http mode"):
400, 408, 413, 414, 431, 501, 502, 503, 504 - each with a short text body
and Connection: close exactly when the connection closes."""

import select
import socket
import struct
import threading
import time

from harness import SCALE, check, closed_port, connect, free_port, read_lines, recv_all, wait_for
from test_http import (UNANSWERING_HANDLERS, Message, access_lines, cbackend, chunk_encode, client,
                       close_backends_first, closer_handler, expect_error, get, http_conf, ok_handler,
                       parse_head, pyserver, raw_handler, read_chunked, read_request, read_response, roundtrip,
                       sender, slow_handler, wait_closed)


def test_400_malformed(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    for data in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
                 b"\x00\x01\x02\x03\r\n\r\n"):
        m, closed, extra = roundtrip(port, data)
        expect_error(m, closed, 400, must_close=True, what=f"malformed {data!r}")
        check(not extra, f"bytes after the 400: {extra!r}")
    check(srv.accepted == 0, f"malformed requests reached the server ({srv.raw_received()!r})")


def test_own_replies_are_dated(ctx):
    """Responses fulcrum writes itself carry a Date (RFC 9110 §6.6.1: an
    origin with a clock sends one), on the proxy and the admin port."""
    import email.utils
    import urllib.request
    port, admin = free_port(), free_port()
    ctx.fulcrum(http_conf(port, [f"s1 127.0.0.1:{closed_port()}"], glob={"admin": f"127.0.0.1:{admin}"}))
    m, _, _ = roundtrip(port, get("/"))
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=3 * SCALE) as r:
        admin_date = r.headers.get("Date")
    for what, date in (("502", m.get("date")), ("admin", admin_date)):
        check(date is not None, f"{what}: no Date field")
        when = email.utils.parsedate_to_datetime(date).timestamp()
        check(abs(when - time.time()) < 5 * SCALE, f"{what}: Date {date!r} is not now")
        check(date.endswith(" GMT"), f"{what}: Date {date!r} is not an IMF-fixdate")


def test_408_request_timeout_slowloris(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"request_timeout": "1s"}))
    # A: a head that stops half-way. B: a head dripping a byte every 150 ms
    # (activity does not extend request_timeout: the whole head is due).
    a = client(port)
    a.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Partial: ")
    t0 = time.monotonic()
    d = client(port)
    drip = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 200
    d_got_answer_at = None
    d_status = None
    i = 0
    c_latency = None
    while time.monotonic() - t0 < 4 * SCALE:
        if i < len(drip):
            try:
                d.send(drip[i:i + 1])
            except OSError:
                pass
            i += 1
        if c_latency is None and time.monotonic() - t0 > 0.4:
            # Meanwhile, another client is served at once.
            t1 = time.monotonic()
            m, _, _ = roundtrip(port, get("/"), wait_close=0)
            c_latency = time.monotonic() - t1
            check(m.status == 200, f"another client during slowloris: {m!r}")
        r, _, _ = select.select([d.s], [], [], 0.15)
        if r:
            d_got_answer_at = time.monotonic() - t0
            m = read_response(d)
            d_status = m
            break
    check(c_latency is not None and c_latency < 0.5 * SCALE,
          f"a normal client took {c_latency}s while slow clients were waiting")
    check(d_status is not None, f"the dripping client got nothing within {4 * SCALE}s "
                                f"(request_timeout = 1s applies to the whole head)")
    check(0.7 <= d_got_answer_at <= 2.5 * SCALE, f"the dripping client got its answer after {d_got_answer_at:.2f}s")
    closed, _ = wait_closed(d, 1.0 * SCALE)
    expect_error(d_status, closed, 408, must_close=True, what="dripping head")
    d.close()
    m = read_response(a)
    ta = time.monotonic() - t0
    closed, extra = wait_closed(a, 1.0 * SCALE)
    a.close()
    expect_error(m, closed, 408, must_close=True, what="stalled head")
    check(ta <= 2.5 * SCALE, f"the stalled head got its 408 after {ta:.2f}s")


def test_408_not_for_idle_keepalive_within_keepalive_timeout(ctx):
    """request_timeout runs from a request's first byte: a keep-alive
    connection idle between requests for longer than it is still usable
    within keepalive_timeout."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"request_timeout": "1s",
                                                            "keepalive_timeout": "10s"}))
    r = client(port)
    r.send(get("/"))
    check(read_response(r).status == 200, "first request")
    time.sleep(1.6)
    r.send(get("/?size=2"))
    m = read_response(r)
    check(m.status == 200 and m.body == b"ab", f"request after 1.6s idle (keepalive_timeout 10s): {m!r}")
    r.close()


def test_keepalive_timeout_closes_idle_client(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"keepalive_timeout": "1s"}))
    r = client(port)
    r.send(get("/"))
    check(read_response(r).status == 200, "first request")
    t0 = time.monotonic()
    closed, extra = wait_closed(r, 3 * SCALE)
    r.close()
    check(closed and not extra, f"idle keep-alive connection: closed={closed} extra={extra!r}")
    check(time.monotonic() - t0 >= 0.7, "closed before keepalive_timeout")


def test_413_body_too_large(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], listener={"max_body_size": "1k"},
                          glob={"access_log": log}))
    m, closed, extra = roundtrip(port, get("/up", method="POST", body=b"x" * 5000))
    expect_error(m, closed, 413, must_close=True, what="Content-Length 5000 over max_body_size 1k")
    check(b"/up" not in srv.raw_received(), "a request with a declared body over max_body_size reached the server")
    # Logged with the pool it was routed to, as a chunked one is.
    line = wait_for(lambda: read_lines(log), 2 * SCALE, what="the 413 line")[0]
    check(' p/- "POST /up HTTP/1.1" 413 ' in line, f"413 line: {line!r}")
    # Exactly the limit passes.
    m, _, _ = roundtrip(port, get("/fits", method="POST", body=b"y" * 1024), wait_close=0)
    check(m.status == 200, f"a 1024-byte body with max_body_size = 1k: {m!r}")
    # Chunked past the limit: 413, or both connections closed if it had started to flow.
    r = client(port)
    try:
        r.send(get("/chunked-up", method="POST", headers=["Transfer-Encoding: chunked"]) +
               chunk_encode(b"z" * 5000, sizes=(1000,)))
    except OSError:
        pass
    try:
        m = read_response(r)
        closed, _ = wait_closed(r, 1.5 * SCALE)
        expect_error(m, closed, 413, must_close=True, what="chunked body over max_body_size")
    except (EOFError, ConnectionResetError):
        pass  # closed without an answer: allowed once the body flowed
    r.close()
    # A first chunk already over the limit: nothing of the body can have
    # flowed, so the client gets its 413.
    m, closed, _ = roundtrip(port, get("/big-chunk", method="POST",
                                       headers=["Transfer-Encoding: chunked"]) +
                             b"800\r\n" + b"z" * 2048 + b"\r\n0\r\n\r\n")
    expect_error(m, closed, 413, must_close=True, what="a first chunk over max_body_size")
    # Small chunks that pass the limit together, all sent at once: none of
    # them goes to the server, and the client gets its 413.
    m, closed, _ = roundtrip(port, get("/many-chunks", method="POST",
                                       headers=["Transfer-Encoding: chunked"]) +
                             chunk_encode(b"w" * 1100, sizes=(500,)))
    expect_error(m, closed, 413, must_close=True, what="buffered chunks over max_body_size")
    check(b"w" * 100 not in srv.raw_received(), "chunks over max_body_size reached the server")
    # A chunk size line over the limit, its data still to come: the size
    # says enough, so the 413 goes out before any of that chunk is sent on.
    r = client(port)
    r.send(get("/declared", method="POST", headers=["Transfer-Encoding: chunked"]) +
           b"1388\r\n" + b"d" * 100)
    m = read_response(r)
    closed, _ = wait_closed(r, 1.5 * SCALE)
    r.close()
    expect_error(m, closed, 413, must_close=True, what="a chunk size line over max_body_size")
    check(b"1388" not in srv.raw_received(), "the chunk over max_body_size reached the server")


def test_414_uri_too_long(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"max_uri_size": "1k"}))
    m, closed, _ = roundtrip(port, get("/" + "a" * 2047))
    expect_error(m, closed, 414, what="2k URI over max_uri_size 1k")
    m, _, _ = roundtrip(port, get("/?x=" + "a" * 900), wait_close=0)
    check(m.status == 200, f"a 900-byte URI with max_uri_size = 1k: {m!r}")
    # A long URI dribbled in pieces is caught as well.
    r = client(port)
    r.send(b"GET /")
    for _ in range(20):
        try:
            r.send(b"b" * 200)
        except OSError:
            break
        time.sleep(0.01)
    m = read_response(r)
    closed, _ = wait_closed(r, 1.0 * SCALE)
    r.close()
    expect_error(m, closed, 414, what="long URI in pieces")


def test_431_with_a_small_max_header_size(ctx):
    """max_header_size takes small values too (from 64 bytes): a head of
    exactly the size passes, one byte more gets 431."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"max_header_size": "100"}))
    base = b"GET / HTTP/1.1\r\nHost: a\r\nX: "
    fits = base + b"v" * (100 - len(base) - 4) + b"\r\n\r\n"
    check(len(fits) == 100, "the test's own arithmetic")
    m, _, _ = roundtrip(port, fits, wait_close=0)
    check(m.status == 200, f"a 100-byte head with max_header_size = 100: {m!r}")
    over = base + b"v" * (101 - len(base) - 4) + b"\r\n\r\n"
    m, closed, _ = roundtrip(port, over)
    expect_error(m, closed, 431, what="a 101-byte head over max_header_size 100")


def test_431_header_too_large(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"max_header_size": "2k"}))
    big = [f"X-H{i}: " + "v" * 90 for i in range(40)]  # about 4k
    m, closed, _ = roundtrip(port, get("/", headers=big))
    expect_error(m, closed, 431, what="4k of headers over max_header_size 2k")
    small = [f"X-H{i}: " + "v" * 90 for i in range(14)]  # about 1.4k
    m, _, _ = roundtrip(port, get("/", headers=small), wait_close=0)
    check(m.status == 200, f"1.4k of headers with max_header_size = 2k: {m!r}")
    # One huge header line, never ending: 431 without waiting for the end.
    r = client(port)
    r.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Huge: " + b"h" * 8000)
    m = read_response(r)
    closed, _ = wait_closed(r, 1.0 * SCALE)
    r.close()
    expect_error(m, closed, 431, what="an unterminated 8k header line")
    # Many small fields within the size: the size is the limit, not a count
    # of 100 (150 fields, about 1.4k).
    many = [f"X-{i}: 1" for i in range(150)]
    m, _, _ = roundtrip(port, get("/", headers=many), wait_close=0)
    check(m.status == 200, f"150 small fields within max_header_size 2k: {m!r}")


def test_501_transfer_encoding_without_chunked(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    m, closed, _ = roundtrip(port, get("/", method="POST", headers=["Transfer-Encoding: gzip"]) + b"abc")
    # The body length is unknown: the connection must close (RFC 9112 §6.3).
    expect_error(m, closed, 501, must_close=True, what="Transfer-Encoding: gzip")
    check(srv.accepted == 0, "a request with an unknown transfer coding reached the server")


# ---------------------------------------------------------------- 502 ----


def _bad_server(ctx, answer):
    """A server that reads one request per connection and then does ANSWER:
    bytes to send (then close), or None to close without a byte."""

    def handler(r, srv):
        req = read_request(r)
        if req is None:
            return
        if answer:
            r.send(answer)

    return pyserver(ctx, handler)


def test_502_server_unreachable(ctx):
    port = free_port()
    ctx.fulcrum(http_conf(port, [f"dead1 127.0.0.1:{closed_port()}", f"dead2 127.0.0.1:{closed_port()}"],
                          pool={"retries": 2, "max_fails": 1000}))
    for i in range(3):
        m, closed, _ = roundtrip(port, get(f"/{i}"))
        expect_error(m, closed, 502, what="every server refuses")


def test_502_server_closes_without_answer(ctx):
    srv = _bad_server(ctx, None)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
    for path in ("/a", "/b"):
        m, closed, _ = roundtrip(port, get(path))
        expect_error(m, closed, 502, what="server closes without answering")


def test_502_invalid_responses(ctx):
    answers = [
        ("garbage", b"HELLO WORLD\r\n\r\n"),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.0\r\n"),
        ("CL and TE", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("two different CL", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("CL +5", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
        ("status 20", b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"),
        ("status abc", b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"),
        ("space before colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
        ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"),
        ("NUL in value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"),
        ("TE chunked, gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        ("HTTP/2.0", b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]
    # One process, a listener and a pool per answer: a start each is slow
    # under the sanitizers.
    ports = [free_port() for _ in answers]
    extra = []
    for i, (port, (_, answer)) in enumerate(zip(ports, answers)):
        srv = _bad_server(ctx, answer)
        extra += [(f"pool p{i}", {"check": "none", "connect_timeout": "1s", "max_fails": 1000,
                                  "server": srv.server_line()}),
                  (f"listener l{i}", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": f"p{i}"})]
    f = ctx.fulcrum(http_conf(free_port(), [f"s 127.0.0.1:{closed_port()}"], extra=extra))
    problems = []

    def ask(port, name, answer):
        # Side by side: each waits a second for a close that may not come.
        try:
            m, closed, extra = roundtrip(port, get("/"))
            expect_error(m, closed, 502, what=f"server answer {name}")
            check(not extra, f"{name}: extra bytes {extra!r}")
        except (AssertionError, EOFError, OSError) as e:
            problems.append(f"{name} ({answer!r}): {e}")

    threads = [threading.Thread(target=ask, args=(port, name, answer))
               for port, (name, answer) in zip(ports, answers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f.check_alive()
    check(not problems, f"{len(problems)} of {len(answers)} invalid responses not turned into 502:\n  "
          + "\n  ".join(problems))


def test_502_response_head_too_large(ctx):
    """A response head over 64 KiB is refused with its own reason, whatever
    buffer_size says; one just under it goes through."""
    for size, want in ((60000, 200), (70000, 502)):
        srv = _bad_server(ctx, b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * size +
                          b"\r\nContent-Length: 2\r\n\r\nok")
        port = free_port()
        log = ctx.path(f"access-{size}.log")
        f = ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000},
                                  glob={"access_log": log, "buffer_size": "1m"}))
        m, closed, _ = roundtrip(port, get("/"))
        check(m.status == want, f"a {size}-byte field: status {m.status}, want {want}")
        if want == 502:
            line = access_lines(log, 1)[0]
            check(line.endswith(" response_head_too_large"), f"log: {line}")
        f.stop()


def test_server_closes_mid_body(ctx):
    """The server promises 100000 bytes and closes after 10: the head may
    already be with the client, so the client connection must be closed
    before a complete-looking response is delivered (or it gets a 502)."""
    for framing, answer in (
            ("length", b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789"),
            ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n186a0\r\n0123456789"),
            ("bad chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")):
        srv = _bad_server(ctx, answer)
        port = free_port()
        ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
        r = client(port)
        r.send(get("/"))
        head = r.until(b"\r\n\r\n")
        m = Message(*parse_head(head))
        if m.status == 502:
            continue
        check(m.status == 200, f"{framing}: {head!r}")
        try:
            if m.all("content-length"):
                r.exact(int(m.get("content-length")))
                got_all = True
            else:
                read_chunked(r)
                got_all = True
        except (EOFError, ConnectionResetError, ValueError):
            got_all = False
        r.close()
        check(not got_all, f"{framing}: a truncated response reached the client as a complete one")


def test_502_server_connection_not_reused_after_truncation(ctx):
    """The server promises 100 bytes, sends 5 and shuts down its write side
    while it keeps reading: the client must not get a complete-looking
    response (a 502, or its connection closed before the promised length),
    and the next request must come on a new server connection, not the
    truncated one, which is still open for reading."""
    seen = []

    def handler(r, srv):
        me = object()
        while True:
            req = read_request(r)
            if req is None:
                return
            path = req.first.split(" ")[1]
            seen.append((me, path))
            if path == "/1":
                r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
                r.s.shutdown(socket.SHUT_WR)  # the truncation; the read side stays open
            else:
                r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
    r = client(port)
    r.send(get("/1"))
    try:
        m = read_response(r)
    except (EOFError, ConnectionResetError):
        m = None  # the head went on and the connection was closed mid-body: the failure shows
    if m is not None:
        closed, _ = wait_closed(r, 1.0 * SCALE)
        expect_error(m, closed, 502, what="a response cut short by the server's FIN")
    r.close()
    m, _, _ = roundtrip(port, get("/2"), wait_close=0)
    check(m.status == 200 and m.body == b"ok", f"request after a truncated response: {m!r}")
    conn_of = {path: c for c, path in seen}
    check("/1" in conn_of and "/2" in conn_of, f"the server saw {[p for _, p in seen]}")
    check(conn_of["/2"] is not conn_of["/1"],
          "the server connection that sent a truncated response was reused")


# ---------------------------------------------------------------- 503 ----


def test_503_only_server_disabled(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line("disabled")]))
    r = client(port)
    r.send(get("/"))
    m = read_response(r)
    closed, _ = wait_closed(r, 1.0 * SCALE)
    expect_error(m, closed, 503, what="the pool's only server is disabled")
    if not closed:
        r.send(get("/again"))
        m = read_response(r)
        check(m.status == 503, f"second request on the connection: {m!r}")
    r.close()


def test_error_to_head_has_no_body(ctx):
    """fulcrum's own answer to a HEAD has the head a GET would get and no
    body (SPEC §3: HEAD has no body), so the kept-alive connection stays in
    step: the next answer on it starts right after that head."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line("disabled")]))
    r = client(port)
    r.send(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n" + get("/b"))
    m = read_response(r, method="HEAD")
    check(m.status == 503 and int(m.get("content-length", "0")) > 0,
          f"HEAD: {m!r}")
    m2 = read_response(r)
    check(m2.status == 503 and m2.body == b"503 Service Unavailable\n",
          f"the GET after it: {m2!r}")
    r.close()


def test_503_server_down_by_health_check(ctx):
    port = free_port()
    ctx.fulcrum(http_conf(port, [f"gone 127.0.0.1:{closed_port()}"],
                          pool={"check": "tcp", "check_interval": "200ms", "check_timeout": "200ms",
                                "fall": 1, "rise": 1, "max_fails": 1000}))

    def status():
        m, _, _ = roundtrip(port, get("/"), wait_close=0)
        return m if m.status == 503 else None

    m = wait_for(status, 5 * SCALE, interval=0.1, what="503 once the health check marks the server down")
    expect_error(m, None, 503, what="no server up")


def test_backup_serves_while_normal_disabled(ctx):
    b = cbackend(ctx, "bk")
    port = free_port()
    ctx.fulcrum(http_conf(port, [f"main 127.0.0.1:{closed_port()} disabled", b.server_line("backup")]))
    m, _, _ = roundtrip(port, get("/"), wait_close=0)
    check(m.status == 200 and m.get("x-server") == "bk", f"backup while the normal server is disabled: {m!r}")


# ---------------------------------------------------------------- 504 ----


def test_504_server_timeout(ctx):
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], pool={"server_timeout": "1s"}))
    r = client(port)
    t0 = time.monotonic()
    r.send(get("/?ms=3000"))
    m = read_response(r)
    dt = time.monotonic() - t0
    closed, _ = wait_closed(r, 0.5 * SCALE)
    expect_error(m, closed, 504, what="server_timeout 1s, server answers after 3s")
    check(0.8 <= dt <= 2.5 * SCALE, f"504 after {dt:.2f}s, server_timeout is 1s")
    if not closed:
        r.send(get("/?size=2"))
        m = read_response(r)
        check(m.status == 200 and m.body == b"ab", f"request after a 504 on the same connection: {m!r}")
    r.close()
    # The late answer of the timed-out request never reaches anyone.
    time.sleep(2.5)
    m, _, _ = roundtrip(port, get("/?size=3"), wait_close=0)
    check(m.status == 200 and m.body == b"abc", f"request after the late answer would have come: {m!r}")


def test_504_when_the_server_stops_reading_the_body(ctx):
    """A server that reads the head and then no more of a large body: once
    its socket is full, fulcrum waits for the server, so server_timeout
    (not client_timeout) runs and the client gets its 504."""
    def head_only(r, srv):
        r.until(b"\r\n\r\n")
        time.sleep(6 * SCALE)

    srv = pyserver(ctx, head_only)
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log},
                          pool={"server_timeout": "1s", "keepalive": 0},
                          listener={"client_timeout": "20s"}))
    r = client(port)
    t0 = time.monotonic()
    body = b"x" * (32 << 20)
    r.send(get("/up", method="POST", headers=[f"Content-Length: {len(body)}"]))
    sender(r.s, body)
    m = read_response(r, "POST")
    took = time.monotonic() - t0
    r.close()
    check(m.status == 504, f"a server that stopped reading: {m!r}")
    check(took < 5 * SCALE, f"504 after {took:.1f}s with server_timeout = 1s")
    line = access_lines(log, 1)[0]
    check(line.endswith(" server_timeout"), f"reason: {line!r}")


def test_408_when_the_request_body_stops_coming(ctx):
    """A client that sends 3 of a body's 10 bytes and then nothing gets 408
    with Connection: close after client_timeout (nginx's
    client_body_timeout answers 408 too), not a silent close; the server's
    connection, with half a request on it, is closed."""
    server_saw = []

    def half_body(r, srv):
        r.until(b"\r\n\r\n")
        got = r.exact(3)
        try:
            r.exact(1)
            server_saw.append(("more", got))
        except (EOFError, OSError):
            server_saw.append(("closed", got))

    srv = pyserver(ctx, half_body)
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log},
                          pool={"server_timeout": "20s"},
                          listener={"client_timeout": "1s"}))
    for _ in range(2):
        r = client(port)
        t0 = time.monotonic()
        r.send(get("/up", method="POST", headers=["Content-Length: 10"]) + b"abc")
        m = read_response(r, "POST")
        took = time.monotonic() - t0
        closed, extra = wait_closed(r, 3 * SCALE)
        r.close()
        check(not extra, f"bytes after the 408: {extra!r}")
        expect_error(m, closed, 408, must_close=True, what="a body that stopped coming")
        check(0.8 <= took < 4 * SCALE, f"408 after {took:.1f}s with client_timeout = 1s")
    wait_for(lambda: len(server_saw) == 2, 3 * SCALE, what="the server's connections to close")
    check(server_saw == [("closed", b"abc")] * 2, f"the server saw: {server_saw!r}")
    for line in access_lines(log, 2):
        check(" 408 " in line and line.endswith(" client_timeout"), f"log line: {line!r}")


def test_504_not_put_off_by_a_trickling_client(ctx):
    """server_timeout counts the server's silence: a client sending a byte of
    its next pipelined request every 300 ms does not keep a dead exchange
    (or its server slot) alive."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], pool={"server_timeout": "1s"}))
    r = client(port)
    t0 = time.monotonic()
    r.send(get("/?ms=5000"))
    nxt = get("/?size=2")
    got = []

    def trickle():
        for byte in nxt[:12]:
            time.sleep(0.3)
            try:
                r.s.sendall(bytes([byte]))
            except OSError:
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    got.append(read_response(r))
    dt = time.monotonic() - t0
    t.join()
    check(got[0].status == 504, f"answer: {got[0]!r}")
    check(dt <= 2.5 * SCALE, f"504 after {dt:.2f}s with server_timeout 1s: the client's bytes put it off")
    r.close()


def test_504_server_never_answers(ctx):
    srv = pyserver(ctx, lambda r, s: (read_request(r), time.sleep(10 * SCALE)))
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"server_timeout": "1s", "max_fails": 1000}))
    t0 = time.monotonic()
    m, closed, _ = roundtrip(port, get("/"))
    expect_error(m, closed, 504, what="server never answers")
    check(time.monotonic() - t0 <= 3.5 * SCALE, "504 too late")


def test_idempotent_request_retried_after_server_timeout_or_close(ctx):
    """SPEC §3: a server that times out (or closes without answering) is
    retried on another server for idempotent methods, a PUT with its body
    too (whole, from the request buffer); a POST is not: it gets the 504."""
    for bad_handler, what in UNANSWERING_HANDLERS:
        bad = pyserver(ctx, bad_handler, name="bad")
        good = cbackend(ctx, "good")
        port = free_port()
        ctx.fulcrum(http_conf(port, [bad.server_line(), good.server_line()],
                              pool={"server_timeout": "500ms", "max_fails": 1000}))
        t0 = time.monotonic()
        m, _, _ = roundtrip(port, get("/first"), wait_close=0)
        check(m.status == 200 and m.get("x-server") == "good",
              f"{what}: GET not retried on the other server: {m!r}")
        put = b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello there"
        for _ in range(2):
            m, _, _ = roundtrip(port, put, wait_close=0)
            check(m.status == 200 and m.get("x-server") == "good" and m.body == b"hello there",
                  f"{what}: PUT not retried whole on the other server: {m!r}")
        check(any(h.startswith(b"PUT ") for h in bad.heads), f"{what}: no PUT reached the bad server")
        if bad_handler is slow_handler:
            check(time.monotonic() - t0 < 2.5 * SCALE, "the retry waited for the slow server")
            post = (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
            statuses = sorted(roundtrip(port, post, wait_close=0)[0].status for _ in range(2))
            check(statuses == [200, 504], f"POST with a body: {statuses}, want one 504")


def test_retry_onto_a_pooled_connection_is_sent_at_once(ctx):
    """A GET whose server closes without answering is retried on the other
    server's idle pooled connection, and goes out at once: no connect's
    event is there to start it."""
    bad = pyserver(ctx, closer_handler, name="bad")
    good = cbackend(ctx, "good")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [bad.server_line(), good.server_line()],
                          glob={"workers": 1, "access_log": log},
                          pool={"max_fails": 1000}))
    # Round robin alternates bad, good: the first request's retry leaves a
    # pooled connection to good, which the third request's retry takes.
    for i in range(4):
        r = client(port, timeout=3 * SCALE)
        r.send(get(f"/r{i}"))
        m = read_response(r)
        r.close()
        check(m is not None and m.status == 200 and m.get("x-server") == "good",
              f"request {i}: {m!r}")
    lines = access_lines(log, 4)
    check(all(" 200 " in line for line in lines), f"log: {lines!r}")


def test_answer_before_request_body_ends(ctx):
    """A server that answers while the client is still sending its body: the
    answer says Connection: close and reaches the client whole (the rest of
    the upload is drained, not reset), and the log gives a reason."""
    def early(r, s):
        r.until(b"\r\n\r\n")
        r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
        time.sleep(1)

    srv = pyserver(ctx, early)
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log}))
    r = client(port)
    body = b"x" * (8 << 20)
    r.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
    t, _ = sender(r.s, body)  # more than the socket buffers take: still sending
    m = read_response(r)
    check(m.status == 200 and m.body == b"early", f"the early answer: {m!r}")
    check("close" in m.tokens("connection"), f"no Connection: close on it: {m!r}")
    t.join(5 * SCALE)
    r.close()
    line = access_lines(log, 1)[0]
    check('"POST /up HTTP/1.1" 200 ' in line and line.endswith(" answered_before_request_end"),
          f"log line: {line!r}")


def test_lingering_close_ends_on_time_whatever_the_client_sends(ctx):
    """After an error answer fulcrum sends its FIN and reads what the
    client still sends for up to a second (so no reset destroys the
    answer): up to a second from the answer, not a second of silence, or a
    client trickling bytes would hold the connection for ever."""
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    r.send(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
    m = read_response(r)
    check(m is not None and m.status == 400, f"the 400: {m!r}")
    # The FIN shows at once; the close shows as a reset to what is sent
    # after it.
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 4 * SCALE and not closed:
        try:
            r.s.sendall(b"x" * 100)
            time.sleep(0.3)
        except OSError:
            closed = True
    took = time.monotonic() - t0
    r.close()
    check(closed and took < 2.0 * SCALE,
          f"a client trickling bytes after the 400 kept the connection {took:.1f}s")


def test_early_answer_then_reset_reaches_the_client(ctx):
    """A server that answers 413 as soon as it has the head and closes
    without reading the body resets the connection: fulcrum's next body
    write fails, and the 413 already in its receive queue is what the
    client gets (as HAProxy relays it), not a 502. On a pooled connection
    too, where the write fails sooner."""
    def refuse_uploads(r, srv):
        while True:
            head = r.until(b"\r\n\r\n")  # GETs have no body; the POST's is left unread
            if head.startswith(b"GET "):
                r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                continue
            r.send(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n"
                   b"Connection: close\r\n\r\nbig!")
            r.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return

    srv = pyserver(ctx, refuse_uploads)
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()],
                          glob={"workers": 1, "access_log": log},
                          pool={"max_fails": 1000}))
    body = b"x" * (3 << 20)
    got = []
    for i in range(24):
        r = client(port, timeout=5 * SCALE)
        r.send(get("/first"))
        m = read_response(r)
        check(m is not None and m.status == 200, f"round {i}: GET {m!r}")
        r.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
        t, _ = sender(r.s, body)
        m = read_response(r)
        got.append(None if m is None else (m.status, m.body))
        r.close()
        t.join(5 * SCALE)
    bad = [g for g in got if g != (413, b"big!")]
    check(not bad, f"{len(bad)} of {len(got)} uploads did not get the server's 413: {bad[:3]!r}")


def test_idempotent_request_with_a_body_survives_a_pooled_connection_closing(ctx):
    """A pooled connection the server closes just as a request goes out on
    it: a GET whose body came whole with its head is sent again on a new
    connection, as one without a body is, whether the close shows on
    reading the answer or on writing the body."""
    last = []

    def answer_all(r, srv):
        with srv.lock:
            last.append(r.s)
        while read_request(r) is not None:
            r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, answer_all)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()],
                          glob={"workers": 1}, pool={"retries": 0, "max_fails": 1000}))
    req = b"GET /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    bad = []
    for i in range(40):
        r = client(port, timeout=5 * SCALE)
        r.send(get("/a"))
        m = read_response(r)
        check(m is not None and m.status == 200, f"round {i}: first GET {m!r}")
        with srv.lock:
            pooled = last[-1]
        r.send(req)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < (i % 20) * 10e-6:
            pass
        try:
            pooled.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        m = read_response(r)
        if m is None or m.status != 200:
            bad.append(None if m is None else m.status)
        r.close()
    check(not bad, f"{len(bad)} of 40 requests failed when their pooled connection closed: {bad}")


def test_client_that_stops_reading_gets_client_timeout(ctx):
    """A client that stops reading a long answer is the stalled side: it is
    closed after client_timeout (not the shorter server_timeout), and the log
    says client_timeout."""
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log},
                          pool={"server_timeout": "500ms"},
                          listener={"client_timeout": "2s"}))
    r = client(port)
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    t0 = time.monotonic()
    r.send(get("/?size=50000000"))
    line = access_lines(log, 1, timeout=6)[0]
    dt = time.monotonic() - t0
    r.close()
    check(line.endswith(" client_timeout"), f"log line: {line!r}")
    check(1.8 <= dt <= 4 * SCALE, f"closed after {dt:.1f}s; client_timeout is 2s, server_timeout 0.5s")


def test_coded_transfer_to_an_http10_client_is_refused(ctx):
    """An HTTP/1.0 client takes no Transfer-Encoding (RFC 9112 §6.1): a
    chunked answer goes to it decoded, but one also coded with gzip cannot
    be, and passed without its Transfer-Encoding its body would be gzip
    bytes nothing names: 502, as nginx answers any coding but chunked. An
    HTTP/1.1 client gets it as it came, and the server is not blamed for
    the 502 (max_fails = 1 would take it out)."""
    answers = {
        b"/gc": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n",
        b"/g": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\nhello",
    }

    def coded(r, s):
        m = read_request(r)
        if m is None:
            return
        answer = answers[m.first.split(" ")[1].encode()]
        if m.first.startswith("HEAD "):
            answer = answer.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        r.send(answer)

    srv = pyserver(ctx, coded)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1, "check": "none"}))
    for path in ("/gc", "/g"):
        m, closed, _ = roundtrip(port, f"GET {path} HTTP/1.0\r\nHost: a\r\n\r\n".encode())
        expect_error(m, closed, 502, what=f"gzip-coded {path} to an HTTP/1.0 client")
        m, _, _ = roundtrip(port, f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        check(m is not None and m.status == 200 and "gzip" in m.tokens("transfer-encoding"),
              f"gzip-coded {path} to an HTTP/1.1 client: {m!r}")
        # A HEAD's answer has no body to be coded: it goes on.
        m, _, _ = roundtrip(port, f"HEAD {path} HTTP/1.0\r\nHost: a\r\n\r\n".encode(),
                            method="HEAD")
        check(m is not None and m.status == 200, f"HEAD {path} from an HTTP/1.0 client: {m!r}")


def test_no_interim_responses_to_http10_clients(ctx):
    """RFC 9110 §15.2: a server's 103 Early Hints goes on to an HTTP/1.1
    client, never to an HTTP/1.0 one, which gets only the final answer."""
    srv = pyserver(ctx, raw_handler(
        b"HTTP/1.1 103 Early Hints\r\nConnection: X-Secret, keep-alive\r\n"
        b"X-Secret: internal\r\nKeep-Alive: timeout=5\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    for version, want_103 in ((b"1.1", True), (b"1.0", False)):
        r = client(port)
        r.send(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n")
        first = read_response(r, keep_1xx=True)
        got_103 = first.status == 103
        final = read_response(r) if got_103 else first
        r.close()
        check(got_103 == want_103 and final.status == 200 and final.body == b"ok",
              f"HTTP/{version.decode()}: first {first!r}, final {final!r}")
        if got_103:
            # SPEC §3: hop-by-hop fields are not forwarded, 1xx heads included.
            check(first.names() == {"link"}, f"the 103 kept hop-by-hop fields: {first.headers!r}")


def test_lingering_after_an_error_drops_a_bounded_amount(ctx):
    """After an error answer fulcrum reads and drops what the client still
    sends, so no reset destroys the answer; a client that floods it is cut
    off after a few MiB, not read at full speed for the whole second."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()]))
    s = connect(("127.0.0.1", port))
    s.sendall(b"BAD\r\n\r\n")
    chunk = b"x" * (1 << 20)
    sent = 0
    t0 = time.monotonic()
    try:
        while sent < (2 << 30) and time.monotonic() - t0 < 5 * SCALE:
            sent += s.send(chunk)
    except OSError:
        pass
    s.close()
    check(sent < 64 << 20, f"fulcrum took {sent >> 20} MiB from a client it answered 400")
    m, _, _ = roundtrip(port, get("/?size=3"))
    check(m.status == 200, f"the next client: {m!r}")
    b.close()


def test_many_interim_heads_then_the_answer(ctx):
    """Interim heads that together pass the response head buffer (64 KiB)
    are passed on and their room reused: the final answer still comes."""
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </" + b"a" * 3000 + b".css>; rel=preload\r\n\r\n"

    srv = pyserver(ctx, raw_handler(hint * 30 + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    r.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    m = read_response(r)
    r.close()
    check(m.status == 200 and m.body == b"ok", f"after {len(hint) * 30} bytes of 103s: {m!r}")


def test_a_server_streaming_interim_heads_gets_a_502_and_holds_no_one(ctx):
    """A server that sends 103s without end (a broken one, or an origin a
    forward-proxy client points at fulcrum to hold its worker) gets its
    request a 502 after 32 of them (it used to hold the worker for good),
    and the worker goes on serving."""
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"

    def flood(r, srv):
        if read_request(r) is None:
            return
        try:
            for _ in range(200000):
                r.send(hint * 50)
        except OSError:
            pass

    srv = pyserver(ctx, flood)
    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log},
                          extra=[("pool q", {"check": "none", "server": b.server_line()}),
                                 ("route other", {"listener": "l", "path_prefix": "/other",
                                                  "pool": "q"})]))
    r = client(port)
    r.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    m = read_response(r)
    check(m.status == 502, f"the flood's request: {m!r}")
    r.close()
    for _ in range(3):
        m2, _, _ = roundtrip(port, get("/other?size=3"), wait_close=0)
        check(m2.status == 200 and m2.body == b"abc", f"another client after it: {m2!r}")
    wait_for(lambda: any(l.endswith(" too_many_interim") for l in read_lines(log)), 2 * SCALE,
             what="the too_many_interim line")
    b.close()


def test_interim_heads_go_out_as_http11(ctx):
    """RFC 9110 §6.2: fulcrum sends its own version on every status line
    it passes on, interim ones included: a server's HTTP/1.2 103 or (out of
    place) HTTP/1.0 100 reaches an HTTP/1.1 client as HTTP/1.1."""
    srv = pyserver(ctx, raw_handler(b"HTTP/1.2 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                                    b"HTTP/1.0 100 Continue\r\n\r\n"
                                    b"HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    r = client(port)
    r.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    data = r.until(b"\r\n\r\nok")
    r.close()
    lines = [h.split(b"\r\n", 1)[0] for h in data.split(b"\r\n\r\n")[:-1]]
    check([ln.split(b" ", 1)[1] for ln in lines] == [b"103 Early Hints", b"100 Continue", b"200 OK"],
          f"status lines: {lines!r}")
    check(all(ln.startswith(b"HTTP/1.1 ") for ln in lines), f"versions passed on: {lines!r}")


def test_errors_found_as_the_head_trickles_in(ctx):
    """A head sent in pieces is judged as each piece comes: a CR at the end
    of one piece followed by a byte other than LF is a bare CR (400), and a
    request line growing past max_uri_size behind an empty line is 414 at
    once, not a 408 after request_timeout."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"request_timeout": "5s"}))
    cases = (([b"GET / HTTP/1.1\r", b"X"], 400),
             ([b"GET / HTTP/1.1\r\nHost: a\r", b"X"], 400),
             ([b"\r\n", b"GET /" + b"a" * 4000, b"a" * 5000], 414))
    for pieces, want in cases:
        r = client(port)
        t0 = time.monotonic()
        for p in pieces:
            r.send(p)
            time.sleep(0.1)
        m = read_response(r)
        took = time.monotonic() - t0
        r.close()
        check(m.status == want and took < 2.5 * SCALE,
              f"{pieces[0][:20]!r}...: status {m.status} after {took:.1f}s, want {want} at once")


def test_error_bursts_leave_fulcrum_serving(ctx):
    """Many bad clients at once (malformed, oversize, cut off) do not
    disturb good ones."""
    b = cbackend(ctx, "b1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [b.server_line()], listener={"max_header_size": "2k"}))
    bad = [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"x" * 5000,
           b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",
           b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
    errors = []

    def bad_client(data):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5 * SCALE)
            s.sendall(data)
            s.close()
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=bad_client, args=(bad[i % len(bad)],)) for i in range(200)]
    for t in threads:
        t.start()
    for i in range(20):
        m, _, _ = roundtrip(port, get(f"/?size={i}"), wait_close=0)
        check(m.status == 200 and len(m.body) == i, f"good request {i} among bad clients: {m!r}")
    for t in threads:
        t.join(10 * SCALE)


def _request_then_reset(port, path, after):
    """Sends a GET for PATH, waits AFTER seconds, and resets the connection."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    time.sleep(after)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_client_reset_while_connecting_is_closed_at_once(ctx):
    """A client that sends a request and resets while the server's connect
    is under way is closed at once and logged client_reset, not held (with
    its server slot) until connect_timeout."""
    bh = ctx.blackhole()
    log = ctx.path("access.log")
    port = free_port()
    f = ctx.fulcrum(http_conf(port, [f"hole {bh.addr}"], glob={"access_log": log},
                              pool={"connect_timeout": "10s", "retries": 0}))
    _request_then_reset(port, "/x", 0.2)
    wait_for(lambda: any("client_reset" in l for l in read_lines(log)), 3 * SCALE,
             what="a client_reset log line well before connect_timeout")
    f.check_fds_settled(timeout=2 * SCALE)


def test_client_reset_while_waiting_for_the_answer(ctx):
    """A client that resets while its server thinks is gone: the request
    ends at once (client_reset) and the server connection is let go, not
    held until the server answers or server_timeout."""
    srv = pyserver(ctx, lambda r, s: (read_request(r), time.sleep(5 * SCALE)))
    log = ctx.path("access.log")
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log},
                          pool={"server_timeout": "20s"}))
    _request_then_reset(port, "/slow", 0.3)
    wait_for(lambda: any("client_reset" in l for l in read_lines(log)), 2 * SCALE,
             what="the request ended as client_reset while the server was silent")


def test_server_reset_mid_body_is_logged_as_a_reset(ctx):
    """A server that resets in the middle of a body is logged server_reset
    (and one that closes there server_closed); the client's connection is
    closed after the bytes that came."""
    def handler(r, srv):
        req = read_request(r)
        if req is None:
            return
        close = "close" in req.first
        r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
        time.sleep(0.2)
        if not close:
            r.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        r.s.close()

    srv = pyserver(ctx, handler)
    log = ctx.path("access.log")
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log}))
    for path in ("/reset", "/close"):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        got = recv_all(s)
        s.close()
        check(got.endswith(b"x" * 5000), f"{path}: the bytes that came were not relayed")
    lines = access_lines(log, 2)
    check(lines[0].endswith(" server_reset"), f"a reset mid-body: {lines[0]}")
    check(lines[1].endswith(" server_closed"), f"a close mid-body: {lines[1]}")


def test_out_of_fds_gets_503_without_blaming_the_server(ctx):
    """A connect fulcrum cannot start for want of descriptors is answered
    503 out_of_resources, and does not count against the server."""
    import resource

    b = cbackend(ctx, "b1")
    port = free_port()
    log = ctx.path("access.log")
    f = ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log},
                              pool={"max_fails": 1, "keepalive": 0}))
    limits = resource.prlimit(f.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(f.pid, resource.RLIMIT_NOFILE, (max(f.fds()) + 2, limits[1]))
    clients, answer = [], None
    try:
        for _ in range(10):
            r = client(port)
            clients.append(r)
            r.send(get("/"))
            m = read_response(r)
            if m.status != 200:
                answer = m
                break
    finally:
        resource.prlimit(f.pid, resource.RLIMIT_NOFILE, limits)
    for r in clients:
        r.close()
    check(answer is not None and answer.status == 503, f"answer without descriptors: {answer!r}")
    wait_for(lambda: any(" 503 " in l and l.endswith(" out_of_resources") for l in read_lines(log)),
             2 * SCALE, what="the 503 out_of_resources line")
    m, _, _ = roundtrip(port, get("/again"), wait_close=0)
    check(m.status == 200, f"after descriptors came back: {m!r}")


close_backends_first(globals())
