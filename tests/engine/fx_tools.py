"""Tools used by the engine tests: they record what happened on disk, so tests check real effects."""

from __future__ import annotations

import asyncio
import json
import os
import time


def record(path: str, label: str, idempotency_key: str) -> dict:
    """An effect keyed by its idempotency key: one line per execution."""
    with open(path, "a") as f:
        f.write(json.dumps({"label": label, "key": idempotency_key, "pid": os.getpid()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return {"label": label}


def sleep_and_stamp(path: str, label: str, seconds: float) -> dict:
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    with open(path, "a") as f:
        f.write(json.dumps({"label": label, "start": start, "end": end}) + "\n")
    return {"label": label, "start": start, "end": end}


async def async_sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def fail_times(counter: str, times: int) -> str:
    """Fails the first `times` calls, then succeeds: for retries."""
    n = int(open(counter).read()) if os.path.exists(counter) else 0
    with open(counter, "w") as f:
        f.write(str(n + 1))
    if n < times:
        raise RuntimeError(f"transient failure {n + 1}")
    return f"ok after {n} failures"


def boom() -> None:
    raise ValueError("kaboom")


def echo(value: int) -> int:
    return value


def not_json() -> object:
    return object()
