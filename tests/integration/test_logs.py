"""Access log lines for tcp connections, JSON format, SIGUSR1 reopen (SPEC §6)."""

import datetime
import json
import os
import re
import signal
import socket
import time

from harness import (SCALE, Skip, check, closed_by_peer, closed_port, connect, echo_roundtrip, free_port,
                     read_lines, recv_all, recv_count, recv_exact, recv_line, sha256, tcp_conf, TestFailure,
                     wait_for)
from test_http import access_lines, cbackend, http_conf, pyserver

LINE_RE = re.compile(
    r'^(?P<time>\S+) (?P<client>\S+) (?P<listener>\S+) (?P<target>\S+) '
    r'(?P<request>"[^"]*"|-) (?P<status>\S+) (?P<bytes_in>\d+) (?P<bytes_out>\d+) '
    r'(?P<total_ms>\d+(?:\.\d+)?) (?P<ttfb_ms>\S+) (?P<reason>\S+)$')
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|\+00:00)$")
JSON_KEYS = {"time", "client", "listener", "pool", "server", "method", "target", "proto", "status",
             "bytes_in", "bytes_out", "total_ms", "ttfb_ms", "reason"}


def _check_time(text):
    check(TIME_RE.match(text), f"time {text!r} is not ISO 8601 UTC with milliseconds")
    t = datetime.datetime.strptime(text[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    now = datetime.datetime.now(datetime.timezone.utc)
    check(abs((now - t).total_seconds()) < 120, f"time {text!r} is not now ({now.isoformat()})")


def _sink_once(port, size):
    """One connection: SIZE bytes up, 64 (hex sha256) down. Returns the
    client's own address as 'ip:port'."""
    s = connect(("127.0.0.1", port))
    me = "%s:%d" % s.getsockname()[:2]
    data = os.urandom(size)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    check(recv_all(s).decode() == sha256(data), "sink answer wrong")
    s.close()
    return me


def _wait_lines(path, n, timeout=3):
    return wait_for(lambda: (lambda ls: ls if len(ls) >= n else None)(read_lines(path)),
                    timeout * SCALE, what=f"{n} access-log lines in {path}")


def _check_text_line(line, me, size):
    m = LINE_RE.match(line)
    check(m, f"access-log line does not have the SPEC §6 shape: {line!r}")
    _check_time(m["time"])
    check(m["client"] == me, f"client {m['client']!r}, want {me!r}: {line!r}")
    check(m["listener"] == "l", f"listener {m['listener']!r}: {line!r}")
    check(m["target"] == "p/s1", f"pool/server {m['target']!r}, want 'p/s1': {line!r}")
    check(m["request"] in ('"- - -"', "-", '"-"'), f"request field for tcp is {m['request']!r}: {line!r}")
    check(m["status"] == "-", f"status for tcp is {m['status']!r}: {line!r}")
    check(int(m["bytes_in"]) == size, f"bytes_in {m['bytes_in']}, want {size}: {line!r}")
    check(int(m["bytes_out"]) == 64, f"bytes_out {m['bytes_out']}, want 64: {line!r}")
    check(float(m["total_ms"]) < 10000, f"total_ms {m['total_ms']}: {line!r}")
    # The sink answered 64 bytes: the time to the first of them.
    check(re.match(r"^\d+$", m["ttfb_ms"]) and int(m["ttfb_ms"]) <= float(m["total_ms"]),
          f"ttfb_ms of a connection the server answered: {line!r}")
    check(m["reason"] == "-", f"reason {m['reason']!r} for a normal end: {line!r}")


def test_access_log_text_file(ctx):
    b = ctx.backend("sink", name="s1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log, "workers": 2}))
    me = _sink_once(port, 1000)
    lines = _wait_lines(log, 1)
    check(len(lines) == 1, f"one connection, {len(lines)} lines: {lines}")
    _check_text_line(lines[0], me, 1000)
    mes = [_sink_once(port, 5000 + i) for i in range(3)]
    lines = _wait_lines(log, 4)
    time.sleep(0.2)
    lines = read_lines(log)
    check(len(lines) == 4, f"four connections, {len(lines)} lines: {lines}")
    by_client = {LINE_RE.match(l)["client"]: l for l in lines[1:] if LINE_RE.match(l)}
    for i, me in enumerate(mes):
        check(me in by_client, f"no line for client {me}: {lines}")
        _check_text_line(by_client[me], me, 5000 + i)


def test_access_log_stderr(ctx):
    b = ctx.backend("sink", name="s1")
    port = free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": "stderr"}))
    me = _sink_once(port, 777)
    line = wait_for(lambda: next((l for l in f.stderr().splitlines() if f" {me} " in l), None),
                    3 * SCALE, what="an access-log line on stderr")
    _check_text_line(line, me, 777)


def test_access_log_json(ctx):
    b = ctx.backend("sink", name="s1")
    port = free_port()
    log = ctx.path("access.json")
    ctx.fulcrum(tcp_conf(port, [b.server_line()],
                         glob={"access_log": log, "access_log_format": "json"}))
    me = _sink_once(port, 1234)
    lines = _wait_lines(log, 1)
    check(len(lines) == 1, f"one connection, {len(lines)} lines")
    try:
        obj = json.loads(lines[0])
    except ValueError as e:
        raise AssertionError(f"not JSON ({e}): {lines[0]!r}")
    check(isinstance(obj, dict), f"not a JSON object: {lines[0]!r}")
    missing = JSON_KEYS - set(obj)
    check(not missing, f"keys missing: {sorted(missing)} in {lines[0]!r}")
    _check_time(obj["time"])
    check(obj["client"] == me, f"client {obj['client']!r}, want {me!r}")
    check(obj["listener"] == "l" and obj["pool"] == "p" and obj["server"] == "s1",
          f"listener/pool/server wrong: {lines[0]!r}")
    check(obj["bytes_in"] == 1234 and obj["bytes_out"] == 64, f"byte counts wrong: {lines[0]!r}")
    check(isinstance(obj["total_ms"], (int, float)), f"total_ms not a number: {lines[0]!r}")
    check(obj["reason"] in ("-", None, ""), f"reason for a normal end: {lines[0]!r}")


def test_tcp_ttfb_is_the_servers_first_byte(ctx):
    """TTFB_MS on a tcp line: the time to the server's first byte, here
    held back 300 ms after the client's; `-` when the server sent nothing."""
    def late(r, srv):
        r.until(b"\n")
        time.sleep(0.3)
        r.s.sendall(b"late\n")
        r.until(b"\n")

    late_srv = pyserver(ctx, late)
    silent = ctx.backend("silent", name="quiet")
    port, port2 = free_port(), free_port()
    log, log2 = ctx.path("a.log"), ctx.path("b.log")
    ctx.fulcrum(tcp_conf(port, [late_srv.server_line()], glob={"access_log": log}))
    ctx.fulcrum(tcp_conf(port2, [silent.server_line()], glob={"access_log": log2}))
    s = connect(("127.0.0.1", port))
    s.sendall(b"hi\n")
    check(recv_line(s) == b"late\n", "the late answer")
    s.sendall(b"bye\n")
    s.close()
    s = connect(("127.0.0.1", port2))
    s.sendall(b"hi\n")
    time.sleep(0.1)
    s.close()
    m = LINE_RE.match(_wait_lines(log, 1)[0])
    check(m and m["ttfb_ms"].isdigit() and 250 <= int(m["ttfb_ms"]) <= int(m["total_ms"]),
          f"ttfb of an answer 300 ms late: {m and m.group(0)!r}")
    m = LINE_RE.match(_wait_lines(log2, 1)[0])
    check(m and m["ttfb_ms"] == "-", f"ttfb of a silent server: {m and m.group(0)!r}")


def test_access_log_reason_on_timeout(ctx):
    b = ctx.backend("echo", name="s1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log},
                         listener={"client_timeout": "500ms"}))
    s = connect(("127.0.0.1", port))
    check(echo_roundtrip(s, b"abc"), "relay does not work")
    check(closed_by_peer(s, 3 * SCALE) is not None, "not closed by client_timeout")
    s.close()
    line = _wait_lines(log, 1)[0]
    m = LINE_RE.match(line)
    check(m, f"bad line: {line!r}")
    check(m["reason"] == "client_timeout", f"a timed-out connection's reason: {line!r}")
    check(m["bytes_in"] == "3" and m["bytes_out"] == "3", f"byte counts: {line!r}")


def test_access_log_reopen_on_sigusr1(ctx):
    b = ctx.backend("sink", name="s1")
    port = free_port()
    log = ctx.path("access.log")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log, "workers": 2}))
    _sink_once(port, 10)
    _wait_lines(log, 1)
    os.rename(log, log + ".1")
    f.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(log), 2 * SCALE, what="the log file to be created again")
    me = _sink_once(port, 20)
    lines = _wait_lines(log, 1)
    check(len(lines) == 1 and f" {me} " in lines[0], f"new file holds {lines}")
    old = read_lines(log + ".1")
    check(len(old) == 1, f"rotated file holds {old}")
    f.check_fds_settled()


