"""bench/report.py: BENCHMARKS.md is rendered from bench/results, figure for figure, and the file
in the repository is what the report renders (a hand edit or a forgotten regeneration fails)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report, report_load
from bench import report_sections as rs
from bench._common import REPO_ROOT, command_line


def _metrics(containment: float, p50_ms: float, **more: Any) -> dict[str, Any]:
    return {
        "containment": containment,
        "f1": 0.1696,
        "citation_accuracy": 0.94,
        "grounded_rate": 0.96,
        "refusal_rate_answerable": 0.06,
        "hallucination_rate_unanswerable": 0.1,
        "latency_p50_ms": p50_ms,
        "n": 50,
        "n_unanswerable": 10,
        **more,
    }


def test_the_answer_table_has_a_row_per_set_and_mode() -> None:
    results = {
        "default_mode": "extractive",
        "sets": {
            "en_xquad": {
                "auto": _metrics(0.82, 2610.1),
                "generative": _metrics(0.12, 4702.6),
                "extractive": _metrics(0.8, 1645.85),
            },
            # an older file: no wall time, and a metric it did not record yet
            "ko_answers": {"extractive": {"containment": 0.8056, "n": 36}},
        },
        "config": {"sets": {"en_xquad": {"wall_s": 234.0}}},
    }
    assert rs.answer_table(results)[2:] == [
        "| en_xquad | generative | 50 | 10 | 0.12 | 0.17 | 0.94 | 0.96 | 0.06 | 0.10 | 4,703 "
        "| 234 |",
        "| en_xquad | extractive (default) | 50 | 10 | 0.80 | 0.17 | 0.94 | 0.96 | 0.06 | 0.10 "
        "| 1,646 |  |",
        "| en_xquad | auto | 50 | 10 | 0.82 | 0.17 | 0.94 | 0.96 | 0.06 | 0.10 | 2,610 |  |",
        "| ko_answers | extractive (default) | 36 | - | 0.81 | - | - | - | - | - | - | - |",
        "",
    ]
    met = [line for line in rs.targets(results) if line.startswith("  - containment")]
    assert met == ["  - containment ≥ 0.80: met on en_xquad (0.80), ko_answers (0.81); not on none"]


def _load_results() -> dict[str, Any]:
    kinds = {
        "cached": {"n": 71, "ok": 71, "p50_ms": 3.7, "p95_ms": 10.0, "p99_ms": 12.8, "errors": {}},
        "new": {"n": 13, "ok": 11, "p50_ms": 295.7, "p95_ms": 468.8, "errors": {"503": 2}},
    }
    step = {"offered_rps": 10.0, "duration_s": 15.0, "achieved_rps": 9.4, "sent": 140}
    return {
        "generator": "open loop",
        "mix": {"cached": 0.55, "new": 0.45},
        "steps": [
            {**step, "generator_lag_p99_ms": 4.8, "errors_by_status": {"503": 2}, "kinds": kinds},
            {**step, "offered_rps": 20.0, "sent": 300},  # an older file: fewer keys
        ],
        "knee_rps": None,
        "first_429_rps": 20.0,
        "at_half_knee": None,
        "ingestion": {"documents": 200, "state": "succeeded"},
    }


def test_the_load_section_has_a_row_per_step_and_per_kind() -> None:
    lines = report_load.load(_load_results(), {})
    assert lines[0].startswith("Mix: cached: 55%, new: 45%. Generator: open loop. Ingestion during")
    assert "the offered rate at which the cached answers' p99 passes - ms): - rps" in lines[0]
    assert "| 10.0 | 15 | 9.4 | 140 | 4.8 | 503: 2 |" in lines
    assert "| 20.0 | 15 | 9.4 | 300 | - | - |" in lines
    assert "| 10.0 rps, cached | 71 | 71 | 3.7 | 10.0 | 12.8 | none |" in lines
    assert "| 10.0 rps, new | 13 | 11 | 295.7 | 468.8 | - | 503: 2 |" in lines
    assert "At half the knee (- rps offered):" in lines


@pytest.mark.parametrize("stem", ["load", "soak"])
def test_a_result_file_not_written_yet_is_named_with_its_command(stem: str) -> None:
    section = next(s for s in report.SECTIONS if s.stems == (stem,))
    lines = rs.render_section(section, {})
    assert lines[2:] == [f"Not measured yet: run `python -m bench.{stem}` "
                         f"(`bench/results/{stem}.json`).", ""]  # fmt: skip


def test_every_section_names_its_command_run_and_machine() -> None:
    library = {"query": {"measured_at": "2026-11-24T20:15:37+0000", "machine": {"cpus": 2}}}
    section = next(s for s in report.SECTIONS if s.stems == ("query",))
    assert rs.render_section(section, library)[2] == (
        "- `python -m bench.query --up` → [`bench/results/query.json`](bench/results/query.json), "
        "measured 2026-11-24 20:15:37+0000 on 2 CPUs (Python loop - ms, load average -)"
    )
    library["query"]["command"] = "python -m bench.query --duration 2"
    assert "`python -m bench.query --duration 2`" in rs.render_section(section, library)[2]


def test_the_command_is_the_module_and_its_arguments() -> None:
    script = str(REPO_ROOT / "bench" / "load.py")
    assert command_line([script, "--rates", "10,20"]) == "python -m bench.load --rates 10,20"
    assert command_line(["/usr/bin/docqa", "bench", "answers"]) == "docqa bench answers"


def test_benchmarks_md_is_what_the_report_renders_from_bench_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # on failure: run `python -m bench.report` and commit BENCHMARKS.md with the results
    assert report.main(["--check"]) == 0, capsys.readouterr().out


def test_the_models_section_has_a_speed_row_per_model_and_a_quality_row_per_set_and_mode() -> None:
    from bench import report_models

    data = {
        "sets": "en_xquad",
        "limit": 8,
        "models": [
            {
                "model": "tiny",
                "weights_s": 0.0,
                "start_s": 22.3,
                "rss_mb": 3548.0,
                "ttft_p50_ms": 1471.0,
                "tokens_per_s_p50": 15.04,
                "sets": {"en_xquad": {"generative": {"n": 8, "containment": 0.125}}},
            }
        ],
    }
    lines = report_models.models(data, {})
    assert lines[0] == "Sets: en_xquad, at most 8 answerable questions each."
    assert "| tiny | 0 | 22 | 3,548 | 1,471 | 15.0 |" in lines
    assert "| tiny, en_xquad, generative | 8 | 0.12 | - | - | - | - | - |" in lines


def test_the_rerank_section_sets_each_sets_hybrid_and_reranked_rows_side_by_side() -> None:
    from bench import report_rerank

    stat = {"mean": 0.8, "ci95": [0.7, 0.9]}
    data = {
        "sets": {"ko_answers": {"test_questions": 21, "test": {
            "hybrid": {"R@1": stat, "R@5": stat, "MRR@10": {"mean": 0.85}},
            "hybrid+rerank": {"R@1": {"mean": 0.3, "ci95": [0.1, 0.5]}, "R@5": stat},
        }}},
        "rerank": {"candidates": 30, "reranked": 20, "questions": 20, "not_reranked": [],
                   "p50_ms": 1190.7, "model": "local-rerank"},
    }  # fmt: skip
    lines = report_rerank.rerank(data, {})
    assert lines[0].startswith("The first 30 candidates of the service's hybrid ranking")
    assert "20 of 20 questions reranked (not reranked: none)" in lines[0]
    assert "p50 1,191 ms" in lines[0]
    assert "| ko_answers (21) | hybrid | .800 [.700, .900] | .800 [.700, .900] | .850 |" in lines
    reranked = "| ko_answers (21) | hybrid+rerank | .300 [.100, .500] | .800 [.700, .900] | - |"
    assert reranked in lines
