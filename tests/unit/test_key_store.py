"""Unit tests for stored API keys: hashing, the key store, the keyring's grant cache, the CLI.

Redis is replaced by a dict-backed fake of the hash commands the key store uses
(``tests/unit/_key_fakes.py``; the real store runs against a real Redis in
tests/integration/test_tenant_isolation.py).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from docqa_core.errors import DependencyUnavailable
from services import keys as keys_cli
from services.common.auth import STALE_GRANT_S, KeyRing
from services.common.grants import ALL_COLLECTIONS, DEFAULT_TENANT, Scope
from services.common.key_store import KEY_MARK, KeyStore, key_digest
from tests.unit._key_fakes import FakeRedis

QUERY_KEY = "bootstrap-query-key-0123456789"
ADMIN_KEY = "bootstrap-admin-key-0123456789"


@pytest.fixture
def redis() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
def store(redis: FakeRedis) -> KeyStore:
    return KeyStore(cast(Redis, redis), prefix="u")


def keyring(store: KeyStore | None = None, ttl_s: float = 5.0) -> KeyRing:
    ring = KeyRing(
        query_keys=[SecretStr(QUERY_KEY)], admin_keys=[SecretStr(ADMIN_KEY)], ttl_s=ttl_s
    )
    if store is not None:
        ring.attach(store)
    return ring


# --------------------------------------------------------------------------- hashing


def test_the_digest_is_keyed_not_a_bare_sha256() -> None:
    import hashlib

    digest = key_digest("some-key")
    assert len(digest) == 64 and digest == key_digest("some-key")
    assert digest != hashlib.sha256(b"some-key").hexdigest()
    assert digest != key_digest("some-key ")


async def test_the_store_keeps_the_digest_never_the_key(store: KeyStore, redis: FakeRedis) -> None:
    key, record = await store.add(
        tenant="acme", scopes=frozenset({Scope.QUERY}), collections=("hr",)
    )

    assert key.startswith(f"{KEY_MARK}_{record.grant.key_id}_") and len(key) > 40
    stored = json.dumps(redis.hashes)
    # the secret is token_urlsafe, which may itself hold "_": split off the mark and id only
    secret = key.split("_", 2)[2]
    assert len(secret) >= 40 and key not in stored and secret not in stored
    assert key_digest(key) in redis.hashes["u:api_keys"]
    assert redis.hashes["u:api_key_ids"] == {record.grant.key_id: key_digest(key)}


async def test_two_keys_made_alike_differ(store: KeyStore) -> None:
    made = [
        await store.add(tenant="t", scopes=frozenset({Scope.QUERY}), collections=("*",))
        for _ in range(2)
    ]
    assert made[0][0] != made[1][0]
    assert made[0][1].grant.key_id != made[1][1].grant.key_id


# --------------------------------------------------------------------------- store


async def test_lookup_list_and_revoke(store: KeyStore) -> None:
    key_a, a = await store.add(
        tenant="acme", scopes=frozenset({Scope.QUERY, Scope.INGEST}), collections=("hr", "lg_*")
    )
    _, b = await store.add(tenant="beta", scopes=frozenset({Scope.QUERY}), collections=("x",))

    assert await store.lookup(key_digest(key_a)) == a.grant
    assert [r.grant.key_id for r in await store.records()] == [a.grant.key_id, b.grant.key_id]
    assert [r.grant for r in await store.records(tenant="beta")] == [b.grant]
    shown = a.public()
    assert set(shown) == {"id", "tenant", "scopes", "collections", "created"}
    assert shown["scopes"] == ["ingest", "query"] and shown["collections"] == ["hr", "lg_*"]

    assert not await store.revoke(a.grant.key_id, tenant="beta")  # not beta's key
    assert await store.revoke(a.grant.key_id)
    assert await store.lookup(key_digest(key_a)) is None
    assert not await store.revoke(a.grant.key_id)
    assert [r.grant for r in await store.records()] == [b.grant]


# --------------------------------------------------------------------------- keyring


async def test_bootstrap_keys_work_as_before_without_a_store() -> None:
    ring = keyring()

    admin = await ring.grant_of(ADMIN_KEY)
    query = await ring.grant_of(QUERY_KEY)
    assert admin is not None and query is not None
    assert admin.tenant == query.tenant == DEFAULT_TENANT
    assert admin.collections == query.collections == (ALL_COLLECTIONS,)
    assert all(admin.allows(s) for s in Scope) and admin.is_global_admin()
    assert query.allows(Scope.QUERY) and not query.allows(Scope.INGEST)
    assert await ring.grant_of("unknown") is None
    assert ring.scopes_of(ADMIN_KEY) == {Scope.ADMIN, Scope.QUERY}


async def test_a_bootstrap_key_never_reaches_redis(store: KeyStore, redis: FakeRedis) -> None:
    redis.down = True
    ring = keyring(store)

    assert await ring.grant_of(ADMIN_KEY) is not None
    assert redis.reads == 0


class Clock:
    """The keyring's ``time.monotonic``, moved by the test: no bet on the machine's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("services.common.auth.time", clock)
    return clock