def test_access_log_given_to_user(ctx):
    """Started as root with user = nobody, fulcrum hands its access log to
    that user, so a SIGUSR1 after the drop can still reopen it."""
    if os.geteuid() != 0:
        raise Skip("needs root to drop privileges")
    import pwd
    nobody = pwd.getpwnam("nobody")
    logdir = ctx.path("logs")
    os.mkdir(logdir)
    os.chmod(ctx.tmp, 0o711)  # nobody passes through to the log
    b = ctx.backend("sink", name="s1")
    port = free_port()
    log = os.path.join(logdir, "access.log")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log,
                                                             "user": "nobody"}))
    st = os.stat(log)
    check((st.st_uid, st.st_gid) == (nobody.pw_uid, 0),
          f"access log owned by {st.st_uid}:{st.st_gid}, not nobody with root's group")
    # Rotated as logrotate's "create 0640 nobody root" does: the new file
    # is nobody's, and only a reopen by nobody can write there.
    os.rename(log, log + ".1")
    fd = os.open(log, os.O_CREAT | os.O_WRONLY, 0o640)
    os.fchown(fd, nobody.pw_uid, 0)
    os.close(fd)
    f.signal(signal.SIGUSR1)

    def opened():
        for fd in os.listdir(f"/proc/{f.pid}/fd"):
            try:
                if os.readlink(f"/proc/{f.pid}/fd/{fd}") == log:
                    return True
            except OSError:
                pass
        return False
    wait_for(opened, 2 * SCALE, what="fulcrum to open the new log file")
    me = _sink_once(port, 10)
    lines = _wait_lines(log, 1)
    check(len(lines) == 1 and f" {me} " in lines[0], f"log after the reopen: {lines}")
    check(read_lines(log + ".1") == [], "a line went to the rotated file")
    check("cannot reopen" not in f.stderr(), f"reopen failed: {f.stderr()}")


