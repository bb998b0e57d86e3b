"""Red team: attacks on the supervisor's side channels rather than on the host.

Whatever descriptors the sandboxed code holds beyond stdio (a warm-pool zygote's status
pipe, for instance) are a channel into the supervisor. Junk written there must not make
`run()` raise, hang, forge the reported exit status, or let a process of the run live on.
"""

from __future__ import annotations

import pytest

from ._harness import (
    assert_still_works,
    assert_supervisor_ok,
    close_guarded,
    host_checks,
    open_sandbox,
    run_guarded,
    warm_up,
)
from ._witness import payload

pytestmark = pytest.mark.redteam

FORGE = r"""
import os, time
targets = []
for n in range(3, 64):
    try:
        os.fstat(n)
        targets.append(n)
    except OSError:
        pass
print('FDS', targets, flush=True)
for n in targets:
    try:
        os.set_blocking(n, False)  # never block on a pipe nobody drains
        os.write(n, JUNK + b'A' * 200000)
    except OSError:
        pass
os.close(1)
os.close(2)
os._exit(3)  # the real exit status; anything else reported was forged
"""


@pytest.mark.parametrize("junk", [b"garbage-not-a-number\n", b"0\n", b"-99999999999999999999\n"],
                         ids=["garbage", "forged-success", "huge-number"])
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm-pool"])
async def test_junk_on_inherited_descriptors_does_not_break_the_supervisor(
        token, canaries, listeners, procwatch, warm, junk):
    sb = open_sandbox(warm_pool=warm)
    try:
        await warm_up(sb, warm)
        try:
            res = await run_guarded(sb, payload(FORGE, token, JUNK=junk), timeout=3.0)
        except Exception as exc:  # noqa: BLE001 - the point: run() must not raise
            pytest.fail(f"sandbox.run raised {type(exc).__name__}: {exc}"[:500], pytrace=False)
        assert_supervisor_ok()
        assert res.exit_code == 3, (
            f"reported exit_code={res.exit_code!r}, but the code exited with 3: "
            "the result was forged through a descriptor")
        host_checks(res, canaries, listeners, procwatch, children=not warm)
        await assert_still_works(sb)
    finally:
        await close_guarded(sb)
