"""Ingestion metrics as an operator scrapes them: the indexing service's ``/metrics`` after a real
job (real Milvus, Redis, embedder, a PDF parsed in a child process) that indexes one upload and
fails another counts exactly those documents, their chunks and bytes, the failure by stage, and
the time of every stage."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.files import make_pdf
from tests.integration.conftest import ADMIN_AUTH, wait_for_job

NOTICE = "Opening hours\nThe reading room opens at nine and closes at six. 열람실은 9시에 연다."

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_a_job_with_a_bad_upload_counts_documents_chunks_bytes_failures_and_stages(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    before = await scrape(indexing_client)
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files=[
            ("files", ("notice.txt", NOTICE.encode(), "text/plain")),
            ("files", ("guide.pdf", make_pdf(["Loans\nFive books at a time."]), "application/pdf")),
            ("files", ("broken.pdf", b"%PDF-1.4\nthis is not a real pdf", "application/pdf")),
        ],
        headers=ADMIN_AUTH,
    )
    assert response.status_code == 202, response.text
    job = await wait_for_job(indexing_client, response.json()["job_id"])
    after = await scrape(indexing_client)

    assert (job["state"], job["indexed"], job["failed"]) == ("partial", 2, 1), job
    documents = "docqa_ingested_documents_total"
    assert grown(before, after, documents, outcome="indexed") == 2
    assert grown(before, after, documents, outcome="failed") == 1
    assert grown(before, after, "docqa_ingest_failures_total", stage="parse") == 1
    assert grown(before, after, "docqa_ingested_chunks_total") == job["chunks"] >= 2
    # the text file is indexed as sent; the PDF's text is what the parser extracted
    assert grown(before, after, "docqa_ingested_bytes_total") > len(NOTICE.encode())
    stages = "docqa_ingest_stage_seconds_count"
    assert grown(before, after, stages, stage="parse") == 2  # the two PDFs, each in a child
    for stage in ("plan", "embed", "write"):
        assert grown(before, after, stages, stage=stage) >= 1, stage
        assert grown(before, after, "docqa_ingest_stage_seconds_sum", stage=stage) > 0, stage

    # the same documents again: unchanged, so nothing is written or counted as written
    again = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files=[("files", ("notice.txt", NOTICE.encode(), "text/plain"))],
        headers=ADMIN_AUTH,
    )
    assert (await wait_for_job(indexing_client, again.json()["job_id"]))["unchanged"] == 1
    last = await scrape(indexing_client)
    assert grown(after, last, documents, outcome="unchanged") == 1
    assert grown(after, last, "docqa_ingested_chunks_total") == 0
    assert grown(after, last, "docqa_ingested_bytes_total") == 0
