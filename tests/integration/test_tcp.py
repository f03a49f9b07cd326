"""tcp mode: relaying, half-close, concurrency, max_connections, timeouts (SPEC §3)."""

import select
import signal
import socket
import struct
import threading
import time

from harness import (SCALE, TestFailure, blob, check, closed_by_peer, closed_port, connect,
                     echo_roundtrip, free_port, read_lines, recv_all, recv_count, recv_exact, recv_hash, recv_line,
                     ini, sha256, tcp_conf, wait_for)

MIB = 1 << 20


def _addr(port):
    return ("127.0.0.1", port)


def test_upload_10mib(ctx):
    b = ctx.backend("sink")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"workers": 2}))
    data = blob(10 * MIB, seed=1)
    s = connect(_addr(port))
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s).decode()
    s.close()
    check(got == sha256(data), f"sink got something else: {b.received}")
    check(b.received == [(len(data), sha256(data))], f"sink saw {b.received}")


def test_download_10mib(ctx):
    data = blob(10 * MIB, seed=2)
    b = ctx.backend("source", data=data)
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"workers": 2}))
    s = connect(_addr(port))
    n, h = recv_hash(s)
    s.close()
    check(n == len(data), f"received {n} of {len(data)} bytes")
    check(h == sha256(data), "downloaded bytes differ")


def _send_in_thread(s, data, shut=True):
    err = []

    def run():
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, err


def test_echo_10mib_both_ways_at_once(ctx):
    b = ctx.backend("echo")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()]))
    data = blob(10 * MIB, seed=3)
    s = connect(_addr(port))
    t, err = _send_in_thread(s, data)
    n, h = recv_hash(s)
    t.join(10 * SCALE)
    s.close()
    check(not err, f"send failed: {err}")
    check(n == len(data) and h == sha256(data), f"echoed {n} bytes, want {len(data)} intact")


def test_half_close_client_first(ctx):
    """The client's FIN reaches the server, whose answer still flows back."""
    b = ctx.backend("echo")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()]))
    data = blob(2 * MIB, seed=4)
    s = connect(_addr(port))
    t, err = _send_in_thread(s, data)
    got = recv_all(s)  # ends with the FIN the echo server sends after ours
    t.join(10 * SCALE)
    s.close()
    check(not err, f"send failed: {err}")
    check(got == data, f"echoed {len(got)} bytes, want {len(data)} intact")


def test_half_close_answer_after_client_fin(ctx):
    """A server that answers only after the client's FIN (sink) still gets
    its answer through."""
    b = ctx.backend("sink")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()]))
    for size in (0, 1, 100000):
        data = blob(size, seed=5)
        s = connect(_addr(port))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s).decode()
        s.close()
        check(got == sha256(data), f"{size} bytes: answer {got!r}")


def test_half_close_server_first(ctx):
    """The server's FIN reaches the client, who can still send."""
    b = ctx.backend("shut_first", greeting=b"hello\n")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()]))
    s = connect(_addr(port))
    check(recv_exact(s, 6) == b"hello\n", "no greeting")
    check(s.recv(10) == b"", "no EOF after the server shut its side")
    data = blob(300000, seed=6)
    time.sleep(0.1)  # the client side stays writable after its read side ended
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    wait_for(lambda: b.received, 5 * SCALE, what="the server to receive the client's bytes")
    check(b.received[0] == data, f"server received {len(b.received[0])} bytes, want {len(data)} intact")
    check(closed_by_peer(s, 3 * SCALE) is not None, "connection not closed once both sides ended")
    s.close()


def test_server_closes_at_once(ctx):
    """A server that sends a little and closes: the client gets the bytes, then EOF."""
    b = ctx.backend("source", data=b"short answer")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()]))
    for _ in range(20):
        s = connect(_addr(port))
        check(recv_all(s) == b"short answer", "short answer lost")
        s.close()