def test_access_log_turned_off_and_on_by_reloads(ctx):
    """Reloads that turn the access log off and on again keep one
    descriptor for it (none leaks), and lines go where the last one says."""
    b = ctx.backend("sink", name="s1")
    port = free_port()
    log = ctx.path("access.log")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log, "workers": 2}))
    _sink_once(port, 10)
    _wait_lines(log, 1)
    start = f.fds()
    for i in range(3):
        for target in ("off", log):
            with open(f.conf_path, "w") as fh:
                fh.write(tcp_conf(port, [b.server_line()], glob={"access_log": target, "workers": 2}))
            gen = f.stderr().count("reloaded")
            f.signal(signal.SIGHUP)
            wait_for(lambda: f.stderr().count("reloaded") > gen, 3 * SCALE, what="the reload")
            _sink_once(port, 10)
            if target == log:
                # Written before the next reload turns the log off.
                _wait_lines(log, 2 + i)
    lines = _wait_lines(log, 4)
    check(len(lines) == 4, f"{len(lines)} lines: the log was written while off, or lost lines")
    # A worker closes what a connection held before it writes its line,
    # but the other worker may still be finishing its turn: poll a while.
    try:
        wait_for(lambda: len(f.fds()) <= len(start), 1 * SCALE, what="descriptors to settle")
    except TestFailure:
        check(False, f"descriptors after 3 off/on reloads: {sorted(f.fds().items())}, "
                     f"before: {sorted(start.items())}")


