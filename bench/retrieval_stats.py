"""Statistics for ``bench.retrieval_eval``: the dev/test split, bootstrap intervals, and the
per-language fusion calibration on dev.

- Split: each question goes to ``dev`` or ``test`` by a hash of its set and id, so the split
  is the same on every machine and run, and a question never changes sides when others are
  added. Settings are chosen on dev; figures are reported on test.
- Intervals: a percentile bootstrap over questions (resampled with replacement,
  :data:`RESAMPLES` times, fixed seed) of a metric's mean; a change between two rankings of the
  same questions gets a *paired* interval (both resampled with the same draws), which is far
  narrower than comparing two separate intervals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
SPLITS = ("dev", "test")


def split_of(set_name: str, qid: str) -> str:
    digest = hashlib.sha256(f"{set_name}\x00{qid}".encode()).digest()
    return "dev" if digest[0] % 2 == 0 else "test"


def _draws(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))


def interval(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values``."""
    if not values:
        return (0.0, 0.0)
    data = np.asarray(values, dtype=float)
    means = data[_draws(len(data), seed)].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def paired_difference(
    after: Sequence[float], before: Sequence[float], seed: int = 0
) -> dict[str, Any]:
    """Mean of ``after - before`` over the same questions, its 95% interval, and whether the
    interval excludes 0 (a change, not noise)."""
    diff = [a - b for a, b in zip(after, before, strict=True)]
    low, high = interval(diff, seed)
    mean = sum(diff) / len(diff) if diff else 0.0
    return {"mean": mean, "ci95": [low, high], "significant": low > 0 or high < 0}


def per_question(found_at: Sequence[int | None], ks: Sequence[int]) -> dict[str, list[float]]:
    """Per-question values of R@k and MRR@10 (the rank of the first gold document, or None)."""
    values = {f"R@{k}": [1.0 if r is not None and r <= k else 0.0 for r in found_at] for k in ks}
    values["MRR@10"] = [1.0 / r if r is not None and r <= 10 else 0.0 for r in found_at]
    return values


def summarize(values: dict[str, list[float]], seed: int = 0) -> dict[str, Any]:
    """Each metric's mean and 95% interval."""
    return {
        metric: {"mean": sum(v) / len(v) if v else 0.0, "ci95": list(interval(v, seed))}
        for metric, v in values.items()
    }


def calibrate(
    grid: Sequence[Any],
    score: Callable[[Any], float],
) -> tuple[Any, float]:
    """The setting of ``grid`` with the highest ``score`` (the earlier one on a tie, so the grid
    order states the preference: the current default first)."""
    best, best_score = grid[0], score(grid[0])
    for candidate in grid[1:]:
        value = score(candidate)
        if value > best_score + 1e-12:
            best, best_score = candidate, value
    return best, best_score