def test_client_resets(ctx):
    """Clients that reset (SO_LINGER 0) mid-transfer leave nothing behind."""
    data = blob(4 * MIB, seed=7)
    b = ctx.backend("source", data=data)
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()]))
    for _ in range(10):
        s = connect(_addr(port))
        recv_exact(s, 1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    f.check_fds_settled()
    s = connect(_addr(port))
    n, h = recv_hash(s)
    s.close()
    check(h == sha256(data), "transfer after resets is not intact")


def test_client_reset_reaches_the_server_as_a_reset(ctx):
    """A client that aborts (RST) is passed on as an abort, as HAProxy does:
    the server's read fails with ECONNRESET instead of seeing the FIN of a
    client that finished sending. A client's FIN stays a FIN."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(10 * SCALE)
    seen = []

    def serve(n):
        for _ in range(n):
            c, _ = lsock.accept()
            c.settimeout(10 * SCALE)
            c.sendall(b"hi\n")
            try:
                seen.append("fin" if c.recv(100) == b"" else "data")
            except ConnectionResetError:
                seen.append("reset")
            c.close()

    t = threading.Thread(target=serve, args=(2,), daemon=True)
    t.start()
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [f"s1 127.0.0.1:{lsock.getsockname()[1]}"]))
    for abort in (True, False):
        s = connect(_addr(port))
        check(recv_exact(s, 3) == b"hi\n", "the server's greeting")
        if abort:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        wait_for(lambda: len(seen) == (1 if abort else 2), 5 * SCALE, what="the server's read")
    t.join(5 * SCALE)
    lsock.close()
    check(seen == ["reset", "fin"], f"what the server saw of an abort and of a close: {seen}")


def test_500_concurrent_connections(ctx):
    b = ctx.backend("echo")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"workers": 2}))
    conns = []
    try:
        for _ in range(500):
            conns.append(connect(_addr(port)))
        for rnd in range(2):
            msgs = [blob(3000, seed=i * 7 + rnd)[:3000] for i in range(len(conns))]
            # Each message is distinct: prefix it with the connection's index.
            msgs = [b"%05d" % i + m for i, m in enumerate(msgs)]
            for s, m in zip(conns, msgs):
                s.sendall(m)
            for i, (s, m) in enumerate(zip(conns, msgs)):
                got = recv_exact(s, len(m))
                check(got == m, f"connection {i} round {rnd}: bytes mixed up or lost")
        check(b.active == 500, f"backend sees {b.active} connections, want 500")
    finally:
        for s in conns:
            s.close()
    wait_for(lambda: b.active == 0, 5 * SCALE, what="backend connections to close")
    f.check_fds_settled(timeout=5)


def test_max_connections(ctx):
    b = ctx.backend("echo")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"workers": 2, "max_connections": 5}))
    conns = [connect(_addr(port)) for _ in range(5)]
    try:
        for s in conns:
            check(echo_roundtrip(s, b"one of five"), "one of the first 5 connections fails")
        sixth = connect(_addr(port))
        t = closed_by_peer(sixth, 1.0 * SCALE)
        sixth.close()
        check(t is not None, "the 6th connection is not closed at once")
        check(b.accepted == 5, f"backend got {b.accepted} connections, want 5 (the 6th must not reach it)")
        for s in conns:
            check(echo_roundtrip(s, b"still works"), "one of the first 5 stopped working")
        conns.pop().close()

        def another_works():
            try:
                s = connect(_addr(port), timeout=1 * SCALE)
            except OSError:
                return False
            try:
                return echo_roundtrip(s, b"room again")
            except (OSError, TestFailure):
                return False
            finally:
                s.close()

        wait_for(another_works, 3 * SCALE, interval=0.1, what="a slot freed by a closed connection")
    finally:
        for s in conns:
            s.close()


def test_client_timeout_idle(ctx):
    b = ctx.backend("echo")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()], listener={"client_timeout": "1s"}))
    s = connect(_addr(port))
    check(echo_roundtrip(s, b"hi"), "relay does not work")
    t = closed_by_peer(s, 4 * SCALE)
    s.close()
    check(t is not None, "idle connection not closed by client_timeout")
    check(t >= 0.8, f"idle connection closed after {t:.2f}s, before client_timeout = 1s")
    check(t <= 3 * SCALE, f"idle connection closed after {t:.2f}s")
    wait_for(lambda: b.active == 0, 2 * SCALE, what="server side closed too")


def test_client_timeout_not_while_active(ctx):
    """Traffic in either direction keeps a connection alive past client_timeout."""
    b = ctx.backend("echo")
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [b.server_line()], listener={"client_timeout": "600ms"}))
    s = connect(_addr(port))
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        check(echo_roundtrip(s, b"."), "active connection was closed")
        time.sleep(0.2)
    s.close()
    # Server-to-client traffic alone also counts.
    data = blob(200 * 1024, seed=8)
    b2 = ctx.backend("source", data=data, rate=100 * 1024)  # ~2 s of slow sending
    port2 = free_port()
    ctx.fulcrum(tcp_conf(port2, [b2.server_line()], listener={"client_timeout": "600ms"}))
    s = connect(_addr(port2))
    n, h = recv_hash(s)
    s.close()
    check(h == sha256(data), f"slow download cut at {n} of {len(data)} bytes")


def test_retry_after_a_reload_that_removed_every_pool(ctx):
    """A connection still connecting when a reload leaves no pool at all
    (the listener turned forward) retries in its own generation's pool:
    the retry must find balancing state to use, not crash. connect_timeout
    is long enough (and scaled) for the reload to be in before the try to
    the hole gives up, and the test checks it was."""
    bh = ctx.blackhole()
    good = ctx.backend("name", name="good")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [f"hole {bh.addr}", good.server_line()],
                             pool={"connect_timeout": f"{int(1500 * SCALE)}ms", "retries": 1}))
    s = connect(_addr(port))  # round robin: the first goes to the hole
    wait_for(lambda: f.fd_count() >= f.baseline_fds + 2, 2 * SCALE,
             what="the connection accepted and connecting")
    with open(f.conf_path, "w") as fh:
        fh.write(ini(("global", {"workers": 1, "admin": "", "access_log": "off"}),
                     ("listener l", {"bind": f"127.0.0.1:{port}", "mode": "forward"})))
    f.signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in f.stderr() and "generation 2" in f.stderr(), 3 * SCALE,
             what="the reload")
    # Still nothing for the client: the first try was still connecting when
    # the reload was applied, so the retry comes after it.
    ready, _, _ = select.select([s], [], [], 0)
    check(not ready, "the client had its answer before the reload was applied: the retry ran before it")
    check(recv_line(s) == b"good\n", "the retry after the reload did not reach the good server")
    s.close()
    f.check_alive()


def test_connect_timeout(ctx):
    """A server that never answers the SYN: the try gives up after
    connect_timeout and (with retries) the next server is used."""
    bh = ctx.blackhole()
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [f"hole {bh.addr}"], glob={"access_log": log},
                         pool={"connect_timeout": "500ms", "retries": 0}))
    s = connect(_addr(port))
    t = closed_by_peer(s, 3 * SCALE)
    s.close()
    check(t is not None, "client not closed after the connect timeout")
    check(t >= 0.4, f"client closed after {t:.2f}s, before connect_timeout = 500ms")
    # The log says why, as http mode does: not a refusal but a timeout.
    line = wait_for(lambda: read_lines(log), 2 * SCALE, what="the access-log line")[0]
    check(line.endswith(" connect_timeout"), f"reason for a connect timeout: {line!r}")

    good = ctx.backend("name", name="good")
    port2 = free_port()
    ctx.fulcrum(tcp_conf(port2, [f"hole {bh.addr}", good.server_line()],
                         pool={"connect_timeout": "300ms", "retries": 1}))
    for _ in range(4):
        s = connect(_addr(port2))
        check(recv_line(s) == b"good\n", "retry after a connect timeout did not reach the good server")
        s.close()


def test_dead_server_refused_is_quick(ctx):
    """Connection refused by every server: the client is closed promptly."""
    port = free_port()
    ctx.fulcrum(tcp_conf(port, [f"d1 127.0.0.1:{closed_port()}", f"d2 127.0.0.1:{closed_port()}"],
                         pool={"connect_timeout": "500ms", "retries": 2}))
    for _ in range(5):
        s = connect(_addr(port))
        t = closed_by_peer(s, 1.0 * SCALE)
        s.close()
        check(t is not None, "client not closed within 1s when every server refuses")
    # A client that spoke first gets a clean close too, not a reset: what
    # it sent is read and dropped before the close.
    for _ in range(3):
        s = connect(_addr(port))
        s.sendall(b"ping\n" * 100)
        s.settimeout(2 * SCALE)
        try:
            got = s.recv(1024)
        except ConnectionResetError:
            raise TestFailure("a client that had sent bytes was reset, not closed")
        finally:
            s.close()
        check(got == b"", f"got {got!r} instead of a close")


def test_bytes_out_counts_what_the_client_was_sent(ctx):
    """A client that reads nothing and is closed at client_timeout: the
    log's BYTES_OUT is what reached it (SPEC §6 "sent to"), not what was
    read from the server for it and dropped with the connection."""
    data = blob(32 * MIB, seed=5)
    b = ctx.backend("source", data=data)
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log},
                         listener={"client_timeout": "1s"}))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(_addr(port))
    line = wait_for(lambda: read_lines(log), 5 * SCALE, what="the client_timeout line")[0]
    got = recv_count(s, 2 * SCALE)
    s.close()
    fields = line.split()
    check(fields[-1] == "client_timeout", f"reason: {line!r}")
    check(int(fields[-4]) == got, f"BYTES_OUT {fields[-4]}, the client got {got}: {line!r}")


def test_retries_past_eight_servers(ctx):
    """retries = 10 with ten refusing servers ahead of a good one: each
    client gets its eleven tries and reaches the good server (SPEC §3:
    retried "up to `retries` times")."""
    good = ctx.backend("name", name="good")
    dead = [f"d{i} 127.0.0.1:{closed_port()}" for i in range(10)]
    port = free_port()
    ctx.fulcrum(tcp_conf(port, dead + [good.server_line()],
                         pool={"retries": 10, "max_fails": 0}))
    for i in range(3):
        s = connect(_addr(port))
        check(recv_line(s) == b"good\n", f"client {i} did not reach the 11th server")
        s.close()


def _reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_client_reset_while_connecting_frees_its_place(ctx):
    """A client that resets while the server's connect is under way is
    closed at once and logged client_reset: it does not hold one of
    max_connections until connect_timeout."""
    bh = ctx.blackhole()
    log = ctx.path("access.log")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [f"hole {bh.addr}"],
                             glob={"access_log": log, "max_connections": 3},
                             pool={"connect_timeout": "10s", "retries": 0}))
    for _ in range(3):
        _reset(connect(_addr(port)))
    wait_for(lambda: sum(" client_reset" in l for l in read_lines(log)) == 3, 3 * SCALE,
             what="three client_reset log lines well before connect_timeout")
    s = connect(_addr(port))
    check(closed_by_peer(s, 0.5 * SCALE) is None,
          "a new client was closed: the reset clients still hold max_connections")
    _reset(s)
    check(not any("max_connections" in l for l in read_lines(log)), "a client was refused")
    f.check_fds_settled(timeout=3 * SCALE)


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _kernel_buffer_bound():
    """What the kernel may hold between a server and a client that reads
    nothing, fulcrum in between: the autotuned receive buffer of fulcrum's
    server socket, the send buffers of the server and of fulcrum's client
    socket, plus 1 MiB for the pipe and the client's small receive buffer."""
    def max_of(name):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            return int(f.read().split()[2])
    return max_of("tcp_rmem") + 2 * max_of("tcp_wmem") + MIB


def test_backpressure_slow_reader(ctx):
    """A client that does not read stops the server: fulcrum does not buffer
    the stream in memory (splice through a bounded pipe). The server gets no
    further than the kernel's socket buffers can hold."""
    bound = _kernel_buffer_bound()
    data = blob(max(64 * MIB, bound + 16 * MIB), seed=9)
    b = ctx.backend("source", data=data)
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()]))
    rss0 = _rss_kib(f.pid)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(10 * SCALE)
    s.connect(_addr(port))
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + 5 * SCALE
    while time.monotonic() < deadline:  # until the server is stalled for 300 ms
        time.sleep(0.05)
        if b.sent != last:
            last, since = b.sent, time.monotonic()
        elif time.monotonic() - since > 0.3:
            break
    check(b.sent < bound, f"server could send {b.sent >> 20} MiB to a client that reads nothing "
                          f"(the kernel's buffers hold at most {bound >> 20} MiB)")
    grown = _rss_kib(f.pid) - rss0
    check(grown < 32 * 1024, f"fulcrum's RSS grew by {grown} KiB while the client stalled")
    n, h = recv_hash(s)
    s.close()
    check(n == len(data) and h == sha256(data), f"after the stall got {n} bytes, want {len(data)} intact")


