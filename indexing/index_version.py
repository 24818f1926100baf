"""Per-collection index version in Redis.

Every committed change to a collection (ingest, replace, delete) bumps its version. Caches on the
read side put the version in their keys, so a bump makes every older entry unused without any
explicit invalidation.
"""

from __future__ import annotations

from redis.asyncio import Redis


def version_key(prefix: str, collection: str) -> str:
    return f"{prefix}:index_version:{collection}"


async def bump_version(redis: Redis, prefix: str, collection: str) -> int:
    return int(await redis.incr(version_key(prefix, collection)))


async def current_version(redis: Redis, prefix: str, collection: str) -> int:
    value = await redis.get(version_key(prefix, collection))
    return int(value) if value is not None else 0
