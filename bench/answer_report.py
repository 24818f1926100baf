"""The report of :mod:`bench.answer_eval`: the table, the plot, the server's default mode, and
the summary of the answer rows an earlier (or interrupted) run left."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import RESULTS_DIR, table, write_results
from bench.answer_sets import summarize as summarize_rows

TABLE_METRICS = (
    "em", "f1", "containment", "citation_accuracy", "grounded_rate", "refusal_rate_answerable",
    "hallucination_rate_unanswerable", "latency_p50_ms", "latency_p95_ms",
)  # fmt: skip
TABLE_HEADER = (
    "set|mode|n|n unans|EM|F1|contain|cite acc|grounded|refuse ans|halluc unans|p50 ms|p95 ms"
)


def default_mode(echoed: Sequence[str]) -> str:
    """The server's default: the ``answer_mode`` its responses name when asked with none."""
    seen = Counter(e.split(":", 1)[1] for e in echoed if e.startswith("default:"))
    return seen.most_common(1)[0][0] if seen else "unknown"


def print_table(sets: dict[str, dict[str, Any]]) -> None:
    rows: list[list[Any]] = []
    for set_name, by_mode in sets.items():
        for mode, m in by_mode.items():
            if m.get("supported", True) is False:
                rows.append([set_name, mode, "unsupported", *["-"] * (len(TABLE_METRICS) + 1)])
                continue
            values = [math.nan if m.get(k) is None else m[k] for k in TABLE_METRICS]
            rows.append([set_name, mode, m["n"], m["n_unanswerable"], *values])
    header = TABLE_HEADER.split("|")
    print()
    print(table(header, rows))


def plot(sets: dict[str, dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed in this environment: no plot")
        return None
    shown = ("em", "f1", "containment", "citation_accuracy", "hallucination_rate_unanswerable")
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4), squeeze=False)
    for ax, (set_name, by_mode) in zip(axes[0], sets.items(), strict=True):
        modes = {k: v for k, v in by_mode.items() if v.get("supported", True) is not False}
        width = 0.8 / max(1, len(modes))
        for i, (mode, m) in enumerate(modes.items()):
            heights = [math.nan if m.get(k) is None else m[k] for k in shown]
            ax.bar([x + i * width for x in range(len(shown))], heights, width, label=mode)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(shown))])
        ax.set_xticklabels(["EM", "F1", "contain", "cite", "halluc"])
        ax.set_ylim(0, 1)
        ax.set_title(set_name)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summarize_rows_dir(rows_dir: Path) -> int:
    """``answer_eval.json`` from the ``SET.MODE.jsonl`` rows of an earlier run."""
    results: dict[str, Any] = {}
    for path in sorted(rows_dir.glob("*.*.jsonl")):
        set_name, mode = path.name.removesuffix(".jsonl").rsplit(".", 1)
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        results.setdefault(set_name, {})[mode] = summarize_rows(rows)
    if not results:
        raise SystemExit(f"no SET.MODE.jsonl rows in {rows_dir}")
    print_table(results)
    config = {"from_rows": str(rows_dir), "modes": sorted({m for r in results.values() for m in r})}
    path = write_results(
        "answer_eval", {"default_mode": "unknown", "sets": results, "config": config}
    )
    print(f"\nwrote {path}")
    if (figure := plot(results, RESULTS_DIR / "answer_eval.png")) is not None:
        print(f"plot: {figure}")
    return 0