def test_reload_to_an_access_log_that_cannot_open_fails(ctx):
    """A reload naming an access log that cannot be opened is a failed
    reload: reported so, and the running configuration (and log) stays."""
    b = ctx.backend("sink", name="s1")
    port = free_port()
    log = ctx.path("access.log")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log}))
    with open(f.conf_path, "w") as fh:
        fh.write(tcp_conf(port, [b.server_line()], glob={"access_log": ctx.path("no/such/dir.log")}))
    f.signal(signal.SIGHUP)
    wait_for(lambda: "failed" in f.stderr(), 3 * SCALE, what="the reload to fail")
    check("cannot open the access log" in f.stderr() and "reloaded" not in f.stderr(),
          f"stderr: {f.stderr()[-400:]}")
    _sink_once(port, 10)
    check(len(_wait_lines(log, 1)) == 1, "the running access log stopped")


def test_access_log_failed_connection(ctx):
    """A connection that could not reach any server is logged too, with a
    close reason."""
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [f"s1 127.0.0.1:{closed_port()}"], glob={"access_log": log},
                         pool={"retries": 0}))
    s = connect(("127.0.0.1", port))
    me = "%s:%d" % s.getsockname()[:2]
    check(closed_by_peer(s, 2 * SCALE) is not None, "client not closed")
    s.close()
    line = _wait_lines(log, 1)[0]
    m = LINE_RE.match(line)
    check(m, f"bad line: {line!r}")
    check(m["client"] == me, f"client {m['client']!r}, want {me!r}")
    check(m["reason"] == "connect_failed", f"a refused connection's reason: {line!r}")
    check(m["bytes_in"] == "0" and m["bytes_out"] == "0", f"byte counts: {line!r}")
    check(m["target"] == "p/s1", f"the server tried is not named: {line!r}")


def test_access_log_failed_http_request_names_the_server(ctx):
    """A 502 for a server that refused names that server."""
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [f"s1 127.0.0.1:{closed_port()}"], glob={"access_log": log},
                         pool={"retries": 0}, listener={"mode": "http"}))
    s = connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(recv_all(s).startswith(b"HTTP/1.1 502 "), "no 502")
    s.close()
    line = _wait_lines(log, 1)[0]
    m = LINE_RE.match(line)
    check(m and m["target"] == "p/s1" and m["status"] == "502", f"line: {line!r}")


def test_access_log_many_concurrent(ctx):
    """Two workers writing many lines at once: every line whole, one per
    connection."""
    b = ctx.backend("echo", name="s1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"access_log": log, "workers": 2}))
    conns = [connect(("127.0.0.1", port)) for _ in range(200)]
    for i, s in enumerate(conns):
        s.sendall(b"x" * (i + 1))
    for i, s in enumerate(conns):
        recv_exact(s, i + 1)
        s.close()
    lines = _wait_lines(log, 200, timeout=5)
    time.sleep(0.2)
    lines = read_lines(log)
    check(len(lines) == 200, f"200 connections, {len(lines)} lines")
    sizes = sorted(int(LINE_RE.match(l)["bytes_in"]) for l in lines if LINE_RE.match(l))
    check(sizes == list(range(1, 201)), f"lines malformed or byte counts wrong: {len(sizes)} parsed")


def test_http_bytes_out_counts_what_the_client_was_sent(ctx):
    """An http download to a client that stops reading, closed at
    client_timeout: BYTES_OUT is what reached the client, not what was read
    from the server for it."""
    from test_http import http_conf, pyserver

    body = b"y" * (32 << 20)

    def big(r, srv):
        r.until(b"\r\n\r\n")
        try:
            r.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass

    srv = pyserver(ctx, big)
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], glob={"access_log": log},
                          listener={"client_timeout": "1s"}))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
    line = _wait_lines(log, 1, timeout=6)[0]
    got = recv_count(s, 2 * SCALE)
    s.close()
    m = LINE_RE.match(line)
    check(m, f"bad line: {line!r}")
    check(int(m["bytes_out"]) == got, f"BYTES_OUT {m['bytes_out']}, the client got {got}: {line!r}")


