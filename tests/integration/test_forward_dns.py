"""forward mode name resolution (SPEC §2 allow/deny, §3 "Names are resolved
without blocking a worker"): the name a client asked for is the name
resolved (no resolv.conf search list), the hosts file is read with the
configuration, CNAME TTLs count, every address of an answer is checked
against deny, and names past DNS's limits are refused."""

import signal
import time

from harness import SCALE, check, free_port, wait_for
from test_forward import ask, connect_via, fake_dns, proxy_get, start
from test_http import close_backends_first, expect_error, ok_handler, pyserver


def test_the_search_list_is_not_applied(ctx):
    """With `search corp.fwd.test` (LOCALDOMAIN here, resolv.conf's search
    line alike), "secret" must not become secret.corp.fwd.test: a deny on
    that name would be got round, and allow would match one name while
    fulcrum connects to another. Squid and nginx do not search either."""
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"secret.corp.fwd.test": ["127.0.0.1"]})
    port = free_port()
    start(ctx, port, dns=dns, env={"LOCALDOMAIN": "corp.fwd.test", "RES_OPTIONS": "ndots:5"},
          listener={"deny": "*.corp.fwd.test", "connect_ports": "*"})
    m, closed = ask(port, proxy_get(f"http://secret.corp.fwd.test:{srv.port}/"))
    expect_error(m, closed, 403, what="the denied name itself")
    for target in (f"http://secret:{srv.port}/", f"http://secret.corp:{srv.port}/"):
        m, _ = ask(port, proxy_get(target))
        check(m.status == 502, f"{target}: {m.status}, want 502 (no such name)")
    r, m = connect_via(port, f"secret:{srv.port}")
    check(m.status == 502, f"CONNECT secret: {m.status}")
    r.close()
    check(srv.accepted == 0, "the denied origin was reached through the search list")
    check(dns.count("secret.corp.fwd.test") == 0, "the search list was applied")


def _hosts(ctx, text):
    path = ctx.path("hosts")
    with open(path, "w") as fh:
        fh.write(text)
    return path


def test_the_hosts_file_is_read_with_the_configuration(ctx):
    """Names in the hosts file resolve without a DNS query (aliases and
    case alike, a trailing dot too); the file is read at start and again on
    a reload, not on every lookup, which c-ares would do on the worker's
    thread. localhost is loopback when the file does not name it."""
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"moved.fwd.test": ["127.0.0.1"]})
    hosts = _hosts(ctx, "# comment\n127.0.0.1\tfiled.fwd.test Alias.fwd.test # the same\n"
                        "192.0.2.1 moved.fwd.test\n")
    port = free_port()
    f = start(ctx, port, dns=dns, env={"FULCRUM_HOSTS_FILE": hosts},
              listener={"connect_ports": "*", "connect_timeout": "300ms"})
    for name in ("filed.fwd.test", "ALIAS.fwd.test", "filed.fwd.test.", "localhost"):
        m, _ = ask(port, proxy_get(f"http://{name}:{srv.port}/"))
        check(m.status == 200, f"{name} from the hosts file: {m.status}")
    check(dns.count("filed.fwd.test") + dns.count("alias.fwd.test") + dns.count("localhost") == 0,
          "a name in the hosts file was asked of DNS")
    # moved.fwd.test is 192.0.2.1 (unroutable) in the file: not reached.
    m, _ = ask(port, proxy_get(f"http://moved.fwd.test:{srv.port}/"))
    check(m.status == 502, f"moved.fwd.test at its hosts-file address: {m.status}")
    _hosts(ctx, "127.0.0.1 filed.fwd.test\n")
    m, _ = ask(port, proxy_get(f"http://moved.fwd.test:{srv.port}/"))
    check(m.status == 502, f"the file was read again before the reload: {m.status}")
    f.signal(signal.SIGHUP)
    wait_for(lambda: "generation 2" in f.stderr(), 5 * SCALE, what="the reload")
    m, _ = ask(port, proxy_get(f"http://moved.fwd.test:{srv.port}/"))
    check(m.status == 200, f"moved.fwd.test through DNS after the reload: {m.status}")
    check(dns.count("moved.fwd.test") >= 1, "moved.fwd.test was not asked of DNS after the reload")


