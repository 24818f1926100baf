"""Parsers injected into ``indexing.loaders.isolated.run_isolated`` (module-level: they are
pickled by name into the child process)."""

from __future__ import annotations

import time


def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


def allocates(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def echoes(value: str) -> str:
    return value
