"""The sample documents ``docqa up`` ingests, and the first question it asks of them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from deploy.stack import Log, StackPaths

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SAMPLE_COLLECTION = "samples"
SAMPLE_QUESTION = "국내 출장의 일비는 하루에 얼마인가요?"


def sample_files() -> list[Path]:
    return sorted(
        p for p in SAMPLES_DIR.iterdir() if p.suffix in {".txt", ".md"} and p.name != "README.md"
    )


def ingest_samples(
    env: dict[str, str], log: Log = print, *, timeout_s: float = 600.0
) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {env['DOCQA_ADMIN_KEY']}"}
    files = [("files", (p.name, p.read_bytes(), "text/plain")) for p in sample_files()]
    url = f"{env['DOCQA_INDEXING_URL']}/v1/collections/{SAMPLE_COLLECTION}/documents"
    response = httpx.post(url, files=files, headers=headers, timeout=60)
    response.raise_for_status()
    job_id = response.json()["job_id"]
    log(f"ingesting {len(files)} sample documents into '{SAMPLE_COLLECTION}' (job {job_id})")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, object] = httpx.get(
            f"{env['DOCQA_INDEXING_URL']}/v1/jobs/{job_id}", headers=headers, timeout=10
        ).json()
        if job.get("state") in {"succeeded", "failed", "partial"}:
            return job
        time.sleep(0.5)
    raise RuntimeError(f"sample ingestion job {job_id} did not finish in {timeout_s:.0f}s")


def ask(env: dict[str, str], question: str = SAMPLE_QUESTION) -> dict[str, object]:
    response = httpx.post(
        f"{env['DOCQA_QUERY_URL']}/v1/query",
        json={"collection": SAMPLE_COLLECTION, "question": question},
        headers={"Authorization": f"Bearer {env['DOCQA_QUERY_KEY']}"},
        timeout=300,
    )
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


def curl_example(paths: StackPaths, question: str = SAMPLE_QUESTION) -> str:
    body = json.dumps({"collection": SAMPLE_COLLECTION, "question": question}, ensure_ascii=False)
    return (
        f'source {paths.env_file} && curl -s "$DOCQA_QUERY_URL/v1/query" '
        f"-H \"Authorization: Bearer $DOCQA_QUERY_KEY\" -H 'Content-Type: application/json' "
        f"-d '{body}'"
    )
