"""http mode: request smuggling and strict parsing (SPEC §3 "http mode"):
every vector gets 400 (501 for a Transfer-Encoding without chunked) with
Connection: close, the connection is closed, and the request pipelined
behind it never reaches a server."""

import time

from harness import check, free_port
from test_http import (client, close_backends_first, http_conf, ok_handler, pyserver, read_request,
                       read_response, wait_closed)

SMUG = b"GET /SMUGGLED HTTP/1.1\r\nHost: a\r\n\r\n"


def _post(headers, body=b""):
    return b"POST /target HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n" + body


def _setup(ctx):
    srv = pyserver(ctx, ok_handler())
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"max_fails": 1000}))
    return srv, port


def _run_vectors(ctx, vectors):
    """VECTORS: (name, request bytes, expected status). SMUG is sent right
    behind each in the same write. Collects every failure, then fails."""
    srv, port = _setup(ctx)
    problems = []
    for name, data, want in vectors:
        before = len(srv.raw_received())
        r = client(port)
        try:
            r.send(data + SMUG)
            try:
                m = read_response(r)
            except (EOFError, ConnectionResetError) as e:
                problems.append(f"{name}: no response ({e!r}); sent {data!r}")
                continue
            except OSError as e:
                problems.append(f"{name}: no response ({e!r}); sent {data!r}")
                continue
            closed, extra = wait_closed(r, 1.5)
        finally:
            r.close()
        if m.status != want:
            problems.append(f"{name}: status {m.status}, want {want}; sent {data!r}; got {m.first!r} "
                            f"{m.headers}")
            continue
        if not closed:
            problems.append(f"{name}: connection not closed after the {want}; sent {data!r}")
        if "close" not in m.tokens("connection"):
            problems.append(f"{name}: the {want} lacks Connection: close; sent {data!r}")
        if not (0 < len(m.body) <= 512):
            problems.append(f"{name}: body of the {want} is not short text: {m.body[:100]!r}")
        if extra:
            problems.append(f"{name}: more after the {want}: {extra[:200]!r}; sent {data!r}")
        seen = srv.raw_received()[before:]
        if b"SMUGGLED" in seen:
            problems.append(f"{name}: the server saw the smuggled request; sent {data!r}; server got {seen!r}")
    check(not problems, f"{len(problems)} of {len(vectors)} vectors mishandled:\n  " + "\n  ".join(problems))
    # Nothing broke for the next client.
    r = client(port)
    r.send(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
    m = read_response(r)
    r.close()
    check(m.status == 200, f"a plain request after the vectors: {m!r}")


def test_content_length_and_transfer_encoding(ctx):
    _run_vectors(ctx, [
        ("CL then TE", _post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), 400),
        ("TE then CL", _post(b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", b"0\r\n\r\n"), 400),
        ("TE and CL 0", _post(b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", b"0\r\n\r\n"), 400),
        ("CL and TE with case", _post(b"content-length: 40\r\ntransfer-encoding: Chunked\r\n", b"0\r\n\r\n"), 400),
    ])


def test_bad_content_length(ctx):
    _run_vectors(ctx, [
        ("two different CL", _post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), 400),
        ("CL list of different values", _post(b"Content-Length: 5, 6\r\n", b"hello!"), 400),
        ("CL +5", _post(b"Content-Length: +5\r\n", b"hello"), 400),
        ("CL 0x5", _post(b"Content-Length: 0x5\r\n", b"hello"), 400),
        ("CL 5 5", _post(b"Content-Length: 5 5\r\n", b"hello"), 400),
        ("CL -5", _post(b"Content-Length: -5\r\n", b"hello"), 400),
        ("CL 5.0", _post(b"Content-Length: 5.0\r\n", b"hello"), 400),
        ("CL empty", _post(b"Content-Length: \r\n", b"hello"), 400),
        ("CL 20 digits", _post(b"Content-Length: 99999999999999999999\r\n", b"hello"), 400),
        ("CL 2^63", _post(b"Content-Length: 9223372036854775808\r\n", b"hello"), 400),
        ("CL 2^64+5", _post(b"Content-Length: 18446744073709551621\r\n", b"hello"), 400),
    ])


def test_equal_content_lengths_go_on_as_one(ctx):
    """RFC 9110 §8.6: a repeated Content-Length with equal values may be
    accepted only if it is sent on as one value; the server and the client
    each see a single field. Leading zeros go too: a lenient peer might read
    them otherwise."""

    def handler(r, srv):
        while read_request(r) is not None:
            r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok")

    srv = pyserver(ctx, handler)
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()]))
    for extra in (b"Content-Length: 5, 5\r\n", b"Content-Length: 5\r\ncontent-length: 005\r\n",
                  b"Content-Length: 00000000000000000000000005\r\n"):
        r = client(port)
        r.send(_post(extra, b"hello") + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        m = read_response(r)
        check(m.status == 200 and m.body == b"ok" and m.all("content-length") == ["2"],
              f"response with Content-Length: 2, 2 and 2: {m!r}")
        m = read_response(r)
        check(m.status == 200, f"the request after it: {m!r}")
        r.close()
        req = srv.heads[-2].decode("latin-1")
        cls = [l for l in req.split("\r\n") if l.lower().startswith("content-length")]
        check(cls == ["Content-Length: 5"], f"{extra!r}: the server got {cls}: {req!r}")


def test_bad_transfer_encoding(ctx):
    _run_vectors(ctx, [
        ("TE chunked, gzip", _post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), 400),
        ("TE chunked then TE gzip", _post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
                                          b"0\r\n\r\n"), 400),
        ("TE chunked twice (two fields)", _post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                                                b"0\r\n\r\n"), 400),
        ("TE chunked, chunked", _post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), 400),
        ("TE gzip only", _post(b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"), 501),
        ("TE identity", _post(b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n"), 501),
        ("TE xchunked", _post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 501),
    ])


def test_bad_chunks(ctx):
    te = b"Transfer-Encoding: chunked\r\n"
    _run_vectors(ctx, [
        ("chunk size zz", _post(te, b"zz\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size 0x5", _post(te, b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size -5", _post(te, b"-5\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size overflow", _post(te, b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size empty", _post(te, b"\r\nhello\r\n0\r\n\r\n"), 400),
        ("chunk ext with bare LF", _post(te, b"5;ext=1\nhello\r\n0\r\n\r\n"), 400),
        ("chunk size with bare LF", _post(te, b"5\nhello\r\n0\r\n\r\n"), 400),
        ("chunk data without CRLF", _post(te, b"5\r\nhelloXX0\r\n\r\n"), 400),
        ("last chunk with bare LF", _post(te, b"5\r\nhello\r\n0\n\r\n"), 400),
        ("chunk size with bare CR", _post(te, b"5\rhello\r\n0\r\n\r\n"), 400),
    ])


def test_bad_header_syntax(ctx):
    _run_vectors(ctx, [
        ("space before colon", _post(b"X-Foo : bar\r\nContent-Length: 0\r\n"), 400),
        ("space before colon in TE", _post(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", b"hello"), 400),
        ("tab before colon", _post(b"Content-Length\t: 0\r\n"), 400),
        ("obs-fold with space", _post(b"X-Foo: a\r\n b\r\nContent-Length: 0\r\n"), 400),
        ("obs-fold with tab", _post(b"X-Foo: a\r\n\tb\r\nContent-Length: 0\r\n"), 400),
        ("obs-fold of CL", _post(b"Content-Length:\r\n 5\r\n", b"hello"), 400),
        ("bare CR in value", _post(b"X-Foo: a\rb\r\nContent-Length: 0\r\n"), 400),
        ("bare CR line end", _post(b"X-Foo: a\r\rContent-Length: 0\r\n"), 400),
        ("NUL in value", _post(b"X-Foo: a\x00b\r\nContent-Length: 0\r\n"), 400),
        ("DEL in value", _post(b"X-Foo: a\x7fb\r\nContent-Length: 0\r\n"), 400),
        ("control byte in value", _post(b"X-Foo: a\x01b\r\nContent-Length: 0\r\n"), 400),
        ("ESC in value", _post(b"X-Foo: a\x1bb\r\nContent-Length: 0\r\n"), 400),
        ("NUL in name", _post(b"X-F\x00oo: a\r\nContent-Length: 0\r\n"), 400),
        ("control byte in name", _post(b"X-F\x01oo: a\r\nContent-Length: 0\r\n"), 400),
        ("space in name", _post(b"X Foo: a\r\nContent-Length: 0\r\n"), 400),
        ("line without colon", _post(b"NoColonHere\r\nContent-Length: 0\r\n"), 400),
        ("empty name", _post(b": value\r\nContent-Length: 0\r\n"), 400),
        ("bare LF inside the head", b"POST /target HTTP/1.1\r\nHost: a\r\nX-Foo: a\nContent-Length: 0\r\n\r\n", 400),
    ])


def test_bad_request_line(ctx):
    _run_vectors(ctx, [
        ("two parts", b"GET /\r\nHost: a\r\n\r\n", 400),
        ("one part", b"GET\r\nHost: a\r\n\r\n", 400),
        ("four parts", b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400),
        ("double space", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("trailing space", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        ("tab separated", b"GET\t/\tHTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("NUL in target", b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("not HTTP", b"GET / FOO/1.1\r\nHost: a\r\n\r\n", 400),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ])


def test_bad_host(ctx):
    _run_vectors(ctx, [
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nX-Foo: a\r\n\r\n", 400),
        ("two different Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("two equal Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        ("two Host, other case", b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    ])


def test_smuggled_body_split_over_writes(ctx):
    """CL+TE where the vector arrives in pieces (head first, then the
    body with the smuggled request): still 400 and nothing forwarded."""
    srv, port = _setup(ctx)
    r = client(port)
    r.send(_post(b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n"))
    time.sleep(0.2)
    try:
        r.send(b"0\r\n\r\n" + SMUG)
    except OSError:
        pass
    m = read_response(r)
    closed, extra = wait_closed(r, 1.5)
    r.close()
    check(m.status == 400 and closed and not extra, f"CL+TE in two writes: {m!r} closed={closed} extra={extra!r}")
    check(b"SMUGGLED" not in srv.raw_received() and b"/target" not in srv.raw_received(),
          f"the server got {srv.raw_received()!r}")


def test_valid_framings_still_pass(ctx):
    """The strict parser accepts what is valid: chunked last after another
    coding is forwarded (not 400/501), equal repeated Content-Length, OWS
    around values, case-insensitive names and chunked."""
    srv, port = _setup(ctx)
    cases = [
        ("CL with OWS", _post(b"Content-Length:   5  \r\n", b"hello")),
        ("TE Chunked (case)", _post(b"Transfer-Encoding: Chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
        ("chunk size upper hex", _post(b"Transfer-Encoding: chunked\r\n", b"A\r\nhellohello\r\n0\r\n\r\n")),
        ("chunk size leading zeros", _post(b"Transfer-Encoding: chunked\r\n", b"005\r\nhello\r\n0\r\n\r\n")),
        ("chunked last after gzip",
         _post(b"Transfer-Encoding: gzip, chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
        ("equal repeated CL", _post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
        ("leading empty line", b"\r\n" + _post(b"Content-Length: 5\r\n", b"hello")),
    ]
    for name, data in cases:
        r = client(port)
        r.send(data)
        m = read_response(r)
        r.close()
        check(m.status == 200, f"{name}: {m!r} (valid request refused); sent {data!r}")


def test_transfer_encoding_goes_on_as_fulcrum_read_it(ctx):
    """RFC 9110 §5.6.1 has empty list elements skipped, and fulcrum reads
    ",chunked" as chunked; a server that compares the field with "chunked"
    would not, and would read the body as the next request (TE.0). So the
    field goes on as fulcrum read it: lower case, without empty elements."""
    srv, port = _setup(ctx)
    for value, want in ((b",chunked", b"chunked"), (b"CHUNKED,,", b"chunked"),
                        (b"chunked,", b"chunked"), (b"gzip ,, Chunked", b"gzip, chunked"),
                        (b"gzip,chunked", b"gzip,chunked"),
                        (b"chunked", b"chunked")):
        before = len(srv.heads)
        r = client(port)
        r.send(_post(b"Transfer-Encoding: " + value + b"\r\nX-After: 1\r\n", b"5\r\nhello\r\n0\r\n\r\n"))
        m = read_response(r)
        r.close()
        check(m.status == 200 and len(srv.heads) == before + 1, f"{value!r}: {m!r}")
        head = srv.heads[-1]
        check(b"\r\nTransfer-Encoding: " + want + b"\r\nX-After: 1\r\n" in head,
              f"{value!r} reached the server as {head!r}")


close_backends_first(globals())
