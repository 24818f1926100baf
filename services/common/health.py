"""Readiness: each dependency is checked with a deadline, and the result names which one failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
