"""``bench.retrieval_eval`` runs end to end on the project's Korean answer set: it starts its own
milvus-lite and Redis, ingests through the real pipeline, asks through the real retriever with
the service's default settings, and reports every mode. A change of those defaults once broke
the bench unnoticed (parent context needs a store call the bench's recording store lacked);
here the bench runs, on a few questions, with its results written to a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import _common, retrieval_eval
from bench.retrieval_sets import KO_ANSWERS


def test_the_retrieval_bench_runs_with_the_service_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_common, "RESULTS_DIR", tmp_path / "results")
    argv = [str(KO_ANSWERS), "--max-questions", "6", "--work-dir", str(tmp_path / "eval")]

    assert retrieval_eval.main([*argv, "--no-calibration"]) == 0

    written: dict[str, Any] = json.loads(
        (tmp_path / "results/retrieval_eval_quick.json").read_text()
    )
    hybrid = written["sets"]["ko_answers"]["all"]["hybrid"]
    assert written["partial_run"] is True
    assert 0.0 <= hybrid["R@1"] <= hybrid["R@5"] <= 1.0
    assert hybrid["R@5"] > 0  # the regulations' own words find their document
