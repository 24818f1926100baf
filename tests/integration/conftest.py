"""In-process apps (real lifespans, real clients) wired to the session's real servers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.common.settings import IndexingSettings, QuerySettings
from services.indexing_api.app import build_app as build_indexing_app
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers

QUERY_KEY = "test-query-key"
ADMIN_KEY = "test-admin-key"
QUERY_AUTH = {"Authorization": f"Bearer {QUERY_KEY}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def common_env(servers: Servers, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "milvus": {"uri": servers.milvus_uri},
        "redis": {"url": servers.redis_url, "key_prefix": "itest"},
        "auth": {"query_keys": [QUERY_KEY], "admin_keys": [ADMIN_KEY]},
        "log_json": False,
    }
    settings.update(overrides)
    return settings


def indexing_settings(servers: Servers, **overrides: Any) -> IndexingSettings:
    return IndexingSettings(**common_env(servers, **overrides))


def query_settings(servers: Servers, **overrides: Any) -> QuerySettings:
    env = common_env(servers, **overrides)
    env.setdefault("llm", {"endpoints": [servers.llm_url or "http://127.0.0.1:9/v1"]})
    return QuerySettings(**env)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=300
        ) as client:
            yield client


@pytest.fixture
def collection() -> str:
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
async def indexing_client(data_servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    async with running(build_indexing_app(indexing_settings(data_servers))) as client:
        yield client


@pytest.fixture(scope="session")
async def query_client(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    async with running(build_query_app(query_settings(servers))) as client:
        yield client


async def wait_for_job(
    client: httpx.AsyncClient, job_id: str, timeout_s: float = 180
) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            response = await client.get(f"/v1/jobs/{job_id}", headers=ADMIN_AUTH)
            assert response.status_code == 200, response.text
            job: dict[str, Any] = response.json()
            if job["state"] in {"succeeded", "failed", "partial"}:
                return job
            await asyncio.sleep(0.2)


async def ingest(
    client: httpx.AsyncClient, collection: str, documents: list[dict[str, Any]]
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/collections/{collection}/documents", json={"documents": documents}, headers=ADMIN_AUTH
    )
    assert response.status_code == 202, response.text
    return await wait_for_job(client, response.json()["job_id"])
