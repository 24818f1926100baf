"""Per-request generation options: what one request may set for its own answer.

Only the OpenAI-compatible route takes them (``POST /v1/query`` answers with the server's
settings). ``instructions`` are the request's system/developer messages, appended to docqa's own
system prompt under a heading (see :func:`query_engine.prompts.system_prompt`): they never
replace the grounding and citation rules. Every option is part of the answer-cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from query_engine.prompts import ANSWER_STOP_SEQUENCES

MAX_INSTRUCTIONS_CHARS = 2000
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 100


@dataclass(frozen=True)
class GenerationOptions:
    """None (or empty): the server's setting."""

    instructions: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()

    def llm_kwargs(self, max_answer_tokens: int) -> dict[str, Any]:
        """Keyword arguments of the LLM call. The request's stop strings come first; docqa's own
        always follow (they end an answer that starts echoing the prompt's template), and the
        answer never gets more tokens than the prompt budget left for it."""
        kwargs: dict[str, Any] = {"stop": [*self.stop, *ANSWER_STOP_SEQUENCES]}
        if self.max_tokens is not None:
            kwargs["max_tokens"] = min(self.max_tokens, max_answer_tokens)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        return kwargs


SERVER_DEFAULTS = GenerationOptions()
