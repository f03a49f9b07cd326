"""Command line, exit statuses and signals (SPEC §1, §2)."""

import os
import re
import signal
import socket
import stat
import time

from harness import (BIN, SANITIZED, SCALE, Skip, check, connect, echo_roundtrip, free_port, ini,
                     run_fulcrum, tcp_conf, wait_for)


def test_version(ctx):
    rc, out, err = run_fulcrum(["-v"])
    text = out + err
    check(rc == 0, f"-v exit status {rc}")
    check(re.search(r"\d+\.\d+", text), f"-v prints no version number: {text!r}")
    check("tls" in text.lower(), f"-v does not mention TLS: {text!r}")
    if not SANITIZED:
        check("jemalloc" in text.lower(), f"-v does not mention jemalloc: {text!r}")


def test_help(ctx):
    rc, out, err = run_fulcrum(["-h"])
    text = out + err
    check(rc == 0, f"-h exit status {rc}")
    check("usage" in text.lower(), f"-h prints no usage: {text!r}")
    for flag in ("-c", "-t", "-w", "-p", "-v"):
        check(flag in text, f"-h usage does not mention {flag}: {text!r}")


def test_unknown_option(ctx):
    """A bad command line: exit 1 and one line on stderr that names it."""
    for args, names in ((["-Z"], "-Z"), (["-c"], "-c"), (["-t", "-p"], "-p"),
                        (["-w", "0"], '"0"'), (["stray"], '"stray"'), (["-w", " 2"], '" 2"'),
                        (["-w", "+2"], '"+2"'), (["-t", "-p", ""], "-p"), (["-c", ""], "-c")):
        rc, out, err = run_fulcrum(args)
        check(rc == 1, f"{args}: exit status {rc}")
        lines = err.strip().splitlines()
        check(len(lines) == 1 and names in lines[0], f"{args}: stderr {err!r}")
    # -v and -h answer whatever else the line holds, long forms too.
    for args in (["-w", "0", "-v"], ["-Z", "-v"], ["--version"], ["--bogus", "-v"]):
        rc, out, err = run_fulcrum(args)
        check(rc == 0 and "fulcrum" in out and not err, f"{args}: {rc} {out!r} {err!r}")
    for args in (["-x", "-h"], ["--help"]):
        rc, out, err = run_fulcrum(args)
        check(rc == 0 and "usage" in out and not err, f"{args}: {rc} {out!r} {err!r}")
    rc, out, err = run_fulcrum(["--bogus"])
    check(rc == 1 and err.strip() == "fulcrum: unknown option --bogus (see fulcrum -h)",
          f"--bogus: {rc} {err!r}")


def _valid_conf(port, backend_port):
    return tcp_conf(port, [f"s1 127.0.0.1:{backend_port}"])


def test_check_valid_config(ctx):
    port = free_port()
    path = ctx.write("valid.ini", _valid_conf(port, free_port()))
    # -t must not bind: keep the listener's port busy while checking.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        rc, out, err = run_fulcrum(["-t", "-c", path])
    check(rc == 0, f"-t on a valid config: status {rc}, stderr {err!r}")


def test_check_config_without_listener_warns(ctx):
    """A file with no [listener] is valid (the admin API alone can serve), but
    -t says so: an emptied file is the usual cause."""
    path = ctx.write("bare.ini", "[global]\nadmin =\n")
    rc, out, err = run_fulcrum(["-t", "-c", path])
    check(rc == 0, f"-t on a file with no listener: status {rc}, stderr {err!r}")
    check("warning: no [listener] section" in err, f"-t stderr: {err!r}")


def _line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in config")


def _bad(ctx, fname, text, needle):
    """-t on TEXT must exit 1 naming FNAME:LINE of the line holding NEEDLE."""
    path = ctx.write(fname, text)
    line = _line_of(text, needle)
    # The file as given on the command line: a relative path from its directory.
    rc, out, err = run_fulcrum(["-t", "-c", fname], cwd=ctx.tmp)
    check(rc == 1, f"-t on {fname} ({needle!r}): status {rc}, stderr {err!r}")
    check(f"{fname}:{line}:" in err, f"stderr lacks '{fname}:{line}:' for {needle!r}: {err!r}")
    return path, line, err


