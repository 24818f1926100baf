"""Per-API-key rate limits in Redis, shared by every replica: queries per minute, concurrent
streams, ingested bytes per day (``DOCQA_RATE_LIMIT_*``, see :mod:`.rate_limit_settings`).

One Lua script (:data:`LIMIT_SCRIPT`) decides a request in one round trip, atomically:

- **rates** (queries per minute, ingested bytes per day) are a GCRA, the token bucket kept as
  one number, the key's *theoretical arrival time* (TAT, in ms). A request of ``cost`` moves the
  TAT ``cost × period / limit`` ahead of ``max(TAT, now)``; it is refused when the new TAT would
  be more than one ``period`` ahead of now. So a whole period's worth may come at once, and then
  one more every ``period / limit``;
- **streams** are a sorted set of open stream ids, scored by when their lease ends (so a slot of
  a replica that died frees itself); a stream is admitted when fewer than the limit are open and
  is removed when it ends (:meth:`RateLimiter.release_stream`).

A busy key's queries are charged in batches (:mod:`.rate_allowance`: one round trip per batch,
never more admitted than the limit; one per query near the limit or for a quiet key). A request
refused by either counts for neither. Redis's clock is used (one clock for every
replica) unless a test passes its own. **Fail open**: when Redis cannot be reached the request is
admitted, with a warning logged at most once a minute, and Redis is not tried again for a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from docqa_core.errors import RateLimited
from docqa_core.redis_keys import rate_limit_key
from query_engine.memory import key_fingerprint
from services.common.rate_allowance import QueryAllowances
from services.common.rate_limit_settings import KeyLimits, RateLimitSettings

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
STREAM_RETRY_MS = 1000  # a refused stream is told to retry after a second
WARN_EVERY_S = 60.0  # the fail-open warning, at most this often
SKIP_REDIS_S = 1.0  # after a failure, admit without trying Redis for this long
FAIL_OPEN_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)

# KEYS[1]: the rate's TAT; KEYS[2]: the open streams. ARGV: now_ms ('' = Redis TIME), limit
# (0 = none), period_ms, cost, stream_limit (0 = none), stream_id ('' = not a stream),
# stream_lease_ms, stream_retry_ms. Returns {status (0 ok, 1 rate, 2 streams), limit,
# remaining, reset_ms, retry_ms}; remaining is -1 without a rate limit. The 1e-3 ms absorbs
# float error in period / limit.
LIMIT_SCRIPT = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local limit, period, cost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local stream_limit, stream_id = tonumber(ARGV[5]), ARGV[6]
local remaining, reset, new_tat = -1, 0, nil
if limit > 0 then
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[1])) or now
  if tat < now then tat = now end
  new_tat = tat + interval * cost
  local allow_at = new_tat - period
  local retry = 0
  if cost > limit then retry = period elseif allow_at - now > 0.001 then retry = allow_at - now end
  if retry > 0 then
    remaining = math.max(0, math.floor((now - tat + period) / interval + 1e-9))
    return {1, limit, remaining, math.ceil(tat - now), math.ceil(retry)}
  end
  remaining = math.floor((now - allow_at) / interval + 1e-9)
  reset = new_tat - now
end
if stream_limit > 0 and stream_id ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= stream_limit then
    return {2, stream_limit, 0, tonumber(ARGV[8]), tonumber(ARGV[8])}
  end
  local lease = tonumber(ARGV[7])
  redis.call('ZADD', KEYS[2], now + lease, stream_id)
  redis.call('PEXPIRE', KEYS[2], lease)
end
if new_tat then
  redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
end
return {0, limit, remaining, math.ceil(reset), 0}
"""

_REASONS = {1: "rate", 2: "streams"}


@dataclass(frozen=True)
class Decision:
    """One request's verdict and what its ``X-RateLimit-*`` headers say.

    ``limit`` 0: no limit applied (unlimited, or Redis unreachable): no headers."""

    allowed: bool
    limit: int = 0
    remaining: int = 0
    reset_s: float = 0.0
    retry_after_s: float = 0.0
    refused_by: str = ""  # "", "rate" or "streams"

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-Reset`` is in seconds from now (as ``Retry-After``), until the whole
        limit is available again."""
        if self.limit <= 0:
            return {}
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(max(0, math.ceil(self.reset_s))),
        }

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """:meth:`headers` as ASGI sends them (built directly: every admitted query has them)."""
        if self.limit <= 0:
            return []
        return [
            (b"x-ratelimit-limit", b"%d" % self.limit),
            (b"x-ratelimit-remaining", b"%d" % max(0, self.remaining)),
            (b"x-ratelimit-reset", b"%d" % max(0, math.ceil(self.reset_s))),
        ]


ADMITTED = Decision(allowed=True)


def decision_from_reply(reply: Any) -> Decision:
    """The script's ``{status, limit, remaining, reset_ms, retry_ms}`` as a :class:`Decision`."""
    status, limit, remaining, reset_ms, retry_ms = (int(v) for v in reply)
    if status == 0 and remaining < 0:  # no rate limit: only a stream slot was taken
        return ADMITTED
    return Decision(
        allowed=status == 0,
        limit=limit,
        remaining=remaining,
        reset_s=reset_ms / 1000,
        retry_after_s=retry_ms / 1000,
        refused_by=_REASONS.get(status, ""),
    )


