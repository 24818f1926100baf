"""The sets of the answer evaluation, what is asked of them, and how the answers score.

A set is a directory in the ``../shared/eval`` format: ``documents.jsonl`` (``doc_id, title,
text``) and ``questions.jsonl`` (``qid, question, answers[], gold_doc_ids[]``). Besides its own
questions without answers, each set gets an **unanswerable split**: a deterministic sample
(seeded by the set's name) of :data:`HELD_OUT_FRACTION` of its answerable questions whose gold
documents are left out of a second collection; asked against that collection, those questions
have no answer in it. (Questions of another set are not used: they would mostly be of another
language, which says little about refusing.)

Pure apart from reading the set files; the HTTP side is :mod:`bench.answer_eval`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import answer_metrics as am
from bench._common import SHARED_DIR
from docqa_core.scripts import detect_language

KO_ANSWERS_DIR = Path(__file__).resolve().parent / "data" / "ko_answers"
HELD_OUT_FRACTION = 0.2
ANSWERABLE, HELD_OUT, NO_ANSWER = "answerable", "held_out", "no_answer"


@dataclass(frozen=True)
class Ask:
    """One question to put to one of a set's collections."""

    qid: str
    question: str
    language: str
    answers: tuple[str, ...]
    gold_doc_ids: tuple[str, ...]
    kind: str  # ANSWERABLE, HELD_OUT (asked against the split) or NO_ANSWER
    split: bool = False  # asked against the split collection (gold documents left out)

    @property
    def unanswerable(self) -> bool:
        return self.kind != ANSWERABLE


@dataclass
class AnswerSet:
    name: str
    documents: list[dict[str, Any]]
    split_documents: list[dict[str, Any]]
    asks: list[Ask]
    held_out: list[str] = field(default_factory=list)
    skipped: int = 0  # questions with gold documents but no answer text: nothing to score


def default_set_dirs(work_dir: Path) -> list[Path]:
    """The shared English sets (converted once, as ``bench.retrieval_eval`` does) and the
    project's Korean answer set."""
    from bench.retrieval_eval import SHARED_SETS, convert_shared_sets
    from bench.retrieval_sets import KO_QUESTIONS, build_seed_set

    sets_dir = work_dir / "sets"
    dirs = [KO_ANSWERS_DIR]
    if (SHARED_DIR / "seeds").is_dir():
        # questions in users' words over Korean prose; the held-out split leaves out the gold
        # passages only, so the rest of the same document is there to tempt an answer
        dirs.append(build_seed_set(SHARED_DIR / "seeds", KO_QUESTIONS, sets_dir))
    converted = all((sets_dir / s / "questions.jsonl").exists() for s in SHARED_SETS)
    if converted or (SHARED_DIR / "eval" / "make_eval.py").exists():
        return [*convert_shared_sets(sets_dir), *dirs]
    print(f"{SHARED_DIR / 'eval'} is missing: only the Korean answer sets are used")
    return dirs


def load_answer_set(directory: Path, limit: int | None = None) -> AnswerSet:
    """The set in ``directory`` (``limit`` questions at most, sampled as retrieval_eval
    does), with its unanswerable split."""
    from bench.retrieval_eval import load_set

    loaded = load_set(directory, limit)
    return build_answer_set(loaded.name, loaded.documents, loaded.questions)


def build_answer_set(
    name: str,
    documents: list[dict[str, Any]],
    questions: Sequence[dict[str, Any]],
    fraction: float = HELD_OUT_FRACTION,
) -> AnswerSet:
    answerable = [q for q in questions if _answers(q) and q.get("gold_doc_ids")]
    no_answer = [q for q in questions if not _answers(q) and not q.get("gold_doc_ids")]
    held = held_out_sample(name, answerable, fraction)
    split = split_documents(documents, [q for q in answerable if q["qid"] in held])
    if not split:  # every document is some held-out question's gold: no split collection
        held = set()
    asks = [_ask(q, ANSWERABLE) for q in answerable]
    asks += [_ask(q, HELD_OUT, split=True) for q in answerable if q["qid"] in held]
    asks += [_ask(q, NO_ANSWER) for q in no_answer]
    skipped = len(questions) - len(answerable) - len(no_answer)
    return AnswerSet(name, documents, split if held else [], asks, sorted(held), skipped)


