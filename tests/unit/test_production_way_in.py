"""A production process with no way in refuses to start: no bootstrap admin key
(``DOCQA_AUTH_ADMIN_KEYS``) and an empty Redis key store means nobody could call it, nor make a
key over HTTP. A bootstrap admin key alone, or any key in the store, is a way in.

Settings cannot tell (the store is in Redis), so each service's lifespan checks, through the
real ``KeyStore`` over a dict-backed fake of Redis's hash commands (``tests.unit._key_fakes``).
The lifespans run with fakes of our own seams for what they would otherwise start (the query
runtime; the indexing data clients, pipeline and job worker).
"""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.common import production
from services.common.grants import Scope
from services.common.key_store import KeyStore
from services.common.production import NoWayIn, require_a_way_in
from services.common.settings import AuthSettings, IndexingSettings, QuerySettings
from services.indexing_api import app as indexing_module
from services.query_api import app as query_module
from tests.unit._key_fakes import FakeRedis
from tests.unit._service_apps import quietly

pytestmark = pytest.mark.unit

ADMIN_KEY = "a" * 30
PREFIX = "docqa"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DOCQA_"):
            monkeypatch.delenv(name)


def production_auth(*admin_keys: str) -> dict[str, Any]:
    return {
        "environment": "production",
        "log_json": False,
        "auth": AuthSettings(admin_keys=[SecretStr(k) for k in admin_keys]),
    }


async def stored_key(redis: FakeRedis) -> str:
    key, _ = await KeyStore(redis, prefix=PREFIX).add(  # type: ignore[arg-type]
        tenant="acme", scopes=frozenset({Scope.QUERY}), collections=("hr",)
    )
    return key


def store_over(redis: FakeRedis) -> KeyStore:
    return KeyStore(redis, prefix=PREFIX)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the rule


async def test_no_admin_key_and_an_empty_store_refuses_to_start() -> None:
    with pytest.raises(NoWayIn) as caught:
        await require_a_way_in("production", [], store_over(FakeRedis()))
    message = str(caught.value)
    assert "refusing to start in production" in message
    assert "DOCQA_AUTH_ADMIN_KEYS" in message and "docqa keys add" in message


async def test_a_stored_key_is_a_way_in() -> None:
    redis = FakeRedis()
    await stored_key(redis)
    await require_a_way_in("production", [], store_over(redis))


@pytest.mark.parametrize(
    ("environment", "admin_keys"),
    [("production", [SecretStr(ADMIN_KEY)]), ("development", [])],
)
async def test_the_store_is_not_read_with_a_bootstrap_admin_key_or_in_development(
    environment: Any, admin_keys: list[SecretStr]
) -> None:
    down = FakeRedis()
    down.down = True  # a read would raise
    await require_a_way_in(environment, admin_keys, store_over(down))


async def test_a_store_that_cannot_be_read_refuses_to_start_without_naming_redis() -> None:
    down = FakeRedis()
    down.down = True
    with pytest.raises(NoWayIn, match="could not be read") as caught:
        await require_a_way_in("production", [], store_over(down))
    assert "connection refused" not in str(caught.value)  # the error's text may hold the URL


# --------------------------------------------------------------------------- the lifespans


class ServiceRedis(FakeRedis):
    """What the lifespans also ask of Redis while starting: a script registered (by the rate
    limiter; it runs only when a request is counted) and ``ping`` for the readiness check."""

    def register_script(self, script: str) -> object:
        return object()

    async def ping(self) -> bool:
        return True


class FakeRuntime:
    def __init__(self, redis: FakeRedis) -> None:
        self.clients = SimpleNamespace(redis=redis)
        self.closed = False

    def readiness_checks(self) -> tuple[()]:
        return ()

    async def aclose(self) -> None:
        self.closed = True


def query_app_over(
    monkeypatch: pytest.MonkeyPatch, redis: FakeRedis, *admin_keys: str
) -> tuple[FastAPI, FakeRuntime]:
    runtime = FakeRuntime(redis)

    async def start(settings: QuerySettings) -> FakeRuntime:
        return runtime

    monkeypatch.setattr(query_module.QueryRuntime, "start", start)
    settings = QuerySettings(**production_auth(*admin_keys))
    return quietly(lambda: query_module.build_app(settings)), runtime


async def test_the_query_service_refuses_to_start_with_no_way_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, runtime = query_app_over(monkeypatch, FakeRedis())
    with pytest.raises(NoWayIn, match="refusing to start in production"):
        async with app.router.lifespan_context(app):
            pytest.fail("the lifespan started")
    assert runtime.closed  # what was started is closed again


async def test_the_query_service_starts_with_a_stored_key_and_accepts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redis = ServiceRedis()
    key = await stored_key(redis)
    app, runtime = query_app_over(monkeypatch, redis)
    async with app.router.lifespan_context(app):
        grant = await app.state.keyring.grant_of(key)
        assert grant is not None and grant.tenant == "acme"
    assert runtime.closed


async def test_the_query_service_starts_with_only_a_bootstrap_admin_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _ = query_app_over(monkeypatch, ServiceRedis(), ADMIN_KEY)
    async with app.router.lifespan_context(app):
        assert app.state.runtime is not None
        assert await app.state.keyring.grant_of(ADMIN_KEY) is not None


class FakeWorker:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        await self._stopped.wait()

    def stop(self) -> None:
        self._stopped.set()

    async def release(self) -> None:
        return None


def indexing_app_over(
    monkeypatch: pytest.MonkeyPatch, redis: FakeRedis, *admin_keys: str
) -> tuple[FastAPI, SimpleNamespace]:
    async def ping() -> None:
        return None

    async def aclose() -> None:
        clients.closed = True

    async def warm_up(embedder: Any) -> None:
        return None

    clients = SimpleNamespace(
        redis=redis, store=SimpleNamespace(ping=ping), embedder=None, aclose=aclose, closed=False
    )
    monkeypatch.setattr(indexing_module, "build_data_clients", lambda *a, **k: clients)
    monkeypatch.setattr(indexing_module, "build_pipeline", lambda *a, **k: None)
    monkeypatch.setattr(indexing_module, "warm_up_models", warm_up)
    monkeypatch.setattr(indexing_module, "JobWorker", FakeWorker)
    settings = IndexingSettings(**production_auth(*admin_keys))
    return quietly(lambda: indexing_module.build_app(settings)), clients


async def test_the_indexing_service_refuses_to_start_with_no_way_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, clients = indexing_app_over(monkeypatch, FakeRedis())
    with pytest.raises(NoWayIn, match="refusing to start in production"):
        async with app.router.lifespan_context(app):
            pytest.fail("the lifespan started")
    assert clients.closed
    assert not hasattr(app.state, "jobs")  # refused before anything was set up


@pytest.mark.parametrize("bootstrap", [True, False], ids=["bootstrap-admin-key", "stored-key"])
async def test_the_indexing_service_starts_with_a_way_in(
    monkeypatch: pytest.MonkeyPatch, bootstrap: bool
) -> None:
    redis = ServiceRedis()
    key = ADMIN_KEY if bootstrap else await stored_key(redis)
    app, clients = indexing_app_over(monkeypatch, redis, *([ADMIN_KEY] if bootstrap else []))
    async with app.router.lifespan_context(app):
        assert await app.state.keyring.grant_of(key) is not None
    assert clients.closed


def test_the_message_says_how_to_make_a_way_in() -> None:
    assert "DOCQA_AUTH_ADMIN_KEYS" in production.NO_WAY_IN
    assert "docqa keys add" in production.NO_WAY_IN
