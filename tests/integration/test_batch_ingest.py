"""`docqa ingest` as ops run it: a real process against real Milvus and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import Servers
from tests.fixtures.documents import ENGLISH_GUIDE, KOREAN_RULES


def run_ingest(servers: Servers, *args: str) -> tuple[int, dict[str, Any], str]:
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
    assert code == 3, stderr  # the run finished; the broken PDF failed, and only it
    assert first["indexed"] == 8 and first["failed"] == 1 and first["files"] == 4, first
    assert [e["doc_id"] for e in first["errors"]] == ["broken.pdf"]
    assert "docs/s" in stderr and "chunks/s" in stderr
    # the job result carries the ingestion figures: text bytes written and time per stage
    assert first["bytes"] >= len((KOREAN_RULES + ENGLISH_GUIDE).encode()), first
    stages = first["stage_seconds"]
    assert set(stages) == {"parse", "plan", "embed", "write"}, stages
    assert all(seconds > 0 for seconds in stages.values()), stages

    code, second, _ = run_ingest(data_servers, str(tmp_path), "--collection", collection)
    assert second["indexed"] == 0 and second["unchanged"] == 8 and second["failed"] == 1, second
    assert second["bytes"] == 0 and code == 3


SHARDS = 3


def test_shards_share_out_the_files_and_a_bad_file_fails_only_itself(
    data_servers: Servers, tmp_path: Path, collection: str
) -> None:
    write_corpus(tmp_path)  # broken.pdf stays: it is one shard's failed document, nothing more
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    runs = [
        run_ingest(
            data_servers, str(tmp_path), "--collection", collection, "--shard", f"{i}/{SHARDS}"
        )
        for i in range(SHARDS)
    ]
    summaries = [summary for _, summary, _ in runs]
    # every file is read by exactly one shard, which parses nothing else
    assert sum(s["files"] for s in summaries) == len(files) == 4
    assert all(s["files"] + s["skipped_other_shards"] == 4 for s in summaries)
    assert sum(s["indexed"] for s in summaries) == 8
    # broken.pdf is reported by one shard; every shard (that one too) ran to its end
    reporting = [i for i, s in enumerate(summaries) if s["failed"]]
    assert len(reporting) == 1, summaries
    [owner] = reporting
    [error] = summaries[owner]["errors"]  # the JSON summary is the shard's job result
    assert error["doc_id"] == "broken.pdf" and "PDF" in error["error"], error
    assert [code for code, _, _ in runs] == [3 if i == owner else 0 for i in range(SHARDS)]
    assert summaries[owner]["indexed"] >= 1  # its other file (guide.md, by the hash) went in
    assert all(not s["interrupted"] for s in summaries)


def test_one_jsonl_file_is_shared_out_by_record(
    data_servers: Servers, tmp_path: Path, collection: str
) -> None:
    write_corpus(tmp_path)
    records = tmp_path / "records.jsonl"
    summaries = [
        run_ingest(data_servers, str(records), "--collection", collection, "--shard", f"{i}/2")[1]
        for i in range(2)
    ]
    assert sum(s["indexed"] for s in summaries) == 6
    assert all(s["indexed"] + s["skipped_other_shards"] == 6 for s in summaries)


def test_bad_arguments_fail_clearly(data_servers: Servers, tmp_path: Path) -> None:
    code, _, stderr = run_ingest(data_servers, str(tmp_path), "--collection", "bad-name!")
    assert code == 1 and "collection names" in stderr
    code, _, stderr = run_ingest(data_servers, str(tmp_path / "missing"), "--collection", "ok")
    assert code == 1 and "does not exist" in stderr
    code, _, stderr = run_ingest(
        data_servers, str(tmp_path), "--collection", "ok", "--shard", "3/3"
    )
    assert code == 1 and "--shard" in stderr
