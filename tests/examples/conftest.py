"""Fixtures for the example tests: the repo root on sys.path and real staging CRM servers.

The examples are not part of the installed `bastion` package, so their tests import them
from the checkout (`examples.crm_integration...`) by putting the repo root on sys.path.
There is deliberately no `__init__.py` in this directory: with one, pytest would import
these tests as a package named `examples` and shadow the real `examples` package.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from examples.crm_integration.staging_crm import create_app, serve  # noqa: E402

CRM_DIR = REPO_ROOT / "examples" / "crm_integration"


@pytest.fixture
def start_crm() -> Iterator[Callable[..., str]]:
    """Start a fresh staging CRM on a free loopback port; every server stops after the test."""
    with ExitStack() as stack:

        def start(schema_version: str = "v2", fail_with_503: int = 0) -> str:
            return stack.enter_context(serve(create_app(schema_version, fail_with_503)))

        yield start


@pytest.fixture
def crm_url(start_crm: Callable[..., str]) -> str:
    """A v2 staging CRM with no injected faults."""
    return start_crm()