def test_many_short_connections(ctx):
    b = ctx.backend("name", name="s1")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"workers": 2}))
    for i in range(300):
        s = connect(_addr(port))
        check(recv_line(s) == b"s1\n", f"connection {i} failed")
        s.close()
    # Clients that go away before reading anything, some with a reset.
    for i in range(100):
        s = connect(_addr(port))
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    f.check_fds_settled(timeout=3)
    check(name_ok(port), "relay broken after the churn")


def name_ok(port):
    s = connect(_addr(port))
    try:
        return recv_line(s) != b""
    finally:
        s.close()


def test_client_leaves_while_connecting(ctx):
    """Clients that close while fulcrum still waits for the server's SYN-ACK
    leave no fd behind once connect_timeout has passed."""
    bh = ctx.blackhole()
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [f"hole {bh.addr}"], pool={"connect_timeout": "700ms", "retries": 1}))
    for i in range(20):
        s = connect(_addr(port))
        if i % 2:
            s.sendall(b"early bytes")
        s.close()
    f.check_fds_settled(timeout=3)


def test_a_full_pool_is_logged_apart_from_one_with_no_server_up(ctx):
    """A connection turned away because every usable server is at its
    maxconn is logged servers_full; one turned away because no server is up
    at all, no_server: an operator tells saturation from an outage."""
    b = ctx.backend("echo")
    port, log = free_port(), ctx.path("access.log")
    down = f"d 127.0.0.1:{closed_port()} disabled"
    ctx.fulcrum(tcp_conf(port, [b.server_line() + " maxconn=1", down],
                         glob={"access_log": log}))
    held = connect(("127.0.0.1", port))
    check(echo_roundtrip(held, b"x"), "the first connection")
    turned = connect(("127.0.0.1", port))
    check(closed_by_peer(turned, 2 * SCALE) is not None, "a connection past maxconn=1 stayed open")
    turned.close()
    wait_for(lambda: any(l.endswith(" servers_full") for l in read_lines(log)), 3 * SCALE,
             what="servers_full in the log")
    held.close()
    only_down = free_port()
    ctx.fulcrum(tcp_conf(only_down, [down], glob={"access_log": log}))
    s = connect(("127.0.0.1", only_down))
    check(closed_by_peer(s, 2 * SCALE) is not None, "a connection to a pool with no server up")
    s.close()
    wait_for(lambda: any(l.endswith(" no_server") for l in read_lines(log)), 3 * SCALE,
             what="no_server in the log")


