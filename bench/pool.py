"""vLLM pool: round-robin vs least-loaded vs session-affine, the pool's overhead, and a replica
killed mid-run.

    python bench/pool.py [--quick] [--seconds 20] [--rate 0.6] [--replicas 6]

Simulated cluster (the figure is about scheduling, not the model): ``--replicas`` fake vLLM
servers (``bench/fake_vllm.py``, one process each, on loopback), each with 4 batch slots and
100 tokens/s per sequence, one of them 3x slower. An open-loop load (Poisson arrivals at
``--rate`` of the cluster's capacity; half streamed; prompts of ~50 or ~1,500 tokens; answers of
16-128 tokens; 40 conversations) is replayed identically through the real :class:`LLMPool`
under each policy; latency is the full answer's. Then:

- overhead: sequential requests to an instant fake server, through the pool and straight with
  the same httpx client, interleaved; the pool's overhead is the median of the per-round
  differences;
- kill: least-loaded, one fast replica SIGKILLed a third into the run; failed non-streamed
  requests must be 0 (streams already past their first token cannot be saved, and are counted);
- real (skipped with ``--quick``): two real vLLM-CPU replicas (deploy/vllm_cpu.py recipe) with a
  small closed-loop load per policy, and one killed mid-run.

Prints a table, writes ``bench/results/pool.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/pool.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO_ROOT, fmt, ratio, table, write_results
from bench.pool_load import (
    MODEL,
    SLOTS,
    SLOWDOWN,
    TOKEN_RATE,
    capacity_rps,
    closed_loop,
    open_loop,
    overhead,
    workload,
)
from deploy import processes, stack
from query_engine.llm.policy import POLICIES

# ---------------------------------------------------------------------------- fake cluster


@dataclass
class FakeCluster:
    specs: list[processes.ProcessSpec]
    ports: list[int]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/v1" for p in self.ports]

    def kill(self, index: int) -> None:
        pid = processes.running_pid(self.specs[index].pid_path)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
        processes.stop(self.specs[index].pid_path)

    def stop(self) -> None:
        for spec in self.specs:
            processes.stop(spec.pid_path)


def start_fakes(runtime: Path, slowdowns: Sequence[float], **flags: float) -> FakeCluster:
    specs, ports = [], []
    for i, slowdown in enumerate(slowdowns):
        port = processes.free_port()
        extra = [f"--{name.replace('_', '-')}={value}" for name, value in flags.items()]
        specs.append(
            processes.ProcessSpec(
                name=f"fake-vllm-{port}",
                command=[
                    sys.executable, "-m", "bench.fake_vllm", "--port", str(port),
                    "--max-num-seqs", str(SLOTS), "--token-rate", str(TOKEN_RATE),
                    "--slowdown", str(slowdown), "--models", MODEL, *extra,
                ],
                log_path=runtime / f"fake-{i}.log",
                pid_path=runtime / f"fake-{i}.pid",
                cwd=REPO_ROOT,
            )
        )  # fmt: skip
        ports.append(port)
    cluster = FakeCluster(specs, ports)
    try:
        for spec in specs:
            processes.start(spec)
        for spec, port in zip(specs, ports, strict=True):
            ready = stack.http_ready(f"http://127.0.0.1:{port}/health")
            processes.wait_until_ready(spec, ready, timeout_s=60)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# ---------------------------------------------------------------------------- real replicas


async def real_check(runtime: Path) -> dict[str, Any]:
    paths = stack.default_paths()
    stack.setup(paths)
    specs, ports = [], []
    for i in range(2):
        port = processes.free_port()
        base = stack.vllm_spec(paths, port, name=f"bench-vllm-{i}", replica_index=i)
        specs.append(
            processes.ProcessSpec(
                name=base.name,
                command=base.command,
                log_path=runtime / f"{base.name}.log",
                pid_path=runtime / f"{base.name}.pid",
                env=base.env,
            )
        )
        ports.append(port)
    urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
    try:
        for spec, port in zip(specs, ports, strict=True):  # one at a time: they share 2 cores
            processes.start(spec)
            ready = stack.http_ready(f"http://127.0.0.1:{port}/health")
            processes.wait_until_ready(spec, ready, timeout_s=300)
        rows = {}
        for policy in ("round_robin", "least_loaded"):
            rows[policy] = (await closed_loop(urls, policy, requests=24, workers=4)).row()

        async def kill_second() -> None:
            await asyncio.sleep(8)
            pid = processes.running_pid(specs[1].pid_path)
            if pid is not None:
                os.killpg(pid, signal.SIGKILL)

        killed = await closed_loop(
            urls, "least_loaded", requests=40, workers=4, stream_every=10**9, during=kill_second
        )
        rows["kill"] = killed.row()
        return rows
    finally:
        for spec in specs:
            processes.stop(spec.pid_path)


# ---------------------------------------------------------------------------- main


def simulated(args: argparse.Namespace, runtime: Path) -> dict[str, Any]:
    slowdowns = [SLOWDOWN] + [1.0] * (args.replicas - 1)
    rate = args.rate * capacity_rps(slowdowns)
    jobs = workload(rate, args.seconds, seed=7)
    cluster = start_fakes(runtime, slowdowns)
    instant = start_fakes(runtime / "instant", [1.0], token_rate=1e6, prefill_rate=1e9)
    results: dict[str, Any] = {
        "offered_rps": round(rate, 2),
        "jobs": len(jobs),
        "slow_replica": cluster.urls[0],
    }
    try:
        runs = {policy: asyncio.run(open_loop(cluster.urls, policy, jobs)) for policy in POLICIES}
        results["policies"] = {policy: run.row() for policy, run in runs.items()}
        results["overhead"] = asyncio.run(overhead(instant.urls[0], args.overhead_rounds))

        victim = 1  # a fast replica: it holds the most work when it dies

        async def kill_victim() -> None:
            await asyncio.sleep(args.seconds / 3)
            await asyncio.to_thread(cluster.kill, victim)

        kill_jobs = workload(rate * 0.7, args.seconds * 0.75, seed=11)
        killed = asyncio.run(open_loop(cluster.urls, "least_loaded", kill_jobs, during=kill_victim))
        results["kill"] = {**killed.row(), "killed": cluster.urls[victim]}
    finally:
        cluster.stop()
        instant.stop()
    return results


def slow_share(row: dict[str, Any], slow_url: str) -> float:
    """Share of the requests sent to the slow replica (attempts, retries included)."""
    total = sum(row["per_endpoint"].values())
    return row["per_endpoint"].get(slow_url, 0) / total if total else math.nan


def report(results: dict[str, Any]) -> None:
    rows = results["policies"]
    rr_p99 = rows["round_robin"]["p99_ms"]
    print(
        f"\nsimulated: {len(rows['least_loaded']['per_endpoint'])} replicas (one {SLOWDOWN:g}x "
        f"slower), {results['jobs']} requests at {results['offered_rps']} req/s, open loop"
    )
    header = [
        "policy",
        "ok",
        "failed",
        "p50 ms",
        "p99 ms",
        "TTFT p50",
        "req/s",
        "to slow",
        "p99 RR/this",
    ]
    print(
        table(
            header,
            [
                [
                    policy,
                    row["ok"],
                    sum(row["failed"].values()),
                    row["p50_ms"],
                    row["p99_ms"],
                    row["ttft_p50_ms"],
                    row["throughput_rps"],
                    f"{slow_share(row, results['slow_replica']):.0%}",
                    ratio(rr_p99, row["p99_ms"]),
                ]
                for policy, row in rows.items()
            ],
            digits=2,
        )
    )
    _print_overhead_and_kill(results)
    if "real" in results:
        _print_real(results["real"])


def _print_overhead_and_kill(results: dict[str, Any]) -> None:
    o = results["overhead"]
    print(
        f"\noverhead per request (median of {o['rounds']}): "
        f"direct {fmt(o['direct_median_ms'])} ms, "
        f"pool {fmt(o['pool_median_ms'])} ms ({o['overhead_median_ms']:+.3f} ms), "
        f"PooledLLM {fmt(o['pooled_llm_median_ms'])} ms "
        f"({o['pooled_llm_overhead_median_ms']:+.3f} ms)"
    )
    k = results["kill"]
    print(
        f"kill one replica mid-run: {k['ok']}/{k['requests']} ok, failures {k['failed'] or 'none'}"
    )


def _print_real(real: dict[str, Any]) -> None:
    print("\nreal vLLM-CPU x2 (closed loop, 4 workers, 32-token answers)")
    print(
        table(
            ["run", "ok", "failed", "p50 ms", "p99 ms", "req/s", "per endpoint"],
            [
                [
                    name,
                    row["ok"],
                    row["failed"] or 0,
                    row["p50_ms"],
                    row["p99_ms"],
                    row["throughput_rps"],
                    "/".join(str(v) for v in row["per_endpoint"].values()),
                ]
                for name, row in real.items()
            ],
            digits=1,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="simulated cluster only (<3 min)")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration per policy")
    parser.add_argument("--rate", type=float, default=0.6, help="load, fraction of capacity")
    parser.add_argument("--replicas", type=int, default=6, choices=range(4, 9))
    parser.add_argument("--overhead-rounds", type=int, default=500)
    args = parser.parse_args()
    runtime = Path(tempfile.mkdtemp(prefix="docqa-bench-pool-"))
    started = time.perf_counter()
    try:
        results = simulated(args, runtime)
        results["simulated_seconds"] = round(time.perf_counter() - started, 1)
        if not args.quick:
            results["real"] = asyncio.run(real_check(runtime))
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    policies = results["policies"]
    kill = results["kill"]
    summary = {
        "p99_ratio_round_robin_over_least_loaded": round(
            ratio(policies["round_robin"]["p99_ms"], policies["least_loaded"]["p99_ms"]), 2
        ),
        "p99_ratio_round_robin_over_session_affinity": round(
            ratio(policies["round_robin"]["p99_ms"], policies["session_affinity"]["p99_ms"]), 2
        ),
        "overhead_median_ms": results["overhead"]["overhead_median_ms"],
        "failed_requests_on_kill": sum(
            n for kind, n in kill["failed"].items() if kind.startswith("non_streamed")
        ),
        "failed_streams_on_kill": sum(kill["failed"].values())
        - sum(n for kind, n in kill["failed"].items() if kind.startswith("non_streamed")),
    }
    report(results)
    print(
        f"\np99 round-robin / least-loaded: {summary['p99_ratio_round_robin_over_least_loaded']}x "
        f"(must be >= 1.5); pool overhead {summary['overhead_median_ms']} ms (must be <= 1); "
        f"failed non-streamed requests on kill: {summary['failed_requests_on_kill']} (must be 0)"
    )
    path = write_results("pool", {**summary, "quick": args.quick, **results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
