"""Token usage of an answer, as the OpenAI-compatible route reports it.

An estimate, not the model's own count: docqa's :func:`~query_engine.prompts.estimate_llm_tokens`
(a safe upper bound for English-centric BPE vocabularies) over the prompt docqa builds for the
answer and over the answer's text. The pool streams answers without vLLM's usage chunk and an
answer may come from the cache, the FAQ or a source sentence, so the prompt is rebuilt from the
answer itself: its citations are the sources the LLM saw, as it saw them (cut where packing cut
them). A cached answer therefore reports the usage it had when it was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from query_engine.answer import Answer
from query_engine.memory import Turn, history_messages
from query_engine.prompts import PromptSource, build_messages, estimate_llm_tokens


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


def estimate_usage(
    answer: Answer, *, question: str, history: Sequence[Turn] = (), instructions: str = ""
) -> TokenUsage:
    """``question`` is the one retrieval and the prompt used (a follow-up's standalone form) and
    ``history`` the conversation the prompt held. No sources, no prompt: an FAQ answer, or
    nothing relevant found, counts its text only."""
    completion = estimate_llm_tokens(answer.answer)
    if not answer.citations:
        return TokenUsage(0, completion)
    sources = [PromptSource(c.n, c.title, c.section, c.text) for c in answer.citations]
    messages = build_messages(question, sources, history_messages(history), instructions)
    prompt = sum(estimate_llm_tokens(message.content or "") for message in messages)
    return TokenUsage(prompt, completion)
