"""Balancing in tcp mode: spread, weights, dead/backup/disabled servers,
leastconn, source hashing (SPEC §2 [pool], §3, §4)."""

import collections
import socket
import time

from harness import (SCALE, check, closed_port, connect, free_port, ini, name_via, recv_line,
                     tcp_conf, wait_for)
from test_admin import Admin


def _names(ctx, *names):
    return [ctx.backend("name", name=x) for x in names]


def _spread(port, n, source_ip=None):
    got = [name_via(("127.0.0.1", port), source_ip) for _ in range(n)]
    return got, collections.Counter(got)


def test_roundrobin_exact_one_worker(ctx):
    bs = _names(ctx, "s1", "s2", "s3")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line() for b in bs]))
    got, cnt = _spread(port, 30)
    check(cnt == {"s1": 10, "s2": 10, "s3": 10}, f"30 connections spread {dict(cnt)}")
    check(all(got[i] == got[i + 3] for i in range(27)), f"not a fixed cycle: {got}")


def test_roundrobin_two_workers_fair(ctx):
    bs = _names(ctx, "s1", "s2", "s3")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line() for b in bs], glob={"workers": 2}))
    _, cnt = _spread(port, 30)
    check(set(cnt) == {"s1", "s2", "s3"} and all(6 <= v <= 14 for v in cnt.values()),
          f"30 connections over 2 workers spread {dict(cnt)}")


def test_weights_3_1_1(ctx):
    bs = _names(ctx, "a", "b", "c")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [bs[0].server_line("weight=3"), bs[1].server_line(),
                                bs[2].server_line("weight=1")]))
    got, cnt = _spread(port, 50)
    check(cnt == {"a": 30, "b": 10, "c": 10}, f"weights 3:1:1 over 50 connections gave {dict(cnt)}")
    # Smooth weighted round robin: every window of 5 picks holds a, a, a, b, c.
    for i in range(0, 50, 5):
        w = collections.Counter(got[i:i + 5])
        check(w == {"a": 3, "b": 1, "c": 1}, f"picks {i}..{i + 4} are {got[i:i + 5]}")


def test_dead_server_skipped(ctx):
    bs = _names(ctx, "s1", "s3")
    port = free_port()
    servers = [bs[0].server_line(), f"s2 127.0.0.1:{closed_port()}", bs[1].server_line()]
    ctx.fulcrum(tcp_conf(port, servers, pool={"retries": 2}))
    got, cnt = _spread(port, 30)
    check("" not in cnt, f"{cnt['']} of 30 connections failed with one dead server")
    check(set(cnt) == {"s1", "s3"} and min(cnt.values()) >= 8, f"spread {dict(cnt)}")


def test_all_servers_dead_closes_client(ctx):
    port = free_port()
    servers = [f"d{i} 127.0.0.1:{closed_port()}" for i in range(3)]
    ctx.fulcrum(tcp_conf(port, servers, pool={"connect_timeout": "300ms", "retries": 2}))
    for _ in range(8):  # past max_fails too: servers marked down, client still closed
        s = connect(("127.0.0.1", port))
        t0 = time.monotonic()
        line = b""
        try:
            line = recv_line(s)
        except (ConnectionResetError, socket.timeout):
            pass
        dt = time.monotonic() - t0
        s.close()
        check(line == b"", f"got {line!r} with every server dead")
        check(dt <= 1.0 * SCALE, f"client closed only after {dt:.2f}s")


def test_backup_unused_while_normals_up(ctx):
    bs = _names(ctx, "n1", "n2", "bk")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [bs[0].server_line(), bs[1].server_line(), bs[2].server_line("backup")]))
    _, cnt = _spread(port, 12)
    check(cnt == {"n1": 6, "n2": 6}, f"backup used while normals are up: {dict(cnt)}")
    check(bs[2].accepted == 0, "backup server got connections")


def test_backup_takes_over_when_normals_down(ctx):
    bk = ctx.backend("name", name="bk")
    port = free_port()
    servers = [f"n1 127.0.0.1:{closed_port()}", f"n2 127.0.0.1:{closed_port()}", bk.server_line("backup")]
    ctx.fulcrum(tcp_conf(port, servers, pool={"check": "tcp", "check_interval": "100ms",
                                              "check_timeout": "100ms", "fall": 1, "rise": 1}))

    def via_backup():
        try:
            return name_via(("127.0.0.1", port)) == "bk"
        except OSError:
            return False

    wait_for(via_backup, 3 * SCALE, interval=0.1, what="the backup to take traffic")
    _, cnt = _spread(port, 10)
    check(cnt == {"bk": 10}, f"normals down, backup up: {dict(cnt)}")


