"""Caches in Redis that invalidate themselves, and coalescing of identical concurrent questions.

Answer-cache keys include the collection's index version (bumped by every ingestion or delete), so
a re-ingest makes every older entry unreachable without scanning or deleting anything; TTLs reclaim
the space. Redis is an accelerator here, never a dependency: every Redis failure degrades to
"no cache" and the question is answered anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from docqa_core.redis_keys import answer_key_stem, query_embedding_prefix, version_key
from indexing.embedding import Embedder, Vectors
from query_engine.answer import ANSWER_SCHEMA_FINGERPRINT, TRANSIENT_FALLBACKS, Answer
from query_engine.versions import VersionWatcher

log = logging.getLogger(__name__)

T = TypeVar("T")

_SPACES = re.compile(r"\s+")
_TRAILING_PUNCTUATION = re.compile(r"[\s?？!！.。·…~]+$")
# a Redis round trip must never cost more than the work it saves
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def normalize_question(question: str) -> str:
    """The form under which two questions count as the same: NFKC, case-folded, single spaces,
    no trailing punctuation (``출장 일비는?`` and ``출장  일비는`` are one question)."""
    text = unicodedata.normalize("NFKC", question).casefold()
    text = _SPACES.sub(" ", text).strip()
    return _TRAILING_PUNCTUATION.sub("", text)


@dataclass(frozen=True)
class AnswerKeyParts:
    """Everything an answer depends on besides the index contents."""

    collection: str
    question: str
    filters: Mapping[str, Any]
    top_k: int
    model: str
    prompt_version: str
    grounding_policy: str
    max_answer_tokens: int
    retrieval_config: str = ""  # weights, thresholds: a new deployment must not reuse old answers
    # the fields of an answer: a deploy that changes them must not serve old-shaped answers
    answer_schema: str = ANSWER_SCHEMA_FINGERPRINT
    answer_mode: str = "generative"
    # a request's own generation options (OpenAI route); unset ones leave the key as it was
    instructions: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    as_of: str = ""  # the date whose document versions answered (see query_engine.dated_versions)

    def digest(self) -> str:
        payload = {
            "q": normalize_question(self.question),
            "filters": self.filters,
            "top_k": self.top_k,
            "model": self.model,
            "prompt": self.prompt_version,
            "policy": self.grounding_policy,
            "max_tokens": self.max_answer_tokens,
            "retrieval": self.retrieval_config,
            "schema": self.answer_schema,
            "mode": self.answer_mode,
        }
        generation = self._generation()
        if generation:
            payload["generation"] = generation
        if self.as_of:
            payload["as_of"] = self.as_of
        encoded = orjson.dumps(payload, default=str, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(encoded).hexdigest()[:32]

    def _generation(self) -> dict[str, Any]:
        """The options a request set (a request that sets none keeps the key it always had)."""
        options: dict[str, Any] = {}
        if self.instructions:
            options["instructions"] = self.instructions
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.stop:
            options["stop"] = list(self.stop)
        return options


# KEYS[1] = the collection's version key; ARGV = key stem, digest suffix
_LOOKUP_LUA = """
local version = redis.call('GET', KEYS[1]) or '0'
return {version, redis.call('GET', ARGV[1] .. version .. ARGV[2])}
"""


class CachedAnswer:
    """A stored answer as bytes: a hit is served without parsing and re-serializing it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def response_body(self, timings_ms: Mapping[str, float]) -> bytes:
        """The stored JSON object with the per-response fields of a cache hit appended."""
        volatile = {"cached": True, "coalesced": False, "timings_ms": dict(timings_ms)}
        return self.raw[:-1] + b"," + orjson.dumps(volatile)[1:]

    def to_answer(self, timings_ms: Mapping[str, float] | None = None) -> Answer:
        return Answer.model_validate_json(self.response_body(timings_ms or {}))


