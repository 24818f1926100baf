"""The OpenAI chat-completion request as docqa reads it: the question, the conversation, the
request's generation options, and the parameters it refuses.

Taken: ``model`` (the collection), ``messages``, ``stream``, ``stream_options.include_usage``,
``max_tokens`` / ``max_completion_tokens`` (at most the server's answer limit),
``temperature`` (0-2), ``stop`` (a string or up to 4), and system/developer messages as extra
instructions (at most 2,000 characters together). Refused with a 400: ``n`` > 1, tools and
functions, logprobs, a ``response_format`` other than text. Other OpenAI parameters (``top_p``,
``seed``, ``user``, …) are accepted and have no effect. Refused with a 413: more messages than
``DOCQA_LIMITS_MAX_MESSAGES`` or more characters in them than ``DOCQA_LIMITS_MAX_MESSAGES_CHARS``
(the whole conversation is condensed, embedded and analysed: its size is the request's cost).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from query_engine.answer import AnswerMode
from query_engine.generation import (
    MAX_INSTRUCTIONS_CHARS,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    GenerationOptions,
)
from query_engine.memory import Turn
from services.common.settings import MAX_MESSAGES_CEILING, LimitsSettings
from services.query_api.openai_errors import (
    InvalidParameter,
    ParameterTooLarge,
    UnsupportedParameter,
)

# a hard bound for the parser; the server's own is DOCQA_LIMITS_MAX_MESSAGES (check_size)
MAX_MESSAGES = MAX_MESSAGES_CEILING
INSTRUCTION_ROLES = ("system", "developer")


class ChatMessageIn(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """Plain text of the message; OpenAI content parts of type ``text`` are joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionIn(BaseModel):
    model: str = Field(min_length=1, max_length=64, description="the collection to answer from")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="max_tokens' new name")
    temperature: float | None = Field(None, ge=0, le=2)
    stop: str | list[str] | None = None
    # refused unless they ask for nothing docqa lacks (see unsupported_parameter)
    n: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    # docqa's own (``extra_body`` in the official client)
    top_k: int | None = Field(None, ge=1, le=200)
    filters: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = Field(None, max_length=128)
    answer_mode: AnswerMode | None = Field(None, description="as in POST /v1/query")
    as_of: date | None = Field(None, description="as in POST /v1/query")

    @field_validator("stop")
    @classmethod
    def _bounded_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        sequences = [stop] if isinstance(stop, str) else stop or []
        if len(sequences) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not s or len(s) > MAX_STOP_CHARS for s in sequences):
            raise ValueError(f"stop sequences have 1 to {MAX_STOP_CHARS} characters")
        return stop

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def check_size(messages: list[ChatMessageIn], limits: LimitsSettings) -> None:
    """The conversation within ``DOCQA_LIMITS_MAX_MESSAGES`` and ``…_MAX_MESSAGES_CHARS``."""
    if len(messages) > limits.max_messages:
        raise ParameterTooLarge(
            f"the request has {len(messages)} messages; this server takes at most "
            f"{limits.max_messages} (DOCQA_LIMITS_MAX_MESSAGES)",
            param="messages",
        )
    chars = sum(len(message.text()) for message in messages)
    if chars > limits.max_messages_chars:
        raise ParameterTooLarge(
            f"the messages have {chars} characters together; this server takes at most "
            f"{limits.max_messages_chars} (DOCQA_LIMITS_MAX_MESSAGES_CHARS)",
            param="messages",
        )


def unsupported_parameter(body: ChatCompletionIn) -> UnsupportedParameter | None:
    """The first parameter asking for something docqa does not do, as the error to raise."""
    if body.n is not None and body.n > 1:
        return UnsupportedParameter(
            "n > 1 is not supported: docqa returns one answer per request", param="n"
        )
    for name in ("tools", "functions"):
        if getattr(body, name):
            return UnsupportedParameter(f"{name} are not supported: docqa calls none", param=name)
    for name in ("tool_choice", "function_call"):
        if getattr(body, name) not in (None, "none"):
            return UnsupportedParameter(
                f"{name} is not supported: docqa calls no tools", param=name
            )
    if body.logprobs or body.top_logprobs:
        param = "logprobs" if body.logprobs else "top_logprobs"
        return UnsupportedParameter("logprobs are not supported", param=param)
    if body.response_format is not None and body.response_format.get("type") != "text":
        return UnsupportedParameter(
            'only response_format {"type": "text"} is supported: answers are cited prose',
            param="response_format",
        )
    return None


def generation_options(body: ChatCompletionIn, max_answer_tokens: int) -> GenerationOptions:
    """The request's own options: instructions from its system/developer messages, and the
    LLM call's ``max_tokens``, ``temperature`` and ``stop``."""
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None and max_tokens > max_answer_tokens:
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise InvalidParameter(
            f"{param} may be at most {max_answer_tokens} on this server "
            "(DOCQA_LLM_MAX_ANSWER_TOKENS)",
            param=param,
        )
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return GenerationOptions(
        instructions=instructions_of(body.messages),
        max_tokens=max_tokens,
        temperature=body.temperature,
        stop=stop,
    )


def instructions_of(messages: list[ChatMessageIn]) -> str:
    """The system and developer messages, in order: extra instructions for docqa's prompt."""
    parts = [m.text().strip() for m in messages if m.role in INSTRUCTION_ROLES]
    instructions = "\n\n".join(part for part in parts if part)
    if len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise InvalidParameter(
            f"system and developer messages have {len(instructions)} characters together; "
            f"the limit is {MAX_INSTRUCTIONS_CHARS}",
            param="messages",
        )
    return instructions


def question_and_history(messages: list[ChatMessageIn]) -> tuple[str, list[Turn]]:
    """The last user message is the question; earlier user/assistant pairs the conversation."""
    if messages[-1].role != "user" or not messages[-1].text().strip():
        raise InvalidParameter(
            "the last message must be a non-empty user message", param="messages"
        )
    turns: list[Turn] = []
    pending: str | None = None
    for message in messages[:-1]:
        if message.role == "user":
            pending = message.text()
        elif message.role == "assistant" and pending is not None:
            turns.append(Turn(question=pending, answer=message.text()))
            pending = None
    return messages[-1].text().strip(), turns
