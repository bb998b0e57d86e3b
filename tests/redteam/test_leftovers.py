"""Red team: nothing of one execution is visible to the next (cold and warm pool), nor to a
concurrent one.

Run 1 plants everything it can (files in every writable place, a setsid daemon, state in
the interpreter, a module on sys.path, POSIX shm); run 2 looks for all of it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ._harness import close_guarded, host_checks, open_sandbox, out, run_guarded, warm_up
from ._witness import payload, tagged_pids

pytestmark = pytest.mark.redteam

PLANT = r"""
import builtins, os, sys, json, time
planted = []
name = 'left-' + TOKEN
for d in ('.', '/tmp', os.environ.get('HOME', '/tmp'), '/dev/shm', '/var/tmp', '/run',
          os.environ.get('TMPDIR', '/tmp')) + tuple(p for p in sys.path if p):
    try:
        with open(os.path.join(d, name), 'w') as f:
            f.write(TOKEN)
        planted.append(os.path.join(d, name))
    except OSError:
        pass
for d in [p for p in sys.path if p] + ['.']:
    for mod in ('brt_' + TOKEN,):  # never sitecustomize: a broken sandbox would hit the host
        try:
            with open(os.path.join(d, mod + '.py'), 'w') as f:
                f.write('import builtins; builtins.BRT_HOOK = %r\n' % TOKEN)
            planted.append(os.path.join(d, mod + '.py'))
        except OSError:
            pass
builtins.BRT_LEFT = TOKEN
sys.modules['json'].BRT_LEFT = TOKEN
os.environ['BRT_LEFT'] = TOKEN
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.shm_open(('/brt-' + TOKEN).encode(), os.O_CREAT | os.O_RDWR, 0o600)
    if fd >= 0:
        planted.append('shm')
except Exception:
    pass
if os.fork() == 0:  # a daemon that wants to be found by the next run
    os.setsid()
    if os.fork() == 0:
        fd = os.open('/dev/null', os.O_RDWR)
        for i in (0, 1, 2):
            os.dup2(fd, i)
        time.sleep(30)
    os._exit(0)
time.sleep(0.2)
print('PLANTED', json.dumps(planted), flush=True)
"""

LOOK = r"""
import builtins, os, sys, json, glob
found = []
name = 'left-' + OLD
for d in ('.', '/tmp', os.environ.get('HOME', '/tmp'), '/dev/shm', '/var/tmp', '/run',
          os.environ.get('TMPDIR', '/tmp')) + tuple(p for p in sys.path if p):
    if os.path.exists(os.path.join(d, name)):
        found.append(os.path.join(d, name))
for attr in ('BRT_LEFT',):
    if getattr(builtins, attr, None) == OLD:
        found.append('builtins.' + attr)
if getattr(sys.modules.get('json'), 'BRT_LEFT', None) == OLD:
    found.append('json.BRT_LEFT')
if os.environ.get('BRT_LEFT') == OLD:
    found.append('environ')
try:
    __import__('brt_' + OLD)
    found.append('module brt_' + OLD)
except ImportError:
    pass
for p in glob.glob('/dev/shm/*' + OLD + '*'):
    found.append(p)
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        if open('/proc/%s/comm' % pid).read().strip() == OLD:
            found.append('process %s' % pid)
    except OSError:
        pass
