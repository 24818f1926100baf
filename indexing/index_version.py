"""Per-collection index version in Redis, and the channel that announces every bump.

Every committed change to a collection (ingest, replace, delete) bumps its version. Caches on the
read side put the version in their keys, so a bump makes every older entry unused without any
explicit invalidation. Query replicas keep a local copy of versions for their hot path
(``query_engine.versions``); the message published with each bump tells them to drop it.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from docqa_core.redis_keys import faq_entries_key, faq_version_key, version_key, versions_channel


def queue_bump(pipe: Pipeline, prefix: str, key: str) -> None:
    """Queue the increment of the version counter ``key`` and its announcement in one MULTI:
    readers hear of every bump, and only once it has happened. The increment's result is the
    first of the two."""
    pipe.incr(key)
    pipe.publish(versions_channel(prefix), key)


async def bump_version(redis: Redis, prefix: str, collection: str) -> int:
    key = version_key(prefix, collection)
    async with redis.pipeline(transaction=True) as pipe:
        queue_bump(pipe, prefix, key)
        version, _ = await pipe.execute()
    return int(version)


async def drop_faq(redis: Redis, prefix: str, collection: str) -> int:
    """Delete the collection's FAQ entries (part of the collection: deleting the collection
    deletes them too); returns how many there were."""
    version = faq_version_key(prefix, collection)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hlen(faq_entries_key(prefix, collection))
        pipe.delete(faq_entries_key(prefix, collection))
        queue_bump(pipe, prefix, version)
        count, _, _, _ = await pipe.execute()
    return int(count)


async def current_version(redis: Redis, prefix: str, collection: str) -> int:
    value = await redis.get(version_key(prefix, collection))
    return int(value) if value is not None else 0
