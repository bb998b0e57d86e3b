"""The staging CRM over real HTTP: its OpenAPI document, validation, faults, idempotency, drift.

The adaptive loop of the CRM example is only as honest as this server: if it did not
name the missing field, or replayed a failure, the loop would be tested against fiction.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.crm_integration.staging_crm import create_app, serve

REPO_ROOT = Path(__file__).resolve().parents[2]
ADA_V1 = {"email": "ada@example.com", "full_name": "Ada Lovelace"}
ADA_V2 = {**ADA_V1, "customer_tier": "pro"}


def stats(url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(url + "/admin/stats").json()
    return result


@pytest.mark.parametrize(
    ("version", "required"),
    [("v1", ["email", "full_name"]), ("v2", ["email", "full_name", "customer_tier"])],
)
def test_openapi_document_describes_the_active_version(
    start_crm: Callable[..., str], version: str, required: list[str]
) -> None:
    url = start_crm(schema_version=version)
    document = httpx.get(url + "/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == version
    user = document["components"]["schemas"]["User"]
    assert user["required"] == required
    assert user["additionalProperties"] is False
    assert user["properties"]["email"] == {"type": "string", "format": "email"}
    assert set(user["properties"]) == set(required)
    if version == "v2":
        assert user["properties"]["customer_tier"]["enum"] == ["free", "pro", "enterprise"]
    body = document["paths"]["/users"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/User"}
    assert {"201", "400", "422", "503"} <= set(document["paths"]["/users"]["post"]["responses"])


def test_valid_post_creates_a_user(crm_url: str) -> None:
    response = httpx.post(crm_url + "/users", json=ADA_V2)
    assert response.status_code == 201
    assert response.json() == {"id": "usr_0001", "email": "ada@example.com"}
    assert httpx.get(crm_url + "/users").json() == [{"id": "usr_0001", **ADA_V2}]
    assert stats(crm_url)["users_created"] == 1


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (ADA_V1, "customer_tier", "customer_tier is required"),
        ({**ADA_V2, "customer_tier": "gold"}, "customer_tier", "must be one of"),
        ({**ADA_V2, "email": "not-an-email"}, "email", "must be an email"),
        ({**ADA_V2, "full_name": 42}, "full_name", "must be a string"),
        ({**ADA_V2, "first": "Ada"}, "first", "not an allowed property"),
    ],
)
def test_invalid_post_is_422_naming_the_field(
    crm_url: str, payload: dict[str, object], field: str, message: str
) -> None:
    response = httpx.post(crm_url + "/users", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_failed"
    assert body["field"] == field
    assert message in body["message"]
    assert body["errors"][0] == {"field": body["field"], "message": body["message"]}
    assert stats(crm_url)["users_created"] == 0


def test_422_lists_every_problem_missing_fields_first(crm_url: str) -> None:
    body = httpx.post(crm_url + "/users", json={"email": "x", "plan": "pro"}).json()
    assert [e["field"] for e in body["errors"]] == ["full_name", "customer_tier", "email", "plan"]


@pytest.mark.parametrize("content", [b"[1, 2]", b'"ada"', b"null", b"{not json"])
def test_body_that_is_not_a_json_object_is_400(crm_url: str, content: bytes) -> None:
    response = httpx.post(
        crm_url + "/users", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_body"


def test_first_n_posts_answer_503_then_succeed(start_crm: Callable[..., str]) -> None:
    url = start_crm(fail_with_503=2)
    statuses = [httpx.post(url + "/users", json=ADA_V2).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]
    assert stats(url) | {"idempotency_keys": None} == {
        "users_created": 1,
        "posts": 3,
        "idempotent_replays": 0,
        "idempotency_keys": None,
        "schema_version": "v2",
    }


def test_503_is_not_stored_under_the_idempotency_key(start_crm: Callable[..., str]) -> None:
    url = start_crm(fail_with_503=1)
    headers = {"Idempotency-Key": "run1-post-0"}
    assert httpx.post(url + "/users", json=ADA_V2, headers=headers).status_code == 503
    assert httpx.post(url + "/users", json=ADA_V2, headers=headers).status_code == 201
    assert stats(url)["idempotency_keys"] == {"run1-post-0": 2}


def test_faults_can_be_injected_at_runtime(crm_url: str) -> None:
    assert httpx.post(crm_url + "/admin/faults", json={"fail_with_503": 1}).json() == {
        "fail_with_503": 1
    }
    assert httpx.post(crm_url + "/users", json=ADA_V2).status_code == 503
    assert httpx.post(crm_url + "/users", json=ADA_V2).status_code == 201
    assert httpx.post(crm_url + "/admin/faults", json={"fail_with_503": -1}).status_code == 400


def test_repeated_idempotency_key_replays_without_creating(crm_url: str) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = httpx.post(crm_url + "/users", json=ADA_V2, headers=headers)
    again = httpx.post(crm_url + "/users", json=ADA_V2, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert stats(crm_url) == {
        "users_created": 1,
        "posts": 2,
        "idempotent_replays": 1,
        "idempotency_keys": {"k-1": 2},
        "schema_version": "v2",
    }


def test_key_reused_with_another_body_is_409(crm_url: str) -> None:
    headers = {"Idempotency-Key": "k-1"}
    httpx.post(crm_url + "/users", json=ADA_V2, headers=headers)
    other = {**ADA_V2, "email": "grace@example.com"}
    response = httpx.post(crm_url + "/users", json=other, headers=headers)
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_reused"
    assert stats(crm_url)["users_created"] == 1


def test_validation_failure_is_not_stored_so_a_fixed_body_may_reuse_the_key(crm_url: str) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert httpx.post(crm_url + "/users", json=ADA_V1, headers=headers).status_code == 422
    assert httpx.post(crm_url + "/users", json=ADA_V2, headers=headers).status_code == 201
    assert stats(crm_url)["idempotent_replays"] == 0


def test_schema_switch_drifts_validation_and_document(start_crm: Callable[..., str]) -> None:
    url = start_crm(schema_version="v1")
    assert httpx.post(url + "/users", json=ADA_V1).status_code == 201
    # v1 knows nothing of customer_tier: additionalProperties is false.
    assert httpx.post(url + "/users", json=ADA_V2).json()["field"] == "customer_tier"

    switched = httpx.post(url + "/admin/schema", json={"version": "v2"})
    assert switched.status_code == 200 and switched.json() == {"version": "v2"}
    document = httpx.get(url + "/openapi.json").json()
    assert "customer_tier" in document["components"]["schemas"]["User"]["required"]
    rejected = httpx.post(url + "/users", json=ADA_V1)
    assert rejected.status_code == 422 and rejected.json()["field"] == "customer_tier"
    assert httpx.post(url + "/users", json=ADA_V2).status_code == 201


@pytest.mark.parametrize("body", [{"version": "v3"}, {}, ["v1"]])
def test_schema_switch_rejects_unknown_versions(crm_url: str, body: object) -> None:
    assert httpx.post(crm_url + "/admin/schema", json=body).status_code == 400
    assert stats(crm_url)["schema_version"] == "v2"


def test_create_app_rejects_unknown_version() -> None:
    with pytest.raises(ValueError, match="v9"):
        create_app("v9")


def test_serve_picks_a_free_port_and_stops_cleanly() -> None:
    with serve(create_app()) as url:
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        assert port > 0
        assert httpx.get(url + "/openapi.json").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/openapi.json", timeout=2)


def test_runs_as_a_module() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.crm_integration.staging_crm", "--port", str(port),
         "--schema-version", "v1"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                document = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "module server did not start"
                time.sleep(0.05)
        assert document["info"]["version"] == "v1"
    finally:
        process.terminate()
        process.wait(timeout=10)
