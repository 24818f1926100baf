"""Readiness: each dependency is checked with a deadline, and the result names which one failed.

A required dependency that fails makes the service not ready (503); an optional one only
degrades it (200, ``degraded``): the query service, for one, keeps answering without Redis
(uncached) and without the LLM (extractive answers), so taking its pods out of the load balancer
then would turn a degraded mode into an outage. Every check also sets ``docqa_dependency_up``,
so a dashboard sees which dependency is down without the detailed body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge

DEPENDENCY_UP = Gauge(
    "docqa_dependency_up",
    "1 if the dependency passed its last readiness check, else 0",
    ["dependency", "required"],
)

CheckFn = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class DependencyCheck:
    name: str
    check: CheckFn
    required: bool = (
        True  # a failing optional dependency degrades the service instead of failing it
    )


async def _run_one(dep: DependencyCheck, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await dep.check()
        status, error = "ok", None
    except Exception as exc:
        status, error = "down", f"{type(exc).__name__}: {exc}"[:300]
    result: dict[str, Any] = {
        "status": status,
        "required": dep.required,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if error:
        result["error"] = error
    DEPENDENCY_UP.labels(dep.name, str(dep.required).lower()).set(1 if status == "ok" else 0)
    return result


async def check_readiness(
    checks: Sequence[DependencyCheck], timeout_s: float = 2.0
) -> tuple[int, dict[str, Any]]:
    results = await asyncio.gather(*(_run_one(dep, timeout_s) for dep in checks))
    by_name = {dep.name: result for dep, result in zip(checks, results, strict=True)}
    failed_required = [n for n, r in by_name.items() if r["status"] != "ok" and r["required"]]
    degraded = [n for n, r in by_name.items() if r["status"] != "ok" and not r["required"]]
    if failed_required:
        status, code = "unavailable", 503
    elif degraded:
        status, code = "degraded", 200
    else:
        status, code = "ready", 200
    body = {"status": status, "failed": failed_required + degraded, "dependencies": by_name}
    return code, body
