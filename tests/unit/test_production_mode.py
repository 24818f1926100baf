"""Production mode, as a process sees it: ``docqa serve`` refuses to start with what anyone who
read this repository could use (exit status and message), the public port tells only ready or
not ready, and the admin port, served by the same process, has the detail and ``/metrics``.

Settings validation itself is in tests/unit/test_settings.py and test_server_settings.py; the
refusal to start with no way in (no bootstrap admin key, an empty Redis key store) in
test_production_way_in.py; the real services on real dependencies in
tests/integration/test_readiness.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import SecretStr

from deploy import processes
from services import cli
from services.common import serving
from services.common.admin import build_admin_app
from services.common.health import DependencyCheck
from services.common.settings import AuthSettings, QuerySettings
from tests.unit._apps import create_test_app

PROD_KEYS = AuthSettings(query_keys=[SecretStr("q" * 30)], admin_keys=[SecretStr("a" * 30)])


@asynccontextmanager
async def no_lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield


async def ok() -> None:
    return None


async def refused() -> None:
    raise ConnectionRefusedError("connection refused to 10.1.2.3:19530")


def settings(environment: str, **overrides: Any) -> QuerySettings:
    return QuerySettings(environment=environment, log_json=False, auth=PROD_KEYS, **overrides)


def app_for(config: QuerySettings, checks: Sequence[DependencyCheck] = ()) -> FastAPI:
    app = create_test_app(
        title="docqa-test",
        service="test",
        settings=config,
        lifespan=no_lifespan,
        routers=[APIRouter()],
    )
    app.state.readiness_checks = tuple(checks)
    return app


async def get(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(kwargs.pop("method", "GET"), path, **kwargs)


# --------------------------------------------------------------------------- refusing to start


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("DOCQA_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("variable", ["DOCQA_ENVIRONMENT", "DOCQA_ENV"])
def test_serve_refuses_development_keys_and_cors_star_with_every_reason(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str
) -> None:
    clean_env.setenv(variable, "production")
    clean_env.setenv("DOCQA_AUTH_QUERY_KEYS", "dev-query-key")
    clean_env.setenv("DOCQA_AUTH_ADMIN_KEYS", "short")
    clean_env.setenv("DOCQA_CORS_ORIGINS", "*")

    status = cli.main(["serve", "query"])

    assert status != 0
    error = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "refusing to start in production" in error
    assert "DOCQA_AUTH_QUERY_KEYS holds a development or short key" in error
    assert "DOCQA_AUTH_ADMIN_KEYS holds a development or short key" in error
    assert "DOCQA_CORS_ORIGINS holds '*'" in error
    assert "errors.pydantic.dev" not in error


# --------------------------------------------------------------------------- public port vs admin


async def test_production_public_readyz_says_only_ready_or_not() -> None:
    up = app_for(settings("production"), [DependencyCheck("milvus", ok)])
    down = app_for(settings("production"), [DependencyCheck("milvus", refused)])
    degraded = app_for(
        settings("production"),
        [DependencyCheck("milvus", ok), DependencyCheck("llm", refused, required=False)],
    )

    for app, status, body in [
        (up, 200, {"status": "ready"}),
        (down, 503, {"status": "not_ready"}),
        (degraded, 200, {"status": "ready"}),
    ]:
        response = await get(app, "/readyz")
        assert (response.status_code, response.json()) == (status, body)
        assert "10.1.2.3" not in response.text and "milvus" not in response.text


async def test_production_public_port_has_no_metrics() -> None:
    app = app_for(settings("production"))
    assert (await get(app, "/metrics")).status_code == 404
    assert (await get(app, "/healthz")).json() == {"status": "ok"}


async def test_development_public_port_keeps_metrics_but_not_readiness_detail() -> None:
    app = app_for(settings("development"), [DependencyCheck("milvus", refused)])

    ready = await get(app, "/readyz")
    assert (ready.status_code, ready.json()) == (503, {"status": "not_ready"})
    assert "10.1.2.3" not in ready.text
    assert (await get(app, "/metrics")).status_code == 200
    assert (await get(build_admin_app(app), "/readyz")).json()["failed"] == ["milvus"]


async def test_the_admin_app_serves_the_public_app_s_detail_and_metrics() -> None:
    public = app_for(settings("production"), [DependencyCheck("milvus", refused)])
    admin = build_admin_app(public)

    ready = await get(admin, "/readyz")
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["milvus"]
    assert "10.1.2.3" in ready.json()["dependencies"]["milvus"]["error"]
    # checks set later (by the public app's lifespan) are the ones read
    public.state.readiness_checks = (DependencyCheck("milvus", ok),)
    assert (await get(admin, "/readyz")).json()["status"] == "ready"
    metrics = await get(admin, "/metrics")
    assert metrics.status_code == 200 and "docqa_http_requests_total" in metrics.text
    assert (await get(admin, "/openapi.json")).status_code == 404


async def test_cors_answers_a_listed_origin_only() -> None:
    app = app_for(settings("production", cors_origins=["https://docs.example.com"]))
    preflight = {"Access-Control-Request-Method": "POST"}

    allowed = await get(
        app,
        "/v1/query",
        method="OPTIONS",
        headers={"Origin": "https://docs.example.com", **preflight},
    )
    other = await get(
        app, "/v1/query", method="OPTIONS", headers={"Origin": "https://evil.example", **preflight}
    )

    assert allowed.headers["access-control-allow-origin"] == "https://docs.example.com"
    assert "access-control-allow-origin" not in other.headers


async def test_no_cors_headers_without_origins() -> None:
    response = await get(app_for(settings("development")), "/healthz", headers={"Origin": "x"})
    assert "access-control-allow-origin" not in response.headers


# --------------------------------------------------------------------------- one process, two ports


@pytest.fixture
def two_servers() -> Iterator[tuple[int, int]]:
    """The public app and its admin app served by ``services.common.serving`` in a thread, as
    ``docqa serve`` serves them; stopped the way a SIGTERM stops the public server."""
    port, admin_port = processes.free_port(), processes.free_port()
    config = settings("production", server={"port": port, "admin_port": admin_port})
    public, admin = serving.build_servers(
        app_for(config, [DependencyCheck("milvus", ok)]), config, host="127.0.0.1", port=port
    )
    assert admin is not None
    thread = threading.Thread(target=asyncio.run, args=(serving.serve(public, admin),))
    thread.start()
    try:
        for _ in range(200):
            if public.started and admin.started:
                break
            threading.Event().wait(0.02)
        yield port, admin_port
    finally:
        public.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()  # the admin server stopped with the public one


def test_serve_runs_the_admin_port_beside_the_public_port(two_servers: tuple[int, int]) -> None:
    port, admin_port = two_servers
    public_ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
    admin_ready = httpx.get(f"http://127.0.0.1:{admin_port}/readyz")

    assert public_ready.json() == {"status": "ready"}
    assert admin_ready.json()["dependencies"]["milvus"]["status"] == "ok"
    assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
    assert httpx.get(f"http://127.0.0.1:{admin_port}/metrics").status_code == 200


def test_no_admin_server_without_an_admin_port() -> None:
    config = settings("development")
    _, admin = serving.build_servers(app_for(config), config, host="127.0.0.1", port=8000)
    assert admin is None