def _base_sections(port, bport):
    g = {"workers": 1, "admin": ""}
    p = {"server": f"s1 127.0.0.1:{bport}", "check": "none"}
    l = {"bind": f"127.0.0.1:{port}", "mode": "tcp", "pool": "p"}
    return g, p, l


def test_check_unknown_key(ctx):
    g, p, l = _base_sections(free_port(), free_port())
    p["no_such_key"] = "1"
    _bad(ctx, "badkey.ini", ini(("global", g), ("pool p", p), ("listener l", l)), "no_such_key")


def test_check_unknown_section(ctx):
    g, p, l = _base_sections(free_port(), free_port())
    text = ini(("global", g), ("pool p", p), ("frobnicate x", {"a": "b"}), ("listener l", l))
    _bad(ctx, "badsection.ini", text, "[frobnicate x]")


def test_check_bad_duration(ctx):
    g, p, l = _base_sections(free_port(), free_port())
    l["client_timeout"] = "12parsecs"
    _bad(ctx, "badduration.ini", ini(("global", g), ("pool p", p), ("listener l", l)), "12parsecs")


def test_check_unknown_pool(ctx):
    g, p, l = _base_sections(free_port(), free_port())
    l["pool"] = "nosuchpool"
    _bad(ctx, "badpool.ini", ini(("global", g), ("pool p", p), ("listener l", l)), "nosuchpool")


def test_check_warns_of_keys_the_balance_does_not_read(ctx):
    """Hash settings on a pool whose balance ignores them are valid, but each
    gets a FILE:LINE warning; on a pool that reads them, none."""
    g, p, l = _base_sections(free_port(), free_port())
    p.update({"balance": "roundrobin", "hash_key": "uri", "maglev_table_size": "65539",
              "hash_balance_factor": "150"})
    q = {"server": p["server"], "balance": "ring", "hash_key": "path",
         "hash_balance_factor": "125"}
    h = {"bind": f"127.0.0.1:{free_port()}", "mode": "http", "pool": "q"}
    text = ini(("global", g), ("pool p", p), ("pool q", q), ("listener l", l), ("listener h", h))
    ctx.write("unread.ini", text)
    rc, out, err = run_fulcrum(["-t", "-c", "unread.ini"], cwd=ctx.tmp)
    check(rc == 0, f"-t: status {rc}, stderr {err!r}")
    lines = text.splitlines()
    warned = {n for n, t in enumerate(lines, 1) if f"unread.ini:{n}: warning:" in err}
    expect = {n for n, t in enumerate(lines, 1)
              if t.startswith(("hash_key = uri", "maglev_table_size", "hash_balance_factor = 150"))}
    check(len(expect) == 3 and warned == expect,
          f"warnings on lines {sorted(warned)}, expected {sorted(expect)}: {err!r}")


def test_check_warns_of_an_address_as_a_tcp_route_host(ctx):
    """A tcp route's host is matched against the TLS server name, which is
    never an address (RFC 6066 §3): such a route would never match, so -t
    warns at its line; a name draws nothing."""
    g, p, l = _base_sections(free_port(), free_port())
    r6 = {"listener": "l", "pool": "p", "host": "[2001:db8::1]"}
    r4 = {"listener": "l", "pool": "p", "host": "192.0.2.7"}
    rn = {"listener": "l", "pool": "p", "host": "example.com"}
    text = ini(("global", g), ("pool p", p), ("listener l", l),
               ("route r6", r6), ("route r4", r4), ("route rn", rn))
    ctx.write("sni.ini", text)
    rc, out, err = run_fulcrum(["-t", "-c", "sni.ini"], cwd=ctx.tmp)
    check(rc == 0, f"-t: status {rc}, stderr {err!r}")
    warned = {n for n in range(1, len(text.splitlines()) + 1) if f"sni.ini:{n}: warning:" in err}
    expect = {_line_of(text, "host = [2001:db8::1]"), _line_of(text, "host = 192.0.2.7")}
    check(warned == expect, f"warnings on lines {sorted(warned)}, expected {sorted(expect)}: {err!r}")


