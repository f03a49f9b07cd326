"""Reloads that add, remove, rename, reorder and rebind listeners (SPEC §1
"SIGHUP reloads the configuration without dropping any connection"; README
"Reloading"). An address the new file keeps keeps its sockets; a new one is
bound before the switch (a port in use fails the reload); one that is gone
stops accepting at once while its connections run on."""

import json
import os
import signal
import socket
import threading
import time

from harness import (SCALE, _listening_inet, _listening_unix, _socket_inodes, check, connect,
                     echo_roundtrip, free_port, ini, name_via, recv_line, refused, wait_for)
from test_admin import Admin, metric, parse_metrics
from test_cache import Origin
from test_http import close_backends_first, get, roundtrip


def _conf(admin_port, listeners, servers, workers=2):
    """LISTENERS: [(name, binds, pool)]; SERVERS: {pool: server line}."""
    sections = [("global", {"workers": workers, "admin": f"127.0.0.1:{admin_port}",
                            "access_log": "off", "log_level": "info"})]
    for pool, line in servers.items():
        sections.append((f"pool {pool}", {"check": "none", "connect_timeout": "1s",
                                          "server": line}))
    for name, binds, pool in listeners:
        sections.append((f"listener {name}", {"bind": binds, "mode": "tcp", "pool": pool}))
    return ini(*sections)


class Site:
    def __init__(self, ctx, listeners, workers=2):
        self.ctx = ctx
        self.admin_port = free_port()
        self.b1 = ctx.backend("name", name="b1")
        self.b2 = ctx.backend("name", name="b2")
        self.echo = ctx.backend("echo", name="echo")
        self.servers = {"p1": self.b1.server_line(), "p2": self.b2.server_line(),
                        "e": self.echo.server_line()}
        self.workers = workers
        self.f = ctx.fulcrum(_conf(self.admin_port, listeners, self.servers, workers))
        self.adm = Admin(self.admin_port)
        self.generation = 1

    def reload(self, listeners):
        """Rewrites the file and reloads by SIGHUP; waits for the new
        generation."""
        with open(self.f.conf_path, "w") as fh:
            fh.write(_conf(self.admin_port, listeners, self.servers, self.workers))
        self.generation += 1
        mark = len(self.f.stderr())
        self.f.signal(signal.SIGHUP)
        wait_for(lambda: f"generation {self.generation}" in self.f.stderr()[mark:],
                 5 * SCALE, what=f"reload to generation {self.generation}")

    def status_listeners(self):
        st, _, body = self.adm.call("GET", "/status")
        check(st == 200, f"/status: {st}")
        return {x["name"]: x for x in json.loads(body)["listeners"]}


def test_reload_adds_and_removes_listeners(ctx):
    pa, pb = free_port(), free_port()
    site = Site(ctx, [("a", f"127.0.0.1:{pa}", "p1"), ("t", f"127.0.0.1:{free_port()}", "e")])
    check(name_via(("127.0.0.1", pa)) == "b1", "listener a")
    check(refused(pb), f"port {pb} answers before it is configured")

    # Added: the new port serves at once, the old one goes on.
    tport = int(site.f.conf_text.split("listener t]\nbind = 127.0.0.1:")[1].split("\n")[0])
    site.reload([("a", f"127.0.0.1:{pa}", "p1"), ("b", f"127.0.0.1:{pb}", "p2"),
                 ("t", f"127.0.0.1:{tport}", "e")])
    check(name_via(("127.0.0.1", pb)) == "b2", "the added listener b")
    check(name_via(("127.0.0.1", pa)) == "b1", "listener a after adding b")
    check(set(site.status_listeners()) == {"a", "b", "t"}, "/status after adding b")
    check(len(_listening_inet(pb) & _socket_inodes(site.f.pid)) == site.workers,
          "one socket per worker on the added bind")

    # Removed: a tunnel through it runs on; new connections are refused.
    tunnel = connect(("127.0.0.1", tport))
    check(echo_roundtrip(tunnel, b"before"), "tunnel through t")
    site.reload([("a", f"127.0.0.1:{pa}", "p1"), ("b", f"127.0.0.1:{pb}", "p2")])
    wait_for(lambda: refused(tport), 1.0 * SCALE, interval=0.02,
             what="the removed listener to refuse connections")
    check(not (_listening_inet(tport) & _socket_inodes(site.f.pid)),
          "the removed listener's sockets are still open")
    check(echo_roundtrip(tunnel, b"after the reload"), "a tunnel of the removed listener")
    listeners = site.status_listeners()
    check(set(listeners) == {"a", "b"}, f"/status after removing t: {sorted(listeners)}")
    m = parse_metrics(site.adm.metrics())
    check(metric(m, "fulcrum_listener_connections_total", listener="b") == 1, "b's count")
    check(not [k for k in m if ("listener", "t") in k[1]], "metrics still list t")
    tunnel.close()
    check("listener t: no longer listening on" in site.f.stderr(), "the removal is not logged")
    # Two listening sockets went, two came: the process ends where it began.


