"""`docqa ingest` as ops run it: a real process against real Milvus and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Servers
from tests.fixtures.documents import ENGLISH_GUIDE, KOREAN_RULES


def run_ingest(servers: Servers, *args: str) -> tuple[int, dict[str, object], str]:
    env = {
        **os.environ,
        "DOCQA_MILVUS_URI": servers.milvus_uri,
        "DOCQA_REDIS_URL": servers.redis_url,
        "DOCQA_REDIS_KEY_PREFIX": "batch",
        "OPENBLAS_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return done.returncode, summary, done.stderr


def write_corpus(root: Path) -> None:
    (root / "rules").mkdir(parents=True)
    (root / "rules" / "library.txt").write_text(KOREAN_RULES, encoding="utf-8")
    (root / "guide.md").write_text(ENGLISH_GUIDE, encoding="utf-8")
    records = [
        {"doc_id": f"rec-{i}", "title": f"Record {i}", "text": f"Record {i} says {i * 7}."}
        for i in range(6)
    ]
    (root / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a real pdf")


def test_directory_ingest_skips_unchanged_on_rerun_and_reports_failures(
    data_servers: Servers, tmp_path: Path, collection: str
) -> None:
    write_corpus(tmp_path)
    code, first, stderr = run_ingest(data_servers, str(tmp_path), "--collection", collection)
    assert code == 1, stderr  # the broken PDF fails, and only it
    assert first["indexed"] == 8 and first["failed"] == 1, first
    assert [e["doc_id"] for e in first["errors"]] == ["broken.pdf"]  # type: ignore[index, union-attr]
    assert "docs/s" in stderr and "chunks/s" in stderr

    code, second, _ = run_ingest(data_servers, str(tmp_path), "--collection", collection)
    assert second["indexed"] == 0 and second["unchanged"] == 8 and second["failed"] == 1, second


def test_shards_cover_the_corpus_with_no_overlap(
    data_servers: Servers, tmp_path: Path, collection: str
) -> None:
    write_corpus(tmp_path)
    (tmp_path / "broken.pdf").unlink()
    summaries = [
        run_ingest(data_servers, str(tmp_path), "--collection", collection, "--shard", f"{i}/3")[1]
        for i in range(3)
    ]
    assert sum(int(s["indexed"]) for s in summaries) == 8  # type: ignore[call-overload]
    assert all(int(s["indexed"]) + int(s["skipped_other_shards"]) == 8 for s in summaries)  # type: ignore[call-overload]


def test_bad_arguments_fail_clearly(data_servers: Servers, tmp_path: Path) -> None:
    code, _, stderr = run_ingest(data_servers, str(tmp_path), "--collection", "bad-name!")
    assert code == 1 and "collection names" in stderr
    code, _, stderr = run_ingest(data_servers, str(tmp_path / "missing"), "--collection", "ok")
    assert code == 1 and "does not exist" in stderr
    code, _, stderr = run_ingest(
        data_servers, str(tmp_path), "--collection", "ok", "--shard", "3/3"
    )
    assert code == 1 and "--shard" in stderr
