"""Prepaid query tokens per API key, held by one process: a key sending hundreds of queries a
second costs one Redis round trip per batch of queries instead of one per query.

Without this, the round trip to Redis was the largest single cost of a cached answer (about a
third of the service's CPU per request under load, bench.front_door). With it:

- tokens are **charged in Redis when they enter the batch** (the GCRA script with
  ``cost = batch``), so the queries admitted across every replica never add up to more than the
  limit allows; what changes is only when a prepaid token is spent (a moment later, by the same
  process): a replica may hold a few prepaid tokens while another one is already refused;
- the batch is **1 (exact, one round trip a query) unless the key is busy**: it doubles while a
  batch lasts less than :data:`REFILL_TARGET_S`, halves when one lasts more than four times that,
  is at most 1% of the limit (and :data:`MAX_BATCH`), and falls back to 1 when Redis reports
  less than :data:`HEADROOM_BATCHES` batches of headroom left, so near the limit every query is
  decided in Redis, one by one, as before;
- one refill at a time per key: the queries that find the batch empty while a refill is on its
  way wait for it instead of each charging a batch of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.common.rate_limits import Decision

REFILL_TARGET_S = 0.05  # a busy key's batch should last about this long
MAX_BATCH = 256
HEADROOM_BATCHES = 4  # below this many batches of headroom, decide every query in Redis
MIN_LIMIT_FOR_BATCHES = 200  # per minute: 1% of it is 2; below, a batch could only be 1

ChargeFn = Callable[[int], Awaitable["Decision"]]  # charge ``cost`` tokens in Redis


@dataclass
class KeyAllowance:
    """One key's prepaid tokens in this process."""

    limit: int  # queries per minute
    tokens: int = 0  # prepaid, not yet spent
    batch: int = 1  # the size of the next refill
    remaining: int = 0  # Redis's headroom after the last refill (prepaid tokens not counted)
    reset_s: float = 0.0
    refilled_at: float = -1e9
    refill: asyncio.Event | None = field(default=None, repr=False)

    def take(self, template: Decision) -> Decision:
        self.tokens -= 1
        # built directly rather than by dataclasses.replace: this is every busy query's path
        return type(template)(True, template.limit, self.remaining + self.tokens, template.reset_s)

    def next_batch(self, now: float) -> int:
        lasted = now - self.refilled_at
        if lasted < REFILL_TARGET_S:
            batch = self.batch * 2
        elif lasted > 4 * REFILL_TARGET_S:
            batch = self.batch // 2
        else:
            batch = self.batch
        batch = max(1, min(batch, MAX_BATCH, self.limit // 100))
        return batch if self.remaining >= HEADROOM_BATCHES * batch else 1


class QueryAllowances:
    """Every key's :class:`KeyAllowance` in this process."""

    def __init__(self) -> None:
        self._by_key: dict[str, KeyAllowance] = {}
        self._templates: dict[str, Decision] = {}

    @staticmethod
    def worth_batching(limit: int) -> bool:
        return limit >= MIN_LIMIT_FOR_BATCHES

    async def admit(self, fingerprint: str, limit: int, charge: ChargeFn) -> Decision:
        """One query of the key ``fingerprint`` (``limit`` per minute): from its prepaid tokens,
        or through ``charge`` (one Redis round trip for a new batch, or for this query alone)."""
        allowance = self._by_key.get(fingerprint)
        if allowance is None or allowance.limit != limit:
            allowance = self._by_key[fingerprint] = KeyAllowance(limit)
        while True:
            if allowance.tokens > 0:
                return allowance.take(self._templates[fingerprint])
            if allowance.refill is None:
                return await self._refill(fingerprint, allowance, charge)
            # another query of this key is refilling: take from its batch, or refill after it
            # (an Event: a waiter that is cancelled leaves the refill and the others alone)
            await allowance.refill.wait()

    async def _refill(
        self, fingerprint: str, allowance: KeyAllowance, charge: ChargeFn
    ) -> Decision:
        done = allowance.refill = asyncio.Event()
        try:
            now = time.monotonic()
            batch = allowance.next_batch(now)
            decision = await charge(batch)
            if not decision.allowed and batch > 1:  # not a whole batch left: this query alone
                batch = 1
                decision = await charge(1)
            if decision.allowed and decision.limit > 0:  # limit 0: Redis down, admitted open
                allowance.batch, allowance.refilled_at = batch, now
                allowance.remaining, allowance.reset_s = decision.remaining, decision.reset_s
                allowance.tokens += batch - 1
                self._templates[fingerprint] = decision
                return replace(decision, remaining=decision.remaining + allowance.tokens)
            if not decision.allowed:
                allowance.batch, allowance.remaining = 1, 0
            return decision
        finally:
            allowance.refill = None
            done.set()
