"""The embedded Milvus builds indexes with the parameters ``indexing.schema`` states.

pymilvus sends them as flat key-value pairs, which milvus-lite on its own ignores (it then scores
BM25 with k1 = 1.5); ``deploy.milvus_lite_server`` reads them. The score of a three-row collection
is checked against BM25 written out here with ``schema.BM25_K1`` and ``schema.BM25_B``.
"""

from __future__ import annotations

import uuid
from collections import Counter

from indexing import schema
from services.common.clients import build_milvus_sync
from services.common.settings import MilvusSettings
from tests.bm25_reference import textbook_bm25
from tests.conftest import Servers

ROWS = ("grind grind grind burr", "grind water kettle scale filter milk", "burr burr water")
QUERY = "grind burr"


def test_bm25_is_scored_with_the_schema_parameters(data_servers: Servers) -> None:
    client = build_milvus_sync(MilvusSettings(uri=data_servers.milvus_uri))
    name = f"kb_params_{uuid.uuid4().hex[:8]}"
    try:
        client.create_collection(
            name, schema=schema.build_schema(4), index_params=schema.build_index_params()
        )
        rows = [
            {
                schema.CHUNK_ID: str(i), schema.DOC_ID: "d", schema.CONTENT_HASH: "h",
                schema.CHUNK_INDEX: i, schema.CHUNK_COUNT: len(ROWS), schema.TEXT: text,
                schema.ANALYZED_TEXT: text, schema.DENSE: [0.1, 0.2, 0.3, 0.4],
                schema.METADATA: {},
            }
            for i, text in enumerate(ROWS)
        ]  # fmt: skip
        client.insert(name, rows)
        client.flush(name)
        hits = client.search(
            name, [QUERY], anns_field=schema.SPARSE, search_params={"metric_type": "BM25"},
            limit=3, output_fields=[schema.CHUNK_ID],
        )[0]  # fmt: skip
        scores = {int(hit["entity"][schema.CHUNK_ID]): abs(hit["distance"]) for hit in hits}
        corpus = [Counter(text.split()) for text in ROWS]
        expected = textbook_bm25(corpus, Counter(QUERY.split()), k1=schema.BM25_K1, b=schema.BM25_B)
        assert [round(scores.get(i, 0.0), 4) for i in range(3)] == [round(s, 4) for s in expected]
    finally:
        client.drop_collection(name)
        client.close()
