"""The load and soak benchmarks' arithmetic: per-kind summaries, the knee, where 429s start,
the ratios against the unloaded step, least-squares slopes and the growth verdict."""

from __future__ import annotations

import math

import pytest

from bench.load import against_baseline, first_429, knee_of, run_step
from bench.load_traffic import CONNECTION_ERROR, NOT_SENT, Outcome, request_for, summarise
from bench.soak import growing, slope_per_min, slopes, verdict


def step(rate: float, cached_p99: float, errors: dict[str, int] | None = None) -> dict:
    return {
        "offered_rps": rate,
        "errors_by_status": errors or {},
        "kinds": {"cached": {"p50_ms": 4.0, "p95_ms": 8.0, "p99_ms": cached_p99}},
    }


def test_summary_counts_only_2xx_latencies_and_names_every_failure() -> None:
    outcomes = [Outcome("cached", 200, ms, 0.0) for ms in (1.0, 2.0, 3.0, 4.0, 5.0)]
    outcomes += [
        Outcome("cached", 429, 900.0, 0.0),
        Outcome("cached", CONNECTION_ERROR, 60_000.0, 0.0),
        Outcome("new", NOT_SENT, 0.0, 0.0),
    ]
    summary = summarise(outcomes)
    cached = summary["kinds"]["cached"]
    assert (cached["n"], cached["ok"]) == (7, 5)
    assert cached["p50_ms"] == 3.0
    assert cached["p99_ms"] == 5.0  # 4 + 0.96 * (5 - 4), rounded: the 429's 900 ms is not in it
    assert cached["errors"] == {"429": 1, "connection": 1}
    assert summary["kinds"]["new"]["ok"] == 0
    assert math.isnan(summary["kinds"]["new"]["p50_ms"])
    assert summary["errors_by_status"] == {"429": 1, "connection": 1, "not_sent": 1}


def test_stream_summaries_carry_the_first_event_latency() -> None:
    outcomes = [Outcome("stream", 200, 400.0, 0.0, first_byte_ms=50.0)] * 3
    assert summarise(outcomes)["kinds"]["stream"]["first_event_p50_ms"] == 50.0


def test_the_knee_is_the_first_rate_whose_cached_p99_passes_100_ms() -> None:
    steps = [step(10, 12.0), step(20, 99.9), step(40, 140.0), step(80, 90.0)]
    assert knee_of(steps) == 40
    assert knee_of(steps[:2]) is None


def test_429s_are_located_at_the_first_step_that_had_any() -> None:
    steps = [step(10, 5.0), step(20, 5.0, {"503": 2}), step(40, 5.0, {"429": 1})]
    assert first_429(steps) == 40
    assert first_429(steps[:2]) is None


def test_half_knee_figures_are_divided_by_the_unloaded_median() -> None:
    loaded = against_baseline(step(20, 30.0), step(5, 10.0))
    cached = loaded["kinds"]["cached"]
    assert cached["unloaded_p50_ms"] == 4.0
    assert cached["p99_over_unloaded_p50"] == 7.5


def test_new_questions_are_unique_and_cached_ones_repeat() -> None:
    assert request_for("cached", 3) == request_for("cached", 3 + 12)
    new = {request_for("new", n)[1]["question"] for n in range(50)}
    assert len(new) == 50
    path, body = request_for("stream", 1)
    assert (path, body["stream"]) == ("/v1/query", True)
    assert request_for("retrieve", 2)[0] == "/v1/retrieve"


def test_slope_is_per_minute_and_exact_on_a_line() -> None:
    points = [(t, 100 + 0.05 * t) for t in range(0, 600, 10)]  # +0.05 MB/s
    assert slope_per_min(points) == pytest.approx(3.0)
    assert slope_per_min([(0.0, 5.0)]) == 0.0


def samples_of(rss: list[float], fds: list[int]) -> list[dict]:
    return [
        {"t_s": 60.0 * i, "processes": {"query-api": {"rss_mb": r, "fds": f}}}
        for i, (r, f) in enumerate(zip(rss, fds, strict=True))
    ]


def test_slopes_read_the_settled_second_half_only() -> None:
    # warm-up doubles the memory in the first minutes, then it is flat
    per_process = slopes(samples_of([100, 180, 200, 200, 200, 200], [20] * 6))
    assert per_process["query-api"]["rss_mb_per_min"] == 0.0
    assert per_process["query-api"]["rss_mb_start"] == 100


def test_growth_needs_both_absolute_and_relative_slopes_or_leaking_descriptors() -> None:
    big_slow = {"rss_mb_per_min": 2.0, "rss_mb_start": 2000.0, "fds_per_min": 0.0}
    small_fast = {"rss_mb_per_min": 2.0, "rss_mb_start": 100.0, "fds_per_min": 0.0}
    leaking = {"rss_mb_per_min": 0.0, "rss_mb_start": 100.0, "fds_per_min": 3.0}
    assert growing({"a": big_slow, "b": small_fast, "c": leaking}) == ["b", "c"]
    redis = {"growing_without_ttl": {"docqa:jobs": 4}}
    assert verdict({"a": big_slow}, redis) == "4 Redis keys 'docqa:jobs' without TTL appeared"


def test_redis_filling_its_caches_is_growth_only_without_a_memory_bound() -> None:
    filling = {"redis": {"rss_mb_per_min": 3.0, "rss_mb_start": 20.0, "fds_per_min": 0.0}}
    unbounded = {"growing_without_ttl": {}, "maxmemory_mb": 0, "maxmemory_policy": "noeviction"}
    assert verdict(filling, unbounded) == "redis grows"
    bounded = {"growing_without_ttl": {}, "maxmemory_mb": 512, "maxmemory_policy": "volatile-lru"}
    assert verdict(filling, bounded).startswith("no unbounded growth")
    assert "volatile-lru" in verdict(filling, bounded)


async def test_a_step_reports_what_was_answered() -> None:
    class Instant:
        async def run_rate(self, rate: float, duration_s: float) -> list[Outcome]:
            return [Outcome("cached", 200, 2.0, 1.0)] * 4 + [Outcome("cached", 503, 2.0, 9.0)]

    result = await run_step(Instant(), 10.0, 0.5)  # type: ignore[arg-type]
    assert (result["sent"], result["kinds"]["cached"]["ok"]) == (5, 4)
    assert result["errors_by_status"] == {"503": 1}
    assert result["generator_lag_p99_ms"] == 1.0  # 99th of five lags, nearest rank below