print('FOUND', json.dumps(found), flush=True)
"""


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm-pool"])
async def test_nothing_of_one_run_is_visible_to_the_next(token, canaries, listeners,
                                                         procwatch, warm):
    sb = open_sandbox(warm_pool=warm)
    try:
        await warm_up(sb, warm)
        for i in range(3):  # enough runs to reuse pooled zygotes / recycled pids
            res1 = await run_guarded(sb, payload(PLANT, token), timeout=5.0)
            assert "PLANTED" in res1.stdout, f"plant run failed: {out(res1)[-500:]}"
            planted = json.loads(res1.stdout.split("PLANTED ", 1)[1].splitlines()[0])
            on_host = [p for p in planted if p.startswith("/") and Path(p).exists()]
            for p in on_host:
                Path(p).unlink()
            assert not on_host, f"run {i}: files planted in the sandbox appeared on the host"
            await asyncio.sleep(0.2)
            survivors = tagged_pids(token)
            assert not survivors, f"run {i}: the planted daemon survived on the host: {survivors}"
            res2 = await run_guarded(sb, payload(LOOK, "brtlook" + token[-7:], OLD=token),
                                     timeout=5.0)
            assert "FOUND" in res2.stdout, f"look run failed: {out(res2)[-500:]}"
            found = json.loads(res2.stdout.split("FOUND ", 1)[1].splitlines()[0])
            assert not found, f"run {i}: leftovers of the previous run are visible: {found}"
        host_checks(res2, canaries, listeners, procwatch, children=not warm)
    finally:
        Path(f"/dev/shm/brt-{token}").unlink(missing_ok=True)  # only exists if shm leaked
        await close_guarded(sb)
    if warm:
        procwatch.assert_clean(settle=3.0)  # after aclose, the pool's processes are gone too


SNOOP = r"""
import os, json, time, glob
time.sleep(0.5)
found = []
for pattern in ('/tmp/*', './*', '/dev/shm/*', os.environ.get('HOME', '/tmp') + '/*'):
    for p in glob.glob(pattern):
        if 'secret-' in p:
            found.append(p)
for pid in [p for p in os.listdir('/proc') if p.isdigit()]:
    try:
        comm = open('/proc/%s/comm' % pid).read().strip()
        if comm == OTHER:
            found.append('process ' + pid)
        for fd in os.listdir('/proc/%s/fd' % pid):
            if 'secret-' in os.readlink('/proc/%s/fd/%s' % (pid, fd)):
                found.append('fd ' + pid)
    except OSError:
        pass
print('SNOOP', json.dumps(found), flush=True)
"""

HOLD = r"""
import os, time
for d in ('.', '/tmp', '/dev/shm'):
    try:
        open(os.path.join(d, 'secret-' + TOKEN), 'w').write(SECRET_TEXT)
    except OSError:
        pass
f = open('/tmp/secret-' + TOKEN)
print('HOLDING', flush=True)
time.sleep(1.5)
"""


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm-pool"])
async def test_concurrent_runs_cannot_see_each_other(token, canaries, listeners, procwatch, warm):
    sb = open_sandbox(warm_pool=warm)
    try:
        await warm_up(sb, warm)
        secret_text = "concurrent-secret-" + token
        snoop_token = "brtsnp" + token[-8:]
        holder, snooper = await asyncio.gather(
            run_guarded(sb, payload(HOLD, token, SECRET_TEXT=secret_text), timeout=5.0),
            run_guarded(sb, payload(SNOOP, snoop_token, OTHER=token), timeout=5.0),
        )
        leaked = [p for d in ("/tmp", "/dev/shm", "/work")
                  if (p := Path(d) / f"secret-{token}").exists()]
        for p in leaked:
            p.unlink()
        assert not leaked, f"a run's files appeared on the host: {leaked}"
        assert "HOLDING" in holder.stdout, f"holder failed: {out(holder)[-500:]}"
        assert "SNOOP" in snooper.stdout, f"snooper failed: {out(snooper)[-500:]}"
        found = json.loads(snooper.stdout.split("SNOOP ", 1)[1].splitlines()[0])
        assert not found, f"a concurrent run's files/processes are visible: {found}"
        assert secret_text not in out(snooper)
        host_checks(snooper, canaries, listeners, procwatch, children=not warm)
    finally:
        await close_guarded(sb)


async def test_warm_pool_closes_promptly_and_leaves_nothing(token, procwatch):
    """aclose() while refills are in flight must neither hang nor leave zygotes behind.

    Timing-dependent by nature: several pools, runs and closes at slightly varied moments.
    """
    import random

    rng = random.Random(token)
    for trial in range(12):
        sb = open_sandbox(warm_pool=True)
        try:
            for _ in range(3):
                res = await run_guarded(sb, payload("print('x')", token), timeout=5.0)
                assert res.exit_code == 0, f"trial {trial}: {res!r}"[:500]
                await asyncio.sleep(rng.random() * 0.1)
        finally:
            await close_guarded(sb)
    procwatch.assert_clean(settle=3.0)