def refusal(decision: Decision, what: str) -> RateLimited:
    """The 429 of a refused request, with ``Retry-After`` and the ``X-RateLimit-*`` headers."""
    if decision.refused_by == "streams":
        message = f"too many streams open for this API key (at most {decision.limit})"
    else:
        message = f"rate limit exceeded for this API key: at most {decision.limit} {what}"
    return RateLimited(
        message,
        retry_after_s=decision.retry_after_s,
        detail={"limit": decision.limit, "refused_by": decision.refused_by or "rate"},
        headers=decision.headers(),
    )


class RateLimiter:
    """The limits of every API key, counted in Redis. ``clock`` (ms) is for tests; by default
    Redis's own clock is used."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        settings: RateLimitSettings,
        stream_lease_s: float = 900.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(LIMIT_SCRIPT)
        self._prefix = prefix
        self.settings = settings
        self._stream_lease_ms = int(stream_lease_s * 1000)
        self._clock = clock
        self._skip_until = 0.0
        self._warned_at = -math.inf
        self._allowances = QueryAllowances()
        self._limits: dict[str, KeyLimits] = {}

    def limits_of(self, fingerprint: str) -> KeyLimits:
        # settings are fixed for the process's life: built once per key, not per request
        limits = self._limits.get(fingerprint)
        if limits is None:
            limits = self._limits[fingerprint] = self.settings.for_key(fingerprint)
        return limits

    async def admit_query(self, fingerprint: str, *, stream_id: str | None = None) -> Decision:
        """Count one query; with ``stream_id``, also take a stream slot (released by
        :meth:`release_stream`)."""
        limits = self.limits_of(fingerprint)
        streams = limits.concurrent_streams if stream_id else 0
        if limits.queries_per_minute == 0 and streams == 0:
            return ADMITTED
        keys = [self._key(fingerprint, "queries"), self._key(fingerprint, "streams")]
        limit = limits.queries_per_minute
        if streams == 0 and QueryAllowances.worth_batching(limit):

            def charge(cost: int) -> Awaitable[Decision]:
                return self._run(keys, (limit, MINUTE_MS, cost), 0, "")

            return await self._allowances.admit(fingerprint, limit, charge)
        return await self._run(keys, (limit, MINUTE_MS, 1), streams, stream_id or "")

    async def charge_ingest(self, fingerprint: str, nbytes: int) -> Decision:
        limit = self.limits_of(fingerprint).ingest_bytes_per_day
        if limit == 0:
            return ADMITTED
        keys = [self._key(fingerprint, "ingest_bytes"), self._key(fingerprint, "streams")]
        return await self._run(keys, (limit, DAY_MS, max(0, nbytes)), 0, "")

    async def release_stream(self, fingerprint: str, stream_id: str) -> None:
        if time.monotonic() < self._skip_until:
            return
        try:
            await self._redis.zrem(self._key(fingerprint, "streams"), stream_id)
        except FAIL_OPEN_ERRORS as exc:  # its lease ends it
            self._failed(exc)

    async def _run(
        self, keys: list[str], rate: tuple[int, int, int], streams: int, stream_id: str
    ) -> Decision:
        if time.monotonic() < self._skip_until:
            return ADMITTED
        now = "" if self._clock is None else str(int(self._clock()))
        args: list[str | int] = [now, *rate, streams, stream_id]
        args += [self._stream_lease_ms, STREAM_RETRY_MS]
        try:
            reply = await self._script(keys=keys, args=args)
        except FAIL_OPEN_ERRORS as exc:
            self._failed(exc)
            return ADMITTED
        return decision_from_reply(reply)

    def _failed(self, exc: BaseException) -> None:
        """Fail open: admit, warn at most once a minute, leave Redis alone for a second."""
        now = time.monotonic()
        self._skip_until = now + SKIP_REDIS_S
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "rate limits not enforced: Redis is unreachable (requests are admitted)",
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )

    def _key(self, fingerprint: str, kind: str) -> str:
        return rate_limit_key(self._prefix, fingerprint, kind)


async def charge_ingest(state: Any, token: str | None, nbytes: int) -> Decision:
    """Count ``nbytes`` ingested by the key ``token`` against its daily quota (``state``: the
    app's state, holding the ``rate_limiter`` the lifespan built, if any); raise the 429 if
    they do not fit."""
    limiter: RateLimiter | None = getattr(state, "rate_limiter", None)
    if limiter is None or token is None:
        return ADMITTED
    decision = await limiter.charge_ingest(key_fingerprint(token), nbytes)
    if not decision.allowed:
        raise refusal(decision, "bytes ingested per day")
    return decision
