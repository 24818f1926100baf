"""Prepaid query tokens (services/common/rate_allowance.py) against a budget that charges like the
Redis script (whole batch or nothing). The same against a real Redis and two replicas is in
tests/integration/test_rate_limits_across_replicas.py."""

from __future__ import annotations

import asyncio
import itertools

from services.common.rate_allowance import MAX_BATCH, QueryAllowances
from services.common.rate_limits import ADMITTED, Decision


class Budget:
    """What Redis still allows one key; counts the round trips and how many overlap."""

    def __init__(self, left: int, limit: int) -> None:
        self.left, self.limit = left, limit
        self.charges: list[int] = []
        self.in_flight = self.most_in_flight = 0

    async def charge(self, cost: int) -> Decision:
        self.charges.append(cost)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)  # a round trip: other queries run meanwhile
        self.in_flight -= 1
        if cost > self.left:
            return Decision(False, self.limit, self.left, 60.0, 1.0, "rate")
        self.left -= cost
        return Decision(True, self.limit, self.left, 60.0)


async def admit_all(allowances: QueryAllowances, budget: Budget, n: int) -> list[Decision]:
    return [await allowances.admit("k", budget.limit, budget.charge) for _ in range(n)]


async def test_a_busy_key_pays_one_round_trip_per_batch() -> None:
    budget = Budget(left=1_000_000, limit=1_000_000)
    decisions = await admit_all(QueryAllowances(), budget, 20_000)
    assert all(d.allowed for d in decisions)
    assert len(budget.charges) < 20_000 / 50  # the batch grew: far fewer trips than queries
    assert max(budget.charges) == MAX_BATCH
    spent = 1_000_000 - budget.left
    assert 20_000 <= spent < 20_000 + MAX_BATCH  # prepaid, never more than one batch ahead
    # the headers count the prepaid tokens as still there: remaining only goes down, by one
    remaining = [d.remaining for d in decisions]
    assert all(b == a - 1 for a, b in itertools.pairwise(remaining))


async def test_near_the_limit_every_query_is_decided_in_redis_and_none_is_lost() -> None:
    budget = Budget(left=5_000, limit=60_000)
    allowances = QueryAllowances()
    decisions = await admit_all(allowances, budget, 6_000)
    admitted = [d for d in decisions if d.allowed]
    assert len(admitted) == 5_000  # exactly the budget: no query over it, no prepaid token lost
    assert all(not d.allowed for d in decisions[5_000:])
    assert (
        budget.charges[-1003:] == [1] * 1003
    )  # every refusal, and the last admissions, one by one
    assert budget.left == 0


async def test_a_key_under_the_batching_threshold_is_exact() -> None:
    assert not QueryAllowances.worth_batching(100)
    budget = Budget(left=3, limit=300)  # 1% of 300 is 3: batches would be allowed, but headroom
    decisions = await admit_all(QueryAllowances(), budget, 5)
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert budget.charges[:3] == [1, 1, 1]


async def test_concurrent_queries_share_one_refill() -> None:
    budget = Budget(left=1_000_000, limit=1_000_000)
    allowances = QueryAllowances()
    await admit_all(allowances, budget, 200)  # warm: the batch has grown
    decisions = await asyncio.gather(
        *(allowances.admit("k", budget.limit, budget.charge) for _ in range(500))
    )
    assert all(d.allowed for d in decisions)
    assert budget.most_in_flight == 1  # never two batches charged at once for one key
    assert 1_000_000 - budget.left < 700 + MAX_BATCH


async def test_redis_down_admits_without_keeping_tokens() -> None:
    allowances = QueryAllowances()
    calls: list[int] = []

    async def unreachable(cost: int) -> Decision:
        calls.append(cost)
        return ADMITTED

    for _ in range(3):
        assert await allowances.admit("k", 60_000, unreachable) is ADMITTED
    assert calls == [1, 1, 1]  # nothing prepaid while Redis cannot count it
