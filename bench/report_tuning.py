"""The extractive-tuning sections of BENCHMARKS.md (see :mod:`bench.report`): how the sentence
choice's weights were chosen offline (``bench.extractive_tuning``) and what they changed end to
end (two ``bench.answer_eval`` runs of the same questions, before and after)."""

from __future__ import annotations

from bench import report_sections as rs
from bench.report_sections import Compared, Library, Results, Section, dig

TUNING_INTRO = """\
The extractive rows of an answer_eval run (`{answers_dir}`), each answer recomputed offline by the \
service's own `answer_text` for every setting: `ExtractiveConfig.dense_weight` (how much the \
e5 similarity of a sentence to the question counts against its lexical score) and \
`runner_up_margin` (within what combined score of the best the second sentence is quoted too). \
Chosen on the dev half as the best mean containment over the sets among the settings refusing \
and hallucinating no more than the code's, pooled; reported on the other half."""
GRID = rs.columns(
    "mean containment=mean_containment:3; refusal=pooled.refusal_rate_answerable:3; "
    "hallucination=pooled.hallucination_rate_unanswerable:3"
)
REPORT = rs.columns(
    "answerable=n:0; unanswerable=n_unanswerable:0; containment=containment:3; "
    "refusal=refusal_rate_answerable:3; hallucination=hallucination_rate_unanswerable:3"
)
AFTER_TEXT = """\
Extractive only, the same 150 questions a set (fewer where a set has fewer) and the same \
unanswerable splits, the stack restarted between the runs: before with dense weight 1.0 and \
margin 0.2 (`answer_eval_calib.json`), after with 3.0 and 0.5 (`answer_eval_calib_after.json`)."""

PARENT_TEXT = """\
Extractive only, the same questions as above: before, `answer_eval_calib_after.json` (chunks as \
ranked); after, `answer_eval_parent_600.json`, the stack started with \
`DOCQA_RETRIEVAL_PARENT_TOKENS=600` (now the default): each source grows with the neighbouring \
chunks of its section up to 600 prompt tokens (`query_engine/parent_context.py`), touching hits \
merge. The after run also has the reference-marker fix of the answer-type bonus, which changes \
no answer of the before run's rows when they are re-ranked offline (`bench.extractive_tuning`'s \
path). `en_xquad` documents are single paragraphs (one chunk: nothing to grow). The Korean sets do \
not move: the prompt-token estimate counts a Hangul syllable as its three UTF-8 bytes, so 600 \
tokens hold about 200 syllables, less than one of their chunks and its neighbour. p50 is the \
whole `/v1/query` as the client saw it (one more Milvus query per question)."""

SAME_DOCUMENT_TEXT = """\
Extractive only, the same questions: before, `answer_eval_parent_600.json`; after, \
`answer_eval_same_document.json`, the code as it is now (parent context on by default, and \
the runner-up sentence quoted only when it comes from the best sentence's document). With the \
margin of 0.5 a close sentence of another document rode along: in \
`tests/integration/test_injected_documents.py` the first line of a prompt-injection notice \
("… service notice about brushing the burrs …"), which made the answer cite the injected \
document. One answer quotes one document now; what that costs is in the table."""


def tuning(data: Results, library: Library) -> list[str]:
    grid = {
        f"{g.get('dense_weight')} / {g.get('runner_up_margin')}": g
        for g in data.get("dev_grid") or []
        if isinstance(g, dict)
    }
    chosen, code = data.get("chosen") or {}, data.get("current") or {}
    choice = (
        f"Chosen: dense weight {rs.num(chosen.get('dense_weight'), 1)}, margin "
        f"{rs.num(chosen.get('runner_up_margin'), 1)} (the code then: "
        f"{rs.num(code.get('dense_weight'), 1)}, {rs.num(code.get('runner_up_margin'), 1)})."
    )
    report = {
        f"{name} ({label})": metrics
        for which, label in (("chosen", "chosen"), ("current", "code then"))
        for name, metrics in (dig(data, "report", which, "sets") or {}).items()
    }
    return [
        TUNING_INTRO.format(answers_dir=data.get("answers_dir", "-")),
        "",
        *rs.records_table("dev: dense weight / margin", grid, GRID),
        choice,
        "",
        *rs.records_table("report half: set (setting)", report, REPORT),
    ]


VOCABULARY_AFTER_TEXT = """\
Extractive only, the same 150 questions a set (fewer where a set has fewer) and the same \
unanswerable splits, the stack restarted between the runs: before without the vocabulary gate \
(`answer_eval_session8.json`), after with ceilings of 0.5 (`answer_eval_vocabulary_gate.json`): \
"not found" when more than half of the question's topic terms are in no chunk. \
`bench.gate_calibration` chose 0.45 (Korean) and 0.3 (other) on the dev half of the *before* \
run's rows (above); what those refuse and 0.5 does not were answerable questions whose \
"unknown" terms were the analysis' doing (a compound split in the question and whole in the \
document, English forms BM25 does not stem). The English ceiling of 0.5 in this run changed no \
row, and the code has none for English since (an inflected verb in a two-word question made a \
test's answerable question "unknown"). Half of these questions were seen by that calibration: \
this is end to end on the server, not an unseen-set figure."""

SECTIONS = (
    Section("Tuning the extractive sentence choice", ("extractive_tuning",), tuning),
    rs.comparison(
        "Before/after: dense weight 3.0, runner-up margin 0.5",
        AFTER_TEXT,
        rs.extractive_columns("answer_eval_calib", "answer_eval_calib_after"),
    ),
    rs.comparison(
        "Before/after: parent-section context",
        PARENT_TEXT,
        [
            *rs.extractive_columns("answer_eval_calib_after", "answer_eval_parent_600"),
            Compared(
                "p50 ms",
                "latency_p50_ms",
                ("answer_eval_calib_after", "answer_eval_parent_600"),
                digits=0,
            ),
        ],
    ),
    rs.comparison(
        "Before/after: the runner-up from the same document only",
        SAME_DOCUMENT_TEXT,
        rs.extractive_columns("answer_eval_parent_600", "answer_eval_same_document"),
    ),
    rs.comparison(
        "Before/after: the vocabulary gate",
        VOCABULARY_AFTER_TEXT,
        rs.extractive_columns("answer_eval_session8", "answer_eval_vocabulary_gate"),
    ),
)
