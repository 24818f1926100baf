"""A small closed-loop async load driver for the fault-injection tests.

A few concurrent clients each send requests one after another (the next as soon as the last is
answered) and every response is kept as an :class:`Outcome`: when it was sent, its status, its
``Retry-After`` and, for an error, its envelope's code. A test injects a fault while the load
runs, marks the moments it cares about (kill, restart) and asserts on the outcomes between them.

Closed loop on purpose: the point is what each request gets while a dependency is gone and how
soon answers come back, not a rate (that is ``bench/load.py``'s job); a handful of clients keep
requests in flight at every moment of the fault without burying the 2-core CI machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from deploy import processes


@dataclass(frozen=True)
class Call:
    """One request of the mix: ``kind`` names it in the results."""

    kind: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    kind: str
    sent_at: float  # time.monotonic()
    latency_s: float
    status: int  # 0: the request raised (no HTTP response at all)
    retry_after: str | None = None
    error_code: str | None = None  # the error envelope's code
    body: dict[str, Any] | None = None  # the JSON body of a 200

    @property
    def ok(self) -> bool:
        return self.status == 200


Mix = Callable[[int, int], Call]  # (client number, request number) → the request to send


class LoadDriver:
    def __init__(
        self, client: httpx.AsyncClient, mix: Mix, *, clients: int = 4, pause_s: float = 0.0
    ) -> None:
        """``pause_s``: each client's wait between an answer and its next request (a paced
        load that leaves the CPU to what the test is really about)."""
        self._client = client
        self._mix = mix
        self._clients = clients
        self._pause_s = pause_s
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._recorded = asyncio.Event()  # replaced by a fresh one after each outcome

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoadDriver]:
        tasks = [asyncio.create_task(self._run_client(n)) for n in range(self._clients)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)

    async def _run_client(self, number: int) -> None:
        sent = 0
        while not self._stop.is_set():
            self.outcomes.append(await self._send(self._mix(number, sent)))
            recorded, self._recorded = self._recorded, asyncio.Event()
            recorded.set()
            sent += 1
            # also a yield: an in-process app may answer without ever giving up the loop
            await asyncio.sleep(self._pause_s)

    async def _send(self, call: Call) -> Outcome:
        started = time.monotonic()
        try:
            response = await self._client.post(call.path, json=call.body, headers=call.headers)
        except httpx.HTTPError:
            return Outcome(call.kind, started, time.monotonic() - started, 0)
        latency = time.monotonic() - started
        body = _json(response)
        if response.status_code == 200:
            return Outcome(call.kind, started, latency, 200, body=body)
        error = (body or {}).get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return Outcome(
            call.kind,
            started,
            latency,
            response.status_code,
            retry_after=response.headers.get("retry-after"),
            error_code=code,
        )

    async def until(self, condition: Callable[[Outcome], bool], timeout_s: float) -> Outcome:
        """Waits for the first outcome, from now on, that meets ``condition``."""
        seen = len(self.outcomes)
        async with asyncio.timeout(timeout_s):
            while True:
                for outcome in self.outcomes[seen:]:
                    if condition(outcome):
                        return outcome
                seen = len(self.outcomes)
                await self._recorded.wait()

    async def at_least(self, count: int, since: float, timeout_s: float) -> None:
        """Waits until ``count`` requests sent after ``since`` have their outcome."""
        async with asyncio.timeout(timeout_s):
            while len(self.between(since)) < count:
                await self._recorded.wait()

    def between(self, start: float, end: float = float("inf")) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.sent_at < end]


def statuses(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """``{"<kind> <status>": count}``: what a failing assertion shows."""
    return dict(Counter(f"{o.kind} {o.status}" for o in outcomes))


def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Requests, failures (anything but 200) and the slowest answer, for the report."""
    return {
        "sent": len(outcomes),
        "failed": sum(not o.ok for o in outcomes),
        "by_status": statuses(outcomes),
        "max_latency_s": round(max((o.latency_s for o in outcomes), default=0.0), 3),
    }


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def kill_hard(spec: processes.ProcessSpec) -> None:
    """SIGKILL the process group, as a crash or a lost node would, then reap it."""
    pid = processes.running_pid(spec.pid_path)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    processes.stop(spec.pid_path)  # reaps, removes the pid file


def start_again(spec: processes.ProcessSpec, ready: processes.ReadyCheck, timeout_s: float) -> None:
    """The same command on the same port (and data directory) as before the kill."""
    processes.start(spec)
    processes.wait_until_ready(spec, ready, timeout_s=timeout_s)
