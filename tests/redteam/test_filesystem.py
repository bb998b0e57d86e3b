"""Red team: the filesystem and /proc — host secrets, canaries, writes outside the workdir,
disk fill, sparse files, output floods, inherited file descriptors.

Assertion messages never quote the sandbox's output: if a host secret did leak, it must
not be copied into the test report as well.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
from pathlib import Path

import pytest

from ._harness import (
    REPO_DIR,
    assert_still_works,
    host_checks,
    out,
    run_guarded,
)
from ._witness import payload

pytestmark = pytest.mark.redteam


def _secret_lines(path: str) -> list[str]:
    """Lines of a host secret file distinctive enough that seeing one means it leaked."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if len(ln.split(":", 2)[-1]) > 12 and ":" in ln]


READ_EVERYTHING = r"""
import os, glob
def dump(path, limit=4096):
    try:
        with open(path, 'rb') as f:
            data = f.read(limit)
        print('READ', path, data.decode('latin-1'), flush=True)
    except Exception as e:
        print('DENIED', path, type(e).__name__, flush=True)
targets = list(TARGETS)
for d in DIRS:
    try:
        names = sorted(os.listdir(d))[:40]
        targets += [os.path.join(d, name) for name in names]
        print('LISTED', d, names, flush=True)
    except Exception as e:
        print('NOLIST', d, type(e).__name__, flush=True)
for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self', 'thread-self']:
    targets += ['/proc/%s/environ' % pid, '/proc/%s/cmdline' % pid]
    # Through another process's root/cwd: the classic way round a mount namespace.
    targets += ['/proc/%s/root%s' % (pid, c) for c in CANARIES]
    targets += ['/proc/%s/cwd/%s' % (pid, os.path.basename(c)) for c in CANARIES]
for t in targets:
    if os.path.isfile(t) or t.startswith('/proc/'):
        dump(t)
print('ENV', dict(os.environ), flush=True)
"""


async def test_reading_host_secrets_env_and_canaries_fails(sandbox, token, canaries, listeners,
                                                           procwatch):
    targets = canaries.paths + [
        "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.bash_history",
        "/root/.ssh/id_rsa", "/root/.ssh/id_ed25519", "/root/.ssh/authorized_keys",
        str(REPO_DIR / "pyproject.toml"), str(REPO_DIR / ".git" / "config"),
        "/work/shared/DESIGN.md", "/proc/1/environ", "/proc/self/environ",
        "/proc/kcore", "/dev/mem", "/sys/kernel/security",
    ]
    dirs = ["/root", "/root/.ssh", str(REPO_DIR), str(REPO_DIR / "tests" / "redteam"),
            "/work", "/work/shared", "/home", str(Path(canaries.paths[0]).parent)]
    res = await run_guarded(sandbox, payload(READ_EVERYTHING, token, TARGETS=targets, DIRS=dirs,
                                             CANARIES=canaries.paths), timeout=8.0)
    text = out(res)
    listings = "\n".join(ln for ln in res.stdout.splitlines() if ln.startswith("LISTED "))
    ran = "ENV" in res.stdout
    assert ran, "payload did not run to the end; the test proved nothing"
    # Booleans first: pytest must not quote leaked secrets in its failure report.
    leaked = any(ln in text for ln in _secret_lines("/etc/shadow") + _secret_lines("/etc/gshadow"))
    assert not leaked, "a line of the host's /etc/shadow or /etc/gshadow leaked"
    leaked = "The model proposes; Bastion decides" in text
    assert not leaked, "the host's /work/shared/DESIGN.md was readable"
    leaked = 'description = "A secure orchestrator' in text
    assert not leaked, "the repo's pyproject.toml was readable"
    leaked = "BASTION_TEST_SECRET" in text or "BASTION_TEST_API_KEY" in text
    assert not leaked, "host environment variable names visible in the sandbox"
    for name in (f".canary-{token}.txt", f".bastion-redteam-canary-{token}", f"canary-{token}"):
        listed = name in listings
        assert not listed, f"a host directory holding {name} was listable"
    host_checks(res, canaries, listeners, procwatch)


ENV_VIA_PROC = """
import os
for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self']:
    for what in ('environ', 'cmdline'):
        try:
            print(pid, what, open('/proc/%s/%s' % (pid, what), 'rb').read().decode('latin-1'))
        except Exception as e:
            print(pid, what, 'ERR', type(e).__name__)
print('ENVIRON', sorted(os.environ))
"""


