"""API keys stored in Redis, hashed: a key is shown once, when it is made, and never kept.

Layout (:mod:`docqa_core.redis_keys`): one hash maps each key's digest to its grant as JSON,
a second maps the key's public id to its digest (to revoke by id). Authenticating a key is one
``HGET`` of its digest.

The digest is HMAC-SHA256 under a fixed, docqa-specific key. A key made here holds 256 random
bits, so no dictionary or brute force reaches it from a leaked digest; a slow password hash
would only cost every request. The HMAC key separates these digests from any other SHA-256 of
the same string (e.g. the fingerprint that names a key's sessions and rate limits).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from docqa_core.redis_keys import api_key_ids_key, api_keys_key
from services.common.grants import Grant, Scope

_DIGEST_KEY = b"docqa-api-key-digest-v1"
KEY_MARK = "dqk"  # a new key reads dqk_<id>_<secret>: the id says which key it is


def key_digest(key: str) -> str:
    return hmac.new(_DIGEST_KEY, key.encode(), hashlib.sha256).hexdigest()


def new_key() -> tuple[str, str]:
    """(public id, the key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_MARK}_{key_id}_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class KeyRecord:
    grant: Grant
    created: float

    def public(self) -> dict[str, Any]:
        """What listing shows: never the key, nor its digest."""
        return {
            "id": self.grant.key_id,
            "tenant": self.grant.tenant,
            "scopes": sorted(s.value for s in self.grant.scopes),
            "collections": list(self.grant.collections),
            "created": datetime.fromtimestamp(self.created, UTC).isoformat(),
        }

    def to_json(self) -> str:
        return json.dumps({**self.public(), "created": self.created})

    @classmethod
    def from_json(cls, raw: str | bytes) -> KeyRecord:
        data = json.loads(raw)
        grant = Grant(
            key_id=data["id"],
            tenant=data["tenant"],
            scopes=frozenset(Scope(s) for s in data["scopes"]),
            collections=tuple(data["collections"]),
        )
        return cls(grant, float(data["created"]))


class KeyStore:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._keys = api_keys_key(prefix)
        self._ids = api_key_ids_key(prefix)

    async def lookup(self, digest: str) -> Grant | None:
        raw = await self._redis.hget(self._keys, digest)
        return None if raw is None else KeyRecord.from_json(raw).grant

    async def add(
        self, *, tenant: str, scopes: frozenset[Scope], collections: tuple[str, ...]
    ) -> tuple[str, KeyRecord]:
        """(the new key, to hand over once; its record)."""
        key_id, key = new_key()
        record = KeyRecord(Grant(key_id, tenant, scopes, collections), time.time())
        digest = key_digest(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys, digest, record.to_json())
            pipe.hset(self._ids, key_id, digest)
            await pipe.execute()
        return key, record

    async def records(self, *, tenant: str | None = None) -> list[KeyRecord]:
        """Every stored key (of ``tenant`` if given), oldest first."""
        raw = await self._redis.hgetall(self._keys)
        records = [KeyRecord.from_json(value) for value in raw.values()]
        if tenant is not None:
            records = [r for r in records if r.grant.tenant == tenant]
        return sorted(records, key=lambda r: (r.created, r.grant.key_id))

    async def revoke(self, key_id: str, *, tenant: str | None = None) -> bool:
        """Remove a key (of ``tenant`` if given); False if there is none with that id."""
        digest = await self._redis.hget(self._ids, key_id)
        if digest is None:
            return False
        digest = digest.decode() if isinstance(digest, bytes) else digest
        if tenant is not None:
            grant = await self.lookup(digest)
            if grant is None or grant.tenant != tenant:
                return False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys, digest)
            pipe.hdel(self._ids, key_id)
            await pipe.execute()
        return True