def test_check_warns_of_tls_keys_without_tls(ctx):
    """Server TLS keys on a pool without tls = on (its servers get plain
    text), and client TLS keys on a listener without tls_cert, load with a
    FILE:LINE warning each."""
    g, p, l = _base_sections(free_port(), free_port())
    p.update({"tls_verify": "off", "tls_sni": "svc.example"})
    l.update({"tls_min_version": "1.3", "tls_ciphers": "ECDHE+AESGCM", "alpn": "h2"})
    text = ini(("global", g), ("pool p", p), ("listener l", l))
    ctx.write("tlsless.ini", text)
    rc, out, err = run_fulcrum(["-t", "-c", "tlsless.ini"], cwd=ctx.tmp)
    check(rc == 0, f"-t: status {rc}, stderr {err!r}")
    lines = text.splitlines()
    warned = {n for n in range(1, len(lines) + 1) if f"tlsless.ini:{n}: warning:" in err}
    expect = {n for n, t in enumerate(lines, 1) if t.startswith(("tls_", "alpn"))}
    check(len(expect) == 5 and warned == expect,
          f"warnings on lines {sorted(warned)}, expected {sorted(expect)}: {err!r}")


def test_check_warns_of_unix_tls_servers_without_a_name(ctx):
    """tls_verify checks a server's name; a unix server has none unless
    tls_sni gives one. Its line gets a FILE:LINE warning; a TCP server, or
    the same pool with tls_sni, none."""
    g, p, l = _base_sections(free_port(), free_port())
    p.update({"tls": "on", "server": [p["server"], f"u unix:{ctx.path('s.sock')}"]})
    text = ini(("global", g), ("pool p", p), ("listener l", l))
    ctx.write("unixtls.ini", text)
    rc, out, err = run_fulcrum(["-t", "-c", "unixtls.ini"], cwd=ctx.tmp)
    check(rc == 0, f"-t: status {rc}, stderr {err!r}")
    warned = {n for n in range(1, len(text.splitlines()) + 1) if f"unixtls.ini:{n}: warning:" in err}
    check(warned == {_line_of(text, "server = u unix:")} and "no name" in err,
          f"warnings on lines {sorted(warned)}: {err!r}")
    p["tls_sni"] = "svc.example"
    ctx.write("unixsni.ini", ini(("global", g), ("pool p", p), ("listener l", l)))
    rc, out, err = run_fulcrum(["-t", "-c", "unixsni.ini"], cwd=ctx.tmp)
    check(rc == 0 and "warning" not in err, f"-t with tls_sni: status {rc}, stderr {err!r}")


def test_check_says_nothing_of_defaults_spelled_out(ctx):
    """A file that writes keys out with their default values (as SPEC's
    example does) asks for nothing that is not done: no warning, even where
    the key has no effect."""
    g, p, l = _base_sections(free_port(), free_port())
    p.update({"balance": "roundrobin", "hash_key": "client_ip", "maglev_table_size": "65537",
              "hash_balance_factor": "0", "tls": "off", "tls_verify": "on", "tls_ca": "",
              "tls_sni": ""})
    l.update({"tls_min_version": "1.2", "tls_ciphers": "", "alpn": "http/1.1"})
    ctx.write("defaults.ini", ini(("global", g), ("pool p", p), ("listener l", l)))
    rc, out, err = run_fulcrum(["-t", "-c", "defaults.ini"], cwd=ctx.tmp)
    check(rc == 0 and "warning" not in err, f"-t: status {rc}, stderr {err!r}")