async def test_parent_environment_not_visible_via_proc(sandbox, token, canaries, listeners,
                                                       procwatch):
    res = await run_guarded(sandbox, payload(ENV_VIA_PROC, token), timeout=5.0)
    assert "ENVIRON" in res.stdout, "payload did not run to the end"
    for key in ("BASTION_TEST_SECRET", "BASTION_TEST_API_KEY"):
        visible = key in out(res)
        assert not visible, f"{key} (set in the supervisor) is visible in the sandbox"
    host_checks(res, canaries, listeners, procwatch)


WRITE_OUTSIDE = r"""
import os, sys, json, site, sysconfig
name = 'bastion-redteam-' + TOKEN
dirs = list(DIRS) + [sys.prefix, os.path.dirname(os.__file__), os.path.dirname(sys.executable),
                     sysconfig.get_paths().get('purelib', '/nonexistent')]
dirs += site.getsitepackages()
made = []
for d in dirs:
    p = os.path.join(d, name)
    try:
        with open(p, 'w') as f:
            f.write(TOKEN)
        made.append(p)
    except Exception:
        pass
for c in CANARIES:  # every way of changing a file we should not even see
    for op in ('append', 'chmod', 'utime', 'rename', 'unlink', 'link', 'truncate'):
        try:
            if op == 'append':
                open(c, 'a').write('pwned')
            elif op == 'chmod':
                os.chmod(c, 0o777)
            elif op == 'utime':
                os.utime(c, (0, 0))
            elif op == 'rename':
                os.rename(c, c + '.moved')
            elif op == 'unlink':
                os.unlink(c)
            elif op == 'link':
                os.link(c, '/tmp/hardlink-' + TOKEN)
            else:
                os.truncate(c, 0)
            made.append(op + ':' + c)
        except Exception:
            pass
print('CHECK', json.dumps(dirs), flush=True)
print('MADE', json.dumps(made), flush=True)
"""


async def test_writes_outside_workdir_do_not_reach_host(sandbox, token, canaries, listeners,
                                                        procwatch, tmp_path):
    host_dirs = ["/", "/etc", "/usr", "/usr/lib", "/usr/local/lib", "/root", "/work",
                 str(REPO_DIR), str(REPO_DIR / "tests" / "redteam"), str(REPO_DIR / "src"),
                 str(tmp_path), "/tmp", "/var/tmp", "/dev/shm", "/run", "/home", "/opt"]
    res = await run_guarded(sandbox, payload(WRITE_OUTSIDE, token, DIRS=host_dirs,
                                             CANARIES=canaries.paths), timeout=5.0)
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in res.stdout.splitlines()
             if ln.startswith(("CHECK ", "MADE "))}
    assert "CHECK" in lines, "payload did not run to the end"
    name = f"bastion-redteam-{token}"
    found = []
    for d in set(json.loads(lines["CHECK"])) | set(host_dirs):
        p = Path(d) / name
        if p.exists():
            found.append(str(p))
            p.unlink()
    for c in canaries.paths:
        Path(c + ".moved").unlink(missing_ok=True)
    Path(f"/tmp/hardlink-{token}").unlink(missing_ok=True)
    assert not found, f"the sandbox created files on the host: {found}"
    host_checks(res, canaries, listeners, procwatch)


DISK_FILL = """
import os, errno
report = {}
for where in ('.', '/tmp', os.environ.get('HOME', '.'), '/dev/shm'):
    total, err = 0, None
    try:
        fd = os.open(os.path.join(where, 'fill-' + TOKEN), os.O_WRONLY | os.O_CREAT, 0o600)
        chunk = b'z' * (1 << 20)
        try:
            while total < (MAX_MB << 20):
                total += os.write(fd, chunk)
        finally:
            os.close(fd)
            os.unlink(os.path.join(where, 'fill-' + TOKEN))  # each place is tested alone
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e.errno))
    report[where] = (total >> 20, err)
    print('FILL', where, total >> 20, err, flush=True)
"""


