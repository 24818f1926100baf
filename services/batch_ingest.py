"""``docqa ingest``: batch ingestion straight into Milvus, the thing ops run as a Kubernetes Job.

It runs the same pipeline as the indexing service, in-process, so a large corpus does not travel
through HTTP. Unchanged documents are skipped before embedding, so an interrupted run (Ctrl-C, a
killed pod) is resumed by running the same command again.

``--shard I/N``: every shard lists the corpus (cheap) and reads and parses only the files whose
path under the root hashes to I modulo N, so N pods of an Indexed Job cover the corpus with no
overlap and no gap, and each parses 1/N of it (parsing PDFs is the costly part of reading). When
PATH is one file (a JSONL, say), its records are shared out by document id instead: every shard
then reads that file. A file that cannot be read or parsed fails as one document, listed in the
summary; the shard goes on with its other files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from docqa_core.errors import DocqaError
from indexing import schema
from indexing.ingest_metrics import IngestionMetrics, Stage, timed
from indexing.loaders import ParseLimits, load_upload_isolated
from indexing.pipeline import DocumentOutcome, IngestionPipeline, SourceDocument
from services.common.clients import (
    build_data_clients,
    build_pipeline,
    parse_limits,
    warm_up_models,
)
from services.common.metrics import PrometheusIngestionMetrics
from services.common.settings import IndexingSettings

SUPPORTED_SUFFIXES = {
    ".txt",
    ".md",
    ".markdown",
    ".html",
    ".htm",
    ".pdf",
    ".docx",
    ".hwpx",
    ".hwp",  # read only when it is really HWPX; an HWP 5 file fails with how to convert it
    ".json",
    ".jsonl",
}


# documents handed to the pipeline at once: large enough that its stages stay overlapped
BATCH_DOCUMENTS = 512
BATCH_CHARS = 2_000_000


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index_text, count_text = text.split("/")
            shard = cls(int(index_text), int(count_text))
        except ValueError as exc:
            raise ValueError(f"--shard takes I/N, e.g. 0/4; got {text!r}") from exc
        if shard.count < 1 or not 0 <= shard.index < shard.count:
            raise ValueError(f"--shard I/N needs 0 <= I < N; got {text!r}")
        return shard

    def owns(self, key: str) -> bool:
        """``key``: a file's path under the root, or a document id when the corpus is one file.
        Deterministic across machines and runs (unlike Python's salted ``hash``)."""
        digest = hashlib.sha256(key.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


@dataclass
class Summary:
    """The result of one run (one shard): what ``--json`` prints."""

    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    files: int = 0  # files this shard read
    skipped_other_shards: int = 0  # files left to other shards (documents, when PATH is a file)
    chunks: int = 0
    bytes: int = 0  # UTF-8 bytes of the text of indexed documents
    # seconds per stage, summed; plan, embed and write overlap, so they add up to more than
    # the wall time, and the stage that stands out is the bottleneck
    stage_seconds: dict[str, float] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    def add(self, outcome: DocumentOutcome) -> None:
        if outcome.outcome == "indexed":
            self.indexed += 1
            self.chunks += outcome.chunks
        elif outcome.outcome == "unchanged":
            self.unchanged += 1
        else:
            self.failed += 1
            self.errors.append((outcome.doc_id, outcome.error or "failed"))


def discover(path: Path) -> list[Path]:
    """Files to ingest, in a stable order (so progress and shards are reproducible)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    return sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
    )


class SummaryMetrics:
    """Ingestion metrics into the summary (bytes, stage seconds) and on to ``forward``
    (Prometheus: a run's counters are in its process's registry, like the indexing service's)."""

    def __init__(self, summary: Summary, forward: IngestionMetrics) -> None:
        self._summary = summary
        self._forward = forward

    def count_document(
        self, outcome: str, *, chunks: int = 0, text_bytes: int = 0, failed_at: Stage | None = None
    ) -> None:
        self._summary.bytes += text_bytes
        self._forward.count_document(
            outcome, chunks=chunks, text_bytes=text_bytes, failed_at=failed_at
        )

    def observe_stage(self, stage: Stage, seconds: float) -> None:
        totals = self._summary.stage_seconds
        totals[stage] = totals.get(stage, 0.0) + seconds
        self._forward.observe_stage(stage, seconds)


def relative_name(path: Path, root: Path) -> str:
    """A file's id: its path under the root (so nested same-name files differ)."""
    return path.relative_to(root).as_posix() if path != root else path.name


def read_file(
    path: Path, root: Path, limits: ParseLimits, metrics: IngestionMetrics
) -> list[SourceDocument] | DocumentOutcome:
    """The documents of one file, or the failed outcome of a file that cannot be read or parsed
    (one failed document: nothing else fails with it). PDF, DOCX, HWPX and HTML are parsed in a
    child process under ``limits`` (blocking: run it in a thread)."""
    relative = relative_name(path, root)
    content_type = mimetypes.guess_type(path.name)[0] or ""
    try:
        with timed(metrics, "parse"):
            data = path.read_bytes()
            documents = load_upload_isolated(relative, content_type, data, limits)
    except (DocqaError, OSError, ValueError) as exc:  # ValueError: e.g. a UnicodeDecodeError
        message = exc.message if isinstance(exc, DocqaError) else f"{type(exc).__name__}: {exc}"
        return DocumentOutcome(relative, "failed", error=message)
    if len(documents) == 1 and path.suffix.lower() not in {".json", ".jsonl"}:
        # files are identified by their path under the root, so nested same-name files differ
        return [SourceDocument(**{**documents[0].__dict__, "doc_id": relative})]
    return documents


async def ingest_path(
    path: Path,
    *,
    collection: str,
    settings: IndexingSettings,
    shard: Shard = Shard(),
    console: Console | None = None,
) -> Summary:
    schema.validate_collection_name(collection)
    console = console or Console(stderr=True)
    files = await asyncio.to_thread(discover, path)
    one_file = not await asyncio.to_thread(path.is_dir)
    root = path.parent if one_file else path
    summary = Summary()
    # a directory is shared out by file; one file (a JSONL of many records) by document id
    mine = files if one_file else [f for f in files if shard.owns(relative_name(f, root))]
    summary.skipped_other_shards = len(files) - len(mine)
    stop = _install_interrupt_handler(summary, console)
    started = time.perf_counter()
    clients = build_data_clients(settings, can_create=True)
    metrics = SummaryMetrics(summary, PrometheusIngestionMetrics())
    pipeline = build_pipeline(clients, settings, metrics=metrics)
    try:
        await warm_up_models(clients.embedder)
        with _progress(console) as progress:
            bar = _Bar(progress, summary, started, len(mine))
            document_shard = shard if one_file else Shard()
            reading = _Reading(root, document_shard, parse_limits(settings.limits), metrics)
            await _ingest_files(mine, reading, collection, pipeline, summary, bar, stop)
        if summary.indexed:
            await clients.store.flush(collection)
    finally:
        summary.seconds = time.perf_counter() - started
        await clients.aclose()
    return summary


class _Bar:
    """Counts documents (their total grows as files are read) and shows docs/s and chunks/s."""

    def __init__(self, progress: Progress, summary: Summary, started: float, files: int) -> None:
        self._progress = progress
        self._summary = summary
        self._started = started
        self._files = files
        self._known = 0
        self._task = progress.add_task("reading", total=None, rate="")

    def read(self, file_number: int, documents: int) -> None:
        self._known += documents
        self._progress.update(self._task, description=f"file {file_number}/{self._files}")
        self.show()

    def show(self) -> None:
        summary = self._summary
        done = summary.indexed + summary.unchanged + summary.failed
        elapsed = max(time.perf_counter() - self._started, 1e-6)
        self._progress.update(
            self._task,
            completed=done,
            total=max(self._known, done),
            rate=f"{done / elapsed:.1f} docs/s {summary.chunks / elapsed:.1f} chunks/s",
        )


@dataclass(frozen=True)
class _Reading:
    """How files are read: their root (doc ids are paths under it), which of their documents
    are this shard's (all, unless the corpus is one file), parse limits, and the metrics."""

    root: Path
    document_shard: Shard
    limits: ParseLimits
    metrics: IngestionMetrics


async def _ingest_files(
    files: list[Path],
    reading: _Reading,
    collection: str,
    pipeline: IngestionPipeline,
    summary: Summary,
    bar: _Bar,
    stop: asyncio.Event,
) -> None:
    """Documents of many files go to the pipeline together (it batches embedding across
    documents); an interrupt takes effect after the batch in hand."""

    async def on_document(outcome: DocumentOutcome) -> None:
        summary.add(outcome)
        bar.show()

    batch: list[SourceDocument] = []
    for number, file in enumerate(files, start=1):
        if stop.is_set():
            return
        failed_before = summary.failed
        summary.files += 1
        mine = await asyncio.to_thread(_documents_of_shard, file, reading, summary)
        bar.read(number, len(mine) + summary.failed - failed_before)
        for document in mine:
            batch.append(document)
            if _batch_is_full(batch):
                await pipeline.ingest(collection, batch, on_document=on_document, flush=False)
                batch = []
                if stop.is_set():
                    return
    if batch:
        await pipeline.ingest(collection, batch, on_document=on_document, flush=False)


def _batch_is_full(batch: list[SourceDocument]) -> bool:
    return len(batch) >= BATCH_DOCUMENTS or sum(len(d.text) for d in batch) >= BATCH_CHARS


def _documents_of_shard(file: Path, reading: _Reading, summary: Summary) -> list[SourceDocument]:
    read = read_file(file, reading.root, reading.limits, reading.metrics)
    if isinstance(read, DocumentOutcome):  # the file failed: reported by the shard it falls to
        if reading.document_shard.owns(read.doc_id):
            reading.metrics.count_document("failed", failed_at="parse")
            summary.add(read)
        return []
    mine = []
    for document in read:
        if reading.document_shard.owns(document.doc_id):
            mine.append(document)
        else:
            summary.skipped_other_shards += 1
    return mine


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),  # a remaining-time guess swings with document sizes
        console=console,
        transient=False,
    )


def _install_interrupt_handler(summary: Summary, console: Console) -> asyncio.Event:
    """First Ctrl-C: finish the current batch and stop cleanly; the next run continues."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        summary.interrupted = True
        stop.set()
        console.print(
            "[yellow]stopping after the current batch; run the same command to continue[/]"
        )

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    return stop


def print_summary(summary: Summary, console: Console) -> None:
    console.print(
        f"{summary.files} files: indexed {summary.indexed}, unchanged {summary.unchanged}, "
        f"failed {summary.failed}; left to other shards {summary.skipped_other_shards}; "
        f"{summary.chunks} chunks in {summary.seconds:.1f}s"
        + (" (interrupted)" if summary.interrupted else "")
    )
    for doc_id, error in summary.errors[:50]:
        console.print(f"  [red]failed[/] {doc_id}: {error}")
    if len(summary.errors) > 50:
        console.print(f"  … and {len(summary.errors) - 50} more")


def summary_json(summary: Summary) -> str:
    return json.dumps(
        {
            "indexed": summary.indexed,
            "unchanged": summary.unchanged,
            "failed": summary.failed,
            "files": summary.files,
            "skipped_other_shards": summary.skipped_other_shards,
            "chunks": summary.chunks,
            "bytes": summary.bytes,
            "stage_seconds": {k: round(v, 3) for k, v in sorted(summary.stage_seconds.items())},
            "seconds": round(summary.seconds, 2),
            "interrupted": summary.interrupted,
            "errors": [{"doc_id": d, "error": e} for d, e in summary.errors],
        },
        ensure_ascii=False,
    )