def test_every_address_is_checked_against_deny(ctx):
    """SPEC: a deny address pattern applies to every address a name
    resolves to. The tenth of ten addresses is denied: 403. In the hosts
    file, a name with more addresses than fulcrum keeps cannot be checked
    whole, so it is refused while address denies exist for its port, and
    served when none do."""
    srv = pyserver(ctx, ok_handler())
    many = [f"127.0.0.{i}" for i in range(1, 11)]
    dns = fake_dns(ctx, records={"ten.fwd.test": many})
    hosts = _hosts(ctx, "".join(f"127.0.{i // 250}.{1 + i % 250} forty.fwd.test\n"
                                for i in range(40)))
    port = free_port()
    start(ctx, port, dns=dns, env={"FULCRUM_HOSTS_FILE": hosts},
          listener={"deny": "127.0.0.10/32", "connect_ports": "*"})
    for name in ("ten.fwd.test", "forty.fwd.test"):
        m, closed = ask(port, proxy_get(f"http://{name}:{srv.port}/"))
        expect_error(m, closed, 403, what=f"{name}, one address denied or unchecked")
        r, m = connect_via(port, f"{name}:{srv.port}")
        check(m.status == 403, f"CONNECT {name}: {m.status}")
        r.close()
    check(srv.accepted == 0, "a name with a denied address was connected to")
    port2 = free_port()
    start(ctx, port2, dns=dns, env={"FULCRUM_HOSTS_FILE": hosts},
          listener={"deny": ["*.other.test", f"127.0.0.0/8:{srv.port + 1}"], "connect_ports": "*"})
    m, _ = ask(port2, proxy_get(f"http://forty.fwd.test:{srv.port}/"))
    check(m.status == 200, f"forty addresses and no address deny for this port: {m.status}")


def test_an_address_deny_with_a_port_leaves_other_ports(ctx):
    """deny = ADDRESS:PORT refuses that port only, for a literal address and
    for a name resolving to it, request after request (a check of the
    answer's other fields must not read memory a literal never set)."""
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"here.fwd.test": ["127.0.0.1"]})
    port = free_port()
    start(ctx, port, dns=dns, listener={"deny": f"127.0.0.1:{srv.port + 1}", "connect_ports": "*"})
    for i in range(20):
        for host in ("127.0.0.1", "here.fwd.test"):
            m, _ = ask(port, proxy_get(f"http://{host}:{srv.port}/"))
            check(m.status == 200, f"request {i} to {host}:{srv.port}: {m.status}")
    m, closed = ask(port, proxy_get(f"http://here.fwd.test:{srv.port + 1}/"))
    expect_error(m, closed, 403, what="the denied port")


def test_a_cname_s_ttl_bounds_the_cache(ctx):
    """An answer is kept for its smallest TTL, the CNAME's included: an
    alias with TTL 1 before an address with TTL 60 is asked again after a
    second, not after a minute."""
    srv = pyserver(ctx, ok_handler())
    dns = fake_dns(ctx, records={"target.fwd.test": ["127.0.0.1"]}, ttl=60,
                   cnames={"alias.fwd.test": ("target.fwd.test", 1)})
    port = free_port()
    start(ctx, port, dns=dns)
    url = f"http://alias.fwd.test:{srv.port}/"
    m, _ = ask(port, proxy_get(url))
    check(m.status == 200, f"through the CNAME: {m.status}")
    first = dns.count("alias.fwd.test")
    time.sleep(2.2)
    m, _ = ask(port, proxy_get(url))
    check(m.status == 200, f"after the CNAME's TTL: {m.status}")
    check(dns.count("alias.fwd.test") > first, "the alias was used past its CNAME's TTL")


def test_names_at_dns_limits(ctx):
    """253 characters is the longest name, with or without the root's dot;
    a label over 63 characters cannot be asked of DNS at all: 400."""
    srv = pyserver(ctx, ok_handler())
    label = "a" * 63
    longest = ".".join([label, label, label, "b" * 57, "fwd"])  # 253 characters
    check(len(longest) == 253, len(longest))
    dns = fake_dns(ctx, records={longest: ["127.0.0.1"]})
    port = free_port()
    start(ctx, port, dns=dns)
    for name in (longest, longest + "."):
        m, _ = ask(port, proxy_get(f"http://{name}:{srv.port}/"))
        check(m.status == 200, f"a {len(name)}-character name: {m.status}")
    for name in ("a" * 64 + ".fwd.test", longest + "x", "a.fwd.test.."):
        m, closed = ask(port, proxy_get(f"http://{name}:{srv.port}/"))
        expect_error(m, closed, 400, what=f"{name[:20]}... ({len(name)} characters)")
    check(all(len(k.split(".")[0]) <= 63 for k in dns.queries), f"asked: {list(dns.queries)}")


close_backends_first(globals())
