"""Apps built by the real factory (``create_app``) for unit tests."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

from services.common.app import create_app


def create_test_app(**kwargs: Any) -> FastAPI:
    """``create_app(**kwargs)``, which points the root logger at stderr: pytest gets its log
    capture back at once."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return create_app(**kwargs)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
