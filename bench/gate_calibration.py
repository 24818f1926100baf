"""The extractive "not found" gate, calibrated: refusal on answerable questions against answers
given to unanswerable ones, over the gate's threshold (``ExtractiveConfig.min_score``).

    python -m bench.gate_calibration [ANSWERS_DIR]

Reads the rows ``bench.answer_eval`` wrote for the ``extractive`` mode (default: its newest
run under ``.docqa/eval/answers/``). Each row holds the sources the server answered from, so
the extractive score of every question is recomputed here, offline and without a gate, by the
service's own :func:`query_engine.extractive.extract_answer`. A question without sources was
refused by the retrieval gate before the extractive one and stays refused at every threshold.

Questions are split in two halves by a hash of their id: the threshold is chosen on the **dev**
half (the one minimising refusal + hallucination, pooled over every set; ties to the lower
hallucination) and the rates are
reported on the other half, per set, next to the current default.

The same is done for the second gate, the similarity floor (``ExtractiveConfig.min_similarity``):
each row's chosen sentence is re-ranked with the service's own embedder as the engine does, and
the floor is chosen on the dev half with the service's lexical threshold; and for the third,
the topic-coverage floor (``ExtractiveConfig.min_coverage``: the share of the question's topic
terms the chosen sentence's chunk holds), per question language, with the service's other two
gates; the Korean floor may refuse at most 10% of paraphrased questions too
(:mod:`bench.paraphrase_coverage`, when ``../shared/seeds`` is there). Writes
``bench/results/gate_calibration.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import docqa_home, table, write_results
from bench.answer_sets import ANSWERABLE
from bench.paraphrase_coverage import paraphrase_coverages
from bench.vocabulary_gate import add_unknown_shares, choose_ceiling
from indexing.analysis import analyze_many
from query_engine.engine import question_similarities
from query_engine.extractive import ExtractiveConfig, SourceText, extract_answer, rank_sentences

THRESHOLDS = [round(0.05 * i, 2) for i in range(0, 31)]
MAX_REFUSAL = 0.10  # the target for refusals of answerable questions
SIMILARITY_FLOORS = [0.0] + [round(0.75 + 0.01 * i, 2) for i in range(0, 16)]
COVERAGE_FLOORS = [round(0.05 * i, 2) for i in range(0, 21)]
NO_SCORE = float("-inf")


def newest_answers_dir() -> Path:
    runs = sorted((docqa_home() / "eval" / "answers").glob("*"))
    if not runs:
        raise SystemExit("no answer_eval run found: python -m bench.answer_eval --modes extractive")
    return runs[-1]


def extractive_rows(answers_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """(set, row) of every extractive row of ``answers_dir`` that recorded its sources."""
    rows = []
    for path in sorted(answers_dir.glob("*.extractive.jsonl")):
        set_name = path.name.removesuffix(".extractive.jsonl")
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "error" not in row and "sources" in row:
                rows.append((set_name, row))
    if not rows:
        raise SystemExit(f"no extractive rows with sources in {answers_dir}")
    return rows


def row_sources(row: dict[str, Any]) -> list[SourceText]:
    """The sources a row was answered from, as the engine hands them to the extractive code."""
    return [
        SourceText(s["n"], s["text"] or "", s.get("context") or "", s.get("doc_id") or "")
        for s in row["sources"]
    ]


def scored_rows(answers_dir: Path) -> list[dict[str, Any]]:
    return [
        {**row, "set": set_name, "score": extractive_score(row)}
        for set_name, row in extractive_rows(answers_dir)
    ]


def extractive_score(row: dict[str, Any]) -> float:
    sources = row_sources(row)
    if not sources:
        return NO_SCORE
    ungated = ExtractiveConfig(min_score=NO_SCORE)
    found = extract_answer(row["question"], sources, analyze_many, ungated)
    return found.score if found is not None else NO_SCORE


async def add_similarities(rows: list[dict[str, Any]]) -> None:
    """Each row's ``similarity``: the e5 cosine to the question of the sentence the service
    would choose (the best of the top lexical sentences by lexical score + similarity, as
    :func:`query_engine.extractive.choose` does), with the service's own embedder."""
    from indexing.embedding import EmbedderConfig, build_embedder

    embedder = build_embedder(EmbedderConfig())
    config = ExtractiveConfig()
    for row in rows:
        top = rank_sentences(row["question"], row_sources(row), analyze_many)[: config.rerank_top]
        if not top:
            row["similarity"] = row["coverage"] = NO_SCORE
            continue
        sims = await question_similarities(embedder, row["question"], [e.sentence for e in top])
        best = max(range(len(top)), key=lambda i: top[i].score + config.dense_weight * sims[i])
        row["similarity"] = sims[best]
        row["coverage"] = top[best].coverage
    await embedder.aclose()


