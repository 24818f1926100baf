"""Unit tests for the shared service plumbing: services.common.app, errors and health.

A tiny app is built by the real factory (``create_app``) with a do-nothing lifespan and a router
whose routes raise what the real routes raise; it is driven with FastAPI's TestClient. Readiness
checks are fake ``DependencyCheck`` objects: that dataclass is our own seam.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, SecretStr

from docqa_core.errors import (
    CollectionNotFound,
    Conflict,
    DependencyUnavailable,
    DocqaError,
    DocumentNotFound,
    InvalidRequest,
    JobNotFound,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
)
from services.common.admin import build_admin_app
from services.common.auth import Forbidden, Unauthorized
from services.common.errors import docqa_error_response
from services.common.health import DependencyCheck, check_readiness
from services.common.settings import AuthSettings, QuerySettings
from services.query_api import openai_errors
from tests.unit._apps import create_test_app

with warnings.catch_warnings():  # starlette warns that its TestClient will move to httpx2
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient


class Item(BaseModel):
    name: str
    count: int


@asynccontextmanager
async def no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


def routes() -> APIRouter:
    router = APIRouter()

    @router.post("/items")
    async def create_item(item: Item) -> dict[str, Any]:
        return {"name": item.name, "count": item.count}

    @router.get("/items")
    async def list_items(limit: int = 10) -> dict[str, int]:
        return {"limit": limit}

    @router.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    @router.get("/crash-sync")
    def crash_sync() -> None:
        raise RuntimeError("secret internals")

    @router.get("/raise/{which}")
    async def raise_error(which: str) -> None:
        raise ERRORS[which]

    return router


ERRORS: dict[str, DocqaError] = {
    "base": DocqaError("generic", detail={"k": "v"}),
    "invalid": InvalidRequest("bad input", detail=[1, 2]),
    "not_found": NotFound("nothing here"),
    "collection": CollectionNotFound("no such collection", detail={"collection": "kb"}),
    "document": DocumentNotFound("no such document"),
    "job": JobNotFound("no such job"),
    "conflict": Conflict("already there"),
    "too_large": PayloadTooLarge("too big"),
    "media": UnsupportedMediaType("not a text file"),
    "unauthorized": Unauthorized("who are you"),
    "forbidden": Forbidden("not you"),
    "rate_limited": RateLimited("slow down", retry_after_s=2.0),
    "rate_limited_short": RateLimited("slow down", retry_after_s=0.2),
    "rate_limited_fraction": RateLimited("slow down", retry_after_s=2.4),
    "milvus_down": DependencyUnavailable("milvus", "Milvus is unreachable", detail="refused"),
}


def build_app(service: str, checks: Sequence[DependencyCheck] = ()) -> FastAPI:
    settings = QuerySettings(
        log_json=False,
        auth=AuthSettings(query_keys=[SecretStr("q" * 30)], admin_keys=[SecretStr("a" * 30)]),
    )
    app = create_test_app(
        title="plumbing-test",
        service=service,
        settings=settings,
        lifespan=no_lifespan,
        routers=[routes()],
    )
    app.state.readiness_checks = tuple(checks)
    return app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    # raise_server_exceptions stays on: an exception escaping the app fails the test
    with TestClient(build_app("plumbing-test")) as test_client:
        yield test_client


def envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    """Check the one error envelope and return the body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["request_id"] not in ("", "-")
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# --------------------------------------------------------------------------- health and readiness


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def ok() -> None:
    return None


async def refused() -> None:
    raise ConnectionRefusedError("connection refused")


def readyz(checks: Sequence[DependencyCheck]) -> tuple[int, dict[str, Any]]:
    """The detailed readiness: the admin app's (the public port says only ready or not)."""
    with TestClient(build_admin_app(build_app("readyz-test", checks))) as test_client:
        response = test_client.get("/readyz")
    return response.status_code, response.json()


def test_readyz_without_checks_is_ready() -> None:
    assert readyz([]) == (200, {"status": "ready", "failed": [], "dependencies": {}})


def test_readyz_all_ok_is_ready() -> None:
    status, body = readyz([DependencyCheck("redis", ok), DependencyCheck("milvus", ok)])

    assert status == 200
    assert body["status"] == "ready"
    assert body["failed"] == []
    assert set(body["dependencies"]) == {"redis", "milvus"}
    for result in body["dependencies"].values():
        assert result["status"] == "ok"
        assert result["required"] is True
        assert "error" not in result
        assert result["latency_ms"] >= 0


def test_readyz_failing_required_dependency_is_503_and_named() -> None:
    status, body = readyz([DependencyCheck("redis", ok), DependencyCheck("milvus", refused)])

    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failed"] == ["milvus"]
    milvus = body["dependencies"]["milvus"]
    assert milvus["status"] == "down"
    assert milvus["error"] == "ConnectionRefusedError: connection refused"
    assert body["dependencies"]["redis"]["status"] == "ok"