class AnswerCache:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ttl_s: int,
        lock_ttl_s: float,
        poll_interval_s: float = 0.05,
        versions: VersionWatcher | None = None,
        hot_entries: int = 0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._poll_s = poll_interval_s
        self._local = SingleFlight[tuple[Answer, bool]]()
        self._lookup_script = redis.register_script(_LOOKUP_LUA)
        self._versions = versions
        self._hot = HotAnswers(hot_entries, ttl_s)

    async def lookup(self, parts: AnswerKeyParts) -> tuple[str | None, CachedAnswer | None]:
        """(key under the collection's current index version, the cached answer if any).

        The hot path of a cache hit: when this replica holds a trusted copy of the collection's
        version (see ``query_engine.versions``) and the answer itself, no round trip at all;
        otherwise one, a script reading the version and the entry together. The key is None
        when Redis is unavailable."""
        digest = parts.digest()
        stem = answer_key_stem(self._prefix, parts.collection)
        version_name = version_key(self._prefix, parts.collection)
        if self._versions is not None:
            known = self._versions.known(version_name)
            if known is not None:
                key = f"{stem}{known}:{digest}"
                hot = self._hot.get(key)
                if hot is not None:
                    return key, CachedAnswer(hot)
            token = self._versions.read_token(version_name)
        try:
            version, raw = await self._lookup_script(keys=[version_name], args=[stem, f":{digest}"])
        except REDIS_ERRORS as exc:
            warn_throttled("answer cache off", exc)
            return None, None
        if self._versions is not None:
            self._versions.learn(token, int(version))
        key = f"{stem}{int(version)}:{digest}"
        if not isinstance(raw, bytes):
            return key, None
        self._hot.put(key, raw)
        return key, CachedAnswer(raw)

    async def get(self, key: str) -> Answer | None:
        try:
            raw = await self._redis.get(key)
        except REDIS_ERRORS as exc:
            warn_throttled("answer cache read failed", exc)
            return None
        if not isinstance(raw, bytes):
            return None
        return CachedAnswer(raw).to_answer()

    async def put(self, key: str, answer: Answer) -> None:
        if answer.fallback_reason in TRANSIENT_FALLBACKS:
            return  # the LLM was down or saturated: the next asker should get a generated answer
        raw = answer.stored_json()
        try:
            await self._redis.set(key, raw, ex=self._ttl_s)
        except REDIS_ERRORS as exc:
            warn_throttled("answer cache write failed", exc)
            return  # not stored for other replicas: do not serve it from here either
        self._hot.put(key, raw)

    async def compute_once(
        self, key: str, compute: Callable[[], Awaitable[Answer]]
    ) -> tuple[Answer, bool]:
        """Run ``compute`` once for all identical concurrent questions, in this process and across
        replicas; returns (answer, shared) where ``shared`` means another caller computed it."""
        leader_result: list[bool] = []

        async def lead() -> tuple[Answer, bool]:
            leader_result.append(True)
            return await self._compute_across_replicas(key, compute)

        answer, shared = await self._local.do(key, lead)
        return answer, shared or not leader_result

    async def _compute_across_replicas(
        self, key: str, compute: Callable[[], Awaitable[Answer]]
    ) -> tuple[Answer, bool]:
        lock = f"{key}:lock"
        if not await self._try_lock(lock):
            waited = await self._wait_for_other_replica(key, lock)
            if waited is not None:
                return waited, True
        try:
            answer = await compute()
            await self.put(key, answer)
            return answer, False
        finally:
            await self._unlock(lock)

    async def _try_lock(self, lock: str) -> bool:
        try:
            return bool(await self._redis.set(lock, "1", nx=True, px=self._lock_ttl_ms))
        except REDIS_ERRORS:
            return True  # no Redis, no coordination: answer it here

    async def _unlock(self, lock: str) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self._redis.delete(lock)

    async def _wait_for_other_replica(self, key: str, lock: str) -> Answer | None:
        """Poll until the replica holding the lock stores the answer; None if it gave up."""
        deadline = time.monotonic() + self._lock_ttl_ms / 1000
        while time.monotonic() < deadline:
            await asyncio.sleep(self._poll_s)
            answer = await self.get(key)
            if answer is not None:
                return answer
            try:
                if not await self._redis.exists(lock):
                    return await self.get(key)
            except REDIS_ERRORS:
                return None
        return None