def test_out_of_fds_is_not_held_against_the_server(ctx):
    """When fulcrum runs out of descriptors, a connect it cannot even start
    is its own shortage: the client is closed with reason out_of_resources,
    and neither traffic (max_fails) nor the health checks take the healthy
    server down, so it serves at once when descriptors are free again."""
    import resource

    b = ctx.backend("echo")
    port = free_port()
    log = ctx.path("access.log")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log},
                             pool={"check": "tcp", "check_interval": "100ms", "fall": 1,
                                   "rise": 1, "max_fails": 1}))
    limits = resource.prlimit(f.pid, resource.RLIMIT_NOFILE)
    top = max(f.fds())
    resource.prlimit(f.pid, resource.RLIMIT_NOFILE, (top + 4, limits[1]))
    clients = []
    try:
        for _ in range(20):
            s = connect(_addr(port))
            clients.append(s)
            try:
                echo_roundtrip(s, b"x")
            except (OSError, TestFailure):
                break  # closed: no descriptor left for its server
        wait_for(lambda: any(l.endswith(" out_of_resources") for l in read_lines(log)),
                 3 * SCALE, what="a connection closed for want of descriptors")
        # Not one descriptor left, for the health checks either, through
        # several of their intervals (fall = 1).
        resource.prlimit(f.pid, resource.RLIMIT_NOFILE, (max(f.fds()) + 1, limits[1]))
        time.sleep(0.6 * SCALE)
    finally:
        resource.prlimit(f.pid, resource.RLIMIT_NOFILE, limits)
        for s in clients:
            s.close()
    check(" DOWN" not in f.stderr(), f"the server was taken down: {f.stderr()}")
    s = connect(_addr(port))
    check(echo_roundtrip(s, b"served again"), "no answer once descriptors were free")
    s.close()
    check(not any(l.endswith(" no_server") for l in read_lines(log)),
          f"clients turned away with no_server: {read_lines(log)}")


