"""``docqa keys``: make, list and revoke API keys in the key store (Redis, from ``DOCQA_REDIS_*``).

    docqa keys add --tenant acme --collections hr,legal_* --scopes query
    docqa keys list [--tenant acme] [--json]
    docqa keys revoke <id>

``add`` prints the new key on stdout, once (only its hash is stored: it cannot be shown again),
and what it grants on stderr. ``list`` shows ids, tenants, scopes, collections and creation
times, never a key. A revoked key stops working within a few seconds (each process remembers a
key's grant that long). Also runs as ``python -m services.keys``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from redis.exceptions import RedisError

from docqa_core.errors import DocqaError
from services.common.grants import parse_collections, parse_scopes, parse_tenant
from services.common.key_store import KeyRecord, KeyStore


def build_parser(prog: str = "docqa keys") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="API keys: add, list, revoke")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="make a key; prints it once")
    add.add_argument("--tenant", required=True)
    add.add_argument(
        "--collections", required=True, help="comma-separated names, prefixes ending in *, or *"
    )
    add.add_argument("--scopes", default="query", help="comma-separated: query, ingest, admin")
    listing = commands.add_parser("list", help="the stored keys (never the keys themselves)")
    listing.add_argument("--tenant", default=None)
    listing.add_argument("--json", action="store_true", help="one JSON list on stdout")
    revoke = commands.add_parser("revoke", help="remove a key by its id")
    revoke.add_argument("key_id")
    return parser


async def run(args: argparse.Namespace, store: KeyStore) -> int:
    if args.command == "add":
        key, record = await store.add(
            tenant=parse_tenant(args.tenant),
            scopes=parse_scopes(args.scopes.split(",")),
            collections=parse_collections(args.collections.split(",")),
        )
        print(key)
        print(f"made key {_describe(record)} (shown once)", file=sys.stderr)
        return 0
    if args.command == "list":
        records = await store.records(tenant=args.tenant)
        if args.json:
            print(json.dumps([r.public() for r in records]))
        else:
            for record in records:
                print(_describe(record))
        return 0
    if not await store.revoke(args.key_id):
        print(f"docqa keys: no key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}", file=sys.stderr)
    return 0


def _describe(record: KeyRecord) -> str:
    shown = record.public()
    return (
        f"{shown['id']}  tenant={shown['tenant']}  scopes={','.join(shown['scopes'])}  "
        f"collections={','.join(shown['collections'])}  created={shown['created']}"
    )


async def _run_with_redis(args: argparse.Namespace) -> int:
    from services.common.clients import build_redis
    from services.common.settings import CommonSettings

    settings = CommonSettings()
    redis = build_redis(settings.redis)
    try:
        return await run(args, KeyStore(redis, prefix=settings.redis.key_prefix))
    finally:
        await redis.aclose()


def main(argv: Sequence[str] | None = None, *, prog: str = "docqa keys") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return asyncio.run(_run_with_redis(args))
    except DocqaError as exc:
        print(f"docqa keys: {exc.message}", file=sys.stderr)
        return 2
    except (RedisError, OSError) as exc:
        print(f"docqa keys: cannot reach Redis: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(prog="python -m services.keys"))
