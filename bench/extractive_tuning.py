"""The extractive answer's sentence choice, tuned offline: how much the e5 similarity of a
sentence to the question weighs against its lexical score (``ExtractiveConfig.dense_weight``),
and within what margin of the best the runner-up sentence is quoted too
(``ExtractiveConfig.runner_up_margin``).

    python -m bench.extractive_tuning [ANSWERS_DIR]

Reads the extractive rows ``bench.answer_eval`` wrote (default: its newest run, as
``bench.gate_calibration`` does). Each row holds the sources the server answered from, so the
answer is recomputed here for every setting of the grid by the service's own
:func:`query_engine.extractive.answer_text`, with the service's embedder (each row's question
and its first :data:`CANDIDATES` lexical sentences are embedded once). Per set it counts the
answerable questions whose answer contains the gold answer, the refused ones, and the
unanswerable ones answered.

The setting is chosen on the dev half (:func:`bench.gate_calibration.is_dev`): the best mean
containment over the sets among those that refuse and hallucinate no more, pooled, than the
setting in the code; it is reported on the other half next to the code's. Writes
``bench/results/extractive_tuning.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import table, write_results
from bench.answer_metrics import containment
from bench.answer_sets import ANSWERABLE
from bench.gate_calibration import (
    error_rates,
    extractive_rows,
    is_dev,
    newest_answers_dir,
    row_sources,
)
from indexing.analysis import analyze_many
from query_engine.engine import question_similarities
from query_engine.extractive import (
    Extracted,
    ExtractiveConfig,
    SourceText,
    answer_text,
    rank_sentences,
)

DENSE_WEIGHTS = (0.5, 1.0, 2.0, 3.0, 5.0)
MARGINS: tuple[float | None, ...] = (None, 0.2, 0.5, 1.0)
CANDIDATES = 8  # ExtractiveConfig.rerank_top: the sentences the engine embeds


@dataclass(frozen=True)
class Scored:
    """One answer_eval row with what the engine would compute from its sources."""

    row: dict[str, Any]
    set_name: str
    sources: list[SourceText]
    ranked: list[Extracted]
    similarities: list[float]


async def scored(answers_dir: Path) -> list[Scored]:
    from indexing.embedding import EmbedderConfig, build_embedder

    embedder = build_embedder(EmbedderConfig())
    found = []
    for set_name, row in extractive_rows(answers_dir):
        sources = row_sources(row)
        ranked = rank_sentences(row["question"], sources, analyze_many) if sources else []
        top = [e.sentence for e in ranked[:CANDIDATES]]
        similarities = await question_similarities(embedder, row["question"], top) if top else []
        found.append(Scored(row, set_name, sources, ranked, similarities))
    await embedder.aclose()
    return found


def answer(item: Scored, config: ExtractiveConfig) -> str:
    """What the engine answers for ``item`` under ``config`` ("" = "not found"); the lexical
    gate is :func:`query_engine.extractive.choose`'s own."""
    similarities = item.similarities[: config.rerank_top]
    return answer_text(item.row["question"], item.ranked, similarities, item.sources, config)


def rates(items: Sequence[Scored], config: ExtractiveConfig) -> dict[str, float]:
    answerable = [i for i in items if i.row["kind"] == ANSWERABLE]
    unanswerable = [i for i in items if i.row["kind"] != ANSWERABLE]
    contained = refused = 0.0
    for item in answerable:
        text = answer(item, config)
        refused += not text
        contained += bool(text) and containment(text, item.row["answers"], item.row["language"])
    answered = sum(1 for i in unanswerable if answer(i, config))
    share = contained / len(answerable) if answerable else float("nan")
    return {"containment": share,
            **error_rates(refused, len(answerable), answered, len(unanswerable))}  # fmt: skip


