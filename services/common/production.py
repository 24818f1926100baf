"""What ``DOCQA_ENVIRONMENT=production`` refuses to start with, and what it changes once running.

A production process refuses to start (settings validation fails, ``docqa serve`` exits non-zero
with every reason at once) when it would be open to anyone who has read this repository: a
development key, a short key, no key at all (an empty key store: nobody could call it, and the
deployment is half-done), or a CORS allow-list of ``*`` (any web page could call it with a key a
browser holds). Running, it keeps internals off the public port: ``/readyz`` there says only
ready or not ready, and the per-dependency detail and ``/metrics`` are served on the admin port
(``DOCQA_SERVER_ADMIN_PORT``, see ``services.common.admin``).

Development (the default, what ``make up`` and the tests run) fills in the well-known dev keys
and keeps everything on the public port.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import SecretStr

Environment = Literal["development", "production"]

DEV_QUERY_KEY = "dev-query-key"
DEV_ADMIN_KEY = "dev-admin-key"
MIN_PRODUCTION_KEY_LENGTH = 24


def chosen_environment(
    environment: Environment, env: Environment | None, environment_was_set: bool
) -> Environment:
    """``DOCQA_ENV`` is a short form of ``DOCQA_ENVIRONMENT``. Both may be set only if they agree:
    a silent winner would let one of them switch production off unnoticed."""
    if env is None:
        return environment
    if environment_was_set and env != environment:
        raise ValueError(
            f"DOCQA_ENV={env} and DOCQA_ENVIRONMENT={environment} disagree: set only one of them"
        )
    return env


def key_problems(name: str, keys: Sequence[SecretStr]) -> list[str]:
    if not keys:
        return [f"{name} is required when DOCQA_ENVIRONMENT=production (an empty key store)"]
    for key in keys:
        secret = key.get_secret_value()
        if secret in (DEV_QUERY_KEY, DEV_ADMIN_KEY) or len(secret) < MIN_PRODUCTION_KEY_LENGTH:
            return [
                f"{name} holds a development or short key; production keys need at least "
                f"{MIN_PRODUCTION_KEY_LENGTH} characters (e.g. `openssl rand -hex 24`)"
            ]
    return []


def cors_problems(origins: Sequence[str]) -> list[str]:
    if "*" in origins:
        return [
            "DOCQA_CORS_ORIGINS holds '*': in production list the web origins allowed to call "
            "the API (e.g. https://docs.example.com)"
        ]
    return []


def production_problems(
    query_keys: Sequence[SecretStr],
    admin_keys: Sequence[SecretStr],
    cors_origins: Sequence[str],
) -> list[str]:
    """Every reason a production process must not start, in one list (an operator fixes them
    all in one go instead of one per restart)."""
    return [
        *key_problems("DOCQA_AUTH_QUERY_KEYS", query_keys),
        *key_problems("DOCQA_AUTH_ADMIN_KEYS", admin_keys),
        *cors_problems(cors_origins),
    ]


def refuse_to_start(problems: Sequence[str]) -> None:
    if problems:
        reasons = "".join(f"\n    - {problem}" for problem in problems)
        raise ValueError(f"refusing to start in production (DOCQA_ENVIRONMENT):{reasons}")