def test_out_of_descriptors_at_accept_is_said_once_not_per_pause(ctx):
    """Out of descriptors, a worker pauses its listeners 100 ms at a time;
    the warning comes once (then every 10 s with a count), not ten lines a
    second, and clients are served again once descriptors are free."""
    import resource

    b = ctx.backend("echo")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"workers": 1}))
    limits = resource.prlimit(f.pid, resource.RLIMIT_NOFILE)
    waiting = []
    try:
        resource.prlimit(f.pid, resource.RLIMIT_NOFILE, (max(f.fds()) + 1, limits[1]))
        for _ in range(3):
            waiting.append(connect(_addr(port)))  # queued in the backlog
        time.sleep(1.2 * SCALE)  # about ten pauses
    finally:
        resource.prlimit(f.pid, resource.RLIMIT_NOFILE, limits)
    said = [l for l in f.stderr().splitlines() if "accept: Too many open files" in l]
    check(len(said) == 1, f"{len(said)} warnings for one shortage: {said[:3]}")
    for s in waiting:
        check(echo_roundtrip(s, b"served"), "a client that waited was not served")
        s.close()


def _main_thread_wakeups(pid):
    with open(f"/proc/{pid}/task/{pid}/status") as fh:
        for line in fh:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise TestFailure("no voluntary_ctxt_switches")


