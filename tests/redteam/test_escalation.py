"""Red team: privilege escalation — setuid, unshare, mount, chroot, setuid binaries, the
syscalls seccomp must deny, and ptrace of the supervisor.

Every syscall probe uses arguments that are harmless even if the call went through
(invalid commands, NULL pointers, our own pid) and runs in a forked child, so a
SECCOMP_RET_KILL filter shows up as "killed by SIGSYS" instead of ending the payload.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ._harness import assert_still_works, assert_supervisor_ok, host_checks, out, run_guarded
from ._witness import payload

pytestmark = pytest.mark.redteam

ESCALATE = r"""
import ctypes, errno, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def status():
    f = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
    return {k: f.get(k, '').strip() for k in ('Uid', 'Gid', 'CapEff', 'CapPrm', 'CapBnd',
                                               'CapAmb', 'NoNewPrivs', 'Seccomp')}
r = {'status': status()}
def attempt(name, fn):
    try:
        fn()
        r[name] = 'OK'
    except OSError as e:
        r[name] = errno.errorcode.get(e.errno, str(e.errno))
def call(fn, *args):
    if fn(*args) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
def in_child(fn):  # for calls that would change this process for good if they worked
    def run():
        pid = os.fork()
        if pid == 0:
            try:
                fn()
                os._exit(0)
            except OSError as e:
                os._exit(e.errno or 1)
        st = os.waitpid(pid, 0)[1]
        if os.WIFSIGNALED(st):  # e.g. SIGSYS from a seccomp kill: denied, not done
            raise OSError(errno.EPERM, 'killed by signal %d' % os.WTERMSIG(st))
        if os.WEXITSTATUS(st):
            raise OSError(os.WEXITSTATUS(st), 'in child')
    return run
attempt('setuid0', in_child(lambda: os.setuid(0)))
attempt('setgid0', in_child(lambda: os.setgid(0)))
attempt('setresuid0', in_child(lambda: os.setresuid(0, 0, 0)))
attempt('unshare_user', in_child(lambda: call(libc.unshare, 0x10000000)))
attempt('unshare_mount', in_child(lambda: call(libc.unshare, 0x00020000)))
attempt('unshare_net', in_child(lambda: call(libc.unshare, 0x40000000)))
os.makedirs(MNT, exist_ok=True)
attempt('mount_tmpfs', in_child(lambda: call(libc.mount, b'none', MNT.encode(), b'tmpfs', 0, None)))
attempt('chroot', in_child(lambda: os.chroot('/tmp')))
attempt('mknod_mem', in_child(lambda: os.mknod('/tmp/mem-' + TOKEN, 0o20600, os.makedev(1, 1))))
for tool in (['sudo', '-n', 'id', '-u'], ['su', '-c', 'id -u', 'root'], ['newuidmap']):
    try:
        p = subprocess.run(tool, capture_output=True, timeout=2, stdin=subprocess.DEVNULL)
        r['exec_' + tool[0]] = [p.returncode, p.stdout.decode()[-40:]]
    except Exception as e:
        r['exec_' + tool[0]] = type(e).__name__