def evaluate(items: Sequence[Scored], config: ExtractiveConfig) -> dict[str, Any]:
    """Per set and pooled rates, with the mean containment over the sets."""
    per_set = {
        name: rates([i for i in items if i.set_name == name], config)
        for name in sorted({i.set_name for i in items})
    }
    mean = float(np.mean([v["containment"] for v in per_set.values()]))
    return {"sets": per_set, "pooled": rates(items, config), "mean_containment": mean}


def choose(dev: Sequence[Scored], current: ExtractiveConfig) -> tuple[dict[str, Any], list]:
    """The grid on ``dev``, and the setting with the best mean containment among those no
    worse than ``current`` on pooled refusal and hallucination (ties to the code's setting,
    then to the smaller weight and margin: the least change)."""
    baseline = evaluate(dev, current)["pooled"]
    grid = []
    for weight, margin in itertools.product(DENSE_WEIGHTS, MARGINS):
        result = evaluate(dev, replace(current, dense_weight=weight, runner_up_margin=margin))
        grid.append({"dense_weight": weight, "runner_up_margin": margin, **result})
    allowed = [
        g
        for g in grid
        if g["pooled"]["refusal_rate_answerable"] <= baseline["refusal_rate_answerable"]
        and g["pooled"]["hallucination_rate_unanswerable"]
        <= baseline["hallucination_rate_unanswerable"]
    ]
    code = (current.dense_weight, current.runner_up_margin)
    best = max(
        allowed,
        key=lambda g: (
            round(g["mean_containment"], 6),
            (g["dense_weight"], g["runner_up_margin"]) == code,
            -g["dense_weight"],
            -(g["runner_up_margin"] or 0.0),
        ),
    )
    return best, grid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("answers_dir", nargs="?", type=Path, default=None)
    args = parser.parse_args(argv)
    answers_dir = args.answers_dir or newest_answers_dir()
    items = asyncio.run(scored(answers_dir))
    dev = [i for i in items if is_dev(i.row["qid"])]
    report = [i for i in items if not is_dev(i.row["qid"])]
    current = ExtractiveConfig()
    best, grid = choose(dev, current)
    chosen = replace(
        current, dense_weight=best["dense_weight"], runner_up_margin=best["runner_up_margin"]
    )
    print(f"dev half: {len(dev)} rows, report half: {len(report)}")
    print(table(["dense weight", "runner-up margin", "mean containment", "refusal",
                 "hallucination"],
                [[g["dense_weight"], g["runner_up_margin"], g["mean_containment"],
                  g["pooled"]["refusal_rate_answerable"],
                  g["pooled"]["hallucination_rate_unanswerable"]] for g in grid]))  # fmt: skip
    on_report = {"chosen": evaluate(report, chosen), "current": evaluate(report, current)}
    print(f"\nchosen on dev: dense weight {chosen.dense_weight}, margin {chosen.runner_up_margin} "
          f"(code: {current.dense_weight}, {current.runner_up_margin}); report half:")  # fmt: skip
    print(table(["set", "containment", "refusal", "hallucination", "code: containment",
                 "refusal", "hallucination"],
                [[name, *_triple(v), *_triple(on_report["current"]["sets"][name])]
                 for name, v in on_report["chosen"]["sets"].items()]))  # fmt: skip
    results = {
        "answers_dir": str(answers_dir),
        "current": {"dense_weight": current.dense_weight,
                    "runner_up_margin": current.runner_up_margin},
        "chosen": {"dense_weight": chosen.dense_weight,
                   "runner_up_margin": chosen.runner_up_margin},
        "dev_grid": grid,
        "report": on_report,
    }  # fmt: skip
    print(f"\nwrote {write_results('extractive_tuning', results)}")
    return 0


def _triple(rates_of_set: dict[str, float]) -> list[float]:
    keys = ("containment", "refusal_rate_answerable", "hallucination_rate_unanswerable")
    return [rates_of_set[k] for k in keys]


if __name__ == "__main__":
    sys.exit(main())
