"""A staging CRM API for the CRM integration example: small, real HTTP, and able to drift.

The example's adaptive loop has to see a third-party API change its payload schema and
answer a 4xx that names the offending field. Mocking that inside the engine would test
nothing; this module is a real ASGI app served by uvicorn on loopback, so the workflow
talks to it exactly as it would to a vendor's staging environment (its base URL is the
workflow input `crm_base_url`).

Contract (the same for any server the workflow targets):

- `GET /openapi.json`: an OpenAPI 3.1 document; `components.schemas.User` is the active
  schema version (v1: email, full_name; v2 adds required customer_tier).
- `POST /users`: 201 `{"id", "email"}`; 422 `{"error": "validation_failed", "field",
  "message", "errors": [{"field", "message"}...]}`; 400 `{"error": "invalid_body",
  "message"}` when the body is not a JSON object; 503 `{"error": "unavailable", ...}` for
  the first `fail_with_503` posts; 409 `{"error": "idempotency_key_reused", ...}` when an
  `Idempotency-Key` is reused with a different body.
- `GET /users`, `GET /admin/stats`, `POST /admin/schema`, `POST /admin/faults`: test hooks.

Validation is driven by the very schema dict that `/openapi.json` publishes, so the
document and the server's behaviour cannot disagree.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

SCHEMA_VERSIONS = ("v1", "v2")
CUSTOMER_TIERS = ("free", "pro", "enterprise")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def user_schema(version: str) -> dict[str, Any]:
    """The JSON Schema of a CRM user for one schema version (the drift under test)."""
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown schema version {version!r}; expected one of {SCHEMA_VERSIONS}")
    properties: dict[str, Any] = {
        "email": {"type": "string", "format": "email"},
        "full_name": {"type": "string", "minLength": 1},
    }
    required = ["email", "full_name"]
    if version == "v2":
        properties["customer_tier"] = {"type": "string", "enum": list(CUSTOMER_TIERS)}
        required.append("customer_tier")
    return {
        "type": "object",
        "title": "User",
        "x-schema-version": version,
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    """A response or body whose JSON content is the component schema `ref`."""
    schema = {"$ref": f"#/components/schemas/{ref}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(version: str) -> dict[str, Any]:
    """A complete OpenAPI 3.1 document for the active schema version."""
    string = {"type": "string"}
    problem = {"type": "object", "properties": {"field": string, "message": string}}
    error = {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": string,
            "message": string,
            "field": string,
            "errors": {"type": "array", "items": problem},
        },
    }
    created = {
        "type": "object",
        "required": ["id", "email"],
        "properties": {"id": string, "email": string},
    }
    idempotency_key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": string,
        "description": "A repeated key returns the original response without a new user.",
    }
    create_user = {
        "operationId": "createUser",
        "summary": "Create a CRM user",
        "parameters": [idempotency_key],
        "requestBody": {"required": True, **_json("User", "The user to create")},
        "responses": {
            "201": _json("UserCreated", "Created"),
            "400": _json("Error", "The body is not a JSON object"),
            "409": _json("Error", "Idempotency-Key reused with a different body"),
            "422": _json("Error", "The body does not match the User schema"),
            "503": _json("Error", "Temporarily unavailable; retry"),
        },
    }
    list_users = {"operationId": "listUsers", "responses": {"200": {"description": "Users"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Staging CRM", "version": version},
        "paths": {"/users": {"post": create_user, "get": list_users}},
        "components": {
            "schemas": {"User": user_schema(version), "UserCreated": created, "Error": error}
        },
    }


def validate_user(body: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, str]]:
    """Every way `body` breaks `schema`, missing fields first (they name the drift best)."""
    errors: list[dict[str, str]] = []
    properties: dict[str, Any] = schema["properties"]
    for name in schema["required"]:
        if name not in body:
            errors.append({"field": name, "message": f"{name} is required"})
    for name, value in body.items():
        spec = properties.get(name)
        if spec is None:
            if schema.get("additionalProperties") is False:
                errors.append({"field": name, "message": f"{name} is not an allowed property"})
            continue
        if spec.get("type") == "string" and not isinstance(value, str):
            errors.append({"field": name, "message": f"{name} must be a string"})
            continue
        if "enum" in spec and value not in spec["enum"]:
            allowed = ", ".join(spec["enum"])
            errors.append({"field": name, "message": f"{name} must be one of: {allowed}"})
        if spec.get("format") == "email" and isinstance(value, str) and not _EMAIL.match(value):
            errors.append({"field": name, "message": f"{name} must be an email address"})
        if isinstance(value, str) and len(value) < spec.get("minLength", 0):
            errors.append({"field": name, "message": f"{name} must not be empty"})
    return errors


@dataclass
class _Stored:
    """The first response given for an idempotency key, replayed on every repeat."""

    body_digest: str
    status: int
    content: dict[str, Any]


@dataclass
class CrmState:
    """Everything the staging CRM remembers; one instance per app, so tests are isolated."""

    schema_version: str
    fail_with_503: int
    users: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    idempotent_replays: int = 0
    keys_seen: dict[str, int] = field(default_factory=dict)
    responses: dict[str, _Stored] = field(default_factory=dict)


def create_app(schema_version: str = "v2", fail_with_503: int = 0) -> Starlette:
    """Build a fresh staging CRM; `fail_with_503` makes the first N `POST /users` answer 503."""
    user_schema(schema_version)  # reject an unknown version now, not on the first request
    state = CrmState(schema_version=schema_version, fail_with_503=fail_with_503)

    async def get_openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_document(state.schema_version))

    async def create_user(request: Request) -> JSONResponse:
        raw = await request.body()
        # Everything below is synchronous, so concurrent posts cannot interleave mid-update.
        state.posts += 1
        key = request.headers.get("idempotency-key")
        if key is not None:
            state.keys_seen[key] = state.keys_seen.get(key, 0) + 1
        if state.fail_with_503 > 0:
            state.fail_with_503 -= 1
            return JSONResponse(
                {"error": "unavailable", "message": "staging CRM is temporarily unavailable"},
                status_code=503,
                headers={"Retry-After": "0"},
            )
        digest = hashlib.sha256(raw).hexdigest()
        if key is not None and key in state.responses:
            stored = state.responses[key]
            if stored.body_digest != digest:
                # 409, not 422: a 422 would tell the adaptive loop to rewrite correct code.
                return JSONResponse(
                    {
                        "error": "idempotency_key_reused",
                        "message": f"Idempotency-Key {key!r} was already used with another body",
                    },
                    status_code=409,
                )
            state.idempotent_replays += 1
            return JSONResponse(
                stored.content, status_code=stored.status, headers={"Idempotent-Replayed": "true"}
            )
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return JSONResponse(
                {"error": "invalid_body", "message": f"body is not valid JSON: {exc}"},
                status_code=400,
            )
        if not isinstance(body, dict):
            return JSONResponse(
                {
                    "error": "invalid_body",
                    "message": f"body must be a JSON object, got {type(body).__name__}",
                },
                status_code=400,
            )
        problems = validate_user(body, user_schema(state.schema_version))
        if problems:
            # Not stored under the key (as Stripe does): nothing was created, so a fixed
            # payload may be retried with the same key.
            first = problems[0]
            return JSONResponse(
                {"error": "validation_failed", **first, "errors": problems}, status_code=422
            )
        user_id = f"usr_{len(state.users) + 1:04d}"
        state.users.append({"id": user_id, **body})
        content = {"id": user_id, "email": body["email"]}
        if key is not None:
            state.responses[key] = _Stored(body_digest=digest, status=201, content=content)
        return JSONResponse(content, status_code=201)

    async def list_users(request: Request) -> JSONResponse:
        return JSONResponse(state.users)

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "users_created": len(state.users),
                "posts": state.posts,
                "idempotent_replays": state.idempotent_replays,
                "idempotency_keys": dict(state.keys_seen),
                "schema_version": state.schema_version,
            }
        )

    async def set_schema(request: Request) -> JSONResponse:
        payload = await _json_object(request)
        version = payload.get("version") if payload is not None else None
        if version not in SCHEMA_VERSIONS:
            return JSONResponse(
                {
                    "error": "invalid_body",
                    "message": f"expected {{\"version\": one of {list(SCHEMA_VERSIONS)}}}",
                },
                status_code=400,
            )
        state.schema_version = version
        return JSONResponse({"version": version})

    async def set_faults(request: Request) -> JSONResponse:
        payload = await _json_object(request)
        count = payload.get("fail_with_503") if payload is not None else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return JSONResponse(
                {"error": "invalid_body", "message": 'expected {"fail_with_503": <int >= 0>}'},
                status_code=400,
            )
        state.fail_with_503 = count
        return JSONResponse({"fail_with_503": count})

    app = Starlette(
        routes=[
            Route("/openapi.json", get_openapi, methods=["GET"]),
            Route("/users", create_user, methods=["POST"]),
            Route("/users", list_users, methods=["GET"]),
            Route("/admin/stats", stats, methods=["GET"]),
            Route("/admin/schema", set_schema, methods=["POST"]),
            Route("/admin/faults", set_faults, methods=["POST"]),
        ]
    )
    app.state.crm = state
    return app


async def _json_object(request: Request) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is anything else."""
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