def test_check_warns_of_timeouts_for_a_phase_the_listener_never_has(ctx):
    """tunnel_timeout on a tcp listener (client_timeout applies there),
    request_timeout on one without proxy_protocol, handshake_timeout on an
    http listener without certificates: each loads, with a FILE:LINE
    warning, since an operator who set it expects it to do something. The
    same keys where they apply, or at their defaults, say nothing."""
    g, p, l = _base_sections(free_port(), free_port())
    tcp = dict(l, tunnel_timeout="5s", request_timeout="3s")
    http = dict(l, mode="http", handshake_timeout="2s", bind=f"127.0.0.1:{free_port()}")
    text = ini(("global", g), ("pool p", p), ("listener t", tcp), ("listener h", http))
    ctx.write("timeouts.ini", text)
    rc, _, err = run_fulcrum(["-t", "-c", "timeouts.ini"], cwd=ctx.tmp)
    check(rc == 0, f"-t: status {rc}, stderr {err!r}")
    for key, value in (("tunnel_timeout", "5s"), ("request_timeout", "3s"),
                       ("handshake_timeout", "2s")):
        line = _line_of(text, f"{key} = {value}")
        check(f"timeouts.ini:{line}: warning: {key} has no effect" in err,
              f"no warning for {key} on line {line}: {err!r}")
    quiet = ini(("global", g), ("pool p", p),
                ("listener t", dict(l, tunnel_timeout="1h", request_timeout="3s",
                                    handshake_timeout="2s", proxy_protocol="accept")),
                ("listener h", dict(http, tunnel_timeout="5s", request_timeout="3s",
                                    handshake_timeout="10s")))
    ctx.write("quiet.ini", quiet)
    rc, _, err = run_fulcrum(["-t", "-c", "quiet.ini"], cwd=ctx.tmp)
    check(rc == 0 and "warning" not in err, f"-t where they apply: status {rc}, stderr {err!r}")


def test_check_warns_of_traffic_the_file_can_never_send(ctx):
    """Mistakes that load but leave something dead: a pool no listener or
    route names, a pool whose every server has weight 0 (which takes no
    new traffic), a route behind one with no condition on the same listener
    (the first match wins), and a hash_key on a pool only tcp listeners use
    (tcp hashes the client address). Each gets a FILE:LINE warning; the
    same file without them says nothing."""
    g, p, l = _base_sections(free_port(), free_port())
    http = {"bind": f"127.0.0.1:{free_port()}", "mode": "http", "pool": "p"}
    text = ini(("global", g),
               ("pool p", p),
               ("pool idle", p),
               ("pool zero", dict(p, server=p["server"] + " weight=0")),
               ("pool hashed", dict(p, balance="maglev", hash_key="header:X-User")),
               ("listener t", dict(l, pool="hashed")),
               ("listener h", http),
               ("route all", {"listener": "h", "pool": "zero"}),
               ("route api", {"listener": "h", "host": "api.example", "pool": "p"}))
    ctx.write("dead.ini", text)
    rc, _, err = run_fulcrum(["-t", "-c", "dead.ini"], cwd=ctx.tmp)
    check(rc == 0, f"-t: status {rc}, stderr {err!r}")
    for needle, want in (("[pool idle]", 'pool "idle" gets no traffic'),
                         ("[pool zero]", 'every server of pool "zero" has weight 0'),
                         ("[route api]", 'route "api" never matches: route "all"'),
                         ("hash_key = header:X-User", "hash_key has no effect on a pool only tcp")):
        line = _line_of(text, needle)
        check(f"dead.ini:{line}: warning: {want}" in err, f"no warning {want!r} on line {line}: {err!r}")
    # Pools reached only through routes (of a tcp and of an http listener),
    # a forward listener (no pool), a unix bind and a client_ip key on tcp.
    quiet = ini(("global", g),
                ("pool p", p),
                ("pool hashed", dict(p, balance="maglev", hash_key="header:X-User")),
                ("pool sni", dict(p, balance="ring", hash_key="client_ip")),
                ("pool api", p),
                ("listener t", l),
                ("listener h", dict(http, pool="hashed")),
                ("listener u", dict(l, bind=f"unix:{ctx.path('u.sock')}")),
                ("listener f", {"bind": f"127.0.0.1:{free_port()}", "mode": "forward"}),
                ("route api", {"listener": "h", "host": "api.example", "pool": "api"}),
                ("route all", {"listener": "h", "pool": "hashed"}),
                ("route sni", {"listener": "t", "host": "sni.example", "pool": "sni"}))
    ctx.write("alive.ini", quiet)
    rc, _, err = run_fulcrum(["-t", "-c", "alive.ini"], cwd=ctx.tmp)
    check(rc == 0 and "warning" not in err, f"-t: status {rc}, stderr {err!r}")


