"""The evaluation sets of ``bench.retrieval_eval``: reading a set in the shared format
(``documents.jsonl`` + ``questions.jsonl``), converting the shared sets, and building the Korean
set over ``../shared/seeds`` from the committed hand-written questions."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import SHARED_DIR

SHARED_SETS = ("en_xquad", "en_covidqa_long")
KO_SET = "ko_seeds"
KO_QUESTIONS = Path(__file__).resolve().parent / "data" / "ko_seeds_questions.jsonl"
KO_ANSWERS = Path(__file__).resolve().parent / "data" / "ko_answers"  # already in the format


@dataclass
class EvalSet:
    name: str
    documents: list[dict[str, Any]]
    questions: list[dict[str, Any]]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_set(
    directory: Path, max_questions: int | None, *, answerable_only: bool = False
) -> EvalSet:
    questions = read_jsonl(directory / "questions.jsonl")
    if answerable_only:  # a question without gold documents (ko_answers has 6) has no recall
        questions = [q for q in questions if q.get("gold_doc_ids")]
    if max_questions and len(questions) > max_questions:
        questions = random.Random(directory.name).sample(questions, max_questions)
    return EvalSet(directory.name, read_jsonl(directory / "documents.jsonl"), questions)


def convert_shared_sets(out_dir: Path, names: Sequence[str] = SHARED_SETS) -> list[Path]:
    """The shared sets in the uniform format, written once with the shared converter."""
    converter = SHARED_DIR / "eval" / "make_eval.py"
    missing = [name for name in names if not (out_dir / name / "questions.jsonl").exists()]
    if missing:
        if not converter.exists():
            raise SystemExit(f"no set given and {converter} is missing")
        subprocess.run(
            [sys.executable, str(converter), "--raw-dir", str(converter.parent / "raw"),
             "--out-dir", str(out_dir), "--only", *missing],
            check=True,
        )  # fmt: skip
    return [out_dir / name for name in names]


def seed_passages(text: str, min_chars: int = 120, max_chars: int = 600) -> list[str]:
    """Blank-line paragraphs, short ones merged with the next, as retrieval units."""
    passages: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not re.search(r"\w", paragraph):
            continue
        if current and len(current) + len(paragraph) > max_chars:
            passages.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= min_chars:
            passages.append(current)
            current = ""
    if current:
        passages.append(current)
    return passages


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def build_seed_set(seeds_dir: Path, questions_file: Path, out_dir: Path) -> Path:
    """A Korean set over ``../shared/seeds``, built at run time (no seed text in the repo).

    Documents are the seed files' passages (:func:`seed_passages`), ids ``<file stem>#<n>``.
    ``questions_file`` holds one ``{"qid", "question", "seed", "answer_key"}`` per line, written
    by hand: ``seed`` is the prefix of the seed file name, ``answer_key`` a short span of the
    passage that answers the question (or ``answer_keys``, a list, when the answer spans
    passages). Gold documents are the passages of that file containing a key (whitespace
    ignored); a key found nowhere is an error, so the file cannot go stale.
    """
    documents = []
    for path in sorted(seeds_dir.glob("*.txt")):
        for n, passage in enumerate(seed_passages(path.read_text(encoding="utf-8"))):
            documents.append({"doc_id": f"{path.stem}#{n}", "title": "", "text": passage})
    questions = []
    for spec in read_jsonl(questions_file):
        keys = [_squash(k) for k in spec.get("answer_keys") or [spec["answer_key"]]]
        gold = [
            d["doc_id"]
            for d in documents
            if d["doc_id"].startswith(spec["seed"])
            and any(key in _squash(d["text"]) for key in keys)
        ]
        if not gold:
            raise SystemExit(f"{questions_file}: {spec['qid']}: answer_key not found in the seeds")
        answers = spec.get("answer_keys") or [spec["answer_key"]]  # spans of the seed text
        questions.append(
            {
                "qid": spec["qid"],
                "question": spec["question"],
                "answers": answers,
                "gold_doc_ids": gold,
            }
        )
    target = out_dir / KO_SET
    target.mkdir(parents=True, exist_ok=True)
    for name, rows in (("documents", documents), ("questions", questions)):
        with (target / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return target
