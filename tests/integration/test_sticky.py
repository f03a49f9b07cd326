"""Sticky cookies (SPEC §2 sticky_cookie, §4): fulcrum adds
`Set-Cookie: NAME=<server name>; Path=/; HttpOnly` only to responses whose
request carried no valid cookie (absent, naming an unknown server, or one
that is down or draining), and a request with a valid cookie goes to the
server it names for as long as that server is up.

Servers are build/backend processes that name themselves in X-Server.
"""

import collections
import re
import time

from harness import SCALE, check, closed_port, connect, free_port
from test_admin import Admin
from test_hashing import FAST, client, conf, kill_and_wait_down, nodes, start_and_wait_up
from test_http import (Reader, close_backends_first, get, http_conf, pyserver, read_request,
                       read_response)

COOKIE_RE = re.compile(r"^SRV=([^;]*); Path=/; HttpOnly$")


def _start(ctx, names=("s1", "s2", "s3"), pool=None, glob=None, opts=None):
    ns = nodes(ctx, *names)
    port = free_port()
    p = {"balance": "roundrobin", "sticky_cookie": "SRV"}
    p.update(pool or {})
    lines = [n.server_line((opts or {}).get(n.name, "")) for n in ns]
    f = ctx.fulcrum(conf(port, lines, pool=p, glob=glob))
    return f, port, ns


def _ask(c, cookie_headers=()):
    """One GET through client C: (X-Server, the server the Set-Cookie names or
    None). Checks the Set-Cookie's exact form and that it names the server
    that answered."""
    m = c.ask(headers=list(cookie_headers))
    check(m.status == 200, f"{cookie_headers}: {m!r}")
    sets = m.all("set-cookie")
    check(len(sets) <= 1, f"several Set-Cookie fields: {sets}")
    if not sets:
        return m.get("x-server"), None
    got = COOKIE_RE.match(sets[0])
    check(got, f"Set-Cookie {sets[0]!r} is not SRV=<name>; Path=/; HttpOnly")
    check(got.group(1) == m.get("x-server"),
          f"Set-Cookie names {got.group(1)} but {m.get('x-server')} answered")
    return m.get("x-server"), got.group(1)


def _pinned(c, name, n=20, headers=None):
    """N requests with cookie SRV=NAME all reach NAME with no Set-Cookie."""
    for _ in range(n):
        who, pin = _ask(c, headers or [f"Cookie: SRV={name}"])
        check(who == name and pin is None, f"cookie SRV={name}: answered by {who}, "
              f"Set-Cookie {pin}")


def test_first_request_pins_then_sticks(ctx):
    f, port, ns = _start(ctx)
    c = client(ctx, port)
    who, pin = _ask(c)
    check(pin == who, f"first request: Set-Cookie {pin}, server {who}")
    # Requests without the cookie keep spreading round robin, each pinned;
    # requests with it stay on their server, interleaved with them.
    fresh = collections.Counter()
    for i in range(30):
        w, p = _ask(c)
        check(p == w, f"request {i} without a cookie: Set-Cookie {p}, server {w}")
        fresh[w] += 1
        w2, p2 = _ask(c, [f"Cookie: SRV={pin}"])
        check(w2 == pin and p2 is None, f"request {i} with SRV={pin}: {w2}, Set-Cookie {p2}")
    check(fresh == {"s1": 10, "s2": 10, "s3": 10}, f"round robin without cookies: {dict(fresh)}")
    for n in ns:
        _pinned(c, n.name, 10)
    # A new connection (a new client) with the cookie sticks as well.
    other = client(ctx, port)
    _pinned(other, pin, 10)