r['status_after'] = status()
print('ESC', json.dumps(r), flush=True)
"""


def _mountinfo() -> set[str]:
    return {ln.split(" - ")[0].split(" ", 4)[4].split(" ")[0]
            for ln in Path("/proc/self/mountinfo").read_text().splitlines()}


async def test_setuid_unshare_mount_escalation_fails(sandbox, token, canaries, listeners,
                                                     procwatch):
    mounts_before = _mountinfo()
    mnt = f"/tmp/brt-mnt-{token}"
    procwatch.start_sampling()
    res = await run_guarded(sandbox, payload(ESCALATE, token, MNT=mnt), timeout=6.0)
    procwatch.stop_sampling()
    new_mounts = _mountinfo() - mounts_before
    for m in new_mounts:
        if token in m:
            subprocess.run(["umount", "-l", m], check=False)
    if Path(mnt).is_dir():
        Path(mnt).rmdir()
    leaked_node = Path(f"/tmp/mem-{token}")
    node_on_host = leaked_node.exists()
    leaked_node.unlink(missing_ok=True)
    assert not node_on_host, "the run created a device node in the host's /tmp"
    assert not new_mounts, f"the run changed the host's mount table: {sorted(new_mounts)}"
    assert "ESC " in res.stdout, f"payload did not finish: {out(res)[-500:]}"
    r = json.loads(res.stdout.split("ESC ", 1)[1].splitlines()[0])
    for key in ("setuid0", "setgid0", "setresuid0", "unshare_user", "unshare_mount",
                "unshare_net", "mount_tmpfs", "chroot", "mknod_mem"):
        assert r[key] != "OK", f"{key} succeeded inside the sandbox"
    st = r["status_after"]
    assert st["Uid"].split()[0] != "0", f"code runs as uid 0 inside: {st['Uid']}"
    assert int(st["CapEff"], 16) == 0, f"effective capabilities inside: {st['CapEff']}"
    assert int(st["CapAmb"] or "0", 16) == 0, f"ambient capabilities inside: {st['CapAmb']}"
    assert st["NoNewPrivs"] == "1", "no_new_privs is not set"
    assert st["Seccomp"] == "2", f"no seccomp filter in force (Seccomp: {st['Seccomp']})"
    if "unprivileged-uid" in res.layers:  # the layer claims the host uid is not root
        assert procwatch.host_uids, "sampler saw no process of the run"
        assert 0 not in procwatch.host_uids, f"code ran as host uid 0: {procwatch.host_uids}"
    for tool in ("exec_sudo", "exec_su"):
        v = r.get(tool)
        assert not (isinstance(v, list) and v[0] == 0 and v[1].strip() == "0"), f"{tool}: {v}"
    host_checks(res, canaries, listeners, procwatch)


# name -> (x86_64 syscall number, harmless arguments)
SYSCALLS = {
    "ptrace": (101, (0x4242, 0)),                  # invalid request
    "process_vm_readv": (310, ("SELF", 0, 0, 0, 0, 0)),
    "process_vm_writev": (311, ("SELF", 0, 0, 0, 0, 0)),
    "io_uring_setup": (425, (0, 0)),
    "bpf": (321, (9999, 0, 0)),
    "perf_event_open": (298, (0, 0, -1, -1, 0)),
    "keyctl": (250, (9999, 0, 0, 0, 0)),
    "add_key": (248, (0, 0, 0, 0, 0)),
    "userfaultfd": (323, (0xFFFF,)),
    "unshare": (272, (0,)),                        # no flags: a no-op if allowed
    "setns": (308, (-1, 0)),
    "mount": (165, (0, 0, 0, 0, 0)),
    "umount2": (166, (0, 0)),
    "kexec_load": (246, (0, 0, 0, 0xFFFFFFFF)),    # invalid flags
    "init_module": (175, (0, 0, 0)),
    "finit_module": (313, (-1, 0, 0)),
    "open_tree": (428, (-1, 0, 0)),
    "fsopen": (430, (0, 0)),
}

SYSCALL_PROBE = r"""
import ctypes, errno, json, os, socket, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def probe(fn):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            res = fn()
        except Exception as e:
            res = 'EXC ' + type(e).__name__
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 4096)
    _, st = os.waitpid(pid, 0)
    if os.WIFSIGNALED(st):
        return 'SIG%d' % os.WTERMSIG(st)
    return json.loads(data or b'"nothing"')
def sc(nr, args):
    args = [os.getpid() if a == 'SELF' else a for a in args]
    rv = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return 'OK' if rv >= 0 else errno.errorcode.get(ctypes.get_errno(), '?')
def sock(fam, typ, proto):
    try:
        socket.socket(fam, typ, proto).close()
        return 'OK'
    except OSError as e:
        return errno.errorcode.get(e.errno, '?')
