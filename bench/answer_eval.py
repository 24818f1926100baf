"""Answer quality of the running service, per answer mode: EM / F1 / containment, citation
accuracy, grounding, refusals on answerable questions and hallucinations on unanswerable ones.

    python -m bench.answer_eval [--set DIR ...] [--limit N | --quick] [--modes LIST] [--up]
    docqa bench answers [the same options]

Sets are directories in the ``../shared/eval`` format (``documents.jsonl`` + ``questions.jsonl``
with ``answers``); by default the shared ``en_xquad`` and ``en_covidqa_long`` (converted under
``.docqa/eval/sets`` as ``bench.retrieval_eval`` does) and the project's Korean set
``bench/data/ko_answers``. Each set is ingested through the indexing API into a fresh collection,
and its unanswerable split (:mod:`bench.answer_sets`) into a second one; both are deleted at the
end (``--keep-collections`` keeps them). Every question is then asked through ``POST /v1/query``
once per mode (``default`` sends no ``answer_mode``, so the server's default applies; a mode the
server rejects with 422 is reported as unsupported), a few at a time.

The stack is the one ``make up`` runs: URLs and keys come from ``.docqa/env`` unless given.
``--llm-endpoint`` / ``--llm-model`` are recorded with the results; the query service is what
uses an LLM, so they take effect only where the service is started: ``--up`` exports them as
``DOCQA_LLM_ENDPOINTS`` / ``DOCQA_LLM_MODEL`` to the ``docqa up`` it runs (to point a stack you
start yourself at them: ``DOCQA_LLM_ENDPOINTS=URL DOCQA_LLM_MODEL=NAME make up``).

Writes ``bench/results/answer_eval.json`` (``{"default_mode", "sets": {set: {mode: metrics}},
"config"}``), a plot beside it when matplotlib is installed, and every answer with its scores
under ``.docqa/eval/answers/<time>/`` for inspection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._common import RESULTS_DIR, docqa_home, write_results
from bench.answer_ingest import bump_index_version, collection_name, delete_documents, ingest
from bench.answer_report import default_mode, plot, print_table, summarize_rows_dir
from bench.answer_sets import AnswerSet, Ask, default_set_dirs, load_answer_set, score_row
from bench.answer_sets import summarize as summarize_rows

MODES = ("generative", "extractive", "auto")
KNOWN_MODES = (*MODES, "default")
QUICK_LIMIT = 50
QUERY_TIMEOUT_S = 600.0
BUSY_RETRIES = 5


@dataclass(frozen=True)
class Endpoints:
    query_url: str
    indexing_url: str
    query_key: str
    admin_key: str


class ModeUnsupported(Exception):
    """The server rejected ``answer_mode`` (422)."""


# --------------------------------------------------------------------------- the stack


def resolve_endpoints(args: argparse.Namespace) -> Endpoints:
    """URLs and keys: the options, else ``.docqa/env``; ``--up`` starts the stack when the
    APIs do not answer."""
    from deploy import stack

    paths = stack.default_paths()
    endpoints = _endpoints(args, stack.read_env_file(paths.env_file))
    if _ready(endpoints.query_url) and _ready(endpoints.indexing_url):
        return endpoints
    if not args.up:
        raise SystemExit(
            f"the APIs do not answer at {endpoints.query_url or '?'} / "
            f"{endpoints.indexing_url or '?'}: `make up` first, or pass --up"
        )
    if args.llm_endpoint:
        os.environ["DOCQA_LLM_ENDPOINTS"] = args.llm_endpoint
    if args.llm_model:
        os.environ["DOCQA_LLM_MODEL"] = args.llm_model
    return _endpoints(args, stack.up(paths))


def _endpoints(args: argparse.Namespace, env: dict[str, str]) -> Endpoints:
    return Endpoints(
        query_url=(args.query_url or env.get("DOCQA_QUERY_URL", "")).rstrip("/"),
        indexing_url=(args.indexing_url or env.get("DOCQA_INDEXING_URL", "")).rstrip("/"),
        query_key=args.query_key or env.get("DOCQA_QUERY_KEY", ""),
        admin_key=args.admin_key or env.get("DOCQA_ADMIN_KEY", ""),
    )


def _ready(url: str) -> bool:
    try:
        return bool(url) and httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --------------------------------------------------------------------------- ingestion


# --------------------------------------------------------------------------- asking


async def ask_one(
    client: httpx.AsyncClient, ask: Ask, mode: str, collection: str
) -> dict[str, Any]:
    """One question; the row to record (``error`` set when the server failed)."""
    body: dict[str, Any] = {"collection": collection, "question": ask.question}
    if mode != "default":
        body["answer_mode"] = mode
    for attempt in range(BUSY_RETRIES + 1):
        started = time.perf_counter()
        try:
            response = await client.post("/v1/query", json=body)
        except httpx.HTTPError as exc:
            return _row(ask, mode, {}, 0.0, error=f"{type(exc).__name__}: {exc}")
        latency = (time.perf_counter() - started) * 1000
        if response.status_code == 429 and attempt < BUSY_RETRIES:
            await asyncio.sleep(float(response.headers.get("Retry-After") or 2))
            continue
        if response.status_code == 422 and "answer_mode" in body and "answer_mode" in response.text:
            raise ModeUnsupported(response.text[:300])
        if response.status_code >= 400:
            return _row(
                ask, mode, {}, latency, error=f"{response.status_code} {response.text[:300]}"
            )
        return _row(ask, mode, response.json(), latency)
    raise AssertionError("unreachable")


def _row(
    ask: Ask, mode: str, response: dict[str, Any], latency_ms: float, error: str = ""
) -> dict[str, Any]:
    row: dict[str, Any] = {**asdict(ask), "mode": mode, "latency_ms": round(latency_ms, 1)}
    if error:
        return {**row, "error": error}
    return {
        **row,
        "answer": response.get("answer"),
        "not_found": response.get("not_found"),
        "answer_mode": response.get("answer_mode"),
        "fallback_reason": response.get("fallback_reason"),
        "cached": response.get("cached"),
        "faq": response.get("faq") is not None,
        "server_timings_ms": response.get("timings_ms"),
        # the sources as answered from: bench.gate_calibration re-scores them offline
        "sources": [
            {
                "n": c.get("n"),
                "doc_id": c.get("doc_id"),
                "score": c.get("score"),
                "text": c.get("text"),
                "context": f"{c.get('title') or ''}\n{c.get('section') or ''}",
            }
            for c in response.get("citations") or []
        ],
        **score_row(ask, response),
    }


async def ask_all(
    endpoints: Endpoints,
    asks: Sequence[Ask],
    mode: str,
    collection: str,
    concurrency: int,
) -> list[dict[str, Any]]:
    """Every question of ``asks`` in one mode (the first alone: it tells whether the server
    knows the mode)."""
    limits = httpx.Limits(max_connections=max(1, concurrency))
    async with httpx.AsyncClient(
        base_url=endpoints.query_url,
        headers=_headers(endpoints.query_key),
        timeout=QUERY_TIMEOUT_S,
        limits=limits,
    ) as client:
        gate = asyncio.Semaphore(max(1, concurrency))
        done: list[dict[str, Any]] = []

        async def one(ask: Ask) -> dict[str, Any]:
            async with gate:
                row = await ask_one(client, ask, mode, collection)
            done.append(row)
            if len(done) % 10 == 0 or len(done) == len(asks):
                print(f"    {mode}: {len(done)}/{len(asks)} answered", flush=True)
            return row

        if not asks:
            return []
        first = await one(asks[0])
        if mode != "default" and str(first.get("error", "")).startswith("422"):
            raise ModeUnsupported(first["error"])
        return [first, *await asyncio.gather(*(one(a) for a in asks[1:]))]


# --------------------------------------------------------------------------- one set


def run_set(
    endpoints: Endpoints, answer_set: AnswerSet, args: argparse.Namespace, rows_dir: Path
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Ingest, ask in every mode, clean up: (metrics per mode, the set's facts, the modes'
    answer_mode values the server reported).

    One collection serves both halves, so no document is embedded twice (the long-paper set
    took ~15 minutes per copy): it first holds the split (the held-out questions' gold
    documents left out) for the held-out questions, then the held-out documents are added and
    every other question is asked against the whole set."""
    started = time.monotonic()
    name = collection_name(answer_set.name, answer_set.documents)
    split_ids = {d["doc_id"] for d in answer_set.split_documents}
    held_docs = [d for d in answer_set.documents if d["doc_id"] not in split_ids]
    facts: dict[str, Any] = {
        "documents": len(answer_set.documents),
        "split_documents": len(answer_set.split_documents),
        "asked": dict(Counter(a.kind for a in answer_set.asks)),
        "held_out_qids": answer_set.held_out,
        "skipped_questions": answer_set.skipped,
        "collections": [name],
    }
    split_asks = [a for a in answer_set.asks if a.split]
    full_asks = [a for a in answer_set.asks if not a.split]
    rows: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    echoed_default = ""
    with httpx.Client(
        base_url=endpoints.indexing_url, headers=_headers(endpoints.admin_key), timeout=300
    ) as indexing:
        try:
            if split_asks:
                # a kept collection holds the whole set from its last run
                delete_documents(indexing, name, [d["doc_id"] for d in held_docs])
                facts["split_chunks"] = ingest(indexing, name, answer_set.split_documents)
                bump_index_version(indexing, name)
                _ask_modes(endpoints, answer_set.name, split_asks, name, args, rows)
            facts["chunks"] = facts.get("split_chunks", 0) + ingest(
                indexing, name, held_docs if split_asks else answer_set.documents
            )
            bump_index_version(indexing, name)
            _ask_modes(endpoints, answer_set.name, full_asks, name, args, rows)
            if "default" not in args.modes and full_asks:
                echoed_default = _server_default_mode(endpoints, full_asks[0], name)
        finally:
            if not args.keep_collections:
                _delete_collections(indexing, facts["collections"])
    facts["wall_s"] = round(time.monotonic() - started, 1)  # ingestion + every mode's questions
    by_mode: dict[str, Any] = {}
    echoed: list[str] = [f"default:{echoed_default}"] if echoed_default else []
    for mode, mode_rows in rows.items():
        if mode_rows and mode_rows[0].get("unsupported"):
            by_mode[mode] = mode_rows[0]["unsupported"]
            continue
        by_mode[mode], modes_seen = _summarize_mode(answer_set.name, mode, mode_rows, rows_dir)
        echoed += [f"{mode}:{seen}" for seen in modes_seen]
    return by_mode, facts, echoed


