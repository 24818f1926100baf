"""A dict-backed fake of the Redis hash commands :class:`services.common.key_store.KeyStore`
uses, counting reads, that can be made to fail like a Redis that is down."""

from __future__ import annotations

from typing import cast

from redis.exceptions import ConnectionError as RedisConnectionError


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.reads = 0
        self.down = False

    async def hget(self, name: str, field: str) -> bytes | None:
        self._check()
        self.reads += 1
        value = self.hashes.get(name, {}).get(field)
        return None if value is None else value.encode()

    async def hgetall(self, name: str) -> dict[bytes, bytes]:
        self._check()
        return {k.encode(): v.encode() for k, v in self.hashes.get(name, {}).items()}

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def _check(self) -> None:
        if self.down:
            raise RedisConnectionError("connection refused")


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.ops: list[tuple[str, str, str, str | None]] = []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def hset(self, name: str, field: str, value: str) -> None:
        self.ops.append(("hset", name, field, value))

    def hdel(self, name: str, field: str) -> None:
        self.ops.append(("hdel", name, field, None))

    async def execute(self) -> None:
        self.redis._check()
        for op, name, field, value in self.ops:
            if op == "hset":
                self.redis.hashes.setdefault(name, {})[field] = cast(str, value)
            else:
                self.redis.hashes.get(name, {}).pop(field, None)
