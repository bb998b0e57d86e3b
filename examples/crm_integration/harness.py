"""Run the generated mapper on test users inside the sandbox; print the payloads as JSON.

The engine writes the model's code next to this file as `mapper.py`, then runs
`python3 harness.py` in a sandbox with an empty environment and the test users on stdin.
The harness is the only trusted code in there, so it uses the standard library alone (the
sandbox has just the interpreter) and keeps a strict stdout contract: one JSON list of
payloads, nothing else. Anything the mapper prints goes to stderr so it cannot corrupt
that list. Exit status: 0 payloads printed; 1 the mapper failed (traceback on stderr);
2 the input was not a JSON list of objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from typing import Any


def read_users(text: str) -> list[dict[str, Any]]:
    """Parse stdin; refuse anything but a list of objects so mapper errors stay mapper errors."""
    users = json.loads(text)
    if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
        raise ValueError("stdin must be a JSON list of user objects")
    return users


def map_users(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Import `sync_to_crm` from mapper.py beside this file and apply it to every user."""
    # Isolated mode (-I) leaves the script's directory off sys.path; put it back explicitly.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mapper import sync_to_crm  # type: ignore[import-not-found]

    payloads = []
    for user in users:
        payload = sync_to_crm(dict(user))
        if not isinstance(payload, dict):
            raise TypeError(f"sync_to_crm must return a dict, got {type(payload).__name__}")
        payloads.append(payload)
    return payloads


def main() -> int:
    try:
        users = read_users(sys.stdin.read())
    except ValueError as exc:
        print(f"harness: bad input: {exc}", file=sys.stderr)
        return 2
    try:
        with contextlib.redirect_stdout(sys.stderr):
            payloads = map_users(users)
            # Serialise inside the guard: a non-JSON value in a payload is a mapper bug.
            output = json.dumps(payloads)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return 1
    sys.stdout.write(output + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
