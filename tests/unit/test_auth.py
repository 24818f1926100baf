"""Unit tests for services.common.auth: key scopes, bearer parsing and the scope dependency.

The dependency is exercised through a tiny app built by the real app factory
(``services.common.app.create_app``) with a do-nothing lifespan, so the error envelope and the
request id are the ones the services really send.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import SecretStr
from starlette.requests import Request

from services.common.auth import (
    Forbidden,
    KeyRing,
    Scope,
    Unauthorized,
    bearer_token,
    require_scope,
)
from services.common.settings import AuthSettings, QuerySettings
from tests.unit._apps import create_test_app

with warnings.catch_warnings():  # starlette warns that its TestClient will move to httpx2
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient

QUERY_KEY = "unit-test-query-key-0123456789"
ADMIN_KEY = "unit-test-admin-key-0123456789"
OTHER_QUERY_KEY = "unit-test-second-query-key-000"


def keyring() -> KeyRing:
    return KeyRing(
        query_keys=[SecretStr(QUERY_KEY), SecretStr(OTHER_QUERY_KEY)],
        admin_keys=[SecretStr(ADMIN_KEY)],
    )


# --------------------------------------------------------------------------- KeyRing


def test_admin_key_holds_both_scopes() -> None:
    assert keyring().scopes_of(ADMIN_KEY) == {Scope.ADMIN, Scope.QUERY}


@pytest.mark.parametrize("key", [QUERY_KEY, OTHER_QUERY_KEY])
def test_query_key_holds_only_query(key: str) -> None:
    assert keyring().scopes_of(key) == {Scope.QUERY}


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "nope",
        QUERY_KEY.upper(),  # keys are case-sensitive
        QUERY_KEY[:-1],  # a prefix is not the key
        QUERY_KEY + "x",
        f" {QUERY_KEY}",
    ],
    ids=["empty", "unknown", "wrong-case", "prefix", "extended", "leading-space"],
)
def test_unknown_keys_hold_no_scope(presented: str) -> None:
    assert keyring().scopes_of(presented) == set()


def test_a_key_listed_as_query_and_admin_is_admin() -> None:
    ring = KeyRing(query_keys=[SecretStr("same")], admin_keys=[SecretStr("same")])

    assert ring.scopes_of("same") == {Scope.ADMIN, Scope.QUERY}


def test_non_ascii_keys_compare_correctly() -> None:
    ring = KeyRing(query_keys=[SecretStr("열쇠-ключ")], admin_keys=[])

    assert ring.scopes_of("열쇠-ключ") == {Scope.QUERY}
    assert ring.scopes_of("열쇠-ключи") == set()


def test_empty_keyring_admits_nobody() -> None:
    assert KeyRing(query_keys=[], admin_keys=[]).scopes_of(QUERY_KEY) == set()


# --------------------------------------------------------------------------- bearer parsing


def request_with(authorization: str | None) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer     ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token abc", None),
        ("Bearerabc", None),
        ("abc", None),
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer   abc  ", "abc"),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(request_with(header)) == token


# --------------------------------------------------------------------------- require_scope


@asynccontextmanager
async def no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


def build_app() -> FastAPI:
    router = APIRouter()

    @router.get("/ask", dependencies=[Depends(require_scope(Scope.QUERY))])
    async def ask() -> dict[str, str]:
        return {"answer": "42"}

    @router.post("/ingest", dependencies=[Depends(require_scope(Scope.ADMIN))])
    async def ingest() -> dict[str, str]:
        return {"job_id": "j1"}

    settings = QuerySettings(
        log_json=False,
        auth=AuthSettings(query_keys=[SecretStr(QUERY_KEY)], admin_keys=[SecretStr(ADMIN_KEY)]),
    )
    return create_test_app(
        title="auth-test",
        service="auth-test",
        settings=settings,
        lifespan=no_lifespan,
        routers=[router],
    )


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(build_app()) as test_client:
        yield test_client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"] != "-"
    return body


def test_query_key_may_query(client: TestClient) -> None:
    response = client.get("/ask", headers=bearer(QUERY_KEY))

    assert response.status_code == 200
    assert response.json() == {"answer": "42"}


def test_admin_key_may_query_too(client: TestClient) -> None:
    assert client.get("/ask", headers=bearer(ADMIN_KEY)).status_code == 200


def test_admin_key_may_administer(client: TestClient) -> None:
    assert client.post("/ingest", headers=bearer(ADMIN_KEY)).json() == {"job_id": "j1"}


def test_missing_key_is_401(client: TestClient) -> None:
    body = assert_envelope(client.get("/ask"), 401, "unauthorized")

    assert "Authorization: Bearer" in body["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Basic {QUERY_KEY}"},
        {"Authorization": "Bearer "},
        {"X-API-Key": QUERY_KEY},
    ],
    ids=["wrong-scheme", "empty-token", "other-header"],
)
def test_malformed_authorization_is_401_missing_key(
    client: TestClient, headers: dict[str, str]
) -> None:
    body = assert_envelope(client.get("/ask", headers=headers), 401, "unauthorized")

    assert body["error"]["message"].startswith("missing API key")


def test_unknown_key_is_401_invalid(client: TestClient) -> None:
    body = assert_envelope(client.get("/ask", headers=bearer("guess")), 401, "unauthorized")

    assert body["error"]["message"] == "invalid API key"


def test_query_key_on_admin_route_is_403(client: TestClient) -> None:
    body = assert_envelope(client.post("/ingest", headers=bearer(QUERY_KEY)), 403, "forbidden")

    assert "admin" in body["error"]["message"]


def test_unknown_key_on_admin_route_is_401_not_403(client: TestClient) -> None:
    assert_envelope(client.post("/ingest", headers=bearer("guess")), 401, "unauthorized")


def test_error_carries_the_incoming_request_id(client: TestClient) -> None:
    response = client.get("/ask", headers={"X-Request-ID": "trace-abc-123"})

    body = assert_envelope(response, 401, "unauthorized")
    assert body["request_id"] == "trace-abc-123"


def test_each_request_gets_its_own_request_id(client: TestClient) -> None:
    first = client.get("/ask").json()["request_id"]
    second = client.get("/ask").json()["request_id"]

    assert first != second


def test_auth_errors_are_docqa_errors_with_their_status() -> None:
    assert (Unauthorized.http_status, Unauthorized.code) == (401, "unauthorized")
    assert (Forbidden.http_status, Forbidden.code) == (403, "forbidden")
