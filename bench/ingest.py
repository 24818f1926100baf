"""Ingestion throughput: the whole pipeline against the embedder alone, and re-ingestion.

    python -m bench.ingest [--generated 10000] [--covid-papers N] [--slices 4]
                           [--baseline-fraction 0.25]

Corpora: the shared eval sets ``en_covidqa_long`` (whole papers: long documents, many chunks) and
``en_xquad`` (Wikipedia paragraphs), converted with the shared converter into a temporary
directory, and a generated corpus of short documents (``--generated``, 10,000 by default: the
per-document overhead is what it measures).

On a real redis-server and milvus-lite server started for the run, with the real in-process
multilingual-e5-small, each corpus is ingested in ``--slices`` consecutive parts, and each part is
measured twice, back to back, so both measurements see the same load from whatever else runs on
the machine:

1. **pipeline**: ``IngestionPipeline.ingest`` of the part (lookup, chunking, analysis, embedding,
   Milvus writes, generations, version bump; the last part flushes), timed end to end;
2. **embedder only**, the baseline: the part's chunks (the pipeline's own chunker, untimed), an
   every-k-th sample of them (``--baseline-fraction``) embedded in the pipeline's batch size; its
   rate applied to all of the part's tokens is what the pipeline would take if everything but
   embedding were free. ``pipeline_vs_embedder_ratio`` is the median over all parts of that time
   / pipeline time (target ≥ 0.80); Σ over Σ, and the same ratio in CPU seconds (this process
   plus the Milvus and Redis servers, background work included), are printed next to it;
3. **re-ingest**: every corpus again (all unchanged), timed; ``reingest_time_ratio`` = re-ingest
   time / first time (target < 0.10).

Peak RSS is this process' (pipeline, embedder, Korean analyzer) and the Milvus server's.
Writes ``bench/results/ingest.json``.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS threads fight the embedder's OpenMP threads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench._common import (
    SHARED_DIR,
    DataServers,
    data_servers,
    median,
    proc_status_mb,
    table,
    write_results,
)
from indexing.chunking import chunk_text
from indexing.embedding import Embedder
from indexing.pipeline import IngestionPipeline, SourceDocument
from services.common.clients import (
    DataClients,
    build_data_clients,
    build_pipeline,
    warm_up_models,
)
from services.common.settings import IndexingSettings

SHARED_SETS = ("en_covidqa_long", "en_xquad")
TARGET_RATIO = 0.80
TARGET_REINGEST = 0.10


@dataclass
class CorpusResult:
    corpus: str
    documents: int
    chunks: int
    tokens: int
    pipeline_s: float
    baseline_sample_chunks: int
    baseline_sample_s: float
    embedder_only_s: float  # the baseline's rate applied to all of the corpus' tokens
    pipeline_cpu_s: float  # this process + the Milvus and Redis servers
    embedder_only_cpu_s: float  # scaled like embedder_only_s
    milvus_settle_s: float  # Milvus' background work (segment sealing, indexes) after the run
    slice_ratios: list[float]  # pipeline_vs_embedder_ratio of each slice, in order
    reingest_s: float = 0.0

    @property
    def cpu_ratio(self) -> float:
        return self.embedder_only_cpu_s / self.pipeline_cpu_s

    @property
    def ratio(self) -> float:
        return self.embedder_only_s / self.pipeline_s

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.pipeline_s

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.pipeline_s

    @property
    def embedder_chunks_per_s(self) -> float:
        return self.chunks / self.embedder_only_s


# ---------------------------------------------------------------------------- corpora


def convert_shared_sets(out_dir: Path) -> dict[str, list[SourceDocument]]:
    """The shared sets as documents, converted by the shared converter into ``out_dir``."""
    converter = SHARED_DIR / "eval" / "make_eval.py"
    if not converter.exists():
        raise SystemExit(f"{converter} is missing: the shared eval sets are needed")
    subprocess.run(
        [sys.executable, str(converter), "--raw-dir", str(converter.parent / "raw"),
         "--out-dir", str(out_dir), "--only", *SHARED_SETS],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return {name: read_documents(out_dir / name / "documents.jsonl") for name in SHARED_SETS}


def read_documents(path: Path) -> list[SourceDocument]:
    with path.open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return [SourceDocument(r["doc_id"], r["text"], title=r.get("title", "")) for r in records]


WORDS = (
    "inspection valve pressure report quarterly budget pump filter schedule warehouse "
    "invoice shipment delay supplier contract audit temperature sensor maintenance crew "
    "safety permit boiler turbine tariff payroll ledger forecast capacity outage"
).split()


def generated_corpus(count: int) -> list[SourceDocument]:
    """Short, distinct, deterministic notes (one chunk each)."""
    rng = random.Random(5)
    return [
        SourceDocument(
            f"gen-{i:06d}",
            f"Note {i}: the {' '.join(rng.sample(WORDS, 6))} figure was {rng.randint(1, 9999)}.",
            title=f"Note {i}",
        )
        for i in range(count)
    ]


# ---------------------------------------------------------------------------- measuring


async def run_pipeline(
    pipeline: IngestionPipeline,
    collection: str,
    documents: list[SourceDocument],
    *,
    flush: bool = True,
) -> tuple[float, int]:
    started = time.perf_counter()
    outcomes = await pipeline.ingest(collection, documents, flush=flush)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if o.outcome == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} documents failed, e.g. {failed[0]}")
    return elapsed, sum(o.chunks for o in outcomes)


def corpus_chunks(
    documents: list[SourceDocument], embedder: Embedder, settings: IndexingSettings
) -> list[str]:
    """The chunk texts the pipeline embedded (same chunker and bounds; not timed)."""
    return [
        chunk.text
        for document in documents
        for chunk in chunk_text(
            document.text,
            kind=document.kind,
            count_tokens=embedder.count_tokens,
            max_tokens=settings.chunk_max_tokens,
        )
    ]


async def embed_only(embedder: Embedder, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        await embedder.embed_passages(texts[start : start + batch_size])
    return time.perf_counter() - started


@dataclass(frozen=True)
class ServerPids:
    milvus: int | None
    redis: int | None

    @classmethod
    def of(cls, servers_dir: Path) -> ServerPids:
        return cls(
            _pid(servers_dir / "run" / "bench-milvus.pid"),
            _pid(servers_dir / "run" / "bench-redis.pid"),
        )

    def cpu_s(self) -> float:
        return sum(_process_cpu_s(pid) for pid in (self.milvus, self.redis) if pid)


def _pid(pid_path: Path) -> int | None:
    try:
        return int(json.loads(pid_path.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _process_cpu_s(pid: int) -> float:
    """utime + stime of a process and its reaped children (/proc/PID/stat), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cpu_now(servers: ServerPids) -> float:
    return time.process_time() + servers.cpu_s()