def _free_mb(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize >> 20


async def test_disk_fill_is_capped_and_host_disk_untouched(sandbox, token, canaries, listeners,
                                                           procwatch):
    mounts = [m for m in ("/", "/tmp", "/dev/shm", "/work") if os.path.exists(m)]
    free_before = {m: _free_mb(m) for m in mounts}
    t0 = time.monotonic()
    # Bounded at 512 MiB per place even if nothing stops it (the cap is 64 MiB).
    res = await run_guarded(sandbox, payload(DISK_FILL, token, MAX_MB=512), timeout=8.0)
    wall = time.monotonic() - t0
    leftover = [p for d in ("/tmp", "/root", "/dev/shm", "/work", str(REPO_DIR), "/")
                if (p := Path(d) / f"fill-{token}").exists()]
    for p in leftover:
        p.unlink()
    assert not leftover, f"the disk fill wrote to the host: {leftover}"
    fills = [ln.split() for ln in res.stdout.splitlines() if ln.startswith("FILL ")]
    assert fills or res.killed_reason == "disk", "payload reported nothing"
    for _, where, mb, err in fills:
        assert int(mb) < 512, f"wrote {mb} MiB to {where} without hitting any limit"
    assert wall < 8.0 + 5.0
    for m in mounts:
        assert free_before[m] - _free_mb(m) < 200, f"host free space on {m} dropped"
    host_checks(res, canaries, listeners, procwatch)
    await assert_still_works(sandbox)


SPARSE = """
import os, errno
res = {}
p = 'sparse-' + TOKEN
# seek-write and truncate are truly sparse (no blocks, harmless anywhere); fallocate
# really allocates, so it asks for a bounded 256 MiB: far over the cap, harmless if not.
for op, size in (('seek-write', 1 << 40), ('truncate', 1 << 40), ('fallocate', 256 << 20)):
    try:
        fd = os.open(p + op, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if op == 'seek-write':
                os.lseek(fd, size, os.SEEK_SET)
                os.write(fd, b'x')
            elif op == 'truncate':
                os.ftruncate(fd, size)
            else:
                os.posix_fallocate(fd, 0, size)
            res[op] = 'OK %d' % os.fstat(fd).st_size
        finally:
            os.close(fd)
            os.unlink(p + op)
    except OSError as e:
        res[op] = errno.errorcode.get(e.errno, str(e.errno))
print('SPARSE', res, flush=True)
"""


async def test_huge_sparse_file_is_refused(sandbox, token, canaries, listeners, procwatch):
    res = await run_guarded(sandbox, payload(SPARSE, token), timeout=5.0)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("SPARSE ")), "")
    assert line or res.killed_reason == "disk", "payload reported nothing"
    # RLIMIT_FSIZE / the tmpfs size cap must stop all three (1 TiB sparse, 256 MiB real).
    assert "OK " not in line, f"an oversized file was created in the sandbox: {line}"
    assert res.duration_ms < 5000
    host_checks(res, canaries, listeners, procwatch)


FLOOD = r"""
import os, threading
junk = (b'\x00\xff\xfe\xc3\x28\xe2\x82' + b'\x00' * 57 + b'\xf0\x9f\x98') * 16384  # ~1 MiB
def flood(fd):
    for _ in range(MAX_MB):
        try:
            os.write(fd, junk)
        except OSError:
            return
if os.fork() == 0:  # a child keeps the pipes open and writes too
    flood(1)
    os._exit(0)
t = threading.Thread(target=flood, args=(2,))
t.start()
flood(1)
t.join()
"""


async def test_output_flood_with_nuls_and_invalid_utf8_is_capped(sandbox, token, canaries,
                                                                 listeners, procwatch):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    res = await run_guarded(sandbox, payload(FLOOD, token, MAX_MB=256), timeout=5.0)
    wall = time.monotonic() - t0
    assert isinstance(res.stdout, str) and isinstance(res.stderr, str)
    for name, s in (("stdout", res.stdout), ("stderr", res.stderr)):
        assert len(s) <= 8 << 20, f"{name} not capped: {len(s)} chars"
        s.encode("utf-8")  # decoded safely: no lone surrogates that break JSON / the log
    assert len(res.stdout) > 1000, "the output should be kept (capped), not dropped"
    # The caller must be able to tell that output was cut.
    assert res.killed_reason in ("output", "timeout"), f"killed_reason={res.killed_reason!r}"
    assert wall < 5.0 + 5.0
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) >> 10
    assert growth_mb < 200, f"supervisor's peak RSS grew {growth_mb} MiB"
    host_checks(res, canaries, listeners, procwatch)
    await assert_still_works(sandbox)


