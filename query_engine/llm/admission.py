"""The bounded wait queue in front of the pool.

A request that finds every endpoint at its max in-flight waits here, first come first served,
until a slot frees up; when ``max_size`` requests already wait, or the wait exceeds its timeout,
it is refused (the pool turns that into a 429 with ``Retry-After``) instead of piling up.

``pick`` is the pool's synchronous "take a slot if there is one" (it runs inside the event
loop, so checking and taking a slot cannot race). :meth:`WaitQueue.wake` is called whenever a
slot may have freed (a request ended, an endpoint came back) and serves waiters in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    pass


class QueueTimeout(Exception):
    pass


class _Waiter(Generic[T]):
    __slots__ = ("future", "key", "pick")

    def __init__(
        self, future: asyncio.Future[T], pick: Callable[[], T | None], key: Hashable
    ) -> None:
        self.future = future
        self.pick = pick
        self.key = key


class WaitQueue(Generic[T]):
    def __init__(self, max_size: int, on_depth: Callable[[int], None] = lambda _: None) -> None:
        self._max_size = max_size
        self._waiters: deque[_Waiter[T]] = deque()
        self._on_depth = on_depth

    def __len__(self) -> int:
        return len(self._waiters)

    async def admit(
        self,
        pick: Callable[[], T | None],
        *,
        timeout_s: float,
        abandon: Callable[[T], None],
        key: Hashable = None,
        priority: bool = False,
    ) -> T:
        """A slot from ``pick``, at once or after waiting. ``priority`` (a retry of a request
        already admitted) goes to the front and ignores the size bound. ``key`` groups
        waiters that ``pick`` treats alike (same model, same exclusions). Exceptions from
        ``pick`` (no endpoint could ever serve this) reach the caller."""
        if priority or not any(w.key == key for w in self._waiters):
            got = pick()
            if got is not None:
                return got
        if not priority and (len(self._waiters) >= self._max_size or timeout_s <= 0):
            raise QueueFull
        waiter = _Waiter(asyncio.get_running_loop().create_future(), pick, key)
        if priority:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        self._on_depth(len(self._waiters))
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter.future
        except TimeoutError:
            if _has_result(waiter.future):
                return waiter.future.result()  # served just as the timeout fired
            raise QueueTimeout from None
        except asyncio.CancelledError:
            if _has_result(waiter.future):
                abandon(waiter.future.result())  # the slot was taken for a caller now gone
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            self._on_depth(len(self._waiters))

    def wake(self) -> None:
        """Give free slots to waiters, in order; a waiter whose kind found no slot this round
        means the same for the others of that kind, so they are not asked again."""
        if not self._waiters:
            return
        exhausted: set[Hashable] = set()
        for waiter in list(self._waiters):
            if waiter.future.done() or waiter.key in exhausted:
                continue
            try:
                got = waiter.pick()
            except Exception as exc:
                waiter.future.set_exception(exc)
                continue
            if got is None:
                exhausted.add(waiter.key)
            else:
                waiter.future.set_result(got)

    def fail_all(self, exc: BaseException) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(exc)


def _has_result(future: asyncio.Future[T]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