def test_reload_renames_reorders_and_moves_binds(ctx):
    """An address that stays keeps its sockets (the same inodes: nothing
    queued is lost) whichever listener it now belongs to; counters follow
    listener names, not positions in the file."""
    pa, pb = free_port(), free_port()
    site = Site(ctx, [("a", f"127.0.0.1:{pa}", "p1"), ("b", f"127.0.0.1:{pb}", "p2")])
    before_a = _listening_inet(pa) & _socket_inodes(site.f.pid)
    for _ in range(3):
        check(name_via(("127.0.0.1", pa)) == "b1", "listener a")
    check(name_via(("127.0.0.1", pb)) == "b2", "listener b")
    held = connect(("127.0.0.1", pa))
    check(recv_line(held) == b"b1\n", "held connection on a")

    # Reordered: counters stay with their names.
    site.reload([("b", f"127.0.0.1:{pb}", "p2"), ("a", f"127.0.0.1:{pa}", "p1")])
    m = parse_metrics(site.adm.metrics())
    check(metric(m, "fulcrum_listener_connections_total", listener="a") == 4, "a's total")
    check(metric(m, "fulcrum_listener_connections_total", listener="b") == 1, "b's total")
    check(site.status_listeners()["a"]["connections_active"] == 1, "a's held connection")
    check(site.status_listeners()["b"]["connections_active"] == 0, "b has none")
    check(_listening_inet(pa) & _socket_inodes(site.f.pid) == before_a, "a's sockets changed")

    # Renamed and pointed elsewhere: the same sockets, the new pool.
    site.reload([("b", f"127.0.0.1:{pb}", "p2"), ("c", f"127.0.0.1:{pa}", "p2")])
    check(name_via(("127.0.0.1", pa)) == "b2", "the renamed listener's new pool")
    check(_listening_inet(pa) & _socket_inodes(site.f.pid) == before_a,
          "a renamed listener was bound again")
    check("127.0.0.1:%d moves to listener c" % pa in site.f.stderr(), "the move is not logged")
    st = site.status_listeners()
    check(set(st) == {"b", "c"}, f"/status: {sorted(st)}")
    # The held connection started under a and is counted there, not in c.
    check(st["c"]["connections_active"] == 0, "c counts a's connection")
    held.close()


def test_a_bind_moves_between_listeners(ctx):
    pa, pb = free_port(), free_port()
    site = Site(ctx, [("a", [f"127.0.0.1:{pa}", f"127.0.0.1:{pb}"], "p1"),
                      ("z", f"127.0.0.1:{free_port()}", "e")])
    zport = int(site.f.conf_text.split("listener z]\nbind = 127.0.0.1:")[1].split("\n")[0])
    before_b = _listening_inet(pb) & _socket_inodes(site.f.pid)
    check(name_via(("127.0.0.1", pb)) == "b1", "pb on a")
    site.reload([("a", f"127.0.0.1:{pa}", "p1"), ("z", [f"127.0.0.1:{zport}", f"127.0.0.1:{pb}"], "p2")])
    check(name_via(("127.0.0.1", pb)) == "b2", "pb moved to z's pool")
    check(name_via(("127.0.0.1", pa)) == "b1", "pa stays on a")
    check(_listening_inet(pb) & _socket_inodes(site.f.pid) == before_b, "pb was bound again")
    binds = {n: x["binds"] for n, x in site.status_listeners().items()}
    check(binds == {"a": [f"127.0.0.1:{pa}"], "z": [f"127.0.0.1:{zport}", f"127.0.0.1:{pb}"]},
          f"/status binds: {binds}")


