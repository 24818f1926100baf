"""GET /v1/collections/{c}/documents: every document once, page by page, on real Milvus."""

from __future__ import annotations

import httpx

from tests.integration.conftest import ADMIN_AUTH, ingest


def record(i: int) -> dict[str, object]:
    return {
        "doc_id": f"notes/{i:02d}.txt",  # a slash: ids of files in sub-directories have them
        "title": f"Note {i}",
        "source": f"s3://bucket/notes/{i:02d}.txt",
        "text": f"Note {i} says that the number {i} is followed by {i + 1}.",
    }


async def test_pages_cover_every_document_once(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    job = await ingest(indexing_client, collection, [record(i) for i in range(7)])
    assert job["state"] == "succeeded", job
    listed: list[dict[str, object]] = []
    cursor = ""
    for _ in range(10):
        response = await indexing_client.get(
            f"/v1/collections/{collection}/documents",
            params={"limit": 3, "cursor": cursor},
            headers=ADMIN_AUTH,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["collection"] == collection and len(page["documents"]) <= 3
        listed.extend(page["documents"])
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert sorted(str(d["doc_id"]) for d in listed) == [f"notes/{i:02d}.txt" for i in range(7)]
    first = next(d for d in listed if d["doc_id"] == "notes/03.txt")
    assert (first["title"], first["source"], first["chunk_count"]) == (
        "Note 3",
        "s3://bucket/notes/03.txt",
        1,
    )
    one = await indexing_client.get(
        f"/v1/collections/{collection}/documents/notes/03.txt", headers=ADMIN_AUTH
    )
    assert one.status_code == 200, one.text
    assert one.json()["content_hash"] == first["content_hash"]


async def test_listing_rejects_bad_paging_and_unknown_collections(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    await ingest(indexing_client, collection, [record(1)])
    url = f"/v1/collections/{collection}/documents"
    for params in ({"limit": 0}, {"limit": 1001}, {"cursor": "not-a-cursor"}):
        response = await indexing_client.get(url, params=params, headers=ADMIN_AUTH)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
    missing = await indexing_client.get(
        "/v1/collections/no_such_collection/documents", headers=ADMIN_AUTH
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "collection_not_found"
    bad_name = await indexing_client.get("/v1/collections/bad-name/documents", headers=ADMIN_AUTH)
    assert bad_name.status_code == 422
    anonymous = await indexing_client.get(url)
    assert anonymous.status_code == 401
