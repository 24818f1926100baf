"""Sets into collections through the indexing API, for :mod:`bench.answer_eval`."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

INGEST_BATCH = 64
JOB_DONE = frozenset({"succeeded", "partial", "failed", "done"})


def ingest(client: httpx.Client, collection: str, documents: Sequence[dict[str, Any]]) -> int:
    """``documents`` into ``collection`` through the indexing API; returns the chunks made."""
    chunks = 0
    for start in range(0, len(documents), INGEST_BATCH):
        batch = [
            {"doc_id": d["doc_id"], "title": d.get("title") or "", "text": d["text"]}
            for d in documents[start : start + INGEST_BATCH]
        ]
        response = client.post(f"/v1/collections/{collection}/documents", json={"documents": batch})
        _raise_for_status(response)
        job = wait_for_job(client, response.json()["job_id"])
        if job.get("state") == "failed":
            raise SystemExit(f"ingestion into {collection} failed: {job.get('errors')}")
        if job.get("state") == "partial":
            print(f"  warning: {collection}: some documents failed: {job.get('errors')}")
        chunks += int(job.get("chunks") or 0)
        done = start + len(batch)
        print(f"  {collection}: {done}/{len(documents)} documents", flush=True)
    return chunks


def bump_index_version(client: httpx.Client, collection: str) -> None:
    """Make every answer cached for ``collection`` unused (a kept collection was asked before,
    maybe by other server code): add a marker document and delete it again. Each change bumps
    the collection's index version; its contents end as they were."""
    marker = {"doc_id": f"answer-eval-marker-{uuid.uuid4().hex}", "title": "", "text": "marker"}
    response = client.post(f"/v1/collections/{collection}/documents", json={"documents": [marker]})
    _raise_for_status(response)
    wait_for_job(client, response.json()["job_id"])
    _raise_for_status(client.delete(f"/v1/collections/{collection}/documents/{marker['doc_id']}"))


def delete_documents(client: httpx.Client, collection: str, doc_ids: Sequence[str]) -> int:
    """Remove ``doc_ids`` from ``collection`` where they are (a missing collection or document
    is not an error); returns how many were removed."""
    removed = 0
    for doc_id in doc_ids:
        response = client.delete(f"/v1/collections/{collection}/documents/{doc_id}")
        if response.status_code == 404:
            continue
        _raise_for_status(response)
        removed += 1
    return removed


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 7200) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}")
        _raise_for_status(response)
        job: dict[str, Any] = response.json()
        if job.get("state") in JOB_DONE:
            return job
        time.sleep(1.0)
    raise SystemExit(f"ingestion job {job_id} did not finish in {timeout_s:.0f}s")


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise SystemExit(
            f"{response.request.method} {response.request.url}: {response.status_code} "
            f"{response.text[:500]}"
        )


def collection_name(set_name: str, documents: Sequence[dict[str, Any]], suffix: str = "") -> str:
    """Named for the set's contents: a run with ``--keep-collections`` leaves collections that
    the next run finds and re-ingests for free (unchanged documents are skipped)."""
    base = re.sub(r"[^A-Za-z0-9]", "_", set_name)[:40]
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode())
    return f"ans_{base}_{digest.hexdigest()[:8]}{suffix}"
