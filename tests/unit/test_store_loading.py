"""A collection that Milvus is still loading (right after a restart) is loaded and searched
again; if it is still loading then, the search is a 503 with Retry-After, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from pymilvus.exceptions import MilvusException

from docqa_core.errors import DependencyUnavailable, retry_after_header
from indexing.store import ChunkStore

LOADING = "Collection 'kb_t' is in state 'loading'; call load() before search/get/query"


class LoadingMilvus:
    """Answers ``search`` with the loading error ``loading_searches`` times, then with a hit."""

    def __init__(self, loading_searches: int) -> None:
        self.loading_searches = loading_searches
        self.loads = 0

    async def has_collection(self, name: str, **_: Any) -> bool:
        return True

    async def load_collection(self, name: str, **_: Any) -> None:
        self.loads += 1

    async def search(self, name: str, **_: Any) -> list[list[dict[str, Any]]]:
        if self.loading_searches:
            self.loading_searches -= 1
            raise MilvusException(code=101, message=LOADING)
        return [[{"entity": {"chunk_id": "c1"}, "distance": 0.9}]]


async def test_a_collection_still_loading_is_loaded_and_searched_again() -> None:
    milvus = LoadingMilvus(loading_searches=1)
    store = ChunkStore(milvus, dim=4)  # type: ignore[arg-type]
    hits = await store.search_dense("kb", [0.1, 0.2, 0.3, 0.4], limit=5)
    assert [h.chunk_id for h in hits] == ["c1"]
    assert milvus.loads == 2  # once on first use, once more after the loading error


async def test_still_loading_after_the_retry_is_a_503_with_retry_after() -> None:
    store = ChunkStore(LoadingMilvus(loading_searches=2), dim=4)  # type: ignore[arg-type]
    with pytest.raises(DependencyUnavailable) as refused:
        await store.search_dense("kb", [0.1, 0.2, 0.3, 0.4], limit=5)
    assert refused.value.http_status == 503
    assert refused.value.dependency == "milvus"
    assert retry_after_header(refused.value) == {"Retry-After": "2"}