@contextlib.contextmanager
def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` under uvicorn in a background thread; yield its base URL; stop on exit.

    We bind the socket ourselves so that port 0 yields a free port we know before uvicorn
    starts, and we wait for a real HTTP answer so callers never race the startup.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    base_url = f"http://{url_host}:{bound_port}"

    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # SystemExit from uvicorn included: report, don't vanish
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"staging-crm:{bound_port}", daemon=True)
    thread.start()
    try:
        _wait_until_answering(base_url, thread, failure)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_until_answering(
    base_url: str, thread: threading.Thread, failure: list[BaseException], timeout: float = 10.0
) -> None:
    """Poll until any HTTP response arrives (any status counts: the app is arbitrary)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while True:
            if failure or not thread.is_alive():
                raise RuntimeError(f"server at {base_url} failed to start: {failure!r}")
            try:
                client.get(base_url + "/")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server at {base_url} did not answer in {timeout}s")
                time.sleep(0.02)


def main(argv: list[str] | None = None) -> None:
    """`python -m examples.crm_integration.staging_crm --port N`: serve in the foreground."""
    parser = argparse.ArgumentParser(description="Staging CRM API for the Bastion CRM example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--schema-version", choices=SCHEMA_VERSIONS, default="v2")
    parser.add_argument("--fail-with-503", type=int, default=0)
    args = parser.parse_args(argv)
    app = create_app(args.schema_version, args.fail_with_503)
    print(f"staging CRM ({args.schema_version}) on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