class HotAnswers:
    """This replica's most used answers as stored bytes (LRU, same TTL as Redis).

    Keys carry the index version, so an entry is reached only through a trusted version copy;
    after a bump it is never asked for again and ages out."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        raw, expires_at = entry
        if time.monotonic() > expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return raw

    def put(self, key: str, raw: bytes) -> None:
        if self._max_entries <= 0:
            return
        self._entries[key] = (raw, time.monotonic() + self._ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


class SingleFlight(Generic[T]):
    """In-process coalescing: concurrent calls with one key share one execution of ``fn``."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            result = await fn()
        except BaseException as exc:
            # waiters get the error too, so one failure does not become N timeouts
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._running.pop(key, None)

    def in_flight(self) -> int:
        return len(self._running)


class CachedQueryEmbedder:
    """The embedder with query embeddings cached in process (LRU) and in Redis (shared, TTL).

    Passage embedding (ingestion) passes straight through."""

    def __init__(
        self,
        inner: Embedder,
        redis: Redis,
        *,
        prefix: str,
        model: str,
        ttl_s: int,
        local_entries: int = 4096,
    ) -> None:
        self._inner = inner
        self._redis = redis
        self._key_prefix = query_embedding_prefix(prefix, model, inner.dim)
        self._ttl_s = ttl_s
        self._local: OrderedDict[str, Vectors] = OrderedDict()
        self._local_entries = local_entries

    @property
    def inner(self) -> Embedder:
        return self._inner

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def max_tokens(self) -> int:
        return self._inner.max_tokens

    def count_tokens(self, text: str) -> int:
        return self._inner.count_tokens(text)

    async def embed_passages(self, texts: list[str]) -> Vectors:
        return await self._inner.embed_passages(texts)

    async def embed_query(self, text: str) -> Vectors:
        key = self._key_prefix + hashlib.sha256(text.encode()).hexdigest()[:32]
        cached = self._local.get(key)
        if cached is not None:
            self._local.move_to_end(key)
            return cached
        vector = await self._from_redis(key)
        if vector is None:
            vector = await self._inner.embed_query(text)
            await self._to_redis(key, vector)
        self._remember(key, vector)
        return vector

    async def warm_up(self) -> None:
        await self._inner.warm_up()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def _from_redis(self, key: str) -> Vectors | None:
        try:
            raw = await self._redis.get(key)
        except REDIS_ERRORS as exc:
            warn_throttled("embedding cache read failed", exc)
            return None
        if not isinstance(raw, bytes) or len(raw) != self.dim * 4:
            return None
        return np.frombuffer(raw, dtype=np.float32).copy()

    async def _to_redis(self, key: str, vector: Vectors) -> None:
        try:
            payload = np.asarray(vector, dtype=np.float32).tobytes()
            await self._redis.set(key, payload, ex=self._ttl_s)
        except REDIS_ERRORS as exc:
            warn_throttled("embedding cache write failed", exc)

    def _remember(self, key: str, vector: Vectors) -> None:
        self._local[key] = vector
        if len(self._local) > self._local_entries:
            self._local.popitem(last=False)


_last_warning: dict[str, float] = {}


def warn_throttled(what: str, exc: BaseException, logger: logging.Logger = log) -> None:
    """Redis being down would otherwise log on every request: each message once every 10 s."""
    now = time.monotonic()
    if now - _last_warning.get(what, -math.inf) >= 10:
        _last_warning[what] = now
        logger.warning("%s (continuing without it): %s: %s", what, type(exc).__name__, exc)