def test_a_stop_while_out_of_descriptors_leaves_the_main_thread_asleep(ctx):
    """A listener paused on EMFILE when SIGTERM comes is let go at once, so
    the main thread does not poll every few milliseconds for it to be freed
    through the whole graceful stop."""
    import resource

    b = ctx.backend("echo")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()],
                             glob={"workers": 1, "graceful_timeout": "10s"}))
    held = connect(_addr(port))
    check(echo_roundtrip(held, b"held"), "the held connection")
    limits = resource.prlimit(f.pid, resource.RLIMIT_NOFILE)
    try:
        resource.prlimit(f.pid, resource.RLIMIT_NOFILE, (max(f.fds()) + 1, limits[1]))
        waiting = connect(_addr(port))  # accept fails: the listener pauses
        wait_for(lambda: "accept: Too many open files" in f.stderr(), 2 * SCALE,
                 what="the worker to run out of descriptors")
        f.signal(signal.SIGTERM)
        wait_for(lambda: "stopping gracefully" in f.stderr(), 2 * SCALE, what="the stop")
        time.sleep(0.3)
        before = _main_thread_wakeups(f.pid)
        time.sleep(1)
        woke = _main_thread_wakeups(f.pid) - before
    finally:
        resource.prlimit(f.pid, resource.RLIMIT_NOFILE, limits)
    check(woke < 50, f"the main thread woke {woke} times in a second of the stop")
    check(echo_roundtrip(held, b"still served"), "the held connection during the stop")
    held.close()
    waiting.close()
    check(f.wait_exit(5 * SCALE) == 0, "exit status")
