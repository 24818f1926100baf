"""Fusion calibration for ``bench.retrieval_eval``: the ``--sweep`` over fusion settings on
every set, and the per-language calibration that chooses on dev and reports on test with paired
intervals of the change."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from bench._common import table
from bench.retrieval_collect import Collected, QuestionHits
from bench.retrieval_metrics import KS, found_at, in_split, metrics, mode_metrics
from bench.retrieval_stats import calibrate, paired_difference, per_question, summarize


def sweep(collected: Collected, config: Any, top: int = 15) -> list[dict[str, Any]]:
    """The fusion settings worth trying, each scored on every set from the recorded hits.

    A setting "meets" when hybrid is at least as good as the better single retriever on every
    set and metric; settings are ranked by their worst set's margin over that bar (so no set
    is sacrificed for another), then by MRR@10 averaged over the sets."""
    grid = [
        replace(config, fusion="convex", dense_weight=w, sparse_weight=round(1 - w, 2),
                candidates=c)
        for w in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
        for c in (10, 20, 30, 50)
    ] + [
        replace(config, fusion="rrf", rrf_k=k, dense_weight=wd, sparse_weight=1.0, candidates=c)
        for k in (5, 10, 20, 60)
        for wd in (0.5, 0.75, 1.0, 1.5)
        for c in (10, 20, 30, 50)
    ]  # fmt: skip
    rows = []
    for candidate in grid:
        margins, mrr = [], []
        for questions in collected.answerable.values():
            by_mode = mode_metrics(questions, candidate)
            best = {m: max(by_mode["dense"][m], by_mode["bm25"][m]) for m in by_mode["hybrid"]}
            margins.append(min(by_mode["hybrid"][m] - best[m] for m in best))
            mrr.append(by_mode["hybrid"]["MRR@10"])
        rows.append(
            {
                "fusion": candidate.fusion,
                "dense_weight": candidate.dense_weight,
                "sparse_weight": candidate.sparse_weight,
                "rrf_k": candidate.rrf_k if candidate.fusion == "rrf" else None,
                "candidates": candidate.candidates,
                "worst_margin": min(margins),
                "mean_mrr": sum(mrr) / len(mrr),
            }
        )
    rows.sort(key=lambda r: (r["worst_margin"] >= 0, r["mean_mrr"]), reverse=True)
    print(f"\nfusion sweep ({len(rows)} settings; margin = worst hybrid − best single)")
    print(table(
        ["fusion", "w dense", "w bm25", "rrf k", "cand", "worst margin", "mean MRR@10"],
        [[r["fusion"], r["dense_weight"], r["sparse_weight"], r["rrf_k"] or "-",
          r["candidates"], r["worst_margin"], r["mean_mrr"]] for r in rows[:top]],
    ))  # fmt: skip
    return rows


def fusion_grid(config: Any) -> list[Any]:
    """Fusion settings to calibrate over; the current default first (it wins ties)."""
    convex = [
        replace(config, fusion="convex", dense_weight=w / 20, sparse_weight=round(1 - w / 20, 2),
                candidates=c)
        for w in range(2, 19)
        for c in (10, 20, 30, 50)
    ]  # fmt: skip
    rrf = [
        replace(config, fusion="rrf", rrf_k=k, dense_weight=wd, sparse_weight=1.0, candidates=c)
        for k in (5, 10, 20, 60)
        for wd in (0.25, 0.5, 0.75, 1.0, 1.5)
        for c in (20, 50)
    ]  # fmt: skip
    return [config, *convex, *rrf]


def calibration_report(collected: Collected, config: Any) -> dict[str, Any]:
    """Per detected question language, the fusion setting with the highest sum over sets of
    dev R@1 (MRR@10 breaks ties), then default vs calibrated on test with paired intervals."""
    grid = fusion_grid(config)
    out: dict[str, Any] = {"objective": "sum over sets of dev R@1 (+0.01 x MRR@10)"}
    for language in sorted({q.language for qs in collected.answerable.values() for q in qs}):
        dev = _by_set(collected, language, "dev")
        test = _by_set(collected, language, "test")
        if not dev:
            continue

        def score(candidate: Any, dev: dict[str, list[QuestionHits]] = dev) -> float:
            found = [metrics(qs, candidate) for qs in dev.values()]
            return sum(m["R@1"] + 0.01 * m["MRR@10"] for m in found)

        best, best_score = calibrate(grid, score)
        entry: dict[str, Any] = {
            "setting": _setting(best),
            "dev_score": best_score,
            "default_dev_score": score(config),
            "test": {},
        }
        for name, questions in test.items():
            before = per_question(found_at(questions, config, "hybrid"), KS)
            after = per_question(found_at(questions, best, "hybrid"), KS)
            entry["test"][name] = {
                "questions": len(questions),
                "default": summarize(before),
                "calibrated": summarize(after),
                "change": {m: paired_difference(after[m], before[m]) for m in after},
            }
        out[language] = entry
    _print_calibration(out)
    return out


def _by_set(collected: Collected, language: str, split: str) -> dict[str, list[QuestionHits]]:
    chosen = {
        name: [q for q in in_split(name, questions, split) if q.language == language]
        for name, questions in collected.answerable.items()
    }
    return {name: qs for name, qs in chosen.items() if qs}


def _setting(config: Any) -> dict[str, Any]:
    keys = ("fusion", "dense_weight", "sparse_weight", "rrf_k", "candidates")
    return {k: getattr(config, k) for k in keys}


def _print_calibration(out: dict[str, Any]) -> None:
    print("\nfusion calibrated per question language on dev, reported on test (R@1):")
    rows = []
    for language, entry in out.items():
        if not isinstance(entry, dict) or "setting" not in entry:
            continue
        for name, data in entry["test"].items():
            change = data["change"]["R@1"]
            rows.append([
                language, json.dumps(entry["setting"]), name,
                data["default"]["R@1"]["mean"], data["calibrated"]["R@1"]["mean"],
                f"{change['mean']:+.3f} [{change['ci95'][0]:+.3f}, {change['ci95'][1]:+.3f}]",
            ])  # fmt: skip
    print(table(["lang", "setting", "set (test)", "default", "calibrated", "Δ [95% CI]"], rows))
