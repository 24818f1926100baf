"""/readyz on the public port says only ready (200) or not ready (503), in every environment; the
admin app names each dependency, and flips to 503 naming the one that went away. Readiness
needs Milvus only: Redis and the LLM degrade the query service, they do not take it out. And a
production service with no way in (no bootstrap admin key, an empty key store) does not start."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from deploy import processes, stack
from services.common.admin import build_admin_app
from services.common.clients import build_redis
from services.common.grants import ALL_COLLECTIONS, Scope
from services.common.key_store import KeyStore
from services.common.production import NoWayIn
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers, start_milvus
from tests.integration.conftest import (
    build_indexing_app,
    indexing_settings,
    query_settings,
    running,
)


async def admin_readyz(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=build_admin_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
        return await admin.get("/readyz")


async def test_readyz_reports_every_dependency(servers: Servers) -> None:
    app = build_query_app(query_settings(servers))
    async with running(app) as client:
        public = await client.get("/readyz")
        response = await admin_readyz(app)
    assert (public.status_code, public.json()) == (200, {"status": "ready"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["dependencies"]) == {"milvus", "redis", "llm"}
    assert all(dep["status"] == "ok" for dep in body["dependencies"].values())
    assert [n for n, dep in body["dependencies"].items() if dep["required"]] == ["milvus"]


async def test_healthz_needs_no_dependency(data_servers: Servers) -> None:
    async with running(build_indexing_app(indexing_settings(data_servers))) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "docqa_http_requests_total" in metrics.text


async def test_readyz_degrades_naming_redis_then_flips_to_503_naming_milvus(
    servers: Servers, runtime_dir: Path
) -> None:
    redis_port = processes.free_port()
    redis_spec = stack.redis_spec(stack.StackPaths(runtime_dir), redis_port, name="flip-redis")
    processes.start(redis_spec)
    processes.wait_until_ready(redis_spec, stack.redis_ready(redis_port), timeout_s=30)
    milvus_spec, milvus_uri = start_milvus(runtime_dir, "flip-milvus")
    try:
        settings = query_settings(
            servers,
            redis={"url": f"redis://127.0.0.1:{redis_port}/0"},
            milvus={"uri": milvus_uri, "timeout_s": 2},
        )
        app = build_query_app(settings)
        async with running(app) as client:
            assert (await client.get("/readyz")).status_code == 200

            # the query side answers without Redis (uncached), so Redis only degrades it
            processes.stop(redis_spec.pid_path)
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            response = await admin_readyz(app)
            assert response.status_code == 200
            assert response.json()["status"] == "degraded"
            assert response.json()["failed"] == ["redis"]
            assert response.json()["dependencies"]["redis"]["status"] == "down"

            processes.stop(milvus_spec.pid_path)
            public = await client.get("/readyz")
            assert (public.status_code, public.json()) == (503, {"status": "not_ready"})
            response = await admin_readyz(app)
            assert response.status_code == 503
            assert set(response.json()["failed"]) == {"redis", "milvus"}
    finally:
        processes.stop(redis_spec.pid_path)
        processes.stop(milvus_spec.pid_path)


async def test_production_public_readyz_is_status_only_and_the_admin_app_has_the_detail(
    servers: Servers,
) -> None:
    keys = {"query_keys": ["q" * 30], "admin_keys": ["a" * 30]}
    app = build_query_app(query_settings(servers, environment="production", auth=keys))
    async with running(app) as client:
        public = await client.get("/readyz")
        public_metrics = await client.get("/metrics")
        transport = httpx.ASGITransport(app=build_admin_app(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
            detail = await admin.get("/readyz")
            metrics = await admin.get("/metrics")
    assert (public.status_code, public.json()) == (200, {"status": "ready"})
    # nothing of the internals on the public port: no endpoint, URL, port or component name
    for internal in (servers.redis_url, servers.milvus_uri, str(servers.llm_url), "milvus"):
        assert internal.removeprefix("http://") not in public.text
    assert public_metrics.status_code == 404
    assert detail.status_code == 200
    assert set(detail.json()["dependencies"]) == {"milvus", "redis", "llm"}
    assert metrics.status_code == 200 and "docqa_http_requests_total" in metrics.text


async def test_production_public_readyz_says_not_ready_without_milvus(
    data_servers: Servers, runtime_dir: Path
) -> None:
    milvus_spec, milvus_uri = start_milvus(runtime_dir, "prod-flip-milvus")
    keys = {"query_keys": ["q" * 30], "admin_keys": ["a" * 30]}
    settings = indexing_settings(
        data_servers,
        environment="production",
        auth=keys,
        milvus={"uri": milvus_uri, "timeout_s": 2},
    )
    try:
        app = build_indexing_app(settings)
        async with running(app) as client:
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            processes.stop(milvus_spec.pid_path)
            down = await client.get("/readyz")
            transport = httpx.ASGITransport(app=build_admin_app(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
                detail = (await admin.get("/readyz")).json()
    finally:
        processes.stop(milvus_spec.pid_path)
    assert (down.status_code, down.json()) == (503, {"status": "not_ready"})
    assert detail["failed"] == ["milvus"]


async def test_production_starts_only_once_the_real_key_store_holds_a_key(
    data_servers: Servers,
) -> None:
    """No DOCQA_AUTH_ADMIN_KEYS: the lifespan reads the real Redis key store; empty, the service
    refuses to start; with a key made the way ``docqa keys add`` makes it, it starts and takes
    that key."""
    prefix = f"noway{uuid.uuid4().hex[:8]}"
    settings = indexing_settings(
        data_servers,
        environment="production",
        auth={"query_keys": [], "admin_keys": []},
        redis={"url": data_servers.redis_url, "key_prefix": prefix},
    )
    with pytest.raises(NoWayIn, match="the Redis key store holds no key"):
        async with running(build_indexing_app(settings)):
            pytest.fail("the service started with no way in")

    redis = build_redis(settings.redis)
    try:
        key, _ = await KeyStore(redis, prefix=prefix).add(
            tenant="ops",
            scopes=frozenset({Scope.ADMIN, Scope.INGEST}),
            collections=(ALL_COLLECTIONS,),
        )
        async with running(build_indexing_app(settings)) as client:
            auth = {"Authorization": f"Bearer {key}"}
            unknown_job = await client.get("/v1/jobs/no-such-job", headers=auth)
            stranger = await client.get(
                "/v1/jobs/no-such-job", headers={"Authorization": "Bearer x"}
            )
        assert unknown_job.status_code == 404, unknown_job.text  # the stored key got in
        assert stranger.status_code == 401
    finally:
        stored = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if stored:
            await redis.delete(*stored)
        await redis.aclose()