async def test_a_stored_key_is_read_once_per_ttl(
    store: KeyStore, redis: FakeRedis, clock: Clock
) -> None:
    key, record = await store.add(
        tenant="acme", scopes=frozenset({Scope.QUERY}), collections=("hr",)
    )
    ring = keyring(store, ttl_s=0.2)

    for _ in range(50):
        assert await ring.grant_of(key) == record.grant
        clock.now += 0.003  # 0.15 s in all: within the ttl
    assert redis.reads == 1
    assert ring.scopes_of(key) == {Scope.QUERY}  # the sync view sees the cached grant
    clock.now += 0.1
    assert await ring.grant_of(key) == record.grant
    assert redis.reads == 2


async def test_a_revoked_key_stops_working_within_the_ttl(store: KeyStore, clock: Clock) -> None:
    key, record = await store.add(
        tenant="acme", scopes=frozenset({Scope.QUERY}), collections=("hr",)
    )
    ring = keyring(store, ttl_s=0.2)
    assert await ring.grant_of(key) is not None

    await store.revoke(record.grant.key_id)

    clock.now += 0.15
    assert await ring.grant_of(key) is not None  # still remembered, for at most the ttl
    clock.now += 0.1
    assert await ring.grant_of(key) is None


async def test_an_unknown_key_is_remembered_too(store: KeyStore, redis: FakeRedis) -> None:
    ring = keyring(store)
    for _ in range(5):
        assert await ring.grant_of("made-up") is None
    assert redis.reads == 1
    grant, valid_until = await ring.resolve("made-up")
    assert grant is None and valid_until < float("inf")


async def test_redis_down_is_503_for_stored_keys_only(store: KeyStore, redis: FakeRedis) -> None:
    redis.down = True
    ring = keyring(store)

    with pytest.raises(DependencyUnavailable) as refused:
        await ring.grant_of("dqk_abc_some-stored-key")
    assert refused.value.retry_after_s >= 1  # a 503 with Retry-After
    assert await ring.grant_of(QUERY_KEY) is not None


async def test_with_redis_down_a_stored_key_checked_lately_keeps_its_grant(
    store: KeyStore, redis: FakeRedis, clock: Clock
) -> None:
    key, record = await store.add(
        tenant="acme", scopes=frozenset({Scope.QUERY}), collections=("hr",)
    )
    unseen, _ = await store.add(tenant="acme", scopes=frozenset({Scope.QUERY}), collections=())
    ring = keyring(store, ttl_s=5.0)
    assert await ring.grant_of(key) == record.grant

    redis.down = True
    clock.now += 60  # long past the 5 s the grant is remembered for
    assert await ring.grant_of(key) == record.grant
    with pytest.raises(DependencyUnavailable):  # never checked: cannot be let in
        await ring.grant_of(unseen)
    clock.now += STALE_GRANT_S
    with pytest.raises(DependencyUnavailable):  # checked too long ago
        await ring.grant_of(key)


# --------------------------------------------------------------------------- CLI


def parse(*argv: str) -> argparse.Namespace:
    return keys_cli.build_parser().parse_args(argv)


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    yield capsys


async def test_cli_add_prints_the_key_once_and_list_never(
    store: KeyStore, output: pytest.CaptureFixture[str]
) -> None:
    args = parse("add", "--tenant", "acme", "--collections", "hr,legal_*", "--scopes", "query")
    assert await keys_cli.run(args, store) == 0
    made = output.readouterr()
    key = made.out.strip()
    assert key.startswith(f"{KEY_MARK}_") and "\n" not in key
    assert key not in made.err and "tenant=acme" in made.err

    assert await keys_cli.run(parse("list", "--json"), store) == 0
    listed = output.readouterr()
    assert key not in listed.out + listed.err
    [entry] = json.loads(listed.out)
    assert entry["tenant"] == "acme" and entry["collections"] == ["hr", "legal_*"]
    grant = await store.lookup(key_digest(key))
    assert grant is not None and grant.key_id == entry["id"]

    assert await keys_cli.run(parse("list"), store) == 0
    assert entry["id"] in output.readouterr().out


async def test_cli_revoke(store: KeyStore, output: pytest.CaptureFixture[str]) -> None:
    key, record = await store.add(tenant="a", scopes=frozenset({Scope.QUERY}), collections=("*",))

    assert await keys_cli.run(parse("revoke", record.grant.key_id), store) == 0
    assert await store.lookup(key_digest(key)) is None
    assert await keys_cli.run(parse("revoke", record.grant.key_id), store) == 1
    assert "no key" in output.readouterr().err


def test_cli_refuses_a_bad_scope_before_touching_redis(
    output: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCQA_REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens there
    argv = ["add", "--tenant", "a", "--collections", "hr", "--scopes", "root"]

    assert keys_cli.main(argv) == 2
    assert "unknown scope" in output.readouterr().err


def test_docqa_keys_is_a_subcommand() -> None:
    from services.cli import build_parser

    args: Any = build_parser().parse_args(["keys", "list", "--json"])
    assert args.rest == ["list", "--json"]
