"""A circuit breaker per endpoint: closed → open (ejected) → half-open (one trial) → closed.

Requests and health probes report their outcomes. ``failure_threshold`` consecutive failures open
the breaker; a *hard* failure (connection refused, ``/health`` answering an error) opens it at
once, because a server that refuses connections will not answer the next request either. After
``cooldown_s`` the breaker is half-open: one trial (a request or the next health probe) decides
whether the endpoint comes back (closed) or stays out for twice as long (open again, up to
``max_cooldown_s``). The clock is injected so tests drive time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 3
    cooldown_s: float = 10.0
    max_cooldown_s: float = 120.0


class CircuitBreaker:
    def __init__(self, config: BreakerConfig, clock: Clock = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown_s = config.cooldown_s
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self._cooldown_s:
            self._state = BreakerState.HALF_OPEN
            self._trial_running = False
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allows_request(self) -> bool:
        """Closed: always; half-open: while no trial request is running; open: never."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self._trial_running

    def on_dispatch(self) -> None:
        """A request was sent: in half-open it is the one trial."""
        if self.state is BreakerState.HALF_OPEN:
            self._trial_running = True

    def record_success(self) -> None:
        state = self.state
        if state is BreakerState.OPEN:
            return  # a request sent before the breaker opened; the cooldown still applies
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._cooldown_s = self._config.cooldown_s
        self._trial_running = False

    def record_failure(self, *, hard: bool = False) -> None:
        state = self.state
        if state is BreakerState.OPEN:
            return
        if state is BreakerState.HALF_OPEN:
            self._open(self._cooldown_s * 2)
            return
        self._failures += 1
        if hard or self._failures >= self._config.failure_threshold:
            self._open(self._config.cooldown_s)

    def record_abandoned(self) -> None:
        """A trial that ended without a verdict (the client went away): allow another."""
        self._trial_running = False

    def _open(self, cooldown_s: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._cooldown_s = min(cooldown_s, self._config.max_cooldown_s)
        self._failures = max(self._failures, 1)
        self._trial_running = False