def test_http_bytes_in_counts_a_body_fulcrum_answers_itself(ctx):
    """A request fulcrum answers itself (413 over max_body_size, 502 for a
    server that refused, 503 with none up) was received whole, body
    included: BYTES_IN says so, as it does for a body a server took."""
    for server, payload, status in (("", b"x" * 1000, "413"), ("", b"b" * 50, "502"),
                                    (" disabled", b"b" * 50, "503")):
        port = free_port()
        log = ctx.path(f"access-{status}.log")
        f = ctx.fulcrum(tcp_conf(port, [f"s1 127.0.0.1:{closed_port()}{server}"],
                                 glob={"access_log": log}, pool={"retries": 0},
                                 listener={"mode": "http", "max_body_size": "100"}))
        req = (b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload)
               + payload)
        s = connect(("127.0.0.1", port))
        s.sendall(req)
        got = recv_all(s)
        s.close()
        check(got.startswith(b"HTTP/1.1 " + status.encode()), f"{status}: got {got[:40]!r}")
        m = LINE_RE.match(_wait_lines(log, 1)[0])
        check(m and m["status"] == status and int(m["bytes_in"]) == len(req),
              f"{status}: BYTES_IN {m and m['bytes_in']}, the client sent {len(req)}")
        f.stop()


def test_lost_access_log_lines_are_said_and_counted(ctx):
    """An access log that refuses writes (a full disk: /dev/full) loses its
    lines, but not in silence: stderr says so (once, not per line) and
    fulcrum_access_log_lines_lost_total counts every one."""
    from test_admin import Admin, metric, parse_metrics

    b = ctx.backend("echo", name="s1")
    port, admin_port = free_port(), free_port()
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()],
                             glob={"access_log": "/dev/full", "admin": f"127.0.0.1:{admin_port}"}))
    for _ in range(5):
        with connect(("127.0.0.1", port)) as s:
            check(echo_roundtrip(s, b"ping"), "echo through fulcrum")
    adm = Admin(admin_port)
    wait_for(lambda: metric(parse_metrics(adm.metrics()), "fulcrum_access_log_lines_lost_total") == 5,
             3 * SCALE, what="5 lost lines counted")
    def said_lines():
        return [l for l in f.stderr().splitlines() if "access log: write failed" in l]

    wait_for(said_lines, 3 * SCALE, what="lost lines said on stderr")
    said = said_lines()
    check(len(said) == 1 and "No space left on device" in said[0],
          f"stderr on lost lines: {said!r}")


def test_long_target_is_cut_at_a_character_and_marked(ctx):
    """A target longer than the log takes (512 bytes) is cut before a UTF-8
    character the cut would split, never inside it, and ends in "..."."""
    from test_http import cbackend, http_conf

    srv = cbackend(ctx, "s1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"keepalive": 0},
                          glob={"access_log": log, "access_log_format": "json"}))
    # "é" (2 bytes) across the cut at 509, a 3-byte "€" across it, and ASCII only.
    targets = ["/" + "a" * 507 + "é" * 4, "/" + "a" * 506 + "€" * 4, "/" + "b" * 600]
    for t in targets:
        with connect(("127.0.0.1", port)) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % t.encode())
            check(recv_all(s).startswith(b"HTTP/1.1 200"), f"{t[:20]}...: no 200")
    lines = _wait_lines(log, len(targets))
    for t, line in zip(targets, lines):
        got = json.loads(line)["target"]
        check(got.endswith("...") and t.startswith(got[:-3]) and 505 <= len(got[:-3].encode()) <= 509,
              f"target {t[:12]}... logged as {got[:12]}...{got[-12:]!r} ({len(got.encode())} bytes)")