def test_check_refuses_h2_in_alpn_on_http_listeners(ctx):
    """An http or forward listener speaks HTTP/1.x: h2 in its alpn would have
    curl and browsers pick HTTP/2 and fail on every request. A tcp listener
    relays whatever was agreed, so there it is fine."""
    g, p, l = _base_sections(free_port(), free_port())
    for mode in ("http", "forward"):
        ll = dict(l, mode=mode, alpn="http/1.1, h2")
        if mode == "forward":
            del ll["pool"]
        text = ini(("global", g), ("pool p", p), ("listener l", ll))
        _, _, err = _bad(ctx, f"h2{mode}.ini", text, "alpn =")
        check("HTTP/1.x only" in err, f"{mode}: {err!r}")
    text = ini(("global", g), ("pool p", p), ("listener l", dict(l, alpn="h2,http/1.1")))
    ctx.write("h2tcp.ini", text)
    rc, _, err = run_fulcrum(["-t", "-c", "h2tcp.ini"], cwd=ctx.tmp)
    check(rc == 0 and "HTTP/1.x" not in err, f"-t on a tcp listener with h2: {rc} {err!r}")


def test_check_several_errors(ctx):
    """Every error is reported, each with its own line."""
    g, p, l = _base_sections(free_port(), free_port())
    g["bogus_global"] = "1"
    l["client_timeout"] = "soon"
    text = ini(("global", g), ("pool p", p), ("listener l", l))
    _, _, err = _bad(ctx, "several.ini", text, "bogus_global")
    line = _line_of(text, "soon")
    check(f"several.ini:{line}:" in err, f"second error (line {line}) not reported: {err!r}")


def test_start_with_bad_config_exits_1(ctx):
    g, p, l = _base_sections(free_port(), free_port())
    p["no_such_key"] = "1"
    text = ini(("global", g), ("pool p", p), ("listener l", l))
    path = ctx.write("bad.ini", text)
    rc, out, err = run_fulcrum(["-c", path])
    check(rc == 1, f"start with a bad config: status {rc}")
    check(f"{path}:{_line_of(text, 'no_such_key')}:" in err, f"stderr: {err!r}")
    # SPEC §1: a start says the cause in one line, however many errors
    # there are; -t lists them all.
    l["client_timeout"] = "soon"
    text = ini(("global", g), ("pool p", p), ("listener l", l))
    path = ctx.write("bad2.ini", text)
    rc, out, err = run_fulcrum(["-c", path])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    check(rc == 1 and len(lines) == 1 and lines[0].startswith(f"{path}:") and "1 more" in lines[0],
          f"two errors at a start: status {rc}, stderr {err!r}")
    rc, out, err = run_fulcrum(["-t", "-c", path])
    check(rc == 1 and len([ln for ln in err.splitlines() if ln.strip()]) == 2,
          f"two errors with -t: {err!r}")


def test_unwritable_access_log(ctx):
    """An access_log path that cannot be written is a FILE:LINE error for -t
    and at start-up alike (exit 1), and -t creates nothing."""
    g, p, l = _base_sections(free_port(), free_port())
    g["access_log"] = ctx.path("no-such-dir/access.log")
    text = ini(("global", g), ("pool p", p), ("listener l", l))
    path = ctx.write("log.ini", text)
    want = f"{path}:{_line_of(text, 'access_log')}: cannot open the access log"
    for args in (["-t", "-c", path], ["-c", path]):
        rc, out, err = run_fulcrum(args)
        check(rc == 1 and want in err, f"{args}: status {rc}, stderr {err!r}")
    g["access_log"] = ctx.path("new-access.log")
    path = ctx.write("log.ini", ini(("global", g), ("pool p", p), ("listener l", l)))
    rc, out, err = run_fulcrum(["-t", "-c", path])
    check(rc == 0, f"a log file to be created: status {rc}, stderr {err!r}")
    check(not os.path.exists(g["access_log"]), "-t created the access log")


def test_missing_config_file(ctx):
    path = ctx.path("does-not-exist.ini")
    for args in (["-c", path], ["-t", "-c", path]):
        rc, out, err = run_fulcrum(args)
        check(rc == 1, f"{args}: status {rc} for a missing config")
        lines = [l for l in err.splitlines() if l.strip()]
        check(len(lines) == 1, f"{args}: want a one-line message, got {err!r}")
        check(path in lines[0], f"{args}: message does not name the file: {err!r}")