def is_dev(qid: str) -> bool:
    return hashlib.sha256(qid.encode()).digest()[0] % 2 == 0


def rates(
    rows: Sequence[dict[str, Any]],
    threshold: float,
    min_similarity: float = NO_SCORE,
    min_coverage: float | dict[str, float] = NO_SCORE,
    max_unknown: dict[str, float] | None = None,
) -> dict[str, float]:
    """Refusals and answers to unanswerable questions of ``rows`` under the four gates;
    ``min_coverage`` may be a floor per row ``language``, ``max_unknown`` is a ceiling per row
    language (none: no vocabulary gate)."""
    answerable = [r for r in rows if r["kind"] == ANSWERABLE]
    unanswerable = [r for r in rows if r["kind"] != ANSWERABLE]
    ceilings = max_unknown or {}

    def answers(r: dict[str, Any]) -> bool:
        return bool(
            r["score"] >= threshold
            and r.get("similarity", 1.0) >= min_similarity
            and r.get("coverage", 1.0) >= _floor(min_coverage, r)
            and r.get("unknown", 0.0) <= ceilings.get(_language(r), 1.0)
        )

    refused = sum(1 for r in answerable if not answers(r))
    answered = sum(1 for r in unanswerable if answers(r))
    return error_rates(refused, len(answerable), answered, len(unanswerable))


def error_rates(
    refused: float, answerable: int, answered: float, unanswerable: int
) -> dict[str, float]:
    """Refusals of the ``answerable`` questions and answers to the ``unanswerable`` ones, as
    rates (NaN for an empty kind), with both counts."""
    nan = float("nan")
    return {
        "refusal_rate_answerable": refused / answerable if answerable else nan,
        "hallucination_rate_unanswerable": answered / unanswerable if unanswerable else nan,
        "n": answerable,
        "n_unanswerable": unanswerable,
    }


def _floor(floor: float | dict[str, float], row: dict[str, Any]) -> float:
    if isinstance(floor, dict):
        return floor.get(_language(row), NO_SCORE)
    return floor


def _language(row: dict[str, Any]) -> str:
    return "ko" if row.get("language") == "ko" else "other"