def test_long_method_is_logged_whole_or_marked_cut(ctx):
    """A method the backend got whole is logged whole up to 32 bytes; a
    longer one ends in "...", never cut without a mark."""
    from test_http import cbackend, http_conf

    srv = cbackend(ctx, "s1")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [srv.server_line()], pool={"keepalive": 0},
                          glob={"access_log": log, "access_log_format": "json"}))
    methods = ["ABCDEFGHIJKLMNOPQ", "M" * 32, "X" * 500]
    for m in methods:
        with connect(("127.0.0.1", port)) as s:
            s.sendall(b"%s / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % m.encode())
            check(recv_all(s).startswith(b"HTTP/1.1 "), f"{m[:20]}: no answer")
    got = [json.loads(l)["method"] for l in _wait_lines(log, len(methods))]
    check(got[:2] == methods[:2], f"short methods logged as {got[:2]!r}")
    check(got[2] == "X" * 29 + "...", f"500-byte method logged as {got[2]!r}")


def test_cut_off_answer_is_counted_and_what_was_pipelined_behind_it_logged(ctx):
    """A 200 whose body the server cut short: the client saw the status, so
    requests_total counts it in 2xx as the log shows it; and the request
    pipelined behind it, never answered, still gets its line (with its
    bytes in BYTES_IN and the listener's bytes received)."""
    from test_admin import Admin, metric, parse_metrics
    from test_http import read_request

    def handler(r, srv):
        if read_request(r) is not None:
            r.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")

    srv = pyserver(ctx, handler)
    port, aport = free_port(), free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [srv.server_line()], listener={"mode": "http"},
                         pool={"check": "none", "max_fails": 0},
                         glob={"access_log": log, "admin": f"127.0.0.1:{aport}"}))
    first = b"GET /partial HTTP/1.1\r\nHost: x\r\n\r\n"
    second = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    s = connect(("127.0.0.1", port))
    s.sendall(first + second)
    got = recv_all(s)
    s.close()
    check(got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"0123456789"), f"client got {got!r}")
    lines = _wait_lines(log, 2)
    check(len(lines) == 2, f"lines: {lines}")
    a, b = (LINE_RE.match(l) for l in lines)
    check(a and a["request"] == '"GET /partial HTTP/1.1"' and a["status"] == "200"
          and a["reason"] == "server_closed", f"the cut-off answer: {lines[0]!r}")
    check(b and b["request"] == '"GET /next HTTP/1.1"' and b["status"] == "-"
          and b["reason"] == "unanswered_pipelined" and int(b["bytes_in"]) == len(second),
          f"the pipelined request: {lines[1]!r}")
    m = parse_metrics(Admin(aport).metrics())
    check(metric(m, "fulcrum_requests_total", pool="p", server=srv.name, code="2xx") == 1,
          "the cut-off 200 is not in requests_total")
    check(metric(m, "fulcrum_listener_bytes_received_total", listener="l") == len(first) + len(second),
          "listener bytes received leave out the pipelined request")


