"""bench/query.py: the cold retrieval figures count only questions that were really embedded."""

from __future__ import annotations

from bench.query import latency_summary


def _timings() -> dict[str, list[float]]:
    # two questions embedded (slow), two served from the query-embedding cache (fast)
    return {
        "client": [40.0, 50.0, 12.0, 14.0],
        "embed": [20.0, 25.0, 0.1, 0.2],
        "server": [38.0, 48.0, 10.0, 12.0],
    }


def test_cold_pass_leaves_out_cached_embeddings_and_counts_them() -> None:
    summary = latency_summary(_timings(), embedded=True)
    assert summary["p50_ms"] == 45.0
    assert summary["embed_p50_ms"] == 22.5
    assert summary["embeddings_served_from_cache"] == 2
    assert (summary["questions"], summary["measured"]) == (4, 2)


def test_cached_pass_keeps_every_request() -> None:
    summary = latency_summary(_timings(), embedded=False)
    assert summary["p50_ms"] == 27.0
    assert summary["measured"] == 4


def test_a_pass_served_entirely_from_cache_reports_no_cold_figure() -> None:
    timings = {"client": [12.0], "embed": [0.1], "server": [10.0]}
    summary = latency_summary(timings, embedded=True)
    assert summary["measured"] == 0
    assert summary["p50_ms"] != summary["p50_ms"]  # NaN: nothing was measured
