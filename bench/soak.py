"""Soak: the load benchmark's mix at a steady ~70% of its knee for ten minutes, watching for
growth. ``python -m bench.soak [--quick] [--rate R] [--minutes M]``

Every few seconds it records, for every process the stack runs (each pid file's whole process
group: vLLM's workers count with vLLM), the resident memory and open file descriptors, and
Redis's key count and memory. Slopes are least-squares fits over the second half of the run (the
first half includes warm-up: caches filling, allocators growing to their working size), in MB and
descriptors per minute. Redis keys must all expire: the run counts keys without a TTL by prefix,
since a key that never expires is growth the soak is too short to see. Writes
``bench/results/soak.json`` and ``soak.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench._common import RESULTS_DIR, proc_status_mb, table, write_results
from bench.load_traffic import (
    Traffic,
    errors_by_status,
    make_query_keys,
    prepare_answers,
    revoke_keys,
)
from bench.query_stack import Stack, running_stack
from deploy import processes

SHARE_OF_KNEE = 0.7
GROWTH_MB_PER_MIN = 1.0  # below this a process is flat whatever its size
GROWTH_SHARE_PER_MIN = 0.01  # ... and below 1% of its size per minute


# --------------------------------------------------------------------------- /proc


def rss_mb(pid: int) -> float:
    return proc_status_mb(pid, "VmRSS") or 0.0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def stack_groups() -> dict[str, int]:
    """Name → process group id of everything ``docqa up`` started (its pid files)."""
    from deploy import stack

    return {name: pid for name, pid in stack.status().items() if pid is not None}


def sample_processes(groups: dict[str, int]) -> dict[str, dict[str, float]]:
    sample = {}
    for name, pgid in groups.items():
        members = processes.group_members(pgid)
        sample[name] = {
            "rss_mb": round(sum(rss_mb(p) for p in members), 1),
            "fds": sum(open_fds(p) for p in members),
            "processes": len(members),
        }
    return sample


# --------------------------------------------------------------------------- Redis


async def redis_sample(client: aioredis.Redis) -> dict[str, float]:
    info = await client.info("memory")
    return {"keys": await client.dbsize(), "used_mb": round(info["used_memory"] / 2**20, 2)}


async def keys_without_ttl(client: aioredis.Redis) -> dict[str, int]:
    """Keys that never expire, counted by prefix (up to the second ':')."""
    counts: dict[str, int] = {}
    async for key in client.scan_iter(count=1000):
        if await client.ttl(key) == -1:
            name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
            prefix = ":".join(name.split(":")[:2])
            counts[prefix] = counts.get(prefix, 0) + 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------- the run


async def sample_until(
    done: asyncio.Event, redis_url: str, interval_s: float
) -> list[dict[str, Any]]:
    groups = stack_groups()
    client = aioredis.from_url(redis_url)
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        while True:
            samples.append(
                {
                    "t_s": round(time.perf_counter() - started, 1),
                    "processes": sample_processes(groups),
                    "redis": await redis_sample(client),
                }
            )
            if done.is_set():
                return samples
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=interval_s)
    finally:
        await client.aclose()


async def soak(stack: Stack, rate: float, duration_s: float, args: argparse.Namespace) -> Any:
    keys = await make_query_keys(stack.indexing_url, stack.admin_key, args.keys)
    # FAQ entries in place and the repeated questions cached, as in bench.load
    await prepare_answers(stack.query_url, stack.admin_key, keys[0]["key"])
    no_ttl_before = await count_keys_without_ttl(args.redis_url)
    done = asyncio.Event()
    sampler = asyncio.create_task(sample_until(done, args.redis_url, args.interval))
    try:
        async with Traffic(stack.query_url, [k["key"] for k in keys]) as traffic:
            outcomes = await traffic.run_rate(rate, duration_s)
    finally:
        done.set()
        samples = await sampler
        await revoke_keys(stack.indexing_url, stack.admin_key, keys)
    no_ttl = {"before": no_ttl_before, "after": await count_keys_without_ttl(args.redis_url)}
    ok = sum(1 for o in outcomes if 200 <= o.status < 300)
    requests = {"sent": len(outcomes), "ok": ok, "errors_by_status": errors_by_status(outcomes)}
    return samples, requests, no_ttl


def slope_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope, per minute, of (seconds, value) points."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 60


def slopes(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    settled = samples[len(samples) // 2 :]
    result = {}
    for name in samples[0]["processes"]:
        rss = [(s["t_s"], s["processes"][name]["rss_mb"]) for s in settled]
        fds = [(s["t_s"], float(s["processes"][name]["fds"])) for s in settled]
        result[name] = {
            "rss_mb_start": samples[0]["processes"][name]["rss_mb"],
            "rss_mb_end": samples[-1]["processes"][name]["rss_mb"],
            "rss_mb_per_min": round(slope_per_min(rss), 3),
            "fds_start": samples[0]["processes"][name]["fds"],
            "fds_end": samples[-1]["processes"][name]["fds"],
            "fds_per_min": round(slope_per_min(fds), 3),
        }
    return result


async def count_keys_without_ttl(redis_url: str) -> dict[str, Any]:
    """Keys without TTL by prefix, and the memory bound that evicts the keys with one."""
    client = aioredis.from_url(redis_url)
    try:
        limits = await client.config_get("maxmemory*")
        return {
            "prefixes": await keys_without_ttl(client),
            "maxmemory_mb": round(int(limits.get("maxmemory") or 0) / 2**20, 1),
            "policy": limits.get("maxmemory-policy", ""),
        }
    finally:
        await client.aclose()


def redis_summary(samples: Sequence[dict[str, Any]], no_ttl: dict[str, Any]) -> dict[str, Any]:
    settled = samples[len(samples) // 2 :]
    return {
        "keys_start": samples[0]["redis"]["keys"],
        "keys_end": samples[-1]["redis"]["keys"],
        "keys_per_min": round(slope_per_min([(s["t_s"], s["redis"]["keys"]) for s in settled]), 2),
        "used_mb_start": samples[0]["redis"]["used_mb"],
        "used_mb_end": samples[-1]["redis"]["used_mb"],
        "keys_without_ttl": no_ttl["after"]["prefixes"],
        # keys that never expire and grew with the traffic: growth no soak is long enough to see
        "growing_without_ttl": {
            prefix: count - no_ttl["before"]["prefixes"].get(prefix, 0)
            for prefix, count in no_ttl["after"]["prefixes"].items()
            if count > no_ttl["before"]["prefixes"].get(prefix, 0)
        },
        "maxmemory_mb": no_ttl["after"]["maxmemory_mb"],
        "maxmemory_policy": no_ttl["after"]["policy"],
    }


def growing(per_process: dict[str, dict[str, float]]) -> list[str]:
    """Processes whose settled memory grows faster than both bounds, or whose descriptors grow
    by more than one a minute."""
    return [
        name
        for name, s in per_process.items()
        if (
            s["rss_mb_per_min"] > GROWTH_MB_PER_MIN
            and s["rss_mb_per_min"] > GROWTH_SHARE_PER_MIN * max(s["rss_mb_start"], 1.0)
        )
        or s["fds_per_min"] > 1.0
    ]


def redis_is_bounded(redis: dict[str, Any]) -> bool:
    """Redis may grow while caches fill when a memory bound evicts them (the keys that grow all
    carry a TTL, or ``growing_without_ttl`` says otherwise)."""
    policy = str(redis.get("maxmemory_policy", ""))
    return bool(redis.get("maxmemory_mb")) and policy.startswith(("volatile-", "allkeys-"))


def verdict(per_process: dict[str, dict[str, float]], redis: dict[str, Any]) -> str:
    bounded = redis_is_bounded(redis)
    problems = [
        f"{name} grows" for name in growing(per_process) if not (name == "redis" and bounded)
    ]
    problems += [
        f"{n} Redis keys '{prefix}' without TTL appeared"
        for prefix, n in redis["growing_without_ttl"].items()
    ]
    if problems:
        return "; ".join(problems)
    if bounded and "redis" in growing(per_process):
        return (
            "no unbounded growth: every process flat but Redis, whose new keys all expire and "
            f"which evicts them ({redis['maxmemory_policy']}) past {redis['maxmemory_mb']:g} MB"
        )
    return "no growth: every process flat, keys expire"


def plot(samples: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t_s"] / 60 for s in samples]
    fig, (memory, redis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in samples[0]["processes"]:
        memory.plot(minutes, [s["processes"][name]["rss_mb"] for s in samples], label=name)
    memory.set(xlabel="minutes", ylabel="RSS MB (process group)", title="resident memory")
    memory.legend(fontsize=7)
    redis.plot(minutes, [s["redis"]["keys"] for s in samples], label="keys")
    redis.set(xlabel="minutes", ylabel="keys", title="Redis keys")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def soak_rate(explicit: float | None) -> float:
    """``--rate``, or 70% of the knee ``bench.load`` last measured."""
    if explicit:
        return explicit
    load = RESULTS_DIR / "load.json"
    knee = json.loads(load.read_text()).get("knee_rps") if load.exists() else None
    if not knee:
        raise SystemExit("no knee in bench/results/load.json: run `python -m bench.load` or --rate")
    return round(SHARE_OF_KNEE * float(knee), 1)


def main(argv: Sequence[str] | None = None) -> int:
    from deploy import stack as local_stack

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--up", action="store_true", help="start the local stack first")
    parser.add_argument("--quick", action="store_true", help="2 minutes instead of 10")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--rate", type=float, default=None, help="default: 70%% of the knee")
    parser.add_argument("--interval", type=float, default=None, help="seconds between samples")
    parser.add_argument("--keys", type=int, default=32)
    args = parser.parse_args(argv)
    minutes = args.minutes or (2.0 if args.quick else 10.0)
    args.interval = args.interval or (5.0 if args.quick else 10.0)
    args.redis_url = f"redis://127.0.0.1:{local_stack.StackPorts.from_env().redis}/0"
    stack = running_stack(start=args.up)
    rate = soak_rate(args.rate)
    print(f"soak: {rate}/s for {minutes} min, a sample every {args.interval} s", flush=True)
    samples, requests, no_ttl = asyncio.run(soak(stack, rate, minutes * 60, args))
    per_process, redis = slopes(samples), redis_summary(samples, no_ttl)
    rows = [[n, s["rss_mb_start"], s["rss_mb_end"], s["rss_mb_per_min"], s["fds_start"],
             s["fds_end"], s["fds_per_min"]] for n, s in per_process.items()]  # fmt: skip
    header = ["process", "RSS MB start", "end", "MB/min", "fds start", "end", "fds/min"]
    print(table(header, rows, 2))
    print(f"requests: {requests}\nredis: {redis}")
    result = {
        "duration_s": minutes * 60, "offered_rps": rate, "interval_s": args.interval,
        "requests": requests, "slopes": per_process, "redis": redis,
        "verdict": verdict(per_process, redis), "plot": "bench/results/soak.png",
        "samples": samples,
    }  # fmt: skip
    plot(samples, RESULTS_DIR / "soak.png")
    print(f"verdict: {result['verdict']}\nwrote {write_results('soak', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