def choose(dev: Sequence[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    curve = [{"threshold": t, **rates(dev, t)} for t in THRESHOLDS]
    # ties go to fewer answers to unanswerable questions: a wrong answer costs more than a refusal
    best = min(
        curve,
        key=lambda p: (
            p["refusal_rate_answerable"] + p["hallucination_rate_unanswerable"],
            p["hallucination_rate_unanswerable"],
        ),
    )
    return float(best["threshold"]), curve


def choose_similarity(
    dev: Sequence[dict[str, Any]], threshold: float
) -> tuple[float, list[dict[str, Any]]]:
    """The similarity floor that, with the lexical ``threshold``, answers the fewest
    unanswerable questions of ``dev`` while refusing at most :data:`MAX_REFUSAL` of the
    answerable ones (ties to the lower floor). Minimising the sum instead chose floors that
    refused a quarter of the answerable questions: a server users stop asking."""
    curve = [{"min_similarity": m, **rates(dev, threshold, m)} for m in SIMILARITY_FLOORS]
    allowed = [p for p in curve if p["refusal_rate_answerable"] <= MAX_REFUSAL] or curve[:1]
    best = min(allowed, key=lambda p: (p["hallucination_rate_unanswerable"], p["min_similarity"]))
    return float(best["min_similarity"]), curve


def choose_coverage(
    dev: Sequence[dict[str, Any]],
    threshold: float,
    min_similarity: float,
    paraphrased: Sequence[float] = (),
) -> tuple[float, list[dict[str, Any]]]:
    """The topic-coverage floor, chosen as the similarity floor is (fewest answers to
    unanswerable questions with at most :data:`MAX_REFUSAL` refusals), with the other two
    gates at the service's values; a floor must also refuse at most :data:`MAX_REFUSAL` of
    the ``paraphrased`` questions (their gold passages' coverages,
    :mod:`bench.paraphrase_coverage`)."""
    curve = []
    for floor in COVERAGE_FLOORS:
        point = {"min_coverage": floor, **rates(dev, threshold, min_similarity, floor)}
        if paraphrased:
            point["refusal_paraphrased"] = sum(c < floor for c in paraphrased) / len(paraphrased)
        curve.append(point)
    allowed = [
        p
        for p in curve
        if p["refusal_rate_answerable"] <= MAX_REFUSAL
        and p.get("refusal_paraphrased", 0.0) <= MAX_REFUSAL
    ] or curve[:1]
    best = min(allowed, key=lambda p: (p["hallucination_rate_unanswerable"], p["min_coverage"]))
    return float(best["min_coverage"]), curve


def coverage_gate(dev: list[dict[str, Any]], report: list[dict[str, Any]]) -> dict[str, Any]:
    """The topic-coverage floor per question language (``ko`` and ``other``), each chosen on
    that language's dev rows with the service's lexical threshold and similarity floor."""
    config = ExtractiveConfig()
    current = {"ko": config.min_coverage_korean, "other": config.min_coverage_other}
    chosen: dict[str, float] = {}
    curves: dict[str, Any] = {}
    for language in ("ko", "other"):
        rows = [r for r in dev if _language(r) == language]
        if not rows:
            continue
        paraphrased = paraphrase_coverages() if language == "ko" else []
        chosen[language], curves[language] = choose_coverage(
            rows, config.min_score, config.min_similarity, paraphrased
        )
        print(f"\ncoverage floor, {language} questions, chosen on the dev half: "
              f"{chosen[language]} (current {current[language]})")  # fmt: skip
        curve = curves[language]
        print(table(["floor", "refusal (answerable)", "hallucination (unanswerable)",
                     "refusal (paraphrased)"],
                    [[p["min_coverage"], p["refusal_rate_answerable"],
                      p["hallucination_rate_unanswerable"], p.get("refusal_paraphrased", "")]
                     for p in curve]))  # fmt: skip
    gates = (
        (config.min_score, config.min_similarity, chosen),
        (config.min_score, config.min_similarity, current),
    )
    return {"chosen_min_coverage": chosen, "current_min_coverage": current,
            "dev_curve": curves, "report": per_set(report, *gates)}  # fmt: skip


def vocabulary_gate(dev: list[dict[str, Any]], report: list[dict[str, Any]]) -> dict[str, Any]:
    """The vocabulary ceiling per question language (:mod:`bench.vocabulary_gate`), each chosen
    on that language's dev rows with the service's other three gates."""
    from bench.answer_sets import default_set_dirs

    add_unknown_shares(dev + report, {d.name: d for d in default_set_dirs(docqa_home() / "eval")})
    config = ExtractiveConfig()
    coverage = {"ko": config.min_coverage_korean, "other": config.min_coverage_other}
    current = {"ko": config.max_unknown_korean, "other": config.max_unknown_other}

    def gated(rows: Sequence[dict[str, Any]], ceilings: dict[str, float]) -> dict[str, float]:
        return rates(rows, config.min_score, config.min_similarity, coverage, ceilings)

    chosen: dict[str, float] = {}
    curves: dict[str, Any] = {}
    for language in ("ko", "other"):
        rows = [r for r in dev if _language(r) == language]
        if not rows:
            continue
        chosen[language], curves[language] = choose_ceiling(rows, gated, language)
        print(f"\nvocabulary ceiling, {language} questions, chosen on the dev half: "
              f"{chosen[language]} (current {current[language]})")  # fmt: skip
        curve = curves[language]
        print(table(["ceiling", "refusal (answerable)", "hallucination (unanswerable)"],
                    [[p["max_unknown"], p["refusal_rate_answerable"],
                      p["hallucination_rate_unanswerable"]] for p in curve]))  # fmt: skip
    gates = (
        (config.min_score, config.min_similarity, coverage, chosen),
        (config.min_score, config.min_similarity, coverage, current),
    )
    return {"chosen_max_unknown": chosen, "current_max_unknown": current,
            "dev_curve": curves, "report": per_set(report, *gates)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("answers_dir", nargs="?", type=Path, default=None)
    args = parser.parse_args(argv)
    answers_dir = args.answers_dir or newest_answers_dir()
    rows = scored_rows(answers_dir)
    asyncio.run(add_similarities(rows))
    dev = [r for r in rows if is_dev(r["qid"])]
    report = [r for r in rows if not is_dev(r["qid"])]
    results = {"answers_dir": str(answers_dir), **lexical_gate(dev, report)}
    results["similarity_gate"] = similarity_gate(dev, report)
    results["coverage_gate"] = coverage_gate(dev, report)
    results["vocabulary_gate"] = vocabulary_gate(dev, report)
    print(f"\nwrote {write_results('gate_calibration', results)}")
    return 0


def lexical_gate(dev: list[dict[str, Any]], report: list[dict[str, Any]]) -> dict[str, Any]:
    chosen, curve = choose(dev)
    current = ExtractiveConfig().min_score
    print(f"dev half: {len(dev)} rows; threshold chosen {chosen} (current default {current})")
    print(table(["threshold", "refusal (answerable)", "hallucination (unanswerable)"],
                [[p["threshold"], p["refusal_rate_answerable"],
                  p["hallucination_rate_unanswerable"]] for p in curve]))  # fmt: skip
    by_set = per_set(report, (chosen, NO_SCORE), (current, NO_SCORE))
    return {"chosen_threshold": chosen, "current_threshold": current, "dev_curve": curve,
            "report": by_set}  # fmt: skip


def similarity_gate(dev: list[dict[str, Any]], report: list[dict[str, Any]]) -> dict[str, Any]:
    """The similarity floor, with the lexical threshold the service uses."""
    config = ExtractiveConfig()
    chosen, curve = choose_similarity(dev, config.min_score)
    print(f"\nsimilarity floor chosen on the dev half: {chosen} (current {config.min_similarity}), "
          f"lexical threshold {config.min_score}")  # fmt: skip
    print(table(["floor", "refusal (answerable)", "hallucination (unanswerable)"],
                [[p["min_similarity"], p["refusal_rate_answerable"],
                  p["hallucination_rate_unanswerable"]] for p in curve]))  # fmt: skip
    gates = (config.min_score, chosen), (config.min_score, config.min_similarity)
    return {"chosen_min_similarity": chosen, "current_min_similarity": config.min_similarity,
            "dev_curve": curve, "report": per_set(report, *gates)}  # fmt: skip


def per_set(
    report: list[dict[str, Any]], chosen: tuple[Any, ...], current: tuple[Any, ...]
) -> dict[str, Any]:
    by_set: dict[str, Any] = {}
    for set_name in sorted({r["set"] for r in report}):
        of_set = [r for r in report if r["set"] == set_name]
        by_set[set_name] = {"chosen": rates(of_set, *chosen), "current": rates(of_set, *current)}
    pooled = {"chosen": rates(report, *chosen), "current": rates(report, *current)}
    print("\nreport half, per set (chosen / current gate):")
    print(table(["set", "refusal", "hallucination", "refusal now", "hallucination now"],
                [[s, v["chosen"]["refusal_rate_answerable"],
                  v["chosen"]["hallucination_rate_unanswerable"],
                  v["current"]["refusal_rate_answerable"],
                  v["current"]["hallucination_rate_unanswerable"]]
                 for s, v in {**by_set, "(pooled)": pooled}.items()]))  # fmt: skip
    return {**by_set, "pooled": pooled}


if __name__ == "__main__":
    sys.exit(main())