def test_nul_byte_in_a_line(ctx):
    """inih would end the line at a NUL and never see the rest of it."""
    path = ctx.path("nul.ini")
    with open(path, "wb") as f:
        f.write(b"[global]\nadmin =\n\x00junk = 1\n[pool p]\nserver = a 127.0.0.1:1\n")
    rc, out, err = run_fulcrum(["-t", "-c", path])
    check(rc == 1 and f"{path}:3: NUL byte in the line" in err, f"status {rc}, stderr {err!r}")


def test_config_that_never_ends(ctx):
    """A file that is not a configuration (an endless device, a huge log)
    is refused after 16 MiB with FILE:LINE, not read into memory to the end;
    -t and a real start alike."""
    for args in (["-t", "-c", "/dev/zero"], ["-c", "/dev/zero"]):
        rc, out, err = run_fulcrum(args, timeout=20)
        check(rc == 1 and "/dev/zero:1: the file goes on past 16 MiB" in err,
              f"{args}: status {rc}, stderr {err[:300]!r}")


def test_config_path_is_a_directory(ctx):
    for args in (["-c", ctx.tmp], ["-t", "-c", ctx.tmp]):
        rc, out, err = run_fulcrum(args)
        check(rc == 1, f"{args}: status {rc} for a directory")
        check(f"{ctx.tmp}: cannot open: Is a directory" in err, f"{args}: stderr {err!r}")


def test_port_in_use_exits_2(ctx):
    port = free_port()
    path = ctx.write("busy.ini", _valid_conf(port, free_port()))
    with socket.socket() as busy:  # no SO_REUSEPORT: fulcrum's bind must fail
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        rc, out, err = run_fulcrum(["-c", path])
    check(rc == 2, f"port in use: status {rc}, stderr {err!r}")
    check(err.strip(), "port in use: no message on stderr")
    check(str(port) in err or "in use" in err.lower(),
          f"port in use: the message names neither the port nor the cause: {err!r}")


def test_second_instance_on_same_port_exits_2(ctx):
    """SO_REUSEPORT would let two fulcrums share a port and split its
    connections; the second one must refuse to start instead."""
    port = free_port()
    conf = _valid_conf(port, free_port())
    ctx.fulcrum(conf)
    rc, out, err = run_fulcrum(["-c", ctx.write("second.ini", conf)])
    check(rc == 2, f"second instance on a used port: status {rc}, stderr {err!r}")
    check(str(port) in err and "in use" in err.lower(),
          f"second instance: the message names neither the port nor the cause: {err!r}")
    with socket.socket() as busy:  # SO_REUSEPORT on the other socket too: still in use
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        port2 = free_port()
        busy.bind(("127.0.0.1", port2))
        busy.listen(1)
        # max_connections far past any fd limit: its warning would be a
        # second line, but a failed start says one, its cause (SPEC §1).
        conf3 = tcp_conf(port2, [f"s1 127.0.0.1:{free_port()}"],
                         glob={"max_connections": 100000000})
        rc, out, err = run_fulcrum(["-c", ctx.write("third.ini", conf3)])
    check(rc == 2, f"port held by an SO_REUSEPORT listener: status {rc}, stderr {err!r}")
    check(len(err.strip().splitlines()) == 1, f"more than the one-line cause: {err!r}")


def test_pidfile(ctx):
    port = free_port()
    b = ctx.backend("echo")
    pidfile = ctx.path("fulcrum.pid")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()]), args=["-p", pidfile])
    wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(), 2 * SCALE, what="pid file")
    got = open(pidfile).read().strip()
    check(got == str(f.pid), f"pid file holds {got!r}, pid is {f.pid}")


def test_pidfile_left_behind_is_reported(ctx):
    """With `user =`, the pid file may sit where the dropped user cannot
    remove it: the exit says so instead of leaving it silently."""
    if os.geteuid() != 0:
        raise Skip("needs root to drop privileges")
    rootonly = ctx.path("rootonly")
    os.mkdir(rootonly, 0o700)
    pidfile = os.path.join(rootonly, "fulcrum.pid")
    port = free_port()
    b = ctx.backend("echo")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"user": "nobody"}),
                    args=["-p", pidfile])
    f.stop()
    check(os.path.exists(pidfile), "the pid file went, though nobody cannot remove it")
    check(f"cannot remove the pid file {pidfile}: Permission denied" in f.stderr(),
          f"no warning for the pid file left behind: {f.stderr()[-500:]}")


