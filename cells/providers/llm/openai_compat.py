"""LLM adapter for any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, llama.cpp server, Ollama).

Streams with `stream=True`: text deltas go out as they arrive; tool calls arrive as fragments (an index,
then an id and a name once, then pieces of the JSON arguments) and go out as whole `ToolCall`s when the
stream says the turn is complete.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cells.contract.knowledge import KnowledgeSearch
from cells.providers.base import Grounding, Message, ProviderError, TextDelta, ToolCall, ToolSpec
from cells.providers.llm.knowledge_prompt import with_knowledge
from cells.providers.openai_common import SDK_ERRORS, make_client, map_error, resolve_api_key


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Collects `choices[0].delta.tool_calls` fragments by index into complete calls."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}

    def add(self, fragment: Any) -> None:
        call = self._calls.setdefault(fragment.index if fragment.index is not None else 0, _PartialCall())
        if fragment.id:
            call.id = fragment.id
        function = fragment.function
        if function is not None:
            if function.name:
                call.name += function.name  # some servers split the name too
            if function.arguments:
                call.arguments.append(function.arguments)

    def finish(self, provider: str) -> list[ToolCall]:
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            raw = "".join(call.arguments).strip()
            try:
                args = json.loads(raw) if raw else {}
            except json.JSONDecodeError as exc:
                raise ProviderError(f"{provider}: tool call {call.name!r} has invalid JSON arguments",
                                    provider=provider) from exc
            if not isinstance(args, dict) or not call.name:
                raise ProviderError(f"{provider}: malformed tool call at index {index}", provider=provider)
            out.append(ToolCall(id=call.id or f"call_{index}", name=call.name, arguments=args))
        self._calls.clear()
        return out


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.role == "tool":
            item["tool_call_id"] = m.tool_call_id or ""
        if m.tool_calls:
            item["content"] = m.content or None
            item["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in m.tool_calls
            ]
        out.append(item)
    return out


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {"type": "function",
         "function": {"name": t.name, "description": t.description,
                      "parameters": dict(t.parameters) or {"type": "object", "properties": {}}}}
        for t in tools
    ]


class OpenAICompatLlm:
    """`LlmProvider` over `openai.AsyncOpenAI().chat.completions.create(stream=True)`.

    `base_url` points at any compatible server; `api_key_required=False` suits local servers that
    ignore keys. Retries happen only before the first byte (the SDK's `max_retries`); once streaming,
    a failure surfaces as a `ProviderError` and the fallback wrapper decides what happens next.
    """

    confirms_mutations = False  # a model may skip the read-back: the call loop's gate confirms

    def __init__(self, *, model: str, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", api_key_required: bool = True,
                 timeout_s: float = 20.0, connect_timeout_s: float = 3.0, max_retries: int = 1,
                 temperature: float | None = None, max_tokens: int | None = None,
                 name: str = "openai", knowledge: KnowledgeSearch | None = None) -> None:
        """`knowledge`: the agent's knowledge search (the registry's context); each request then carries
        the chunks retrieved for the caller's last turn (knowledge_prompt.py)."""
        self.name = name
        self.knowledge = knowledge
        self.model = model
        self.base_url = base_url
        self._temperature = temperature
        self._max_tokens = max_tokens
        key = resolve_api_key(api_key, api_key_env, required=api_key_required, provider=name)
        self._client = make_client(base_url=base_url, api_key=key, timeout_s=timeout_s,
                                   connect_timeout_s=connect_timeout_s, max_retries=max_retries)

    def __repr__(self) -> str:  # no key in here, ever
        return f"OpenAICompatLlm(name={self.name!r}, model={self.model!r}, base_url={self.base_url!r})"

    def complete(self, messages: Sequence[Message],
                 tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall | Grounding]:
        return self.complete_with(messages, tools)

    def warm_up(self) -> None:
        """Loads an in-memory knowledge index now (blocking; the worker runs it in a thread)."""
        load = getattr(self.knowledge, "load", None)
        if callable(load):
            load()

    async def complete_with(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), *,
                            model: str | None = None) -> AsyncIterator[TextDelta | ToolCall | Grounding]:
        """As `complete`, with the model overridable per request (the router uses this)."""
        if self.knowledge is not None:
            messages, passages = await with_knowledge(messages, self.knowledge)
            if passages:
                yield Grounding(passages)
        kwargs: dict[str, Any] = {"model": model or self.model, "messages": to_openai_messages(messages),
                                  "stream": True}
        if tools:
            kwargs["tools"] = to_openai_tools(tools)
        if self._temperature is not None:
            kwargs["temperature"] = self._temperature
        if self._max_tokens is not None:
            kwargs["max_tokens"] = self._max_tokens
        assembler = ToolCallAssembler()
        stream = None
        try:
            stream = await self._client.chat.completions.create(**kwargs)
            async for chunk in stream:
                if not chunk.choices:
                    continue  # usage-only chunk
                choice = chunk.choices[0]
                delta = choice.delta
                if delta is not None:
                    if delta.content:
                        yield TextDelta(delta.content)
                    for fragment in delta.tool_calls or ():
                        assembler.add(fragment)
                if choice.finish_reason is not None:
                    for call in assembler.finish(self.name):
                        yield call
            for call in assembler.finish(self.name):  # servers that end without a finish_reason
                yield call
        except SDK_ERRORS as exc:
            raise map_error(exc, self.name) from exc
        finally:
            if stream is not None:  # closing the generator (barge-in) drops the HTTP stream
                await stream.close()

    async def aclose(self) -> None:
        await self._client.close()
