"""``docqa ingest``: batch ingestion straight into Milvus, the thing ops run as a Kubernetes Job.

It runs the same pipeline as the indexing service, in-process, so a large corpus does not travel
through HTTP. Unchanged documents are skipped before embedding, so an interrupted run (Ctrl-C, a
killed pod) is resumed by running the same command again. ``--shard I/N`` keeps the documents
whose id hashes to I modulo N: N pods of an Indexed Job cover the corpus with no overlap and no gap.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from docqa_core.errors import DocqaError
from indexing import schema
from indexing.loaders import ParseLimits, load_upload_isolated
from indexing.pipeline import DocumentOutcome, IngestionPipeline, SourceDocument
from services.common.clients import (
    build_data_clients,
    build_pipeline,
    parse_limits,
    warm_up_models,
)
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

    def owns(self, doc_id: str) -> bool:
        """Deterministic across machines and runs (unlike Python's salted ``hash``)."""
        digest = hashlib.sha256(doc_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


@dataclass
class Summary:
    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped_other_shards: int = 0
    chunks: int = 0
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


def documents_in(
    path: Path, root: Path, summary: Summary, limits: ParseLimits | None = None
) -> Iterator[SourceDocument]:
    """Documents of one file; a file that cannot be read counts as one failed document. PDF,
    DOCX, HWPX and HTML are parsed in a child process under ``limits`` (blocking: run it in a
    thread)."""
    relative = path.relative_to(root).as_posix() if path != root else path.name
    content_type = mimetypes.guess_type(path.name)[0] or ""
    try:
        data = path.read_bytes()
        documents = load_upload_isolated(relative, content_type, data, limits or ParseLimits())
    except (DocqaError, OSError) as exc:
        message = exc.message if isinstance(exc, DocqaError) else str(exc)
        summary.add(DocumentOutcome(relative, "failed", error=message))
        return
    for document in documents:
        single = len(documents) == 1 and path.suffix.lower() not in {".json", ".jsonl"}
        # files are identified by their path under the root, so nested same-name files differ
        yield SourceDocument(**{**document.__dict__, "doc_id": relative}) if single else document


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
    root = path if await asyncio.to_thread(path.is_dir) else path.parent
    summary = Summary()
    stop = _install_interrupt_handler(summary, console)
    started = time.perf_counter()
    clients = build_data_clients(settings, can_create=True)
    pipeline = build_pipeline(clients, settings)
    try:
        await warm_up_models(clients.embedder)
        with _progress(console) as progress:
            bar = _Bar(progress, summary, started, len(files))
            reading = _Reading(root, shard, parse_limits(settings.limits))
            await _ingest_files(files, reading, collection, pipeline, summary, bar, stop)
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
    """How files are read: their root (doc ids are paths under it), the shard, parse limits."""

    root: Path
    shard: Shard
    limits: ParseLimits


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
    mine = []
    for document in documents_in(file, reading.root, summary, reading.limits):
        if reading.shard.owns(document.doc_id):
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
        f"indexed {summary.indexed}, unchanged {summary.unchanged}, failed {summary.failed}, "
        f"other shards {summary.skipped_other_shards}; "
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
            "skipped_other_shards": summary.skipped_other_shards,
            "chunks": summary.chunks,
            "seconds": round(summary.seconds, 2),
            "interrupted": summary.interrupted,
            "errors": [{"doc_id": d, "error": e} for d, e in summary.errors],
        },
        ensure_ascii=False,
    )