def _threads_with(ctx, port, backend, args, workers=None):
    conf = tcp_conf(port, [backend.server_line()], glob={"workers": workers})
    f = ctx.fulcrum(conf, args=args)
    n = f.threads()
    s = connect(("127.0.0.1", port))
    check(echo_roundtrip(s, b"ping"), "relay does not work")
    s.close()
    f.check_fds_settled()
    f.stop()
    return n


def test_workers_flag(ctx):
    """-w N overrides [global] workers: each worker is a thread, so N+2
    workers has 2 more threads than N."""
    b = ctx.backend("echo")
    t1 = _threads_with(ctx, free_port(), b, ["-w", "1"], workers=3)
    t3 = _threads_with(ctx, free_port(), b, ["-w", "3"], workers=1)
    check(t3 - t1 == 2, f"-w 1 gives {t1} threads, -w 3 gives {t3}")
    # Default (auto) is one worker per online CPU.
    tdef = _threads_with(ctx, free_port(), b, [], workers=None)
    ncpu = os.sysconf("SC_NPROCESSORS_ONLN")
    check(tdef - t1 == ncpu - 1, f"workers = auto on {ncpu} CPUs gives {tdef} threads, one worker {t1}")
    tauto = _threads_with(ctx, free_port(), b, [], workers="auto")
    check(tauto == tdef, f"workers = auto gives {tauto} threads, default {tdef}")
    twauto = _threads_with(ctx, free_port(), b, ["-w", "auto"], workers=1)
    check(twauto == tdef, f"-w auto gives {twauto} threads, default {tdef}")


def test_files_that_are_not_regular_are_refused(ctx):
    """A FIFO (or a device) named as a certificate, CA, htpasswd file or
    access log would make -t, a start or a reload wait for a writer or a
    reader, or read without end: each is a FILE:LINE error at once."""
    from test_tls import make_certs
    certs = make_certs(ctx)
    fifo = ctx.path("fifo")
    os.mkfifo(fifo)
    g, p, l = _base_sections(free_port(), free_port())
    cases = [
        ("tls_cert", (g, p, dict(l, mode="http", tls_cert=fifo, tls_key=fifo))),
        # The pair check opened the certificate again, as OpenSSL does.
        ("tls_cert", (g, p, dict(l, mode="http", tls_cert=fifo, tls_key=certs.key("a")))),
        ("tls_ca", (g, dict(p, tls="on", tls_ca=fifo), l)),
        ("auth", (g, p, {"bind": l["bind"], "mode": "forward", "auth": f"basic {fifo}"})),
        ("access_log", (dict(g, access_log=fifo), p, l)),
    ]
    for key, (gg, pp, ll) in cases:
        text = ini(("global", gg), ("pool p", pp), ("listener l", ll))
        _, _, err = _bad(ctx, f"{key}.ini", text, f"{key} =")
        check("not a regular file" in err or "No such device" in err, f"{key}: {err!r}")
    for dev in ("/dev/zero", "/dev/null"):
        text = ini(("global", g), ("pool p", p),
                   ("listener l", {"bind": l["bind"], "mode": "forward", "auth": f"basic {dev}"}))
        _, _, err = _bad(ctx, "dev.ini", text, "auth =")
        check("not a regular file" in err, f"auth = basic {dev}: {err!r}")


def test_reload_to_a_fifo_access_log_leaves_the_api_answering(ctx):
    """A reload naming a FIFO nobody reads as the access log is refused at
    once (400 with FILE:LINE) instead of holding the main thread, which also
    answers the admin API and signals."""
    from test_admin import Admin
    fifo = ctx.path("fifo")
    os.mkfifo(fifo)
    port, aport = free_port(), free_port()
    b = ctx.backend("echo")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()], glob={"admin": f"127.0.0.1:{aport}"}))
    with open(f.conf_path, "w") as fh:
        fh.write(tcp_conf(port, [b.server_line()],
                          glob={"admin": f"127.0.0.1:{aport}", "access_log": fifo}))
    adm = Admin(aport)
    got = adm.json("POST", "/reload", want=400)
    check(any(":" in e and "access log" in e for e in got.get("errors", [])), f"errors: {got}")
    check(adm.call("GET", "/healthz")[0] == 200, "the admin API stopped answering")