def test_cookie_among_others(ctx):
    f, port, ns = _start(ctx)
    c = client(ctx, port)
    for hdrs in (["Cookie: a=1; SRV=s2; b=2"], ["Cookie: SRV=s2;theme=dark"],
                 ["Cookie: lang=en", "Cookie: SRV=s2"], ["Cookie: XSRV=s1; SRVX=s3; SRV=s2"],
                 ["Cookie: SRV=s2 ; a=1"], ["Cookie: a=1;\tSRV=s2"], ["Cookie: SRV = s2"]):
        _pinned(c, "s2", 6, hdrs)
    # Names that only look like SRV are other cookies: the client is pinned.
    for hdrs in (["Cookie: XSRV=s1"], ["Cookie: SRVX=s1"], ["Cookie: srv=s1"], ["Cookie: SRV"]):
        who, pin = _ask(c, hdrs)
        check(pin == who, f"{hdrs}: not a valid SRV cookie, but no Set-Cookie ({who})")


def test_any_valid_cookie_of_several_pins(ctx):
    # A browser holding SRV for the host and for its parent domain sends
    # both; the one that names a server that is up pins, whatever its place.
    f, port, ns = _start(ctx)
    c = client(ctx, port)
    for hdrs in (["Cookie: SRV=nope; SRV=s3"], ["Cookie: SRV=s3; SRV=nope"],
                 ["Cookie: SRV=", "Cookie: SRV=s3"]):
        _pinned(c, "s3", 6, hdrs)
    who, pin = _ask(c, ["Cookie: SRV=nope; SRV=S3"])
    check(pin == who, f"no valid SRV among several: answered by {who}, Set-Cookie {pin}")


def test_unknown_server_repinned(ctx):
    f, port, ns = _start(ctx)
    c = client(ctx, port)
    for bad in ("nosuch", "", "s1x", "s", "S1"):
        who, pin = _ask(c, [f"Cookie: SRV={bad}"])
        check(pin is not None and pin == who and who in ("s1", "s2", "s3"),
              f"SRV={bad!r}: answered by {who}, Set-Cookie {pin}")
        _pinned(c, pin, 3)


def test_drained_server_repinned(ctx):
    admin_port = free_port()
    f, port, ns = _start(ctx, glob={"admin": f"127.0.0.1:{admin_port}"})
    adm = Admin(admin_port)
    c = client(ctx, port)
    _pinned(c, "s2", 5)
    adm.json("POST", "/pools/p/servers/s2/drain")
    moved = collections.Counter()
    for _ in range(20):
        who, pin = _ask(c, ["Cookie: SRV=s2"])
        check(who != "s2" and pin == who, f"s2 draining: answered by {who}, Set-Cookie {pin}")
        moved[who] += 1
    check(set(moved) == {"s1", "s3"}, f"clients of a drained server spread: {dict(moved)}")
    # The new cookie is valid: no further Set-Cookie.
    _pinned(c, "s3", 5)
    adm.json("POST", "/pools/p/servers/s2/enable")
    _pinned(c, "s2", 5)
    # Disabled is no better than draining.
    adm.json("POST", "/pools/p/servers/s1/disable")
    who, pin = _ask(c, ["Cookie: SRV=s1"])
    check(who != "s1" and pin == who, f"s1 disabled: answered by {who}, Set-Cookie {pin}")


def test_cookie_names_a_server_deleted_and_added_again(ctx):
    """A server deleted through the API and added again under its name (at
    another address here) is the one a cookie with that name pins to."""
    admin_port = free_port()
    f, port, ns = _start(ctx, names=("s1", "s2"), glob={"admin": f"127.0.0.1:{admin_port}"})
    adm = Admin(admin_port)
    new = nodes(ctx, "new")[0]
    c = client(ctx, port)
    _pinned(c, "s2", 3)
    adm.json("DELETE", "/pools/p/servers/s2")
    adm.json("POST", "/pools/p/servers", {"name": "s2", "address": new.addr}, want=201)
    for _ in range(6):
        m = c.ask(headers=["Cookie: SRV=s2"])
        check(m.status == 200 and m.get("x-server") == "new" and not m.all("set-cookie"),
              f"cookie SRV=s2 after s2 was deleted and added again: {m!r}, "
              f"Set-Cookie {m.all('set-cookie')}")
    _pinned(c, "s1", 3)


