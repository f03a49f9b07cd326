"""http mode routing: [route] host (exact, *.suffix, case, port), path_prefix,
header, file order, the listener's pool as fallback, 404 without one
(SPEC §2 [route], §3 "http mode")."""

from harness import SCALE, check, free_port, ini, run_fulcrum
from test_http import (client, close_backends_first, cbackend, expect_error, get, read_response,
                       roundtrip, wait_closed)


def _routing_setup(ctx, listener_pool=True):
    """Pools def, api, v2, wild, static, canary, one backend each (named
    like its pool), and routes in this order:
      canary  header X-Canary: 1
      v2      host api.example.com + path_prefix /v2/
      api     host api.example.com
      wild    host *.example.com
      static  path_prefix /static/
    """
    names = ["def", "api", "v2", "wild", "static", "canary"]
    bs = {n: cbackend(ctx, n) for n in names}
    port = free_port()
    secs = [("global", {"workers": 1, "admin": "", "access_log": "off"})]
    for n in names:
        secs.append((f"pool {n}", {"check": "none", "connect_timeout": "1s", "server": bs[n].server_line()}))
    l = {"bind": f"127.0.0.1:{port}", "mode": "http"}
    if listener_pool:
        l["pool"] = "def"
    secs.append(("listener l", l))
    secs += [
        ("route r_canary", {"listener": "l", "header": "X-Canary: 1", "pool": "canary"}),
        ("route r_v2", {"listener": "l", "host": "api.example.com", "path_prefix": "/v2/", "pool": "v2"}),
        ("route r_api", {"listener": "l", "host": "api.example.com", "pool": "api"}),
        ("route r_wild", {"listener": "l", "host": "*.example.com", "pool": "wild"}),
        ("route r_static", {"listener": "l", "path_prefix": "/static/", "pool": "static"}),
    ]
    ctx.fulcrum(ini(*secs))
    return port


def _served_by(r, host, path="/", headers=()):
    r.send(get(path, host=host, headers=headers))
    m = read_response(r)
    return m.get("x-server") if m.status == 200 else f"status {m.status}"


CASES = [
    # (Host, path, headers, pool)
    ("api.example.com", "/", [], "api"),
    ("API.Example.COM", "/", [], "api"),
    ("api.example.com:8080", "/x", [], "api"),
    ("api.example.com", "/v2/users", [], "v2"),
    ("Api.Example.Com:81", "/v2/", [], "v2"),
    ("api.example.com", "/v2", [], "api"),
    ("api.example.com", "/V2/users", [], "api"),
    ("a.example.com", "/", [], "wild"),
    ("x.y.example.com", "/", [], "wild"),
    ("A.EXAMPLE.COM:9", "/", [], "wild"),
    ("example.com", "/", [], "def"),
    ("badexample.com", "/", [], "def"),
    ("example.com.evil.net", "/", [], "def"),
    ("other.org", "/", [], "def"),
    ("other.org", "/static/app.css", [], "static"),
    ("other.org", "/static", [], "def"),
    ("other.org", "/x/static/", [], "def"),
    ("a.example.com", "/static/app.css", [], "wild"),
    ("api.example.com", "/v2/x", ["X-Canary: 1"], "canary"),
    ("other.org", "/", ["x-canary: 1"], "canary"),
    ("other.org", "/", ["X-Canary: 2"], "def"),
    ("api.example.com", "/", ["X-Canary: 10"], "api"),
]


def test_routes(ctx):
    port = _routing_setup(ctx)
    for host, path, hdrs, want in CASES:
        r = client(port)
        got = _served_by(r, host, path, hdrs)
        r.close()
        check(got == want, f"Host {host!r}, path {path!r}, headers {hdrs}: served by {got}, want {want}")


def test_routes_per_request_on_one_connection(ctx):
    """Routing is decided per request, not per client connection."""
    port = _routing_setup(ctx)
    r = client(port)
    for host, path, hdrs, want in CASES + CASES[::-1]:
        got = _served_by(r, host, path, hdrs)
        check(got == want, f"on one keep-alive connection, Host {host!r}, path {path!r}, headers {hdrs}: "
                           f"served by {got}, want {want}")
    r.close()


def test_routes_pipelined(ctx):
    port = _routing_setup(ctx)
    r = client(port)
    r.send(b"".join(get(p, host=h, headers=hd) for h, p, hd, _ in CASES[:6]))
    for host, path, hdrs, want in CASES[:6]:
        m = read_response(r)
        check(m.get("x-server") == want, f"pipelined Host {host!r} path {path!r}: {m!r}, want {want}")
    r.close()