def test_disabled_server_gets_nothing(ctx):
    bs = _names(ctx, "s1", "s2", "s3")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [bs[0].server_line(), bs[1].server_line("disabled"), bs[2].server_line()]))
    _, cnt = _spread(port, 20)
    check(cnt == {"s1": 10, "s3": 10}, f"spread with s2 disabled: {dict(cnt)}")
    check(bs[1].accepted == 0, f"disabled server got {bs[1].accepted} connections")


def test_leastconn(ctx):
    bs = _names(ctx, "s1", "s2", "s3")
    port = free_port()
    ap = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line() for b in bs],
                         glob={"workers": 2, "admin": f"127.0.0.1:{ap}"},
                         pool={"balance": "leastconn"}))
    held = []  # (socket, server name)
    try:
        for i in range(9):
            s = connect(("127.0.0.1", port))
            held.append((s, recv_line(s).decode().strip()))
            cnt = collections.Counter(n for _, n in held)
            check(max(cnt.values()) - min(cnt.get(x, 0) for x in ("s1", "s2", "s3")) <= 1,
                  f"after {i + 1} held connections leastconn spread {dict(cnt)}")
        # Free s1 entirely: the next three new connections all go there.
        victim = held[0][1]
        vb = next(b for b in bs if b.name == victim)
        for s, n in held:
            if n == victim:
                s.close()
        held = [(s, n) for s, n in held if n != victim]
        wait_for(lambda: vb.active == 0, 3 * SCALE, what="the freed server's connections to close")
        # fulcrum drops its count when it closes its side, a moment later
        wait_for(lambda: Admin(ap).server("p", victim)["connections_active"] == 0, 3 * SCALE,
                 what="fulcrum's count of the freed server")
        for _ in range(3):
            s = connect(("127.0.0.1", port))
            n = recv_line(s).decode().strip()
            held.append((s, n))
            check(n == victim, f"leastconn sent a new connection to {n}, {victim} has the fewest")
    finally:
        for s, _ in held:
            s.close()


def test_source_hash_sticks(ctx):
    bs = _names(ctx, "s1", "s2", "s3")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line() for b in bs], glob={"workers": 2},
                         pool={"balance": "source"}))
    _, cnt = _spread(port, 10)
    check(len(cnt) == 1, f"one client address went to several servers: {dict(cnt)}")
    seen = set()
    for i in range(2, 22):
        ip = f"127.0.0.{i}"
        _, c = _spread(port, 3, source_ip=ip)
        check(len(c) == 1, f"{ip} went to several servers: {dict(c)}")
        seen |= set(c)
    check(len(seen) >= 2, f"20 client addresses all hashed to {seen}")


def test_every_balance_algorithm_relays(ctx):
    """Each algorithm serves tcp connections and uses every server; the
    hashing ones keep a client address on one server."""
    bs = _names(ctx, "s1", "s2", "s3")
    for bal in ("roundrobin", "leastconn", "random", "p2c", "source", "maglev", "ring"):
        port = free_port()
        f = ctx.fulcrum(tcp_conf(port, [b.server_line() for b in bs], pool={"balance": bal}))
        seen = collections.Counter()
        for i in range(2, 32):
            ip = f"127.0.0.{i}"
            _, c = _spread(port, 2, source_ip=ip)
            check("" not in c, f"{bal}: a connection failed")
            if bal in ("source", "maglev", "ring"):
                check(len(c) == 1, f"{bal}: {ip} went to several servers: {dict(c)}")
            seen.update(c)
        check(set(seen) == {"s1", "s2", "s3"}, f"{bal}: 60 connections spread {dict(seen)}")
        f.check_fds_settled()
        f.stop()


def test_listeners_use_their_own_pools(ctx):
    a = ctx.backend("name", name="a")
    b = ctx.backend("name", name="b")
    pa, pb = free_port(), free_port()
    conf = ini(("global", {"workers": 1, "admin": "", "access_log": "off"}),
               ("pool pa", {"server": a.server_line(), "check": "none"}),
               ("pool pb", {"server": b.server_line(), "check": "none"}),
               ("listener la", {"bind": f"127.0.0.1:{pa}", "mode": "tcp", "pool": "pa"}),
               ("listener lb", {"bind": f"127.0.0.1:{pb}", "mode": "tcp", "pool": "pb"}))
    ctx.fulcrum(conf)
    for _ in range(3):
        check(name_via(("127.0.0.1", pa)) == "a", "listener la did not use pool pa")
        check(name_via(("127.0.0.1", pb)) == "b", "listener lb did not use pool pb")
