"""Each isolation layer, observed from inside the sandbox and from the host."""

from __future__ import annotations

import os
import socket
import threading

from bastion.sandbox import Sandbox, probe

from .conftest import needs_bwrap


@needs_bwrap
def test_probe_reports_the_default_required_layers() -> None:
    report = probe("bwrap")
    assert report.backend == "bwrap"
    assert {"network", "filesystem", "pid-namespace", "seccomp"} <= set(report.layers), report


async def test_uid_caps_nnp_seccomp(sb: Sandbox) -> None:
    r = await sb.run("import os\nst = open('/proc/self/status').read()\n"
                     "print(os.getuid(), 'NoNewPrivs:\\t1' in st, 'CapEff:\\t0000000000000000' in st,"
                     " 'Seccomp:\\t2' in st)")
    assert r.stdout.split() == ["65534", "True", "True", "True"], r.stderr


async def test_env_is_an_allowlist(sb: Sandbox) -> None:
    os.environ["BASTION_TEST_SECRET"] = "s3cret"
    try:
        r = await sb.run("import os; print(sorted(os.environ))")
    finally:
        del os.environ["BASTION_TEST_SECRET"]
    assert "BASTION_TEST_SECRET" not in r.stdout and "s3cret" not in r.stdout


async def test_filesystem_view(sb: Sandbox, tmp_path: object) -> None:
    here = os.getcwd()
    r = await sb.run(
        "import os\n"
        f"print(os.path.exists({here!r}), os.path.exists('/root'), os.path.exists('/home'))\n"
        "try:\n    open('/usr/x', 'w')\nexcept OSError as e:\n    print('ro', e.errno)\n"
        "open('/work/ok', 'w').write('x'); open('/tmp/ok', 'w').write('x'); print('rw')")
    assert r.stdout.split("\n")[:3] == ["False False False", "ro 30", "rw"], r.stderr


async def test_no_network_not_even_host_loopback(sb: Sandbox) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(3)
    port = srv.getsockname()[1]
    hits: list[object] = []

    def accept() -> None:
        try:
            hits.append(srv.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    r = await sb.run("import socket\ns = socket.socket(); s.settimeout(1)\n"
                     f"print(s.connect_ex(('127.0.0.1', {port})))\n"
                     "print(open('/proc/net/dev').read().count(':'))")
    srv.close()
    t.join()
    assert not hits
    assert r.stdout.split()[1] == "1", r.stdout  # only lo


async def test_pid_namespace_hides_host(sb: Sandbox) -> None:
    r = await sb.run("import os; print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    assert r.stdout.strip() == "[1]"


async def test_seccomp_denies_escalation(sb: Sandbox) -> None:
    r = await sb.run(
        "import ctypes, socket\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x10000000), ctypes.get_errno())\n"
        "print(libc.ptrace(0, 0, 0, 0), ctypes.get_errno())\n"
        "try:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\nexcept OSError as e:\n"
        "    print('raw', e.errno)\n")
    assert r.stdout.split("\n")[:3] == ["-1 1", "-1 1", "raw 1"], r.stdout + r.stderr


async def test_only_stdio_fds(sb: Sandbox) -> None:
    r = await sb.run("import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))")
    assert r.stdout.strip() in ("[0, 1, 2]", "[0, 1, 2, 3]")  # 3: listdir's own fd


_DEV = r"""
import os, json
out = {'listing': sorted(os.listdir('/dev'))}
with open('/dev/null', 'w') as f:
    f.write('x')
out['urandom'] = len(open('/dev/urandom', 'rb').read(32))
out['zero'] = open('/dev/zero', 'rb').read(4).hex()
with open('/dev/shm/s', 'w') as f:
    f.write('shm')
out['shm'] = open('/dev/shm/s').read()
try:
    with open('/dev/shm/big', 'wb') as f:
        f.write(b'x' * (80 << 20))
    out['shm_cap'] = 'none'
except OSError as e:
    out['shm_cap'] = e.errno
out['denied'] = []
for attempt in (lambda: open('/dev/new', 'w'), lambda: os.unlink('/dev/null'),
                lambda: os.rename('/dev/zero', '/dev/z'), lambda: os.chmod('/dev', 0o777),
                lambda: os.symlink('/work', '/dev/link'), lambda: os.mknod('/dev/mem2')):
    try:
        attempt()
        out['denied'].append(False)
    except OSError:
        out['denied'].append(True)
print(json.dumps(out))
"""


async def test_dev_has_the_usual_nodes_and_cannot_be_changed(sb: Sandbox) -> None:
    import json

    r = await sb.run(_DEV)
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)
    assert {"null", "zero", "full", "random", "urandom", "shm", "fd", "stdin", "stdout",
            "stderr"} <= set(got["listing"])
    assert got["urandom"] == 32 and got["zero"] == "00000000" and got["shm"] == "shm"
    assert got["shm_cap"] == 28, "/dev/shm is not size-capped"  # ENOSPC at the 64 MiB tmpfs
    assert all(got["denied"]), got["denied"]