out = {name: probe(lambda nr=nr, a=a: sc(nr, a)) for name, (nr, a) in SYSCALLS.items()}
out['socket_raw'] = probe(lambda: sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
out['socket_packet'] = probe(lambda: sock(socket.AF_PACKET, socket.SOCK_RAW, 0))
print('SYSCALLS', json.dumps(out), flush=True)
"""

DENIED = {"EPERM", "EACCES", "ENOSYS", f"SIG{31}"}  # 31 = SIGSYS (SECCOMP_RET_KILL)


async def test_dangerous_syscalls_are_denied(sandbox, token, canaries, listeners, procwatch):
    res = await run_guarded(sandbox, payload(SYSCALL_PROBE, token, SYSCALLS=SYSCALLS),
                            timeout=6.0)
    assert "SYSCALLS " in res.stdout, f"payload did not finish: {out(res)[-500:]}"
    got = json.loads(res.stdout.split("SYSCALLS ", 1)[1].splitlines()[0])
    # EINVAL/EFAULT/EBADF etc. mean the call reached the kernel: seccomp did not deny it.
    reached = {k: v for k, v in got.items() if v not in DENIED}
    assert not reached, f"syscalls not denied by the sandbox (issue #3 list): {reached}"
    host_checks(res, canaries, listeners, procwatch)


PTRACE = r"""
import ctypes, errno, json, os, time
_brt_guard()
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PTRACE_ATTACH, PTRACE_DETACH, PTRACE_SEIZE = 16, 17, 0x4206
iov = (ctypes.c_char * 64)()
class IOV(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
local = IOV(ctypes.cast(iov, ctypes.c_void_p), 64)
remote = IOV(0x400000, 64)
r = {}
kid = os.fork()
if kid == 0:
    time.sleep(5)
    os._exit(0)
for name, pid in (('ppid', os.getppid()), ('init', 1), ('supervisor', SUP), ('own_child', kid)):
    for req in (PTRACE_ATTACH, PTRACE_SEIZE):
        rv = libc.syscall(ctypes.c_long(101), ctypes.c_long(req), ctypes.c_long(pid), 0, 0)
        key = '%s/%s' % (name, 'attach' if req == PTRACE_ATTACH else 'seize')
        if rv == 0:
            r[key] = 'OK'
            libc.syscall(ctypes.c_long(101), ctypes.c_long(PTRACE_DETACH), ctypes.c_long(pid), 0, 0)
        else:
            r[key] = errno.errorcode.get(ctypes.get_errno(), '?')
    rv = libc.syscall(ctypes.c_long(310), ctypes.c_long(pid), ctypes.byref(local),
                      ctypes.c_long(1), ctypes.byref(remote), ctypes.c_long(1), 0)
    r[name + '/vm_readv'] = 'OK' if rv >= 0 else errno.errorcode.get(ctypes.get_errno(), '?')
    if pid == os.getpid() or name == 'own_child':
        continue  # its own memory (or its child's) is not the supervisor's; only ptrace counts
    try:
        r[name + '/mem'] = 'OPENED' if open('/proc/%d/mem' % pid, 'rb') else ''
    except OSError as e:
        r[name + '/mem'] = errno.errorcode.get(e.errno, '?')
os.kill(kid, 9)
print('PTRACE', json.dumps(r), flush=True)
"""


async def test_ptrace_of_supervisor_and_siblings_fails(sandbox, destructive_ok, token, canaries,
                                                       listeners, procwatch):
    res = await run_guarded(sandbox, payload(PTRACE, token, SUP=os.getpid()), timeout=6.0)
    assert "GUARD_ABORT" not in res.stdout, "in-sandbox guard refused: no own pid namespace"
    assert_supervisor_ok()
    assert "PTRACE " in res.stdout, f"payload did not finish: {out(res)[-500:]}"
    r = json.loads(res.stdout.split("PTRACE ", 1)[1].splitlines()[0])
    succeeded = {k: v for k, v in r.items() if v in ("OK", "OPENED")}
    assert not succeeded, f"ptrace / process memory access succeeded: {succeeded}"
    host_checks(res, canaries, listeners, procwatch)
    await assert_still_works(sandbox)