def test_no_route_no_listener_pool_404(ctx):
    port = _routing_setup(ctx, listener_pool=False)
    r = client(port)
    check(_served_by(r, "api.example.com") == "api", "a matching route still works")
    r.send(get("/", host="nowhere.org"))
    m = read_response(r)
    check(m.status == 404, f"no route and no listener pool: {m!r}")
    closed, extra = wait_closed(r, 0.5 * SCALE)
    check(not extra, f"bytes after the 404: {extra!r}")
    # Connection: close exactly when the connection closes.
    expect_error(m, closed, 404, what="404 without a route")
    if not closed:
        # The connection goes on after a 404.
        check(_served_by(r, "a.example.com") == "wild", "request after a 404 on the same connection")
    r.close()


def test_no_route_404_http10(ctx):
    """An HTTP/1.0 request without Host matches no host route: 404, and when
    fulcrum closes after it, it says so (SPEC §3: Connection: close)."""
    port = _routing_setup(ctx, listener_pool=False)
    m, closed, _ = roundtrip(port, b"GET / HTTP/1.0\r\n\r\n")
    expect_error(m, closed, 404, what="HTTP/1.0 without Host, no route, no listener pool")


def test_route_on_another_listener_does_not_apply(ctx):
    a, b = cbackend(ctx, "a"), cbackend(ctx, "b")
    p1, p2 = free_port(), free_port()
    conf = ini(
        ("global", {"workers": 1, "admin": "", "access_log": "off"}),
        ("pool pa", {"check": "none", "server": a.server_line()}),
        ("pool pb", {"check": "none", "server": b.server_line()}),
        ("listener one", {"bind": f"127.0.0.1:{p1}", "mode": "http", "pool": "pa"}),
        ("listener two", {"bind": f"127.0.0.1:{p2}", "mode": "http", "pool": "pa"}),
        ("route r", {"listener": "one", "host": "b.example", "pool": "pb"}),
    )
    ctx.fulcrum(conf)
    for port, want in ((p1, "b"), (p2, "a")):
        r = client(port)
        got = _served_by(r, "b.example")
        r.close()
        check(got == want, f"Host b.example on listener {'one' if port == p1 else 'two'}: {got}, want {want}")




def test_route_host_with_a_trailing_dot_and_an_empty_absolute_path(ctx):
    """A pattern written with a trailing dot names the same host as without
    it; an absolute-form target with an empty path is routed as "/" (RFC
    9112 §3.2.4), as it is forwarded."""
    a, b = cbackend(ctx, "a"), cbackend(ctx, "b")
    port = free_port()
    ctx.fulcrum(ini(
        ("global", {"workers": 1, "admin": "", "access_log": "off"}),
        ("pool pa", {"check": "none", "server": a.server_line()}),
        ("pool pb", {"check": "none", "server": b.server_line()}),
        ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http"}),
        ("route dotted", {"listener": "l", "host": "api.example.com.", "pool": "pa"}),
        ("route wild", {"listener": "l", "host": "*.Wild.Example.", "pool": "pa"}),
        ("route root", {"listener": "l", "path_prefix": "/", "pool": "pb"}),
    ))
    r = client(port)
    for host in ("api.example.com", "API.example.com.", "api.example.com:80", "x.wild.example",
                 "x.y.wild.example."):
        got = _served_by(r, host)
        check(got == "a", f"Host {host!r} against routes written with a trailing dot: {got}")
    check(_served_by(r, "wild.example") == "b", "the bare domain of a *. route written with a dot")
    for target in ("http://other.test", "http://other.test?q=1", "http://other.test:80"):
        r.send(f"GET {target} HTTP/1.1\r\nHost: other.test\r\n\r\n".encode())
        m = read_response(r)
        check(m.status == 200 and m.get("x-server") == "b",
              f"GET {target}: {m!r}, want the path_prefix / route")
    # OPTIONS * (also as OPTIONS http://x, forwarded as OPTIONS *) has no path.
    for target in ("*", "http://other.test"):
        r.send(f"OPTIONS {target} HTTP/1.1\r\nHost: other.test\r\n\r\n".encode())
        m = read_response(r)
        check(m.status == 404, f"OPTIONS {target} matched a path_prefix route: {m!r}")
    r.close()