def test_readyz_failing_optional_dependency_is_degraded() -> None:
    status, body = readyz(
        [DependencyCheck("milvus", ok), DependencyCheck("llm", refused, required=False)]
    )

    assert status == 200
    assert body["status"] == "degraded"
    assert body["failed"] == ["llm"]
    assert body["dependencies"]["llm"]["required"] is False


def test_public_readyz_names_no_dependency_and_metrics_say_which_is_down() -> None:
    checks = [DependencyCheck("milvus", refused), DependencyCheck("llm", ok, required=False)]
    with TestClient(build_app("readyz-public", checks)) as test_client:
        response = test_client.get("/readyz")
        metrics = test_client.get("/metrics").text

    assert (response.status_code, response.json()) == (503, {"status": "not_ready"})
    up = {
        sample.labels["dependency"]: (sample.labels["required"], sample.value)
        for family in text_string_to_metric_families(metrics)
        if family.name == "docqa_dependency_up"
        for sample in family.samples
    }
    assert up["milvus"] == ("true", 0.0) and up["llm"] == ("false", 1.0)


def test_readyz_lists_required_failures_before_optional_ones() -> None:
    status, body = readyz(
        [
            DependencyCheck("llm", refused, required=False),
            DependencyCheck("redis", refused),
            DependencyCheck("milvus", ok),
        ]
    )

    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failed"] == ["redis", "llm"]


async def test_a_hanging_check_times_out_and_is_reported_down() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()  # never set

    code, body = await check_readiness(
        [DependencyCheck("milvus", hangs), DependencyCheck("redis", ok)], timeout_s=0.05
    )

    assert code == 503
    assert body["failed"] == ["milvus"]
    assert body["dependencies"]["milvus"]["status"] == "down"
    assert body["dependencies"]["milvus"]["error"].startswith("TimeoutError")
    assert body["dependencies"]["redis"]["status"] == "ok"


async def test_a_hanging_optional_check_only_degrades() -> None:
    async def hangs() -> None:
        await asyncio.sleep(3600)

    code, body = await check_readiness(
        [DependencyCheck("llm", hangs, required=False)], timeout_s=0.05
    )

    assert (code, body["status"], body["failed"]) == (200, "degraded", ["llm"])


async def test_check_errors_are_cut_to_300_characters() -> None:
    async def verbose() -> None:
        raise RuntimeError("x" * 5000)

    _, body = await check_readiness([DependencyCheck("redis", verbose)])

    error = body["dependencies"]["redis"]["error"]
    assert error.startswith("RuntimeError: xxx")
    assert len(error) == 300


# --------------------------------------------------------------------------- metrics