INHERITED_FDS = """
import os, socket, json
seen = {}
for n in sorted(int(x) for x in os.listdir('/proc/self/fd')):
    try:
        seen[n] = os.readlink('/proc/self/fd/%d' % n)
    except OSError as e:
        seen[n] = 'ERR ' + type(e).__name__
for n in list(range(3, 256)):
    try:
        os.fstat(n)
    except OSError:
        continue
    try:
        os.lseek(n, 0, 0)
        print('FDREAD', n, os.read(n, 200).decode('latin-1'))
    except OSError:
        pass
    try:
        print('FDLIST', n, os.listdir(n))
    except (OSError, TypeError):
        pass
    for c in CANARY_NAMES:  # openat(dirfd, ...) escapes mount namespaces
        try:
            fd = os.open(c, os.O_RDONLY, dir_fd=n)
            print('FDOPENAT', n, os.read(fd, 200).decode('latin-1'))
        except OSError:
            pass
    try:
        s = socket.socket(fileno=os.dup(n))
        s.send(b'inherited-fd ' + TOKEN.encode())
        print('FDSEND', n)
    except OSError:
        pass
print('FDS', json.dumps(seen), flush=True)
"""


async def test_host_file_descriptors_are_not_inherited(sandbox, token, canaries, listeners,
                                                       procwatch):
    opened: list[int] = []
    host_end, leak_end = socket.socketpair()
    try:
        for c in canaries.paths:  # files and their directories, inheritable on purpose
            for p, flags in ((c, os.O_RDONLY), (str(Path(c).parent), os.O_RDONLY | os.O_DIRECTORY)):
                fd = os.open(p, flags)
                os.set_inheritable(fd, True)
                opened.append(fd)
        os.set_inheritable(leak_end.fileno(), True)
        canaries.drain()
        canaries.events.clear()  # our own opens above; only later events count
        names = [Path(c).name for c in canaries.paths]
        res = await run_guarded(sandbox, payload(INHERITED_FDS, token, CANARY_NAMES=names),
                                timeout=5.0)
        assert "FDS " in res.stdout, "payload did not run to the end"
        fds = json.loads(res.stdout.split("FDS ", 1)[1].splitlines()[0])
        leak_target = f"socket:[{os.fstat(leak_end.fileno()).st_ino}]"
        watched = canaries.paths + [str(Path(c).parent) for c in canaries.paths]
        for n, target in fds.items():
            assert target != leak_target, f"the supervisor's socket is fd {n} in the sandbox"
            assert target not in watched, f"a host file/dir the supervisor opened is fd {n}"
        for line in res.stdout.splitlines():
            assert not line.startswith(("FDOPENAT", "FDSEND")), line[:40]
        host_end.setblocking(False)
        try:
            data = host_end.recv(100)
        except BlockingIOError:
            data = b""
        assert not data, "the sandbox wrote into a socket inherited from the supervisor"
        host_checks(res, canaries, listeners, procwatch)
    finally:
        for fd in opened:
            os.close(fd)
        host_end.close()
        leak_end.close()


TAMPER_DEV = r"""
import os
for name in ('null', 'urandom', 'zero'):
    for attempt in (lambda: os.unlink('/dev/' + name), lambda: os.chmod('/dev/' + name, 0o777),
                    lambda: os.rename('/dev/' + name, '/dev/shm/' + name),
                    lambda: os.link('/dev/' + name, '/dev/shm/l-' + name),
                    lambda: open('/dev/' + name + '.evil', 'w')):
        try:
            attempt()
            print('CHANGED', name, flush=True)
        except OSError:
            pass
for target in ('/dev', '/dev/shm/..'):
    try:
        os.chmod(target, 0o777)
        print('CHANGED', target, flush=True)
    except OSError:
        pass
"""


async def test_dev_cannot_be_tampered_with(sandbox, token, canaries, listeners, procwatch):
    """On root hosts /dev is a host directory bound into every sandbox (see _devices): a
    change made by one run would be seen by the next and by the host."""
    from bastion.sandbox._devices import device_dir

    d = device_dir()

    def snapshot() -> dict[str, tuple[int, int, int, int]]:
        if d is None:
            return {}
        entries = {name: os.lstat(os.path.join(d, name)) for name in os.listdir(d)}
        entries["."] = os.lstat(d)
        return {n: (s.st_mode, s.st_uid, s.st_rdev, s.st_ino) for n, s in entries.items()}

    before = snapshot()
    res = await run_guarded(sandbox, payload(TAMPER_DEV, token), timeout=10.0)
    assert "CHANGED" not in res.stdout, out(res)
    assert snapshot() == before, "the host's /dev directory for sandboxes changed"
    host_checks(res, canaries, listeners, procwatch)