async def wait_until_idle(servers: ServerPids, *, busy_share: float = 0.05) -> float:
    """Wait until the servers use under ``busy_share`` of a core (Milvus seals segments and builds
    indexes after a flush), so that work lands on neither the baseline nor the next run."""
    started = time.perf_counter()
    while time.perf_counter() - started < 120:
        before = servers.cpu_s()
        await asyncio.sleep(1.0)
        if servers.cpu_s() - before < busy_share:
            break
    return time.perf_counter() - started


@dataclass
class SliceTiming:
    pipeline_s: float = 0.0
    pipeline_cpu_s: float = 0.0
    embedder_s: float = 0.0
    embedder_cpu_s: float = 0.0
    settle_s: float = 0.0


async def measure_slice(
    documents: list[SourceDocument],
    collection: str,
    context: tuple[DataClients, IngestionPipeline, IndexingSettings, ServerPids],
    step: int,
    last: bool,
) -> tuple[SliceTiming, int, int]:
    """The pipeline on these documents, then the embedder alone on every ``step``-th of their
    chunks: adjacent in time, so both see the same load from whatever else runs here."""
    clients, pipeline, settings, servers = context
    timing = SliceTiming()
    await wait_until_idle(servers)
    cpu_before = cpu_now(servers)
    # like `docqa ingest`: one flush at the very end
    timing.pipeline_s, chunks = await run_pipeline(pipeline, collection, documents, flush=last)
    timing.settle_s = await wait_until_idle(servers)
    timing.pipeline_cpu_s = cpu_now(servers) - cpu_before
    texts = corpus_chunks(documents, clients.embedder, settings)
    if len(texts) != chunks:
        raise SystemExit(f"the pipeline wrote {chunks} chunks, the chunker gives {len(texts)}")
    tokens = [clients.embedder.count_tokens(t) for t in texts]
    scale = sum(tokens) / sum(tokens[::step])
    cpu_before = time.process_time()
    sample_s = await embed_only(clients.embedder, texts[::step], settings.embedder.batch_size)
    timing.embedder_cpu_s = (time.process_time() - cpu_before) * scale
    timing.embedder_s = sample_s * scale
    return timing, chunks, sum(tokens)


