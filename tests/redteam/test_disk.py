"""Red team: filling writable space with many files, each under the per-file limit.

RLIMIT_FSIZE stops one big file; only the size cap of each tmpfs (or the memory cgroup
that its pages are charged to) stops many files. /dev/shm is the easy one to forget.
"""

from __future__ import annotations

import glob
import os

import pytest

from ._harness import assert_still_works, host_checks, run_guarded
from ._witness import payload

pytestmark = pytest.mark.redteam

MANY_FILES = """
import os, errno
for where in WHERE:
    total, err, i = 0, None, 0
    chunk = b'q' * (1 << 20)
    try:
        while total < (MAX_MB << 20):  # bounded even if nothing stops it
            with open(os.path.join(where, 'many-%s-%d' % (TOKEN, i)), 'wb') as f:
                for _ in range(16):
                    total += f.write(chunk)
            i += 1
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e.errno))
    print('MANY', where, total >> 20, err, flush=True)
    for name in os.listdir(where):  # free it again: each place is measured alone
        if name.startswith('many-'):
            os.unlink(os.path.join(where, name))
"""


@pytest.mark.parametrize("where", ["/tmp", ".", "/dev/shm", "/dev", "/run/user", "/var/tmp"])
async def test_many_small_files_are_capped(sandbox, token, canaries, listeners, procwatch,
                                           where):
    mem = 128
    free_before = os.statvfs("/").f_bavail * os.statvfs("/").f_frsize >> 20
    res = await run_guarded(sandbox, payload(MANY_FILES, token, WHERE=[where], MAX_MB=768),
                            timeout=8.0, memory_mb=mem)
    line = next((ln.split() for ln in res.stdout.splitlines() if ln.startswith("MANY ")), None)
    if line is not None:
        _, _, mb, err = line
        # 64 MiB tmpfs caps, or the memory cgroup the pages are charged to.
        assert int(mb) <= mem + 64, f"wrote {mb} MiB of files to {where} ({err})"
    else:  # killed before reporting: only acceptable as a limit kill
        assert res.killed_reason in ("memory", "disk", "timeout"), repr(res)[:500]
    leaked = [p for d in ("/tmp", "/dev/shm", "/dev", "/run/user", "/var/tmp", "/work")
              if os.path.isdir(d) for p in glob.glob(f"{d}/many-{token}-*")]
    for p in leaked:
        os.unlink(p)
    assert not leaked, f"files of the run appeared on the host: {leaked[:5]}"
    free_after = os.statvfs("/").f_bavail * os.statvfs("/").f_frsize >> 20
    assert free_before - free_after < 200, "host disk space dropped"
    host_checks(res, canaries, listeners, procwatch)
    await assert_still_works(sandbox)
