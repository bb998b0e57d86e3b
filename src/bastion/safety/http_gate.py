"""The HTTP status gate: which failures may go back to code generation.

Only 400 and 422 say "your request was wrong": the code is rewritten. 5xx, 429 and 408 are
the server's trouble: the same code is retried. Anything else fails without a rewrite.
"""

from __future__ import annotations

from typing import Literal

Verdict = Literal["ok", "rewrite", "retry", "fail"]


def classify_status(status: int | None) -> Verdict:
    if status is None:
        return "fail"
    if 200 <= status < 300:
        return "ok"
    if status in (400, 422):
        return "rewrite"
    if status >= 500 or status in (408, 429):
        return "retry"
    return "fail"
