"""The tools the CRM integration workflow calls: read the CRM's schema, post users, publish.

They are plain typed functions because Bastion derives each tool's input schema from the
type hints, and a parameter named `idempotency_key: str` receives a key from the engine
that is stable across crash-and-resume retries of the same logical call. That key is what
makes these effects safe to repeat: the CRM replays the original response for a key it
has seen, and `publish_integration` records it next to what it wrote.

`post_users` deliberately does not raise on HTTP errors: the engine's status gate decides
what a status means (400/422: rewrite the mapper; 5xx: retry the call), so the tool hands
back the status and a size-capped body instead of hiding them in an exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx

TIMEOUT_SECONDS = 10.0
BODY_CAP_BYTES = 4096
PUBLISHED_FILES = ("mapper.py", "test_mapper.py", "README.md")
MARKER = ".published"


class CrmApiError(RuntimeError):
    """The CRM answered something unusable; the message names the URL and the status."""

    def __init__(self, url: str, status_code: int | None, detail: str) -> None:
        self.url = url
        self.status_code = status_code
        where = f"{url} answered HTTP {status_code}" if status_code is not None else url
        super().__init__(f"{where}: {detail}")


def fetch_user_schema(base_url: str) -> dict[str, Any]:
    """Read the CRM's OpenAPI document and extract the payload schema of `POST /users`.

    Returns `{"version", "required", "properties": {name: {type, enum?, format?}}}`: only
    what a mapper needs, so the prompt built from it stays small and stable.
    """
    url = base_url.rstrip("/") + "/openapi.json"
    response = httpx.get(url, timeout=TIMEOUT_SECONDS)
    if not response.is_success:
        raise CrmApiError(url, response.status_code, _cap(response.text))
    try:
        document = response.json()
    except ValueError as exc:
        raise CrmApiError(url, response.status_code, f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise CrmApiError(url, response.status_code, "OpenAPI document is not a JSON object")
    schema = _user_schema(document)
    if schema is None:
        raise CrmApiError(url, response.status_code, "no User schema for POST /users found")
    info = document.get("info")
    version = info.get("version") if isinstance(info, dict) else None
    properties: dict[str, dict[str, Any]] = {}
    for name, spec in (schema.get("properties") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        properties[name] = {k: spec[k] for k in ("type", "enum", "format") if k in spec}
    return {
        "version": version or schema.get("x-schema-version"),
        "required": list(schema.get("required") or []),
        "properties": properties,
    }


def _user_schema(document: dict[str, Any]) -> dict[str, Any] | None:
    """The request body schema of `POST /users`, else `components.schemas.User`.

    Following the operation first lets the workflow target any server with this contract,
    whatever it names its schema.
    """
    try:
        schema = document["paths"]["/users"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]
    except (KeyError, TypeError):
        schema = document.get("components", {}).get("schemas", {}).get("User")
    for _ in range(10):  # follow local $refs, but never loop forever on a cyclic document
        if not isinstance(schema, dict) or "$ref" not in schema:
            break
        schema = _resolve_ref(document, schema["$ref"])
    return schema if isinstance(schema, dict) else None


def _resolve_ref(document: dict[str, Any], ref: str) -> Any:
    """Resolve a local JSON pointer such as `#/components/schemas/User`."""
    if not ref.startswith("#/"):
        return None
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def post_users(base_url: str, payloads: list[dict[str, Any]], idempotency_key: str) -> dict[str, Any]:
    """POST each payload to `/users`, stopping at the first non-2xx answer.

    Payload i carries `Idempotency-Key: {idempotency_key}-{i}`, so a retried call replays
    the users already created instead of creating them twice. Returns
    `{"status": 201, "created": [ids]}` when every post succeeded, else
    `{"status": <status>, "body": <JSON or text, capped at 4 KB>, "index": i}`.
    Connection errors and timeouts raise (httpx.TransportError): nothing was answered.
    """
    url = base_url.rstrip("/") + "/users"
    created: list[Any] = []
    with httpx.Client(timeout=TIMEOUT_SECONDS) as client:
        for index, payload in enumerate(payloads):
            response = client.post(
                url, json=payload, headers={"Idempotency-Key": f"{idempotency_key}-{index}"}
            )
            if not response.is_success:
                return {"status": response.status_code, "body": _body(response), "index": index}
            body = _body(response)
            created.append(body.get("id") if isinstance(body, dict) else body)
    return {"status": 201, "created": created}


def _body(response: httpx.Response) -> Any:
    """Parsed JSON when it is small enough, else the text cut to the cap.

    The body ends up in a prompt (through quarantine), so its size is bounded here too.
    """
    raw = response.content
    if len(raw) <= BODY_CAP_BYTES:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return _cap(raw.decode("utf-8", errors="replace"))


def _cap(text: str) -> str:
    """Cut text to BODY_CAP_BYTES of UTF-8, saying so when it was cut."""
    data = text.encode("utf-8")
    if len(data) <= BODY_CAP_BYTES:
        return text
    return data[:BODY_CAP_BYTES].decode("utf-8", errors="ignore") + "...[truncated]"


def publish_integration(
    out_dir: str, code: str, tests: str, docs: str, idempotency_key: str
) -> dict[str, Any]:
    """Write mapper.py, test_mapper.py and README.md into `out_dir`, each atomically.

    Each file is written to a temporary file in the same directory and renamed over the
    target, so a reader (or a crash) never sees half a file. The `.published` marker is
    written last and holds the idempotency key: its presence means all three files are
    complete, and a retried publish with the same key rewrites identical content.
    Returns `{"out_dir": <absolute path>, "files": ["mapper.py", "test_mapper.py",
    "README.md"]}`.
    """
    target = Path(out_dir).resolve()
    target.mkdir(parents=True, exist_ok=True)
    for name, content in zip(PUBLISHED_FILES, (code, tests, docs)):
        _write_atomically(target / name, content)
    _write_atomically(target / MARKER, idempotency_key + "\n")
    return {"out_dir": str(target), "files": list(PUBLISHED_FILES)}


def _write_atomically(path: Path, content: str) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it (atomic on POSIX)."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; published files are ordinary files
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise

