"""Helpers the benchmarks share: percentiles, a plain-text table, the results writer, and the
throw-away Redis + milvus-lite servers a benchmark starts for itself."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SHARED_DIR = Path(os.environ.get("DOCQA_SHARED_DIR", REPO_ROOT.parent / "shared"))


def docqa_home() -> Path:
    return Path(os.environ.get("DOCQA_HOME", REPO_ROOT / ".docqa")).resolve()


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else math.nan


def fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A left-aligned plain-text table, numbers formatted to ``digits`` places."""
    cells = [list(header)] + [[fmt(c, digits) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "python_loop_ms": python_loop_ms(),
    }


def python_loop_ms(iterations: int = 2_000_000) -> float:
    """Milliseconds for a fixed pure-Python loop, best of 3: how fast this (shared, virtual)
    machine was when the figures were taken. Absolute latencies from runs whose loop times
    differ are not comparable; the ratios each benchmark prints are."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def command_line(argv: Sequence[str] | None = None) -> str:
    """How this process was started, as ``python -m <module> <args>`` when it runs a module of
    this checkout (``python -m bench.x`` and ``python bench/x.py`` alike), so BENCHMARKS.md can
    name the command that produced each result file. Anything else (``docqa bench answers``)
    keeps its program name."""
    argv = list(sys.argv if argv is None else argv)
    program = Path(argv[0]) if argv and argv[0] else Path("python")
    args = shlex.join(argv[1:])
    try:
        relative = program.resolve().relative_to(REPO_ROOT)
    except ValueError:
        relative = None
    if relative is None or relative.suffix != ".py" or relative.parts[0].startswith("."):
        return f"{program.name} {args}".strip()
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__main__":  # python -m bench runs bench/__main__.py
        parts.pop()
    return f"python -m {'.'.join(parts)} {args}".strip()


def proc_status_mb(pid: int | None, field: str) -> float | None:
    """A memory ``field`` of ``/proc/<pid>/status`` in MB (``VmRSS``: resident now, ``VmHWM``:
    its peak); None when the process is gone or unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def write_results(name: str, data: dict[str, Any]) -> Path:
    """``bench/results/<name>.json``, with when and where it was measured and by what command."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "command": command_line(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    return path


@dataclass(frozen=True)
class DataServers:
    redis_url: str
    milvus_uri: str


@contextlib.contextmanager
def data_servers(runtime_dir: Path) -> Iterator[DataServers]:
    """A real redis-server and milvus-lite server on free ports, stopped (process groups) on exit.

    The same specs the local stack and the test fixtures use; the data lives in ``runtime_dir``,
    which is removed afterwards.
    """
    from deploy import processes, stack

    stack.ensure_redis_server()
    runtime_dir.mkdir(parents=True, exist_ok=True)
    paths = stack.StackPaths(runtime_dir)
    redis_port, milvus_port = processes.free_port(), processes.free_port()
    redis = stack.redis_spec(paths, redis_port, name="bench-redis")
    milvus = stack.milvus_spec(
        paths, milvus_port, name="bench-milvus", data_dir=runtime_dir / "milvus-data"
    )
    started = []
    try:
        for spec, ready, timeout in (
            (redis, stack.redis_ready(redis_port), 30.0),
            (milvus, stack.milvus_ready(milvus_port), 90.0),
        ):
            processes.start(spec)
            started.append(spec)
            processes.wait_until_ready(spec, ready, timeout_s=timeout)
        yield DataServers(f"redis://127.0.0.1:{redis_port}/0", f"http://127.0.0.1:{milvus_port}")
    finally:
        for spec in reversed(started):
            processes.stop(spec.pid_path)
        shutil.rmtree(runtime_dir, ignore_errors=True)