def held_out_sample(
    name: str, answerable: Sequence[dict[str, Any]], fraction: float = HELD_OUT_FRACTION
) -> set[str]:
    """The qids whose gold documents the split leaves out: ``fraction`` of the answerable
    questions (at least one when there are any), the same for the same set every run."""
    qids = sorted(q["qid"] for q in answerable)
    if not qids or fraction <= 0:
        return set()
    count = min(len(qids), max(1, math.floor(len(qids) * fraction + 0.5)))
    return set(random.Random(f"held-out:{name}").sample(qids, count))


def split_documents(
    documents: Sequence[dict[str, Any]], held_out: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    gone = {doc_id for q in held_out for doc_id in q.get("gold_doc_ids", [])}
    return [d for d in documents if d["doc_id"] not in gone]


def _answers(question: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(a for a in question.get("answers") or [] if a and a.strip()))


def _ask(question: dict[str, Any], kind: str, *, split: bool = False) -> Ask:
    return Ask(
        qid=question["qid"],
        question=question["question"],
        language=detect_language(question["question"]),
        answers=tuple(_answers(question)),
        gold_doc_ids=tuple(question.get("gold_doc_ids") or []),
        kind=kind,
        split=split,
    )


# --------------------------------------------------------------------------- scoring


def score_row(ask: Ask, response: dict[str, Any]) -> dict[str, Any]:
    """The scores of one answer (``response``: the query API's JSON)."""
    answer = str(response.get("answer") or "")
    refusal = am.is_refusal(answer, bool(response.get("not_found")))
    cited = [c.get("doc_id") for c in response.get("citations") or [] if c.get("cited")]
    grounding = response.get("grounding") or {}
    row: dict[str, Any] = {
        "refusal": refusal,
        "cited_doc_ids": cited,
        "grounding_verified": bool(grounding.get("verified")),
        "answers_question": grounding.get("answers_question"),
    }
    if ask.unanswerable:
        row["hallucination"] = not refusal
    else:
        row["em"] = am.exact_match(answer, ask.answers, ask.language)
        row["f1"] = am.token_f1(answer, ask.answers, ask.language)
        row["containment"] = am.containment(answer, ask.answers, ask.language)
        row["citation_hit"] = any(doc in ask.gold_doc_ids for doc in cited)
    return row


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per set and mode: answer metrics over the answerable questions, hallucinations over the
    unanswerable ones, latency over all (rows that failed with an error are left out)."""
    ok = [r for r in rows if not r.get("error")]
    answerable = [r for r in ok if r["kind"] == ANSWERABLE]
    unanswerable = [r for r in ok if r["kind"] != ANSWERABLE]
    latencies = [float(r["latency_ms"]) for r in ok]
    summary: dict[str, Any] = {
        "em": _mean(r["em"] for r in answerable),
        "f1": _mean(r["f1"] for r in answerable),
        "containment": _mean(r["containment"] for r in answerable),
        "citation_accuracy": _mean(r["citation_hit"] for r in answerable),
        "grounded_rate": _mean(r["grounding_verified"] for r in answerable),
        "refusal_rate_answerable": _mean(r["refusal"] for r in answerable),
        "hallucination_rate_unanswerable": _mean(r["hallucination"] for r in unanswerable),
        "latency_p50_ms": am.percentile(latencies, 50),
        "latency_p95_ms": am.percentile(latencies, 95),
        "n": len(answerable),
        "n_unanswerable": len(unanswerable),
        "n_errors": len(rows) - len(ok),
    }
    flags = [r["answers_question"] for r in answerable if r.get("answers_question") is not None]
    if flags:
        summary["answers_question_rate"] = _mean(flags)
    return {k: _json_number(v) for k, v in summary.items()}


def _json_number(value: Any) -> Any:
    """Floats rounded; NaN (no question to average over) as None, which JSON can hold."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def _mean(values: Any) -> float:
    items = [float(v) for v in values]
    return sum(items) / len(items) if items else math.nan