def test_dead_server_repinned_and_back(ctx):
    f, port, ns = _start(ctx, pool=FAST)
    c = client(ctx, port)
    _pinned(c, "s1", 5)
    kill_and_wait_down(f, ns[0])
    moved = collections.Counter()
    for _ in range(20):
        who, pin = _ask(c, ["Cookie: SRV=s1"])
        check(who != "s1" and pin == who, f"s1 down: answered by {who}, Set-Cookie {pin}")
        moved[who] += 1
    check(set(moved) == {"s2", "s3"}, f"clients of a dead server spread: {dict(moved)}")
    start_and_wait_up(f, ns[0])
    # Back up: its cookie is valid again, and the re-pinned clients stay.
    _pinned(c, "s1", 10)
    _pinned(c, "s2", 5)


def test_failed_connect_repins(ctx):
    """A cookie naming a server that refuses connections, before any health
    check noticed: the retry's server answers and the client is pinned to
    it."""
    f, port, ns = _start(ctx, pool={"retries": 2, "max_fails": 0})
    c = client(ctx, port)
    ns[1].kill()
    for _ in range(5):
        who, pin = _ask(c, ["Cookie: SRV=s2"])
        check(who in ("s1", "s3") and pin == who, f"s2 refuses: {who}, Set-Cookie {pin}")
    _pinned(c, "s1", 3)


def test_full_server_keeps_its_pin_through_a_retry(ctx):
    """A valid cookie whose server is at its maxconn sends the request
    elsewhere without a new cookie; when that other server refuses and the
    retry's server answers, the client is still pinned to its own server,
    which never failed."""
    ns = nodes(ctx, "s1", "s2")
    port = free_port()
    lines = [ns[0].server_line("maxconn=1"), ns[1].server_line(), f"d 127.0.0.1:{closed_port()}"]
    pool = {"balance": "roundrobin", "sticky_cookie": "SRV", "retries": 2, "max_fails": 0,
            "check": "none"}
    ctx.fulcrum(conf(port, lines, pool=pool))
    hold = client(ctx, port)
    hold._connect()
    hold.r.send(get("/?ms=3000", headers=["Cookie: SRV=s1"]))  # s1 is full meanwhile
    time.sleep(0.3 * SCALE)
    c = client(ctx, port)
    for i in range(6):  # round robin sends some of these to d first
        who, pin = _ask(c, ["Cookie: SRV=s1"])
        check(who == "s2" and pin is None, f"request {i} while s1 is full: {who}, Set-Cookie {pin}")
    m = read_response(hold.r)
    check(m.status == 200 and m.get("x-server") == "s1", f"the held request: {m!r}")


def test_failing_server_repins_before_marked_down(ctx):
    """Traffic failed on the cookie's server max_fails times, and the health
    thread has not marked it down yet: the cookie is already not valid, so
    every answer in that window re-pins the client."""
    f, port, ns = _start(ctx, pool={"retries": 2, "max_fails": 2, "check": "none",
                                    "fail_timeout": "10s"})
    c = client(ctx, port)
    ns[1].kill()
    for i in range(10):
        who, pin = _ask(c, ["Cookie: SRV=s2"])
        check(who in ("s1", "s3") and pin == who,
              f"request {i}, s2 refusing: {who}, Set-Cookie {pin}")
    # A retry would re-pin the client even if the cookie were still taken:
    # what shows the cookie was not is that s2 was tried no more than the
    # max_fails times that took it out.
    tries = f.stderr().count("connect to p/s2 ")
    check(tries == 2, f"s2 was tried {tries} times, expected max_fails = 2:\n{f.stderr()[-2000:]}")