def test_reload_with_a_bind_in_use_changes_nothing(ctx):
    pa = free_port()
    site = Site(ctx, [("a", f"127.0.0.1:{pa}", "p1")])
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    pb = free_port()
    with open(site.f.conf_path, "w") as fh:
        fh.write(_conf(site.admin_port, [("a", f"127.0.0.1:{pa}", "p2"),
                                         ("b", f"127.0.0.1:{pb}", "p2"),
                                         ("c", f"127.0.0.1:{taken}", "p2")], site.servers))
    st, _, body = site.adm.call("POST", "/reload")
    holder.close()
    check(st == 400, f"a reload binding a port in use: {st} {body!r}")
    errors = json.loads(body)["errors"]
    check(len(errors) == 1 and "listener c: cannot bind" in errors[0] and
          "Address already in use" in errors[0], f"errors: {errors}")
    check(errors[0].startswith(site.f.conf_path + ":"), f"not FILE:LINE: {errors}")
    # Nothing of the new file applies: not a's new pool, not b's socket.
    check(name_via(("127.0.0.1", pa)) == "b1", "a's pool changed by a failed reload")
    check(refused(pb), "b listens after a failed reload")
    check(not (_listening_inet(pb) & _socket_inodes(site.f.pid)), "b's sockets stayed open")


def test_unix_listener_added_and_removed(ctx):
    pa = free_port()
    path = ctx.path("added.sock")
    site = Site(ctx, [("a", f"127.0.0.1:{pa}", "p1")])
    site.reload([("a", f"127.0.0.1:{pa}", "p1"), ("u", f"unix:{path}", "p2")])
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5 * SCALE)
    s.connect(path)
    check(recv_line(s) == b"b2\n", "the added unix listener")
    s.close()
    check(_listening_unix(path) & _socket_inodes(site.f.pid), "no unix socket")
    site.reload([("a", f"127.0.0.1:{pa}", "p1")])
    wait_for(lambda: not os.path.exists(path), 1.0 * SCALE, what="the socket file to go")
    wait_for(lambda: not (_listening_unix(path) & _socket_inodes(site.f.pid)), 1.0 * SCALE,
             what="the unix socket to close")


def test_listeners_come_and_go_under_load(ctx):
    """Twenty reloads that add and remove a listener while clients connect
    to another one without pause: no connection to the steady listener
    fails, and every socket of the one that comes and goes is closed in
    the end (the fd check when the test ends)."""
    pa, pb = free_port(), free_port()
    site = Site(ctx, [("a", f"127.0.0.1:{pa}", "p1")])
    stop = threading.Event()
    failures, done = [], [0]

    def client():
        while not stop.is_set():
            try:
                if name_via(("127.0.0.1", pa)) != "b1":
                    failures.append("wrong server")
                done[0] += 1
            except OSError as e:
                failures.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            ls = [("a", f"127.0.0.1:{pa}", "p1")]
            if i % 2 == 0:
                ls.append(("b", f"127.0.0.1:{pb}", "p2"))
            site.reload(ls)
            if i % 2 == 0:
                check(name_via(("127.0.0.1", pb)) == "b2", f"b in reload {i + 1}")
            else:
                wait_for(lambda: refused(pb), 1.0 * SCALE, interval=0.02,
                         what=f"b to go in reload {i + 1}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    check(not failures, f"{len(failures)} failed connections to a: {failures[:3]}")
    check(done[0] > 40, f"only {done[0]} connections went through")
    time.sleep(0.1)


def test_a_listeners_cache_follows_its_name(ctx):
    """The cache belongs to a listener's name: a renamed listener starts
    with an empty one, and a name that left the file lost its cache (its
    memory freed), so it starts empty when it comes back."""
    origin = Origin(ctx)
    origin.route("/x", headers=["Cache-Control: max-age=600"], body=b"cached")
    port, admin_port = free_port(), free_port()

    def conf(name):
        return ini(("global", {"workers": 1, "admin": f"127.0.0.1:{admin_port}",
                               "access_log": "off"}),
                   ("pool o", {"check": "none", "server": origin.server_line()}),
                   (f"listener {name}", {"bind": f"127.0.0.1:{port}", "pool": "o",
                                         "cache": "1m"}))

    f = ctx.fulcrum(conf("a"))

    def x_cache():
        m, _, _ = roundtrip(port, get("/x"))
        check(m.status == 200 and m.body == b"cached", f"GET /x: {m!r}")
        return m.get("x-cache")

    def reload(name, generation):
        with open(f.conf_path, "w") as fh:
            fh.write(conf(name))
        f.signal(signal.SIGHUP)
        wait_for(lambda: f"generation {generation}" in f.stderr(), 5 * SCALE,
                 what=f"reload to generation {generation}")

    check([x_cache(), x_cache()] == ["MISS", "HIT"], "stored under a")
    reload("b", 2)
    check([x_cache(), x_cache()] == ["MISS", "HIT"], "b has a cache of its own")
    reload("a", 3)
    check(x_cache() == "MISS", "a came back with what it held before it left")
    check(origin.count("/x") == 3, f"the origin saw {origin.count('/x')} requests, not 3")


close_backends_first(globals())
