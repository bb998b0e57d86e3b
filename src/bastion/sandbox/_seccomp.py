"""The seccomp filter: deny the syscalls that turn a contained process into an escape.

Built with libseccomp through pyseccomp (a maintained ctypes binding with the same API as
libseccomp's own Python module), compiled once to BPF and handed to bubblewrap with
`--seccomp FD`, which installs it last, after bubblewrap's own mounts and namespace calls.
Denied calls fail with EPERM (so programs see an ordinary error); clone3 fails with ENOSYS
so libc falls back to clone, whose flags we *can* inspect; foreign architectures are
killed by libseccomp's default bad-arch action.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import tempfile
from typing import Any

DENIED: tuple[str, ...] = (
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount",
    "open_tree", "fsopen", "fsmount", "fsconfig", "fspick",
    "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "reboot", "swapon", "swapoff", "acct",
    "syslog", "quotactl", "lookup_dcookie", "vhangup", "iopl", "ioperm",
)
# CLONE_NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET NEWTIME
_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
             0x40000000, 0x00000080)
_TIOCSTI = 0x5412
_SOCK_TYPE_MASK = 0xF


def available() -> bool:
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@functools.lru_cache(maxsize=1)
def bpf_program() -> bytes:
    """Compile the filter to BPF once per process. Raises ImportError/OSError if unusable."""
    import pyseccomp as sc

    f: Any = sc.SyscallFilter(sc.ALLOW)
    try:  # a binary tree of syscall numbers, not a linear list: every syscall pays this
        f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    except (AttributeError, OSError, ValueError, RuntimeError):
        pass  # libseccomp < 2.5: the linear filter is as strict, only slower
    eperm = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            f.add_rule(eperm, name)
        except (OSError, ValueError, RuntimeError):
            pass  # a syscall this kernel/arch/libseccomp does not know: nothing to deny
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _NS_FLAGS:  # one rule per flag: a clone that creates any namespace
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(eperm, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))
    f.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, socket.AF_PACKET))
    for family in (socket.AF_INET, socket.AF_INET6):
        f.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, family),
                   sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, socket.SOCK_RAW))
    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        return tmp.read()


def program_fd() -> int:
    """A fresh readable fd holding the BPF program (bubblewrap reads it to EOF)."""
    data = bpf_program()
    fd = os.memfd_create("bastion-seccomp", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