def test_backup_cookie_while_normals_up(ctx):
    """A backup takes traffic only while no normal server is up (SPEC §4):
    its cookie is not valid then; it is while the normals are down."""
    f, port, ns = _start(ctx, names=("n1", "n2", "bk"), pool=FAST, opts={"bk": "backup"})
    c = client(ctx, port)
    who, pin = _ask(c, ["Cookie: SRV=bk"])
    check(who in ("n1", "n2") and pin == who, f"cookie for the backup: {who}, Set-Cookie {pin}")
    kill_and_wait_down(f, ns[0])
    kill_and_wait_down(f, ns[1])
    who, pin = _ask(c, ["Cookie: SRV=n1"])
    check(who == "bk" and pin == "bk", f"normals down: {who}, Set-Cookie {pin}")
    _pinned(c, "bk", 5)
    start_and_wait_up(f, ns[1])
    who, pin = _ask(c, ["Cookie: SRV=bk"])
    check(who == "n2" and pin == "n2", f"a normal back: {who}, Set-Cookie {pin}")


def test_sticky_on_hashing_pool(ctx):
    """With maglev the cookie wins over the hash key; without it, the key
    decides and the answer pins the client to that server."""
    f, port, ns = _start(ctx, pool={"balance": "maglev", "hash_key": "header:X-User"})
    c = client(ctx, port)
    home = {}
    for i in range(30):
        m = c.ask(headers=[f"X-User: u{i}"])
        home[i] = m.get("x-server")
        check(m.all("set-cookie") == [f"SRV={home[i]}; Path=/; HttpOnly"],
              f"u{i}: {m.all('set-cookie')}")
    check(len(set(home.values())) == 3, f"keys spread: {collections.Counter(home.values())}")
    for i in range(30):
        other = next(n.name for n in ns if n.name != home[i])
        _pinned(c, other, 1, [f"X-User: u{i}", f"Cookie: SRV={other}"])


def test_keepalive_and_http10(ctx):
    """Each request of a keep-alive connection is judged on its own cookie;
    HTTP/1.0 answers carry the Set-Cookie too."""
    f, port, ns = _start(ctx)
    c = client(ctx, port)
    seq = ["s3", None, "s1", "nosuch", "s3", None]
    for want in seq:
        hdrs = [f"Cookie: SRV={want}"] if want else []
        who, pin = _ask(c, hdrs)
        if want in ("s1", "s3"):
            check(who == want and pin is None, f"SRV={want}: {who}, Set-Cookie {pin}")
        else:
            check(pin == who, f"cookie {want}: {who}, Set-Cookie {pin}")
    r = Reader(connect(("127.0.0.1", port)))
    try:
        r.send(b"GET / HTTP/1.0\r\n\r\n")
        m = read_response(r)
        check(m.status == 200 and len(m.all("set-cookie")) == 1 and
              m.get("set-cookie") == f"SRV={m.get('x-server')}; Path=/; HttpOnly",
              f"HTTP/1.0: {m!r}")
    finally:
        r.close()



def _sets_its_own_cookie(r, srv):
    while read_request(r) is not None:
        r.send(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: SRV=evil; Path=/\r\n"
               b"Set-Cookie: SRV =x\r\nSet-Cookie: SRVX=2\r\nContent-Length: 2\r\n\r\nok")


def test_servers_own_sticky_cookie_is_dropped(ctx):
    """SPEC §4: the cookie pins a client while its server is up. A server's
    own Set-Cookie of that name would overwrite the pin, so fulcrum drops it,
    as HAProxy's cookie insert does; its other cookies go on."""
    srv = pyserver(ctx, _sets_its_own_cookie, name="s1")
    port = free_port()
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"sticky_cookie": "SRV"}))
    c = Reader(connect(("127.0.0.1", port)))
    c.send(get("/"))
    m = read_response(c)
    check(m.status == 200 and sorted(m.all("set-cookie")) ==
          ["SRV=s1; Path=/; HttpOnly", "SRVX=2", "a=1"], f"without a cookie: {m.all('set-cookie')}")
    c.send(get("/", headers=["Cookie: SRV=s1"]))
    m = read_response(c)
    check(m.status == 200 and sorted(m.all("set-cookie")) == ["SRVX=2", "a=1"],
          f"pinned: {m.all('set-cookie')}")
    c.s.close()


close_backends_first(globals())
