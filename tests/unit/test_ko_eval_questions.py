"""Unit tests for the committed Korean eval questions (``bench/data/ko_seeds_questions.jsonl``).

The file's form is checked on its own; that every key resolves to a few passages of
``../shared/seeds`` is checked only where the shared directory sits beside the repo (CI has it).
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from bench._common import SHARED_DIR

KO_QUESTIONS = Path(__file__).resolve().parents[2] / "bench" / "data" / "ko_seeds_questions.jsonl"
MAX_KEY_CHARS = 40
MAX_GOLD = 3
SEEDS_DIR = SHARED_DIR / "seeds"
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.fixture(scope="module")
def retrieval_eval() -> Iterator[ModuleType]:
    """``bench.retrieval_eval``, without leaking the BLAS thread limits it sets on import."""
    saved = {var: os.environ.get(var) for var in BLAS_VARS}
    try:
        yield importlib.import_module("bench.retrieval_eval")
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _specs() -> list[dict[str, object]]:
    lines = KO_QUESTIONS.read_text(encoding="utf-8").splitlines()
    specs = []
    for n, line in enumerate(lines, 1):
        assert line.strip(), f"line {n} is blank"
        spec = json.loads(line)
        assert isinstance(spec, dict), f"line {n} is not an object"
        specs.append(spec)
    return specs


def _keys(spec: dict[str, object]) -> list[object]:
    keys = spec.get("answer_keys")
    return list(keys) if isinstance(keys, list) else [spec.get("answer_key")]


def test_committed_file_is_the_default(retrieval_eval: ModuleType) -> None:
    assert KO_QUESTIONS.is_file()
    assert retrieval_eval.KO_QUESTIONS == KO_QUESTIONS


def test_questions_are_well_formed() -> None:
    specs = _specs()
    assert len(specs) >= 80
    qids = Counter(spec.get("qid") for spec in specs)
    assert not [qid for qid, count in qids.items() if count > 1], "duplicate qids"
    for spec in specs:
        qid = spec.get("qid")
        assert isinstance(qid, str) and re.fullmatch(r"ko-\d{3}-\d{2}", qid), qid
        seed = spec.get("seed")
        assert isinstance(seed, str) and re.fullmatch(r"\d{3}", seed), qid
        assert qid.startswith(f"ko-{seed}-"), qid
        question = spec.get("question")
        assert isinstance(question, str) and re.search(r"[가-힣]", question), qid
        assert ("answer_key" in spec) != ("answer_keys" in spec), f"{qid}: one of the key fields"
        keys = _keys(spec)
        assert keys, qid
        for key in keys:
            assert isinstance(key, str) and key.strip(), qid
            assert len(key) <= MAX_KEY_CHARS, f"{qid}: key longer than {MAX_KEY_CHARS}"
            assert re.sub(r"\s+", "", key) not in re.sub(r"\s+", "", question), f"{qid}: key in Q"


def test_questions_cover_every_seed_evenly() -> None:
    per_seed = Counter(spec["seed"] for spec in _specs())
    assert len(per_seed) >= 5
    assert max(per_seed.values()) <= 2 * min(per_seed.values())


def test_every_question_resolves_to_few_passages(
    retrieval_eval: ModuleType, tmp_path: Path
) -> None:
    if not SEEDS_DIR.is_dir():
        pytest.skip(f"{SEEDS_DIR} is absent (it sits beside the repo in CI)")
    # a key found in no passage makes build_seed_set exit with the qid
    target = retrieval_eval.build_seed_set(SEEDS_DIR, KO_QUESTIONS, tmp_path)
    questions = retrieval_eval.read_jsonl(target / "questions.jsonl")
    assert [q["qid"] for q in questions] == [spec["qid"] for spec in _specs()]
    gold = {q["qid"]: len(q["gold_doc_ids"]) for q in questions}
    too_broad = {qid: n for qid, n in gold.items() if n > MAX_GOLD}
    assert not too_broad, f"keys found in more than {MAX_GOLD} passages: {too_broad}"