async def measure_corpus(
    name: str,
    documents: list[SourceDocument],
    context: tuple[DataClients, IngestionPipeline, IndexingSettings, ServerPids],
    baseline_fraction: float,
    slices: int,
) -> CorpusResult:
    step = max(1, round(1 / baseline_fraction))
    size = -(-len(documents) // slices)
    parts = [documents[i : i + size] for i in range(0, len(documents), size)]
    timings, chunks, tokens = [], 0, 0
    for number, part in enumerate(parts, start=1):
        timing, part_chunks, part_tokens = await measure_slice(
            part, f"bench_{name}", context, step, last=number == len(parts)
        )
        timings.append(timing)
        chunks, tokens = chunks + part_chunks, tokens + part_tokens
    return CorpusResult(
        corpus=name,
        documents=len(documents),
        chunks=chunks,
        tokens=tokens,
        pipeline_s=sum(t.pipeline_s for t in timings),
        baseline_sample_chunks=len(range(0, chunks, step)),
        baseline_sample_s=sum(t.embedder_s for t in timings) / step,
        embedder_only_s=sum(t.embedder_s for t in timings),
        pipeline_cpu_s=sum(t.pipeline_cpu_s for t in timings),
        embedder_only_cpu_s=sum(t.embedder_cpu_s for t in timings),
        milvus_settle_s=sum(t.settle_s for t in timings),
        slice_ratios=[round(t.embedder_s / t.pipeline_s, 3) for t in timings],
    )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_peak_rss_mb(pid: int | None) -> float | None:
    """VmHWM (peak resident set) of a server we started."""
    peak = proc_status_mb(pid, "VmHWM")
    return None if peak is None else round(peak, 1)


# ---------------------------------------------------------------------------- the run


async def run(args: argparse.Namespace, servers: DataServers, work_dir: Path) -> dict[str, Any]:
    pids = ServerPids.of(work_dir / "servers")
    corpora = convert_shared_sets(work_dir / "eval")
    if args.covid_papers is not None:
        corpora["en_covidqa_long"] = corpora["en_covidqa_long"][: args.covid_papers]
    corpora["generated"] = generated_corpus(args.generated)
    settings = IndexingSettings(
        milvus={"uri": servers.milvus_uri},
        redis={"url": servers.redis_url, "key_prefix": "bench"},
        log_json=False,
    )
    clients = build_data_clients(settings, can_create=True)
    pipeline = build_pipeline(clients, settings)
    try:
        await warm_up_models(clients.embedder)
        results = []
        context = (clients, pipeline, settings, pids)
        for name, documents in corpora.items():
            print(f"{name}: {len(documents)} documents ...", flush=True)
            results.append(
                await measure_corpus(name, documents, context, args.baseline_fraction, args.slices)
            )
        for result in results:
            result.reingest_s, _ = await run_pipeline(
                pipeline, f"bench_{result.corpus}", corpora[result.corpus]
            )
    finally:
        await clients.aclose()
    summary = summarize(results, settings)
    summary["milvus_peak_rss_mb"] = process_peak_rss_mb(pids.milvus)
    return summary


def summarize(results: list[CorpusResult], settings: IndexingSettings) -> dict[str, Any]:
    pipeline_s = sum(r.pipeline_s for r in results)
    embedder_s = sum(r.embedder_only_s for r in results)
    reingest_s = sum(r.reingest_s for r in results)
    pipeline_cpu_s = sum(r.pipeline_cpu_s for r in results)
    embedder_cpu_s = sum(r.embedder_only_cpu_s for r in results)
    documents, chunks = sum(r.documents for r in results), sum(r.chunks for r in results)
    slice_ratios = [x for r in results for x in r.slice_ratios]
    return {
        # the median over all parts: each compares the pipeline with the embedder right after
        # it, under the same load, so a burst of other work on the machine sways one part only
        "pipeline_vs_embedder_ratio": round(median(slice_ratios), 3),
        "pipeline_vs_embedder_ratio_total": round(embedder_s / pipeline_s, 3),
        "reingest_time_ratio": round(reingest_s / pipeline_s, 4),
        "docs_per_s": round(documents / pipeline_s, 2),
        "chunks_per_s": round(chunks / pipeline_s, 2),
        "embedder_only_chunks_per_s": round(chunks / embedder_s, 2),
        "embedder_only_docs_per_s": round(documents / embedder_s, 2),
        # CPU seconds do not depend on what else runs on the machine: the same comparison,
        # with Milvus' and Redis' work (including background work after the run) counted
        "pipeline_vs_embedder_cpu_ratio": round(embedder_cpu_s / pipeline_cpu_s, 3),
        "peak_rss_mb": round(rss_mb(), 1),
        "targets": {
            "pipeline_vs_embedder_ratio": TARGET_RATIO,
            "reingest_time_ratio": TARGET_REINGEST,
        },
        "totals": {
            "documents": documents,
            "chunks": chunks,
            "tokens": sum(r.tokens for r in results),
            "pipeline_s": round(pipeline_s, 1),
            "embedder_only_s": round(embedder_s, 1),
            "reingest_s": round(reingest_s, 1),
        },
        "embedder": {
            "backend": settings.embedder.backend,
            "model": settings.embedder.model,
            "batch_size": settings.embedder.batch_size,
            "chunk_max_tokens": settings.chunk_max_tokens,
        },
        "corpora": [
            {
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(r).items()},
                "pipeline_vs_embedder_ratio": round(r.ratio, 3),
                "median_slice_ratio": round(median(r.slice_ratios), 3),
                "pipeline_vs_embedder_cpu_ratio": round(r.cpu_ratio, 3),
                "reingest_time_ratio": round(r.reingest_s / r.pipeline_s, 4),
                "docs_per_s": round(r.docs_per_s, 2),
                "chunks_per_s": round(r.chunks_per_s, 2),
            }
            for r in results
        ],
    }


