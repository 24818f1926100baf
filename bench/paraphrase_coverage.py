"""How much of a *paraphrased* Korean question its gold passage repeats: the check that keeps
the extractive topic-coverage floor general.

The project's Korean answer set (``bench/data/ko_answers``) asks about regulations in their own
words, so its gold chunks hold nearly every topic term of the question. Questions written as
users paraphrase them ("코드 작성용으로 나온 LLM" for a passage about Code Llama) hold far fewer:
a floor chosen on the literal set alone would refuse them. ``bench/data/ko_seeds_questions.jsonl``
holds such questions over ``../shared/seeds``, each with an ``answer_key`` quoted from its seed;
the window of the seed around that key stands for the gold chunk (about the size of one).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench._common import REPO_ROOT, SHARED_DIR
from indexing.analysis import analyze_many
from query_engine.extractive import QUESTION_TERMS, fold_accents, topic_coverage

QUESTIONS = REPO_ROOT / "bench" / "data" / "ko_seeds_questions.jsonl"
WINDOW_CHARS = 700  # each side of the answer key: about one 480-token chunk of Korean text


def paraphrase_coverages(seeds_dir: Path = SHARED_DIR / "seeds") -> list[float]:
    """The topic coverage of every seed question in the window around its answer; empty when
    the seeds are not beside the repository."""
    seeds = {path.name[:3]: path.read_text(encoding="utf-8") for path in seeds_dir.glob("*.txt")}
    if not seeds:
        return []
    coverages = []
    for line in QUESTIONS.read_text(encoding="utf-8").splitlines():
        question = json.loads(line)
        text = seeds.get(question["seed"], "")
        at = text.find(question["answer_key"])
        if at < 0:
            continue
        window = text[max(0, at - WINDOW_CHARS) : at + WINDOW_CHARS]
        terms = analyze_many([fold_accents(question["question"]), window])
        asked = set(terms[0].split()) - QUESTION_TERMS
        coverages.append(topic_coverage(asked, set(terms[1].split())))
    return coverages
