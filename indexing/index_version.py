"""Per-collection index version in Redis, and the channel that announces every bump.

Every committed change to a collection (ingest, replace, delete) bumps its version. Caches on the
read side put the version in their keys, so a bump makes every older entry unused without any
explicit invalidation. Query replicas keep a local copy of versions for their hot path
(``query_engine.versions``); the message published with each bump tells them to drop it.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline


def version_key(prefix: str, collection: str) -> str:
    return f"{prefix}:index_version:{collection}"


def versions_channel(prefix: str) -> str:
    return f"{prefix}:version_bumps"


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


def faq_entries_key(prefix: str, collection: str) -> str:
    """The collection's curated FAQ (``query_engine.faq``): part of the collection, so deleting
    the collection deletes it too (:func:`drop_faq`)."""
    return f"{prefix}:faq:{collection}"


def faq_version_key(prefix: str, collection: str) -> str:
    return f"{prefix}:faq_version:{collection}"


async def drop_faq(redis: Redis, prefix: str, collection: str) -> int:
    """Delete the collection's FAQ entries; returns how many there were."""
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
