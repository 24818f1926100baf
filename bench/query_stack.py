"""The stack ``bench.query`` measures (the one ``docqa up`` runs) and its corpus: en_xquad
paragraphs plus en_covidqa papers cut into sentences, ingested through the indexing API until the
collection holds MIN_CHUNKS chunks."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.retrieval_eval import convert_shared_sets, read_jsonl

COLLECTION = "bench_query"
MIN_CHUNKS = 10_000
INGEST_BATCH = 1000


# --------------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class Stack:
    query_url: str
    indexing_url: str
    query_key: str
    admin_key: str
    milvus_uri: str
    vllm_url: str

    @property
    def query_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.query_key}"}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


def running_stack(start: bool) -> Stack:
    """The stack ``docqa up`` runs (``.docqa/env``); started first when ``start`` is set."""
    from deploy import stack

    paths = stack.default_paths()
    env = stack.read_env_file(paths.env_file)
    if start or not env or not _ready(env.get("DOCQA_QUERY_URL", "")):
        if not start:
            raise SystemExit("the local stack is not running: `make up` (or pass --up)")
        env = stack.up(paths)
    ports = stack.StackPorts.from_env()
    return Stack(
        query_url=env["DOCQA_QUERY_URL"],
        indexing_url=env["DOCQA_INDEXING_URL"],
        query_key=env["DOCQA_QUERY_KEY"],
        admin_key=env["DOCQA_ADMIN_KEY"],
        milvus_uri=f"http://127.0.0.1:{ports.milvus}",
        vllm_url=f"http://127.0.0.1:{ports.vllm}/v1",
    )


def _ready(url: str) -> bool:
    try:
        return bool(url) and httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- corpus


def sentence_passages(doc: dict[str, Any], min_chars: int = 60) -> list[dict[str, Any]]:
    """A paper cut into sentences (short ones joined to the next): many small chunks."""
    sentences = re.split(r"(?<=[.!?])\s+", doc["text"])
    passages, current = [], ""
    for sentence in (s.strip() for s in sentences):
        current = f"{current} {sentence}".strip()
        if len(current) >= min_chars:
            passages.append(current)
            current = ""
    if current:
        passages.append(current)
    return [
        {"doc_id": f"{doc['doc_id']}-s{n:04d}", "title": doc.get("title", ""), "text": text}
        for n, text in enumerate(passages)
    ]


def corpus(sets_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(documents, questions): en_xquad paragraphs + en_covidqa sentences, and both sets'
    questions."""
    convert_shared_sets(sets_dir)
    xquad = read_jsonl(sets_dir / "en_xquad" / "documents.jsonl")
    covid = read_jsonl(sets_dir / "en_covidqa_long" / "documents.jsonl")
    documents = [{k: d[k] for k in ("doc_id", "title", "text")} for d in xquad]
    documents += [p for d in covid for p in sentence_passages(d)]
    questions = [
        q
        for name in ("en_xquad", "en_covidqa_long")
        for q in read_jsonl(sets_dir / name / "questions.jsonl")
    ]
    return documents, questions


def stored_chunks(stack: Stack) -> int:
    from indexing import schema
    from services.common.clients import build_milvus_sync
    from services.common.settings import MilvusSettings

    client = build_milvus_sync(MilvusSettings(uri=stack.milvus_uri, timeout_s=30))
    try:
        name = schema.milvus_collection_name(COLLECTION)
        if not client.has_collection(name):
            return 0
        rows = client.query(name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])
    finally:
        client.close()


def ensure_corpus(stack: Stack, documents: Sequence[dict[str, Any]]) -> int:
    """Ingest through the indexing API (unchanged documents are skipped); returns the chunks."""
    have = stored_chunks(stack)
    if have >= MIN_CHUNKS:
        return have
    print(f"ingesting {len(documents)} documents into '{COLLECTION}' (has {have} chunks)")
    started = time.perf_counter()
    with httpx.Client(base_url=stack.indexing_url, headers=stack.admin_headers, timeout=120) as c:
        for start in range(0, len(documents), INGEST_BATCH):
            batch = list(documents[start : start + INGEST_BATCH])
            response = c.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": batch})
            response.raise_for_status()
            job = _wait_for_job(c, response.json()["job_id"])
            done = start + len(batch)
            print(f"  {done}/{len(documents)} documents ({job.get('state')}), "
                  f"{done / (time.perf_counter() - started):.1f} docs/s", flush=True)  # fmt: skip
    return stored_chunks(stack)


def _wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 7200) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job.get("state") in {"succeeded", "failed", "partial"}:
            if job["state"] != "succeeded":
                raise SystemExit(
                    f"ingestion job {job_id} ended {job['state']}: {job.get('errors')}"
                )
            return job
        time.sleep(1.0)
    raise SystemExit(f"ingestion job {job_id} did not finish")
