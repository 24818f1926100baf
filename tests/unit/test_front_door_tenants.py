"""The query front door with stored (tenant) keys: a cached answer costs no Redis round trip
for auth once the key's grant is known, and a collection the key may not see is refused before
any lookup (FAQ, cache) is made for it, with the 404 of a collection that does not exist.

The app, the fake answerer and its cached answers are those of ``test_query_front_door``; the
key store runs on the dict-backed fake Redis of ``_key_fakes``.
"""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI
from redis.asyncio import Redis

from services.common.auth import KeyRing
from services.common.grants import Scope
from services.common.key_store import KeyStore
from tests.unit._key_fakes import FakeRedis
from tests.unit.test_query_front_door import FakeAnswerer, ask, build, client_for


async def with_stored_key(app: FastAPI, collections: tuple[str, ...]) -> tuple[FakeRedis, str]:
    redis = FakeRedis()
    store = KeyStore(cast(Redis, redis), prefix="u")
    key, _ = await store.add(
        tenant="acme", scopes=frozenset({Scope.QUERY}), collections=collections
    )
    keyring: KeyRing = app.state.keyring
    keyring.attach(store)
    redis.reads = 0
    return redis, key


async def test_cached_answers_cost_one_key_lookup_per_ttl() -> None:
    answerer = FakeAnswerer()
    app = build(answerer)
    redis, key = await with_stored_key(app, ("kb",))

    async with client_for(app) as client:
        responses = [
            await client.post("/v1/query", json=ask(), headers={"Authorization": f"Bearer {key}"})
            for _ in range(20)
        ]

    assert [r.status_code for r in responses] == [200] * 20
    assert answerer.route_calls == []  # every one answered at the front door
    assert redis.reads == 1


async def test_a_collection_the_key_may_not_see_is_404_and_never_looked_up() -> None:
    answerer = FakeAnswerer()
    app = build(answerer)
    _, key = await with_stored_key(app, ("other_*",))

    async with client_for(app) as client:
        refused = await client.post(
            "/v1/query", json=ask(), headers={"Authorization": f"Bearer {key}"}
        )

    assert refused.status_code == 404
    assert refused.json()["error"] == {
        "code": "collection_not_found",
        "message": "collection 'kb' does not exist",
        "detail": {"collection": "kb"},
    }
    assert answerer.lookups == [] and answerer.route_calls == []


async def test_a_stored_key_without_query_scope_is_403() -> None:
    answerer = FakeAnswerer()
    app = build(answerer)
    redis = FakeRedis()
    store = KeyStore(cast(Redis, redis), prefix="u")
    key, _ = await store.add(tenant="acme", scopes=frozenset({Scope.INGEST}), collections=("*",))
    app.state.keyring.attach(store)

    async with client_for(app) as client:
        refused = await client.post(
            "/v1/query", json=ask(), headers={"Authorization": f"Bearer {key}"}
        )

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert answerer.lookups == []
