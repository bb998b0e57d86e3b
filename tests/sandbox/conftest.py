"""Fixtures for the sandbox tests: real bubblewrap and real cgroups, skipped where absent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.sandbox import Sandbox, create_sandbox, probe
from bastion.sandbox._bwrap import find_bwrap

needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not installed")


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    if find_bwrap() is None:
        pytest.skip("bubblewrap is not installed")
    report = probe("bwrap")
    if not {"pids", "memory"} <= set(report.layers):
        pytest.skip(f"no pids/memory cgroup here: {report.details}")
    box = create_sandbox(warm_pool=False)
    yield box
    await box.aclose()


@pytest.fixture
async def warm() -> AsyncIterator[Sandbox]:
    if find_bwrap() is None:
        pytest.skip("bubblewrap is not installed")
    box = create_sandbox(warm_pool=True, pool_size=2)
    yield box
    await box.aclose()