def test_absolute_form_routed_by_its_authority(ctx):
    """RFC 9112 §3.2.2: an http listener accepts an absolute-form target,
    routes by its authority (the Host field is ignored) and sends the request
    on in origin-form with Host set to that authority."""
    port = _routing_setup(ctx)
    r = client(port)
    cases = [
        (b"GET http://api.example.com/v2/users?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n", "v2"),
        (b"GET HTTP://a.example.com:8080 HTTP/1.1\r\nHost: a.example.com\r\n\r\n", "wild"),
        (b"GET https://nowhere.test/x?y HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "def"),
    ]
    for req, pool in cases:
        r.send(req)
        m = read_response(r)
        check(m.status == 200 and m.get("x-server") == pool, f"{req!r}: {m!r}, want pool {pool}")
    # What the server saw: origin-form, and one Host, the authority's.
    r.send(b"GET http://Api.Example.com:81/headers HTTP/1.1\r\nHost: x.test\r\n\r\n")
    m = read_response(r)
    head = m.body.decode("latin-1")
    hosts = [l for l in head.split("\r\n") if l.lower().startswith("host:")]
    check(head.startswith("GET /headers HTTP/1.1\r\n") and hosts == ["Host: Api.Example.com:81"],
          f"the server got {head!r}")
    r.close()
    r = client(port)
    r.send(b"GET ftp://api.example.com/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
    m = read_response(r)
    check(m.status == 400, f"an ftp URI on an http listener: {m!r}")
    r.close()



def test_path_prefix_matches_the_path_as_a_server_reads_it(ctx):
    """A path route matches the path percent-decoded, with repeated slashes
    merged and dot segments resolved, as nginx matches a location: a
    client cannot walk around a route meant to keep it from (or in) a pool
    with "/%61dmin/", "//admin/" or "/admin/../x". The prefix in the file is
    read the same way."""
    adm, www, sp = cbackend(ctx, "adm"), cbackend(ctx, "www"), cbackend(ctx, "sp")
    port = free_port()
    ctx.fulcrum(ini(
        ("global", {"workers": 1, "admin": "", "access_log": "off"}),
        ("pool adm", {"check": "none", "server": adm.server_line()}),
        ("pool www", {"check": "none", "server": www.server_line()}),
        ("pool sp", {"check": "none", "server": sp.server_line()}),
        ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "www"}),
        ("route adm", {"listener": "l", "path_prefix": "/admin/", "pool": "adm"}),
        ("route sp", {"listener": "l", "path_prefix": "//a%20b/./c/", "pool": "sp"}),
    ))
    cases = [
        ("/admin/x", "adm"), ("/%61dmin/x", "adm"), ("/%61%64%6D%69%6e/", "adm"),
        ("//admin/x", "adm"), ("/./admin/x", "adm"), ("/x/../admin/x", "adm"),
        ("/../admin/x", "adm"), ("/admin%2Fx", "adm"), ("/x/%2e%2E/admin/", "adm"),
        ("/admin/./", "adm"), ("/admin//x?y=/../z", "adm"),
        ("/admin/../x", "www"), ("/admin/%2e%2e/x", "www"), ("/admin", "www"),
        ("/Admin/x", "www"), ("/admin%2/x", "www"), ("/x?/admin/", "www"), ("/%zzadmin/", "www"),
        ("/a%20b/c/d", "sp"), ("/a%20b//c/", "sp"),
        ("/x" * 1500 + "/.." * 1500 + "/admin/", "adm"), ("/admin/../" + "x" * 5000, "www"),
    ]
    r = client(port)
    for path, want in cases:
        got = _served_by(r, "x.test", path)
        check(got == want, f"GET {path}: served by {got}, want {want}")
    r.close()



def test_host_route_for_an_ipv6_literal(ctx):
    """host = [::1] routes requests whose Host is that literal (with or
    without a port); a bracketed string that is no IPv6 address is a
    FILE:LINE error."""
    six, other = cbackend(ctx, "six"), cbackend(ctx, "other")
    port = free_port()
    ctx.fulcrum(ini(
        ("global", {"workers": 1, "admin": "", "access_log": "off"}),
        ("pool six", {"check": "none", "server": six.server_line()}),
        ("pool other", {"check": "none", "server": other.server_line()}),
        ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "http", "pool": "other"}),
        ("route r6", {"listener": "l", "host": "[2001:DB8::1]", "pool": "six"}),
    ))
    r = client(port)
    for host, want in (("[2001:db8::1]", "six"), ("[2001:db8::1]:8080", "six"),
                       ("[2001:DB8::1]", "six"), ("[2001:db8::2]", "other"), ("x.test", "other")):
        got = _served_by(r, host)
        check(got == want, f"Host {host}: served by {got}, want {want}")
    r.close()
    bad = ctx.path("bad.ini")
    with open(bad, "w") as f:
        f.write(ini(("pool p", {"server": "a 127.0.0.1:1"}),
                    ("listener l", {"bind": "127.0.0.1:1", "mode": "http", "pool": "p"}),
                    ("route r", {"listener": "l", "host": "[::g]", "pool": "p"})))
    rc, _, err = run_fulcrum(["-t", "-c", bad])
    check(rc == 1 and "bad.ini:" in err and "[::g]" in err, f"host = [::g]: rc {rc}, {err!r}")


close_backends_first(globals())
