"""Red team: network egress — TCP, UDP and DNS over v4 and v6 loopback, unix sockets, ingress.

Safety: payloads target ONLY listeners this test started on 127.0.0.1 / ::1 (and unix
sockets it created). The getaddrinfo probe runs only after the payload has checked that
its network namespace holds nothing but `lo`, so it can never reach a real resolver.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from ._harness import host_checks, out, run_guarded
from ._witness import payload

pytestmark = pytest.mark.redteam

# Runs first in every network payload: report interfaces and routes, so the host can see
# whether the sandbox shares the host's network at all.
NET_FACTS = """
import os, socket, json
def net_facts():
    try:
        ifaces = sorted(n for _, n in socket.if_nameindex())
    except OSError as e:
        ifaces = ['ERR ' + type(e).__name__]
    try:
        routes = [ln.split()[0] for ln in open('/proc/net/route').read().splitlines()[1:]]
    except OSError:
        routes = []
    return {'ifaces': ifaces, 'routes4': routes}
FACTS = net_facts()
ISOLATED = all(i == 'lo' for i in FACTS['ifaces']) and not FACTS['routes4']
print('FACTS', json.dumps(FACTS), ISOLATED, flush=True)
"""

TCP_EGRESS = NET_FACTS + """
res = {}
for fam, host, port in TARGETS:
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((host, port))
        s.sendall(b'egress ' + TOKEN.encode())
        res['%s:%d' % (host, port)] = 'CONNECTED'
    except OSError as e:
        res['%s:%d' % (host, port)] = type(e).__name__
    finally:
        s.close()
print('TCP', json.dumps(res), flush=True)
"""


def _facts(stdout: str) -> dict:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("FACTS "))
    return json.loads(line.split(" ", 1)[1].rsplit(" ", 1)[0])


def _assert_isolated(stdout: str) -> None:
    facts = _facts(stdout)
    assert all(i == "lo" for i in facts["ifaces"]), f"sandbox sees interfaces {facts['ifaces']}"
    assert not facts["routes4"], f"sandbox has IPv4 routes via {facts['routes4']}"


async def test_tcp_egress_to_host_loopback_v4_v6_fails(sandbox, token, canaries, listeners,
                                                       procwatch):
    targets = [(int(socket.AF_INET), "127.0.0.1", listeners.port["tcp4"])]
    if "tcp6" in listeners.port:
        targets.append((int(socket.AF_INET6), "::1", listeners.port["tcp6"]))
    res = await run_guarded(sandbox, payload(TCP_EGRESS, token, TARGETS=targets), timeout=6.0)
    assert "TCP " in res.stdout, f"payload did not finish: {out(res)[-500:]}"
    _assert_isolated(res.stdout)
    assert "CONNECTED" not in res.stdout
    host_checks(res, canaries, listeners, procwatch)


UDP_EGRESS = NET_FACTS + """
res = {}
for fam, host, port in TARGETS:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        for _ in range(5):
            s.sendto(b'egress ' + TOKEN.encode(), (host, port))
        res['%s:%d' % (host, port)] = 'SENT'
    except OSError as e:
        res['%s:%d' % (host, port)] = type(e).__name__
    finally:
        s.close()
