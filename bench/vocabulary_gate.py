"""The extractive answer's vocabulary gate, calibrated (part of ``bench.gate_calibration``).

The gate (``ExtractiveConfig.max_unknown_korean`` / ``max_unknown_other``) says "not found" when
more than a ceiling of the question's topic terms are held by no chunk of the collection: the
collection does not know what the question is about, whatever sentence scores best. The service
asks Milvus; here each row's share is recomputed offline from the set's documents, analyzed as
BM25 analyzes them: all of them for the questions asked of the full collection, all but the
held-out questions' gold documents for those asked of the split (``bench.answer_sets``).

The ceiling is chosen per question language on the dev half, with the service's other three
gates in place, as the lexical threshold is: the one with the fewest refusals of answerable
questions plus answers to unanswerable ones (ties to fewer answers to unanswerable questions,
then to the higher ceiling). Not "fewest hallucinations under a refusal bound" as the similarity
and coverage floors are: the Korean dev rows refuse more than that bound with no vocabulary gate
at all (users' own words over the seeds), so no ceiling would ever be allowed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.answer_sets import HELD_OUT
from indexing.analysis import analyze_many
from query_engine.extractive import fold_accents, question_topic, unknown_share

CEILINGS = [round(0.05 * i, 2) for i in range(0, 21)]
Rates = Callable[[Sequence[dict[str, Any]], dict[str, float]], dict[str, float]]


def add_unknown_shares(rows: list[dict[str, Any]], set_dirs: dict[str, Path]) -> None:
    """Each row's ``unknown``: the share of its question's topic terms that no document of the
    collection it was asked of holds (0 for a set whose documents are not at hand)."""
    for set_name in sorted({r["set"] for r in rows}):
        of_set = [r for r in rows if r["set"] == set_name]
        directory = set_dirs.get(set_name)
        if directory is None or not (directory / "documents.jsonl").exists():
            print(f"  {set_name}: no documents.jsonl found, vocabulary gate not measured")
            continue
        lines = (directory / "documents.jsonl").read_text(encoding="utf-8").splitlines()
        documents = [json.loads(line) for line in lines if line.strip()]
        held = {d for r in of_set if r["kind"] == HELD_OUT for d in r.get("gold_doc_ids", [])}
        full = _vocabulary(documents)
        split = _vocabulary([d for d in documents if d["doc_id"] not in held])
        for row in of_set:
            known = split if row.get("split") else full
            row["unknown"] = unknown_share(question_topic(row["question"], analyze_many), known)


def _vocabulary(documents: Sequence[dict[str, Any]]) -> set[str]:
    texts = [fold_accents(f"{d.get('title') or ''}\n{d['text']}") for d in documents]
    vocabulary: set[str] = set()
    for terms in analyze_many(texts):
        vocabulary.update(terms.split())
    return vocabulary


def choose_ceiling(
    dev: Sequence[dict[str, Any]], rates: Rates, language: str
) -> tuple[float, list[dict[str, Any]]]:
    """The ceiling for ``language`` (``ko`` or ``other``) on the dev rows of that language."""
    curve = [{"max_unknown": c, **rates(dev, {language: c})} for c in CEILINGS]
    best = min(
        curve,
        key=lambda p: (
            p["refusal_rate_answerable"] + p["hallucination_rate_unanswerable"],
            p["hallucination_rate_unanswerable"],
            -p["max_unknown"],
        ),
    )
    return float(best["max_unknown"]), curve