def test_pidfile_that_cannot_be_written_exits_2(ctx):
    """The open succeeds but the write fails (EIO here; a full disk alike):
    start-up fails with exit 2 and the cause, as for a path it cannot open."""
    port = free_port()
    b = ctx.backend("echo")
    path = ctx.write("pid.ini", tcp_conf(port, [b.server_line()]))
    rc, out, err = run_fulcrum(["-c", path, "-p", "/proc/version"])
    check(rc == 2 and "cannot write pid file /proc/version" in err, f"status {rc}, stderr {err!r}")


def test_a_pid_file_that_is_a_device_is_never_removed(ctx):
    """`-p /dev/null` works, and `-p /dev/full` fails with exit 2, but
    neither the exit nor the failure may remove the device: only a regular
    file is a pid file of fulcrum's to remove. Copies of the two devices
    stand in for them."""
    if os.geteuid() != 0:
        raise Skip("needs root to make device nodes")
    null, full = ctx.path("null"), ctx.path("full")
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    port = free_port()
    b = ctx.backend("echo")
    path = ctx.write("dev.ini", tcp_conf(port, [b.server_line()]))
    rc, out, err = run_fulcrum(["-c", path, "-p", full])
    check(rc == 2 and "cannot write pid file" in err, f"-p on a full device: {rc}, {err!r}")
    check(os.path.exists(full), "the failed start removed the device given as pid file")
    f = ctx.fulcrum(tcp_conf(port, [b.server_line()]), args=["-p", null])
    f.stop()
    check(os.path.exists(null), "the exit removed the device given as pid file")


def test_a_pid_file_that_is_a_fifo_fails_at_once(ctx):
    """A FIFO nobody reads at the pid file's path makes the start fail with
    exit 2 and the cause, instead of waiting for a reader forever."""
    fifo = ctx.path("pid.fifo")
    os.mkfifo(fifo)
    b = ctx.backend("echo")
    path = ctx.write("fifo.ini", tcp_conf(free_port(), [b.server_line()]))
    rc, out, err = run_fulcrum(["-c", path, "-p", fifo], timeout=5)
    check(rc == 2 and f"cannot write pid file {fifo}" in err, f"status {rc}, stderr {err!r}")
    check(stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced or removed")


def test_check_refuses_an_ipv4_mapped_bind(ctx):
    """[::ffff:127.0.0.1] cannot be bound on fulcrum's IPv6-only sockets: -t
    says so with FILE:LINE instead of passing a file the start refuses."""
    g, p, l = _base_sections(free_port(), free_port())
    l["bind"] = f"[::ffff:127.0.0.1]:{free_port()}"
    _, _, err = _bad(ctx, "mapped.ini", ini(("global", g), ("pool p", p), ("listener l", l)),
                     "bind =")
    check("IPv4-mapped" in err, err)


def test_reload_and_reopen_signals_do_not_kill_a_check_or_a_start(ctx):
    """logrotate's postrotate and `systemctl kill` signal every process of
    the unit: a `fulcrum -t` that ExecReload runs, or a process still
    starting, gets SIGUSR1 (or SIGHUP, SIGUSR2) before it has anything to
    do with it. It must carry on, not die of the signal's default action.
    The configuration comes through a pipe here, so that the signals
    surely arrive while the file is being read."""
    import subprocess
    conf = tcp_conf(free_port(), [f"s1 127.0.0.1:{free_port()}"])
    p = subprocess.Popen([BIN, "-t", "-c", "/dev/stdin"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.2 * SCALE)
        for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR2):
            p.send_signal(sig)
        time.sleep(0.1 * SCALE)
        out, err = p.communicate(conf.encode(), timeout=10 * SCALE)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check(p.returncode == 0 and b"configuration is valid" in out,
          f"fulcrum -t: status {p.returncode}, stdout {out!r}, stderr {err!r}")