def test_request_pipelined_behind_a_400_for_its_host_gets_its_own_line(ctx):
    """A head refused for its Host alone (missing, repeated, invalid) is
    known whole: the 400 counts its bytes, and a request pipelined behind
    it gets its unanswered_pipelined line. One refused as unparsable keeps
    every byte: nothing after it can be told apart."""
    b = cbackend(ctx, "b")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log}))
    second = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = [
        (b"GET / HTTP/1.1\r\n\r\n", "missing_host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "multiple_host"),
        (b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", "bad_host"),
        (b"POST / HTTP/1.1\r\nHost: a@b\r\nContent-Length: 4\r\n\r\nbody", "bad_host"),
    ]
    n = 0
    for first, reason in cases:
        s = connect(("127.0.0.1", port))
        s.sendall(first + second)
        got = recv_all(s)
        s.close()
        check(got.startswith(b"HTTP/1.1 400"), f"{reason}: {got[:40]!r}")
        n += 2
        lines = _wait_lines(log, n)
        a, z = (LINE_RE.match(l) for l in lines[n - 2:n])
        check(a and a["status"] == "400" and a["reason"] == reason
              and int(a["bytes_in"]) == len(first), f"{reason}: the 400's line {lines[n - 2]!r}")
        check(z and z["request"] == '"GET /next HTTP/1.1"' and z["reason"] == "unanswered_pipelined"
              and int(z["bytes_in"]) == len(second), f"{reason}: the pipelined one {lines[n - 1]!r}")
    s = connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nBad Header: 1\r\n\r\n" + second)
    recv_all(s)
    s.close()
    lines = _wait_lines(log, n + 1)
    time.sleep(0.2)
    check(len(read_lines(log)) == n + 1, f"an unparsable head's rest got a line: {read_lines(log)[n:]}")
    b.close()


def _check_pipelined_behind(port, log, first, status):
    """Sends FIRST, which fulcrum answers STATUS and closes after, with a
    GET pipelined behind it: FIRST's line counts all its bytes, and the GET
    gets its unanswered_pipelined line."""
    second = b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n"
    s = connect(("127.0.0.1", port))
    s.sendall(first + second)
    got = recv_all(s)
    s.close()
    check(got.startswith(b"HTTP/1.1 %d" % status) and got.count(b"HTTP/1.1 ") == 1,
          f"answer: {got[:60]!r}")
    lines = _wait_lines(log, 2)
    a, z = (LINE_RE.match(l) for l in lines[:2])
    check(a and a["status"] == str(status) and int(a["bytes_in"]) == len(first),
          f"the {status}'s line (want {len(first)} bytes in): {lines[0]!r}")
    check(z and z["request"] == '"GET /after HTTP/1.1"' and z["reason"] == "unanswered_pipelined"
          and int(z["bytes_in"]) == len(second), f"the pipelined one: {lines[1:]!r}")


def test_request_pipelined_behind_a_chunked_body_fulcrum_refused_gets_its_line(ctx):
    """A request with a chunked body that fulcrum answers itself (a dead
    server: 502, the connection closes) has its whole body counted when it
    is all in, and a request pipelined behind it gets its
    unanswered_pipelined line, as behind a Content-Length body."""
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [f"dead 127.0.0.1:{closed_port()}"],
                          glob={"access_log": log}, pool={"retries": 0}))
    _check_pipelined_behind(port, log, b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n", 502)


def test_request_pipelined_behind_a_413_for_a_chunked_body_gets_its_line(ctx):
    """A chunked body checked to its end and refused for max_body_size: the
    413 counts it, and the request pipelined behind it gets its line."""
    b = cbackend(ctx, "b")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log},
                          listener={"max_body_size": "10"}))
    _check_pipelined_behind(port, log, b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"14\r\n" + b"y" * 20 + b"\r\n0\r\n\r\n", 413)
    b.close()