def _ask_modes(
    endpoints: Endpoints,
    set_name: str,
    asks: Sequence[Ask],
    collection: str,
    args: argparse.Namespace,
    rows: dict[str, list[dict[str, Any]]],
) -> None:
    """``asks`` in every mode still supported, appended to ``rows[mode]``; a mode the server
    rejects is recorded as ``{"unsupported": metrics}`` and not asked again."""
    for mode in args.modes:
        if rows[mode] and rows[mode][0].get("unsupported"):
            continue
        print(f"  {set_name}: asking {len(asks)} questions, mode {mode}", flush=True)
        try:
            rows[mode] += asyncio.run(ask_all(endpoints, asks, mode, collection, args.concurrency))
        except ModeUnsupported as exc:
            print(f"  {set_name}: mode {mode} is not supported by the server: {exc}")
            unsupported = {"supported": False, "reason": str(exc), "n": 0, "n_unanswerable": 0}
            rows[mode] = [{"unsupported": unsupported}]


def _server_default_mode(endpoints: Endpoints, ask: Ask, collection: str) -> str:
    """The answer mode the server uses when a request names none (one question asked)."""
    row = asyncio.run(ask_all(endpoints, [ask], "default", collection, 1))[0]
    return str(row.get("answer_mode") or "")


def _delete_collections(client: httpx.Client, names: Sequence[str]) -> None:
    for name in names:
        try:
            client.delete(f"/v1/collections/{name}")
        except httpx.HTTPError as exc:
            print(f"  could not delete collection {name}: {exc}")