def request_count(text: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name != "docqa_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return sample.value
    return 0.0


def test_metrics_count_requests_by_route_and_status() -> None:
    service = f"metrics-{uuid.uuid4().hex[:8]}"  # a label no other test writes
    with TestClient(build_app(service)) as test_client:
        test_client.get("/healthz")
        test_client.get("/healthz")
        test_client.get("/no-such-route")
        response = test_client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "docqa_http_requests_total" in text
    assert request_count(text, service=service, route="/healthz", status="200") == 2.0
    assert request_count(text, service=service, route="unmatched", status="404") == 1.0
    assert request_count(text, service=service, route="/healthz", status="500") == 0.0


def test_metrics_count_a_crash_as_500() -> None:
    service = f"metrics-{uuid.uuid4().hex[:8]}"
    with TestClient(build_app(service)) as test_client:
        test_client.get("/crash")
        text = test_client.get("/metrics").text

    assert request_count(text, service=service, route="/crash", status="500") == 1.0


# --------------------------------------------------------------------------- framework errors


def test_unknown_route_is_404_envelope(client: TestClient) -> None:
    body = envelope(client.get("/v1/nothing-here"), 404, "not_found")

    assert body["error"]["detail"] is None


def test_wrong_method_is_405_envelope_with_allow(client: TestClient) -> None:
    response = client.post("/crash")

    envelope(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize("raw", [b"{not json", b'{"name": "a", "count": 1', b"\xff\xfe"])
def test_malformed_json_is_400_invalid_json(client: TestClient, raw: bytes) -> None:
    response = client.post("/items", content=raw, headers={"content-type": "application/json"})

    body = envelope(response, 400, "invalid_json")
    assert any(err["type"] == "json_invalid" for err in body["error"]["detail"])


def test_wrong_field_type_is_422_with_location(client: TestClient) -> None:
    response = client.post("/items", json={"name": "a", "count": "many"})

    body = envelope(response, 422, "invalid_request")
    [error] = body["error"]["detail"]
    assert error["loc"] == ["body", "count"]
    assert error["type"] == "int_parsing"
    assert error["msg"]


def test_missing_fields_are_all_reported(client: TestClient) -> None:
    body = envelope(client.post("/items", json={}), 422, "invalid_request")

    locations = sorted(tuple(err["loc"]) for err in body["error"]["detail"])
    assert locations == [("body", "count"), ("body", "name")]
    assert {err["type"] for err in body["error"]["detail"]} == {"missing"}


def test_bad_query_parameter_is_422_with_location(client: TestClient) -> None:
    body = envelope(client.get("/items", params={"limit": "ten"}), 422, "invalid_request")

    assert body["error"]["detail"][0]["loc"] == ["query", "limit"]


def test_valid_request_passes_through(client: TestClient) -> None:
    response = client.post("/items", json={"name": "a", "count": 3})

    assert response.status_code == 200
    assert response.json() == {"name": "a", "count": 3}
    assert response.headers["x-request-id"]


# --------------------------------------------------------------------------- unexpected errors


@pytest.mark.parametrize("path", ["/crash", "/crash-sync"])
def test_unexpected_exception_is_500_envelope_with_request_id(
    client: TestClient, path: str
) -> None:
    response = client.get(path)  # the client would re-raise an exception that escaped the app

    body = envelope(response, 500, "internal_error")
    assert "secret internals" not in response.text
    assert body["error"]["detail"] is None


def test_unexpected_exception_keeps_the_incoming_request_id(client: TestClient) -> None:
    response = client.get("/crash", headers={"X-Request-ID": "req-500-abc"})

    body = envelope(response, 500, "internal_error")
    assert body["request_id"] == "req-500-abc"


def test_unexpected_exception_is_logged_with_its_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        client.get("/crash")

    assert any(
        r.levelno == logging.ERROR and r.exc_info and "secret internals" in str(r.exc_info[1])
        for r in caplog.records
    )


# --------------------------------------------------------------------------- DocqaError mapping


@pytest.mark.parametrize(
    ("which", "status", "code"),
    [
        ("base", 400, "error"),
        ("invalid", 422, "invalid_request"),
        ("not_found", 404, "not_found"),
        ("collection", 404, "collection_not_found"),
        ("document", 404, "document_not_found"),
        ("job", 404, "job_not_found"),
        ("conflict", 409, "conflict"),
        ("too_large", 413, "payload_too_large"),
        ("media", 415, "unsupported_media_type"),
        ("unauthorized", 401, "unauthorized"),
        ("forbidden", 403, "forbidden"),
        ("rate_limited", 429, "rate_limited"),
    ],
)
def test_docqa_errors_map_to_their_status_and_code(
    client: TestClient, which: str, status: int, code: str
) -> None:
    body = envelope(client.get(f"/raise/{which}"), status, code)

    assert body["error"]["message"] == ERRORS[which].message
    assert body["error"]["detail"] == ERRORS[which].detail


@pytest.mark.parametrize(
    ("which", "retry_after"), [("rate_limited", "2"), ("rate_limited_short", "1")]
)
def test_rate_limited_sets_retry_after(client: TestClient, which: str, retry_after: str) -> None:
    response = client.get(f"/raise/{which}")

    envelope(response, 429, "rate_limited")
    assert response.headers["retry-after"] == retry_after


def test_retry_after_is_never_shorter_than_the_wait(client: TestClient) -> None:
    response = client.get("/raise/rate_limited_fraction")

    assert int(response.headers["retry-after"]) >= 2.4


def test_dependency_unavailable_sets_retry_after(client: TestClient) -> None:
    response = client.get("/raise/milvus_down")

    envelope(response, 503, "dependency_unavailable")
    assert response.headers["retry-after"] == "5"  # the default: a restarted server is back


def test_a_503_in_either_error_shape_says_when_to_retry() -> None:
    error = DependencyUnavailable("llm", "no LLM server is healthy", retry_after_s=10.0)
    for response in (docqa_error_response(error), openai_errors.docqa_error_response(error)):
        assert (response.status_code, response.headers["retry-after"]) == (503, "10")


def test_other_errors_set_no_retry_after(client: TestClient) -> None:
    assert "retry-after" not in client.get("/raise/conflict").headers


def test_dependency_unavailable_is_503_naming_the_dependency(client: TestClient) -> None:
    body = envelope(client.get("/raise/milvus_down"), 503, "dependency_unavailable")

    assert body["error"]["message"] == "Milvus is unreachable"
    assert body["error"]["detail"] == {"dependency": "milvus", "reason": "refused"}


# --------------------------------------------------------------------------- request id


def test_request_id_is_generated_when_absent(client: TestClient) -> None:
    response = client.get("/healthz")

    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    int(request_id, 16)  # a uuid4 hex


def test_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "from-the-gateway"})

    assert response.headers["x-request-id"] == "from-the-gateway"


def test_overlong_request_id_is_cut_to_128_characters(client: TestClient) -> None:
    response = client.get("/raise/conflict", headers={"X-Request-ID": "r" * 500})

    body = envelope(response, 409, "conflict")
    assert body["request_id"] == "r" * 128


async def test_non_utf8_request_id_does_not_break_the_request() -> None:
    app = build_app("plumbing-test")
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/healthz",
        "raw_path": b"/healthz",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-request-id", b"caf\xe9")],  # latin-1 "café", as a proxy may send it
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)  # raises today

    start = sent[0]
    assert start["status"] == 200
    assert any(name == b"x-request-id" for name, _ in start["headers"])
