"""What ``DOCQA_ENVIRONMENT=production`` refuses to start with, and what it changes once running.

A production process refuses to start (settings validation fails, ``docqa serve`` exits non-zero
with every reason at once) when it would be open to anyone who has read this repository: a
development key, a short key, or a CORS allow-list of ``*`` (any web page could call it with a key
a browser holds). It also refuses to start with no way in: no bootstrap admin key
(``DOCQA_AUTH_ADMIN_KEYS``) and no key in the Redis key store, so nobody could call it nor make a
key over HTTP. Only the lifespan can tell (the store is in Redis): :func:`require_a_way_in`. A
bootstrap admin key alone is enough: query keys are then made with ``docqa keys add`` or
``POST /v1/keys``. Running, it keeps internals off the public port: ``/readyz`` there says only
ready or not ready, and the per-dependency detail and ``/metrics`` are served on the admin port
(``DOCQA_SERVER_ADMIN_PORT``, see ``services.common.admin``).

Development (the default, what ``make up`` and the tests run) fills in the well-known dev keys
and also serves ``/metrics`` on the public port (``/readyz`` there is status-only everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from services.common.key_store import KeyStore

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
    """A listed key anyone could guess. No key at all is not a problem here: the keys may be in
    the Redis key store (:func:`require_a_way_in` checks that there is a way in)."""
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
    """Every reason the settings alone give for a production process not to start, in one list
    (an operator fixes them all in one go instead of one per restart)."""
    return [
        *key_problems("DOCQA_AUTH_QUERY_KEYS", query_keys),
        *key_problems("DOCQA_AUTH_ADMIN_KEYS", admin_keys),
        *cors_problems(cors_origins),
    ]


def refuse_to_start(problems: Sequence[str]) -> None:
    if problems:
        reasons = "".join(f"\n    - {problem}" for problem in problems)
        raise ValueError(f"refusing to start in production (DOCQA_ENVIRONMENT):{reasons}")


NO_WAY_IN = (
    "refusing to start in production (DOCQA_ENVIRONMENT): DOCQA_AUTH_ADMIN_KEYS is empty and the "
    "Redis key store holds no key, so nobody could call this service. Set DOCQA_AUTH_ADMIN_KEYS "
    "(e.g. `openssl rand -hex 24`), or make a key first with `docqa keys add --tenant T "
    "--collections '*' --scopes admin`"
)


class NoWayIn(RuntimeError):
    """A production process that nobody could call: it refuses to start."""


async def require_a_way_in(
    environment: Environment, admin_keys: Sequence[SecretStr], store: KeyStore
) -> None:
    """In production, with no bootstrap admin key, the Redis key store must hold a key.

    Called by each service's lifespan once its Redis client exists. A Redis that cannot be read
    refuses the start too: whether anybody could call the service is then unknown, and the
    orchestrator's restart tries again once Redis is up.
    """
    if environment != "production" or admin_keys:
        return
    try:
        stored = await store.records()
    except (RedisError, OSError, TimeoutError) as exc:
        # the exception's type only: its text may name the Redis URL
        raise NoWayIn(
            "refusing to start in production (DOCQA_ENVIRONMENT): DOCQA_AUTH_ADMIN_KEYS is empty "
            "and the Redis key store (DOCQA_REDIS_URL) could not be read to find another key "
            f"({type(exc).__name__})"
        ) from exc
    if not stored:
        raise NoWayIn(NO_WAY_IN)