def _summarize_mode(
    set_name: str, mode: str, rows: list[dict[str, Any]], rows_dir: Path
) -> tuple[dict[str, Any], list[str]]:
    rows_dir.mkdir(parents=True, exist_ok=True)
    with (rows_dir / f"{set_name}.{mode}.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    summary = summarize_rows(rows)
    seen = sorted({str(r["answer_mode"]) for r in rows if r.get("answer_mode")})
    if mode != "default" and not seen:
        summary["answer_mode_echoed"] = False
        print(f"  warning: no response named its answer_mode: the server may ignore '{mode}'")
    return summary, seen


# --------------------------------------------------------------------------- main


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m bench.answer_eval", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        type=Path,
        metavar="DIR",
        help="a set directory (repeatable); default: xquad, covid-qa, ko_answers",
    )
    parser.add_argument("--limit", type=int, default=None, help="questions per set, sampled")
    parser.add_argument("--quick", action="store_true", help=f"= --limit {QUICK_LIMIT}")
    parser.add_argument(
        "--modes",
        type=_modes,
        default=list(MODES),
        help="comma list of generative,extractive,auto,default (default: the "
        "first three; default = send no answer_mode)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="questions in flight (4: vLLM batches them; a quick run of the generative modes "
        "took 0.69x the time of 2)",
    )
    parser.add_argument(
        "--llm-endpoint", default=None, help="recorded; with --up exported as DOCQA_LLM_ENDPOINTS"
    )
    parser.add_argument(
        "--llm-model", default=None, help="recorded; with --up exported as DOCQA_LLM_MODEL"
    )
    for name in ("query-url", "indexing-url", "query-key", "admin-key"):
        env_key = "DOCQA_" + name.upper().replace("-", "_")
        parser.add_argument(f"--{name}", default=None, help=f"default: {env_key} of .docqa/env")
    parser.add_argument("--up", action="store_true", help="run `docqa up` if nothing answers")
    parser.add_argument(
        "--keep-collections",
        action="store_true",
        help="do not delete the eval collections afterwards",
    )
    parser.add_argument("--work-dir", type=Path, default=docqa_home() / "eval")
    parser.add_argument(
        "--results-name",
        default="answer_eval",
        help="write bench/results/NAME.json (and NAME.png): a side run keeps the main results",
    )
    parser.add_argument(
        "--from-rows",
        type=Path,
        default=None,
        help="no questions asked: summarize the answers a run left in DIR (also one that was "
        "interrupted: the sets and modes it finished)",
    )
    return parser


def _modes(value: str) -> list[str]:
    modes = list(dict.fromkeys(m.strip() for m in value.split(",") if m.strip()))
    unknown = [m for m in modes if m not in KNOWN_MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes are {', '.join(KNOWN_MODES)}; got {value!r}")
    return modes


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.from_rows is not None:
        return summarize_rows_dir(args.from_rows)
    limit = QUICK_LIMIT if args.quick and not args.limit else args.limit
    sets = [load_answer_set(d, limit) for d in args.sets or default_set_dirs(args.work_dir)]
    endpoints = resolve_endpoints(args)
    rows_dir = args.work_dir / "answers" / time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {}
    facts: dict[str, Any] = {}
    echoed: list[str] = []
    for answer_set in sets:
        kinds = Counter(a.kind for a in answer_set.asks)
        print(f"{answer_set.name}: {len(answer_set.documents)} documents, {dict(kinds)} questions")
        results[answer_set.name], facts[answer_set.name], seen = run_set(
            endpoints, answer_set, args, rows_dir
        )
        echoed += seen
    print_table(results)
    config = _config(args, endpoints, limit, facts, rows_dir)
    path = write_results(
        args.results_name,
        {"default_mode": default_mode(echoed), "sets": results, "config": config},
    )
    print(f"\nwrote {path}\nanswers: {rows_dir}")
    if (figure := plot(results, RESULTS_DIR / f"{args.results_name}.png")) is not None:
        print(f"plot: {figure}")
    return 0


def _config(
    args: argparse.Namespace,
    endpoints: Endpoints,
    limit: int | None,
    facts: dict[str, Any],
    rows_dir: Path,
) -> dict[str, Any]:
    from bench.answer_sets import HELD_OUT_FRACTION

    return {
        "modes": args.modes,
        "limit": limit,
        "concurrency": args.concurrency,
        "llm_endpoint": args.llm_endpoint or os.environ.get("DOCQA_LLM_ENDPOINTS"),
        "llm_model": args.llm_model or os.environ.get("DOCQA_LLM_MODEL"),
        "query_url": endpoints.query_url,
        "indexing_url": endpoints.indexing_url,
        "held_out_fraction": HELD_OUT_FRACTION,
        "sets": facts,
        "answers_dir": str(rows_dir),
        "metric_notes": (
            "em/f1/containment/citation_accuracy/grounded_rate/refusal_rate_answerable over "
            "answerable questions (gold answers, full collection); "
            "hallucination_rate_unanswerable over held-out questions asked against the split "
            "collection (their gold documents left out) and questions without answers; latency "
            "is client wall time per request with `concurrency` in flight; failed requests "
            "(n_errors) are left out"
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