print('UDP', json.dumps(res), flush=True)
"""


async def test_udp_egress_to_host_loopback_v4_v6_fails(sandbox, token, canaries, listeners,
                                                       procwatch):
    targets = [(int(socket.AF_INET), "127.0.0.1", listeners.port["udp4"])]
    if "udp6" in listeners.port:
        targets.append((int(socket.AF_INET6), "::1", listeners.port["udp6"]))
    res = await run_guarded(sandbox, payload(UDP_EGRESS, token, TARGETS=targets), timeout=5.0)
    assert "UDP " in res.stdout, f"payload did not finish: {out(res)[-500:]}"
    _assert_isolated(res.stdout)
    await asyncio.sleep(0.3)  # datagrams are fire-and-forget; give them time to land
    host_checks(res, canaries, listeners, procwatch)


DNS = NET_FACTS + """
import struct
def query(name):
    hdr = struct.pack('>HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0)
    q = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\\0'
    return hdr + q + struct.pack('>HH', 1, 1)
name = 'brt-' + TOKEN + '.invalid'
res = {}
for fam, host, port in TARGETS:  # our own fake DNS servers on the host's loopback
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(query(name), (host, port))
        res['%s:%d' % (host, port)] = 'ANSWER %r' % (s.recvfrom(512)[0][:8],)
    except OSError as e:
        res['%s:%d' % (host, port)] = type(e).__name__
    finally:
        s.close()
if ISOLATED:  # only then can no query reach a real resolver
    try:
        res['getaddrinfo'] = 'RESOLVED %r' % (socket.getaddrinfo(name, 80)[:1],)
    except OSError as e:
        res['getaddrinfo'] = type(e).__name__
else:
    res['getaddrinfo'] = 'SKIPPED: not isolated'
print('DNS', json.dumps(res), flush=True)
"""


async def test_dns_egress_fails(sandbox, token, canaries, listeners, procwatch):
    targets = [(int(socket.AF_INET), "127.0.0.1", listeners.port["udp4"])]
    if "udp6" in listeners.port:
        targets.append((int(socket.AF_INET6), "::1", listeners.port["udp6"]))
    res = await run_guarded(sandbox, payload(DNS, token, TARGETS=targets), timeout=6.0)
    assert "DNS " in res.stdout, f"payload did not finish: {out(res)[-500:]}"
    _assert_isolated(res.stdout)
    answers = json.loads(res.stdout.split("DNS ", 1)[1].splitlines()[0])
    assert answers["getaddrinfo"] == "gaierror", f"name resolution: {answers['getaddrinfo']}"
    assert not any(str(v).startswith("ANSWER") for v in answers.values()), answers
    await asyncio.sleep(0.3)
    host_checks(res, canaries, listeners, procwatch)


UNIX = """
import socket, json
res = {}
for name, addr in (('abstract', ABSTRACT), ('path', PATH)):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(addr)
        s.sendall(b'unix ' + TOKEN.encode())
        res[name] = 'CONNECTED'
    except OSError as e:
        res[name] = type(e).__name__
print('UNIX', json.dumps(res), flush=True)
for p in ('/run/docker.sock', '/var/run/docker.sock', '/run/dbus/system_bus_socket',
          '/run/systemd/private', '/run/containerd/containerd.sock'):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.2)
        s.connect(p)
        print('HOSTSOCK', p, flush=True)  # connect only: we never speak to it
        s.close()
    except OSError:
        pass
"""


async def test_host_unix_sockets_unreachable(sandbox, token, canaries, listeners, procwatch):
    res = await run_guarded(sandbox, payload(UNIX, token, ABSTRACT=listeners.abstract,
                                             PATH=listeners.unix_path), timeout=5.0)
    assert "UNIX " in res.stdout, f"payload did not finish: {out(res)[-500:]}"
    assert "CONNECTED" not in res.stdout
    assert "HOSTSOCK" not in res.stdout, "a host daemon's unix socket is reachable"
    host_checks(res, canaries, listeners, procwatch)


INGRESS = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', PORT))
s.listen(8)
s.settimeout(2.5)
print('LISTENING', flush=True)
try:
    c, peer = s.accept()
    print('ACCEPTED', peer, flush=True)
except OSError:
    print('NOBODY', flush=True)
"""


async def test_sandbox_listener_unreachable_from_host(sandbox, token, canaries, listeners,
                                                      procwatch):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # free on the host; the sandbox binds the same number in its own netns
    task = asyncio.ensure_future(run_guarded(sandbox, payload(INGRESS, token, PORT=port),
                                             timeout=5.0))
    reached = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not task.done():
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=0.2)
            reached.append(c.getpeername())
            c.close()
        except OSError:
            pass
        await asyncio.sleep(0.1)
    res = await task
    assert not reached, "the host reached a port the sandbox listens on"
    assert "ACCEPTED" not in res.stdout
    host_checks(res, canaries, listeners, procwatch)
