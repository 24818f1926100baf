"""Reports of ``bench.retrieval_eval``: per set and mode, metrics on the dev/test split with
95% bootstrap intervals, the Korean question-word experiment, and the "nothing relevant" gate
(false "not found" and false-answer rates per dense-cosine threshold)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench._common import fmt, median, table
from bench.retrieval_collect import QUESTION_FRAME_TERMS, Collected, QuestionHits
from bench.retrieval_metrics import (
    BASE_MODES,
    KS,
    QW,
    found_at,
    hybrid_not_worse,
    in_split,
    metrics,
    modes_of,
)
from bench.retrieval_stats import paired_difference, per_question, summarize

GATE_THRESHOLDS = [round(0.70 + 0.01 * i, 2) for i in range(21)]
MAX_FALSE_NOT_FOUND = 0.02


# --------------------------------------------------------------------------- report


def set_report(name: str, questions: Sequence[QuestionHits], config: Any) -> dict[str, Any]:
    """One set: per split, each mode's metrics with 95% intervals; on the whole set, the plain
    means (comparable with runs before the split)."""
    modes = modes_of(questions)
    data: dict[str, Any] = {"questions": len(questions)}
    for split in ("dev", "test"):
        chosen = in_split(name, questions, split)
        data[f"{split}_questions"] = len(chosen)
        data[split] = {
            mode: summarize(per_question(found_at(chosen, config, mode), KS)) for mode in modes
        }
    data["all"] = {mode: metrics(questions, config, mode) for mode in modes}
    test = {mode: {m: v["mean"] for m, v in data["test"][mode].items()} for mode in BASE_MODES}
    data["hybrid_vs_best_single_test"] = {
        m: test["hybrid"][m] - max(test["dense"][m], test["bm25"][m]) for m in test["hybrid"]
    }
    data["hybrid_at_least_best_single_test"] = hybrid_not_worse(test)
    return data


def print_sets(sets: dict[str, dict[str, Any]]) -> None:
    rows = []
    for name, data in sets.items():
        for i, (mode, summary) in enumerate(data["test"].items()):
            cells = [_with_interval(summary[m]) for m in ("R@1", "R@5", "R@10", "MRR@10")]
            label = f"{name} (test {data['test_questions']})" if i == 0 else ""
            rows.append([label, mode, *cells])
    print("\ntest split: mean [95% bootstrap interval over questions]")
    print(table(["set", "mode", "R@1", "R@5", "R@10", "MRR@10"], rows))
    for name, data in sets.items():
        delta = ", ".join(f"{m} {v:+.3f}" for m, v in data["hybrid_vs_best_single_test"].items())
        verdict = "ok" if data["hybrid_at_least_best_single_test"] else "NOT MET"
        print(f"{name}: hybrid − best single (test): {delta}  [{verdict}]")


def _with_interval(summary: dict[str, Any]) -> str:
    low, high = summary["ci95"]
    return f"{summary['mean']:.3f} [{low:.3f}, {high:.3f}]"


def report(collected: Collected, config: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"sets": {}}
    for name, questions in collected.answerable.items():
        results["sets"][name] = {
            "chunks": collected.chunks.get(name),
            "ingest_s": round(collected.ingest_s.get(name, 0.0), 1),
            "retrieve_median_ms": round(collected.query_ms.get(name, 0.0), 1),
            **set_report(name, questions, config),
        }
    print_sets(results["sets"])
    results["hybrid_test_r1_sum"] = sum(
        d["test"]["hybrid"]["R@1"]["mean"] for d in results["sets"].values()
    )
    results["question_frame_terms"] = question_frame_report(collected, config)
    results["gate"] = gate_report(collected, config)
    results["config"] = {k: getattr(config, k) for k in config.__dataclass_fields__}
    results["metric_notes"] = (
        "document level: a document ranks where its best chunk does; MRR cut at 10; dense and "
        "bm25 are the service's fusion with weights 1/0 and 0/1 over the same candidates; "
        "split: sha256(set, qid) parity (bench/retrieval_stats.py); intervals: percentile "
        "bootstrap over questions, 2000 resamples; 'all' holds plain means over every question"
    )
    results["hybrid_at_least_best_single_everywhere_test"] = all(
        d["hybrid_at_least_best_single_test"] for d in results["sets"].values()
    )
    return results


def question_frame_report(collected: Collected, config: Any) -> dict[str, Any]:
    """Does dropping QUESTION_FRAME_TERMS from Korean BM25 queries help? Paired changes of
    R@1 and MRR@10 on dev and test, for BM25 alone and hybrid."""
    out: dict[str, Any] = {"terms": sorted(QUESTION_FRAME_TERMS), "sets": {}}
    for name, questions in collected.answerable.items():
        if not any(q.sparse_qw is not None for q in questions):
            continue
        out["sets"][name] = {"changed_queries": sum(q.sparse_qw is not None for q in questions)}
        for split in ("dev", "test"):
            chosen = in_split(name, questions, split)
            for mode in ("bm25", "hybrid"):
                before = per_question(found_at(chosen, config, mode), KS)
                after = per_question(found_at(chosen, config, mode + QW), KS)
                out["sets"][name][f"{split}_{mode}"] = {
                    m: paired_difference(after[m], before[m]) for m in ("R@1", "MRR@10")
                }
    if out["sets"]:
        print("\nKorean BM25 query without question-frame terms (after − before, paired 95% CI):")
        rows = [
            [name, key, f"{d['R@1']['mean']:+.3f} [{d['R@1']['ci95'][0]:+.3f}, "
             f"{d['R@1']['ci95'][1]:+.3f}]", f"{d['MRR@10']['mean']:+.3f}"]
            for name, data in out["sets"].items()
            for key, d in data.items() if key != "changed_queries"
        ]  # fmt: skip
        print(table(["set", "split_mode", "ΔR@1 [CI]", "ΔMRR@10"], rows))
    return out


def gate_report(collected: Collected, config: Any) -> dict[str, Any]:
    gate = gate_table(collected)
    current = config.min_dense_score
    print("\nnothing-relevant gate (best dense cosine < threshold → \"not found\"),"
          " rates averaged over sets:")  # fmt: skip
    print(table(
        ["threshold", "false not-found", "false answer", "worst set nf", "worst set ans"],
        [[g["threshold"], g["false_not_found"], g["false_answer"], g["false_not_found_max"],
          g["false_answer_max"]] for g in gate if abs(g["threshold"] - current) <= 0.06],
    ))  # fmt: skip
    per_set = per_set_gate(collected, current)
    for name, data in per_set.items():
        print(
            f"  at {current:.2f}: {name}: false not-found {fmt(data['false_not_found'])}, "
            f"false answer {fmt(data['false_answer'])} (median best cosine answerable "
            f"{fmt(data['best_dense_median_answerable'])}, unanswerable "
            f"{fmt(data['best_dense_median_unanswerable'])})"
        )
    suggested = suggest_gate(gate)
    if suggested is not None:
        print(
            f"  highest threshold losing at most {MAX_FALSE_NOT_FOUND:.0%} of any set's answerable "
            f"questions: {suggested['threshold']:.2f} (false not-found "
            f"{fmt(suggested['false_not_found'])}, false answer {fmt(suggested['false_answer'])})"
        )
    return {
        "threshold": current,
        "per_set": per_set,
        "sweep": gate,
        "suggested": suggested,
        "suggestion_rule": f"highest threshold with false not-found <= {MAX_FALSE_NOT_FOUND} "
        "on every set",
    }


def gate_table(collected: Collected) -> list[dict[str, float]]:
    """False "not found" and false-answer rates of the dense-cosine gate, per threshold.

    Rates are averaged over the sets (each set weighs the same), so a large set does not hide a
    small one."""
    rows = []
    for threshold in GATE_THRESHOLDS:
        false_nf = [
            _rate(collected.answerable[s], threshold, below=True) for s in collected.answerable
        ]
        false_ans = [
            _rate(rows, threshold, below=False) for rows in collected.unanswerable.values() if rows
        ] or [0.0]
        rows.append(
            {
                "threshold": threshold,
                "false_not_found": sum(false_nf) / len(false_nf),
                "false_answer": sum(false_ans) / len(false_ans),
                "false_not_found_max": max(false_nf),
                "false_answer_max": max(false_ans),
            }
        )
    return rows


def suggest_gate(gate: Sequence[dict[str, float]]) -> dict[str, float] | None:
    """A wrong "not found" loses an answer the documents hold; a wrong pass only costs an LLM
    call that the prompt tells to say "not found" itself. So: the strictest threshold that
    still answers all but MAX_FALSE_NOT_FOUND of every set's answerable questions."""
    passing = [g for g in gate if g["false_not_found_max"] <= MAX_FALSE_NOT_FOUND]
    return max(passing, key=lambda g: g["threshold"]) if passing else None


def _best(q: QuestionHits) -> float:
    return q.dense[0][2] if q.dense else -1.0


def _rate(questions: Sequence[QuestionHits], threshold: float, *, below: bool) -> float:
    if not questions:
        return 0.0
    hit = [(_best(q) < threshold) if below else (_best(q) >= threshold) for q in questions]
    return sum(hit) / len(hit)


def per_set_gate(collected: Collected, threshold: float) -> dict[str, dict[str, float]]:
    return {
        s: {
            "false_not_found": _rate(collected.answerable[s], threshold, below=True),
            "false_answer": _rate(collected.unanswerable.get(s, []), threshold, below=False),
            "best_dense_median_answerable": median([_best(q) for q in collected.answerable[s]]),
            "best_dense_median_unanswerable": median(
                [_best(q) for q in collected.unanswerable.get(s, [])]
            ),
        }
        for s in collected.answerable
    }
