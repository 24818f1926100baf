"""Circuit breaker states: closed → open → half-open → closed (or open again, for longer)."""

from __future__ import annotations

from query_engine.llm.breaker import BreakerConfig, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, cooldown: float = 10.0, max_cooldown: float = 35.0) -> tuple:
    clock = Clock()
    config = BreakerConfig(
        failure_threshold=threshold, cooldown_s=cooldown, max_cooldown_s=max_cooldown
    )
    return CircuitBreaker(config, clock), clock


def test_consecutive_failures_open_it() -> None:
    b, _ = breaker(threshold=3)
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allows_request()
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allows_request()


def test_a_success_resets_the_count() -> None:
    b, _ = breaker(threshold=3)
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED


def test_a_hard_failure_opens_it_at_once() -> None:
    b, _ = breaker(threshold=3)
    b.record_failure(hard=True)
    assert b.state is BreakerState.OPEN


def test_half_open_after_the_cooldown_admits_one_trial() -> None:
    b, clock = breaker(cooldown=10)
    b.record_failure(hard=True)
    clock.now += 9.9
    assert b.state is BreakerState.OPEN
    clock.now += 0.1
    assert b.state is BreakerState.HALF_OPEN and b.allows_request()
    b.on_dispatch()
    assert not b.allows_request()  # one trial at a time


def test_a_good_trial_closes_it() -> None:
    b, clock = breaker(cooldown=10)
    b.record_failure(hard=True)
    clock.now += 10
    b.on_dispatch()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allows_request()
    assert b.consecutive_failures == 0


def test_a_failed_trial_reopens_it_for_twice_as_long_up_to_the_cap() -> None:
    b, clock = breaker(cooldown=10, max_cooldown=35)
    b.record_failure(hard=True)
    for expected_cooldown in (20, 35, 35):
        clock.now += 100
        assert b.state is BreakerState.HALF_OPEN
        b.on_dispatch()
        b.record_failure()
        assert b.state is BreakerState.OPEN
        clock.now += expected_cooldown - 0.1
        assert b.state is BreakerState.OPEN
        clock.now += 0.1
        assert b.state is BreakerState.HALF_OPEN
    b.record_success()
    clock.now += 1
    b.record_failure(hard=True)
    clock.now += 10  # a success resets the cooldown too
    assert b.state is BreakerState.HALF_OPEN


def test_outcomes_of_requests_sent_before_it_opened_do_not_count() -> None:
    b, clock = breaker(cooldown=10)
    b.record_failure(hard=True)
    b.record_success()  # a slow request that was already running
    assert b.state is BreakerState.OPEN
    b.record_failure()
    clock.now += 10
    assert b.state is BreakerState.HALF_OPEN


def test_an_abandoned_trial_lets_another_one_through() -> None:
    b, clock = breaker(cooldown=10)
    b.record_failure(hard=True)
    clock.now += 10
    b.on_dispatch()
    b.record_abandoned()
    assert b.state is BreakerState.HALF_OPEN and b.allows_request()
