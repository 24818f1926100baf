"""The rerank-stage section of BENCHMARKS.md (see :mod:`bench.report`): ``bench.retrieval_eval``
with ``hybrid+rerank`` (``bench.retrieval_rerank``) next to the hybrid ranking of the same run."""

from __future__ import annotations

from bench import report_sections as rs
from bench.report_sections import Library, Results, Section, dig

RERANK_INTRO = """\
The first {rerank.candidates:0} candidates of the service's hybrid ranking re-ordered by a \
`/rerank` endpoint (`query_engine/rerank.py`), {rerank.reranked:0} of {rerank.questions:0} \
questions reranked (not reranked: {rerank.not_reranked}), the stage's own p50 \
{rerank.p50_ms:0} ms per question on this machine. The endpoint is `deploy/rerank_server.py`, \
model `{rerank.model}`: vLLM serving the local 135M chat model as a pooling model, which \
answers `/v1/rerank` with a cosine of its own embeddings. No cross-encoder's weights ship on \
PyPI (searched again in December 2026: no QA, NLI or multilingual cross-encoder; \
`small-hybrid-reranker` loads its embeddings from the Hugging Face hub at run time), so this run \
measures the stage's protocol and cost, not a reranker's gain: a chat model's pooled state is a \
poor relevance signal, and the default stays off (`DOCQA_RERANK_URL` empty). Test split, 95% \
bootstrap intervals over questions."""
MODES = ("hybrid", "hybrid+rerank")


def rerank(data: Results, library: Library) -> list[str]:
    rows = [
        [f"{name} ({rs.num(sets.get('test_questions'), 0)})", mode]
        + [rs.interval(dig(sets, "test", mode, metric)) for metric in ("R@1", "R@5")]
        + [rs.frac(dig(sets, "test", mode, "MRR@10", "mean"))]
        for name, sets in (data.get("sets") or {}).items()
        for mode in MODES
    ]
    header = ["set (test questions)", "mode", "R@1", "R@5", "MRR@10"]
    stage = dict(data.get("rerank") or {})
    if isinstance(stage.get("not_reranked"), list):  # how runs before the summary's fix wrote it
        stage["not_reranked"] = "; ".join(stage["not_reranked"]) or "none"
    return [rs.figures(RERANK_INTRO, {**data, "rerank": stage}), "", *rs.table(header, rows)]


SECTIONS = (Section("The rerank stage", ("retrieval_eval_quick_rerank",), rerank),)
