"""Local copies of Redis version counters, kept fresh by invalidation messages.

The answer cache and the FAQ put a version counter in what they look up (the collection's index
version, its FAQ version). Reading the counter from Redis on every question costs a round trip
that, on a cache hit, is most of the work. Writers (ingestion, FAQ edits) publish the counter's
key on one channel when they bump it (``indexing.index_version.queue_bump``); every query
replica subscribes and forgets its copy of that key, so the next question reads the new value.

Safe by construction rather than by timing:

- a copy is trusted only while the subscription is live; on any disconnect every copy is dropped
  and none is trusted until the channel is subscribed again;
- a value read from Redis is kept only if no invalidation of that key (and no disconnect) happened
  since the read began (:meth:`VersionWatcher.read_token`), so a read that raced a bump cannot
  store the old value after the message has been handled;
- a copy also expires after ``max_age_s`` (1 s by default), which bounds the damage of a message
  lost in a way the client cannot see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from docqa_core.redis_keys import versions_channel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadToken:
    """What the watcher knew when a read from Redis began (see :meth:`VersionWatcher.learn`)."""

    key: str
    generation: int
    key_epoch: int


class VersionWatcher:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        max_age_s: float = 1.0,
        max_keys: int = 10_000,
        reconnect_delay_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,  # injected so tests drive max_age_s
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._channel = versions_channel(prefix)
        self._max_age_s = max_age_s
        self._max_keys = max_keys
        self._reconnect_delay_s = reconnect_delay_s
        self._copies: dict[str, tuple[int, float]] = {}  # key → (version, learned at)
        self._epochs: dict[str, int] = {}  # key → invalidations seen
        self._generation = 0  # disconnects seen: every copy older than one is void
        self._live = False
        self._task: asyncio.Task[None] | None = None
        self.invalidations = 0

    @property
    def live(self) -> bool:
        return self._live

    def known(self, key: str) -> int | None:
        """The key's version if a fresh, trusted copy is held; None means "ask Redis"."""
        if not self._live:
            return None
        copy = self._copies.get(key)
        if copy is None:
            return None
        version, learned_at = copy
        if self._clock() - learned_at > self._max_age_s:
            del self._copies[key]
            return None
        return version

    def read_token(self, key: str) -> ReadToken:
        """Take before reading ``key`` from Redis; give to :meth:`learn` with what was read."""
        return ReadToken(key, self._generation, self._epochs.get(key, 0))

    def learn(self, token: ReadToken, version: int) -> None:
        if not self._live or token.generation != self._generation:
            return
        if token.key_epoch != self._epochs.get(token.key, 0):
            return  # bumped while we read: what we read may be the old value
        if len(self._copies) >= self._max_keys and token.key not in self._copies:
            self._copies.clear()  # rare (that many collections): start over rather than track age
        self._copies[token.key] = (version, self._clock())

    async def read_through(self, key: str, read: Callable[[], Awaitable[int]]) -> int:
        """The trusted copy of ``key``, or ``read()`` from Redis, kept if nothing raced it."""
        known = self.known(key)
        if known is not None:
            return known
        token = self.read_token(key)
        version = await read()
        self.learn(token, version)
        return version

    def invalidate(self, key: str) -> None:
        self.invalidations += 1
        self._epochs[key] = self._epochs.get(key, 0) + 1
        self._copies.pop(key, None)

    # -- subscription --------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="version-watcher")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop_all()

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any trouble: trust nothing, reconnect
                reason = f"{type(exc).__name__}: {exc}"
                log.warning("version watcher disconnected (%s); retrying", reason)
            self._drop_all()
            await asyncio.sleep(self._reconnect_delay_s)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    await pubsub.ping()  # a dead connection shows up here, not as silence
                    continue
                self._handle(message)
        finally:
            self._drop_all()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _handle(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self._live = True
        elif kind == "message":
            data = message.get("data")
            key = data.decode() if isinstance(data, bytes) else str(data)
            self.invalidate(key)

    def _drop_all(self) -> None:
        self._live = False
        self._generation += 1
        self._copies.clear()