def test_line_ends_after_a_request_are_no_request(ctx):
    """RFC 9112 §2.2: CRLFs a client sends after a request (old clients do,
    after a body) are no request: the connection stays idle under
    keepalive_timeout (no 408 at request_timeout, no log line), and a client
    that half-closes after them gets its answer with Connection: close."""
    b = cbackend(ctx, "b")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log},
                          listener={"request_timeout": "1s", "keepalive_timeout": "60s"}))
    s = connect(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n")
    s.settimeout(1.5 + SCALE)  # past request_timeout (1 s), which is not scaled
    got = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except socket.timeout:
        pass
    s.close()
    check(got.startswith(b"HTTP/1.1 200") and got.count(b"HTTP/1.1 ") == 1,
          f"a trailing CRLF drew more than the answer: {got!r}")
    time.sleep(0.2)
    check(len(read_lines(log)) == 1, f"log lines: {read_lines(log)}")
    s = connect(("127.0.0.1", port))
    s.sendall(b"GET /?ms=300 HTTP/1.1\r\nHost: a\r\n\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s)
    s.close()
    check(got.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in got,
          f"the answer to a client that half-closed after a CRLF: {got!r}")
    time.sleep(0.2)
    check(len(read_lines(log)) == 2, f"log lines: {read_lines(log)}")
    # Line ends that come later: after the answer was read, or behind a
    # body long enough to be relayed from the socket (they stay in it).
    body = b"x" * 300000
    for lead, tail in ((b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"\r\n"),
                       (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
                        % len(body) + body + b"\r\n", b"\r")):
        s = connect(("127.0.0.1", port))
        s.settimeout(5 * SCALE)
        s.sendall(lead)
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        s.sendall(tail)
        s.settimeout(0.5 + SCALE)
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except socket.timeout:
            pass
        s.close()
        check(got.startswith(b"HTTP/1.1 200") and b"408" not in got,
              f"line ends after {lead[:16]!r}...: {got[:80]!r} ... {got[-80:]!r}")
    time.sleep(0.2)
    check(len(read_lines(log)) == 4, f"log lines: {read_lines(log)}")
    b.close()


def test_listener_bytes_agree_with_the_log_for_connections_that_never_relay(ctx):
    """A connection refused before any relaying (a bad PROXY header here)
    has its bytes in the access log; the listener's byte counters must have
    them too, so the two add up."""
    from test_admin import Admin, metric, parse_metrics

    b = ctx.backend("echo", name="s1")
    port, aport = free_port(), free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(tcp_conf(port, [b.server_line()], listener={"proxy_protocol": "accept"},
                         glob={"access_log": log, "admin": f"127.0.0.1:{aport}"}))
    s = connect(("127.0.0.1", port))
    s.sendall(b"NOT A PROXY HEADER AT ALL\r\n")
    check(closed_by_peer(s, 3 * SCALE), "a bad header was not refused")
    s.close()
    m = LINE_RE.match(_wait_lines(log, 1)[0])
    check(m and m["reason"] == "proxy_protocol" and int(m["bytes_in"]) > 0, f"line: {m and m.group(0)}")
    got = metric(parse_metrics(Admin(aport).metrics()), "fulcrum_listener_bytes_received_total",
                 listener="l")
    check(got == int(m["bytes_in"]), f"listener bytes received {got}, the log says {m['bytes_in']}")


def test_first_request_is_timed_from_its_first_byte(ctx):
    """TOTAL_MS and TTFB_MS of a connection's first request start at its
    first byte, as a keep-alive request's do: the client's idle time after
    the accept is not the request's. request_timeout still runs from the
    accept: a client idle past it gets 408."""
    b = cbackend(ctx, "b")
    port = free_port()
    log = ctx.path("access.log")
    ctx.fulcrum(http_conf(port, [b.server_line()], glob={"access_log": log},
                          listener={"request_timeout": "2s"}))
    s = connect(("127.0.0.1", port))
    time.sleep(1.2)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(recv_all(s).startswith(b"HTTP/1.1 200"), "the request after 1.2 s idle")
    s.close()
    m = LINE_RE.match(access_lines(log, 1)[0])
    check(m and m["status"] == "200", f"line {m and m.string!r}")
    check(float(m["total_ms"]) < 600 and int(m["ttfb_ms"]) < 600,
          f"1.2 s of idleness before the request counted in its times: {m.string!r}")
    s = connect(("127.0.0.1", port))
    time.sleep(2.3)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    except OSError:
        pass
    got = recv_all(s)
    s.close()
    check(got == b"" or got.startswith(b"HTTP/1.1 408"), f"idle past request_timeout: {got[:60]!r}")
    lines = access_lines(log, 2)
    check("request_timeout" in lines[1] or " 408 " in lines[1], f"the idle client's line: {lines[1]!r}")
    b.close()  # its idle pooled connection is fulcrum's to close then