def report(summary: dict[str, Any]) -> None:
    rows = [
        [
            c["corpus"],
            c["documents"],
            c["chunks"],
            c["docs_per_s"],
            c["chunks_per_s"],
            round(c["chunks"] / c["embedder_only_s"], 2),
            c["pipeline_vs_embedder_ratio"],
            c["median_slice_ratio"],
            c["pipeline_vs_embedder_cpu_ratio"],
            c["reingest_time_ratio"],
        ]
        for c in summary["corpora"]
    ]
    totals = summary["totals"]
    rows.append(
        [
            "all",
            totals["documents"],
            totals["chunks"],
            summary["docs_per_s"],
            summary["chunks_per_s"],
            summary["embedder_only_chunks_per_s"],
            summary["pipeline_vs_embedder_ratio_total"],
            summary["pipeline_vs_embedder_ratio"],
            summary["pipeline_vs_embedder_cpu_ratio"],
            summary["reingest_time_ratio"],
        ]
    )
    header = [
        "corpus", "docs", "chunks", "docs/s", "chunks/s", "embedder-only chunks/s",
        "pipeline/embedder", "median part", "(cpu)", "re-ingest/first",
    ]  # fmt: skip
    print(table(header, rows, digits=3))
    print(
        f"\npipeline {summary['pipeline_vs_embedder_ratio']:.0%} of the embedder-only rate "
        f"(median of the parts; target ≥ {TARGET_RATIO:.0%}; all parts together "
        f"{summary['pipeline_vs_embedder_ratio_total']:.0%}, "
        f"by CPU time {summary['pipeline_vs_embedder_cpu_ratio']:.0%}); re-ingest "
        f"{summary['reingest_time_ratio']:.1%} of the first run (target < {TARGET_REINGEST:.0%}); "
        f"peak RSS {summary['peak_rss_mb']:.0f} MB "
        f"(Milvus server {summary.get('milvus_peak_rss_mb') or '-'} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", type=int, default=10_000, help="generated documents")
    parser.add_argument(
        "--covid-papers", type=int, default=None, help="only the first N papers (default: all 98)"
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=8,
        help="each corpus is ingested in this many parts, each followed by its baseline",
    )
    parser.add_argument(
        "--baseline-fraction",
        type=float,
        default=0.25,
        help="share of the chunks the embedder-only baseline embeds (every k-th)",
    )
    args = parser.parse_args()
    if not 0 < args.baseline_fraction <= 1:
        parser.error("--baseline-fraction must be in (0, 1]")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="docqa-bench-ingest-") as tmp:
        work_dir = Path(tmp)
        with data_servers(work_dir / "servers") as servers:
            summary = asyncio.run(run(args, servers, work_dir))
    summary["run_s"] = round(time.perf_counter() - started, 1)
    summary["parameters"] = vars(args)
    report(summary)
    print(f"wrote {write_results('ingest', summary)}")


if __name__ == "__main__":
    main()
