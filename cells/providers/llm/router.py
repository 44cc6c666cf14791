"""Fast/smart LLM routing by configuration.

A router holds named routes (each any `LlmProvider`, typically a small fast model and a large smart one)
and an ordered rule list; the first rule whose conditions all hold picks the route, else `default`.

    {"provider": "router", "options": {
        "routes": {"fast": {"provider": "openai_compat", "options": {"model": "gpt-4o-mini"}},
                   "smart": {"provider": "openai_compat", "options": {"model": "gpt-4o"}}},
        "rules": [{"when": {"first_reply": true}, "use": "fast"},
                  {"when": {"after_tool_result": true}, "use": "smart"},
                  {"when": {"min_messages": 12}, "use": "smart"},
                  {"when": {"max_user_chars": 80}, "use": "fast"}],
        "default": "smart"}}
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cells.providers.base import LlmProvider, Message, ProviderConfigError, TextDelta, ToolCall, ToolSpec


@dataclass(frozen=True)
class RouteRule:
    """All conditions that are set must hold. Unset (None) conditions are ignored."""

    use: str
    first_reply: bool | None = None  # no assistant turn yet (the greeting/first answer: latency first)
    tools_offered: bool | None = None  # the request carries tools
    after_tool_result: bool | None = None  # the last message is a tool result to be explained
    min_messages: int | None = None  # conversation length (non-system messages)
    max_user_chars: int | None = None  # short last user turn
    min_user_chars: int | None = None
    keywords: tuple[str, ...] = ()  # any of these (case-insensitive) in the last user turn

    _CONDITIONS = ("first_reply", "tools_offered", "after_tool_result", "min_messages", "max_user_chars",
                   "min_user_chars", "keywords")

    @classmethod
    def from_config(cls, item: Mapping[str, Any]) -> RouteRule:
        when = dict(item.get("when", {}))
        unknown = set(when) - set(cls._CONDITIONS)
        if unknown or "use" not in item:
            raise ProviderConfigError(f"router rule {dict(item)!r}: needs 'use'; unknown conditions "
                                      f"{sorted(unknown)}", provider="router")
        if "keywords" in when:
            when["keywords"] = tuple(str(k).lower() for k in when["keywords"])
        return cls(use=str(item["use"]), **when)

    def matches(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> bool:
        dialogue = [m for m in messages if m.role != "system"]
        last_user = next((m.content for m in reversed(dialogue) if m.role == "user"), "")
        checks: list[bool] = []
        if self.first_reply is not None:
            checks.append(self.first_reply == (not any(m.role == "assistant" for m in dialogue)))
        if self.tools_offered is not None:
            checks.append(self.tools_offered == bool(tools))
        if self.after_tool_result is not None:
            checks.append(self.after_tool_result == bool(dialogue and dialogue[-1].role == "tool"))
        if self.min_messages is not None:
            checks.append(len(dialogue) >= self.min_messages)
        if self.max_user_chars is not None:
            checks.append(len(last_user) <= self.max_user_chars)
        if self.min_user_chars is not None:
            checks.append(len(last_user) >= self.min_user_chars)
        if self.keywords:
            lowered = last_user.lower()
            checks.append(any(k in lowered for k in self.keywords))
        return all(checks)


class LlmRouter:
    """`LlmProvider` that delegates each request to the route its rules pick.

    `on_route(name)` (optional) is told the choice, for latency events; `last_route` keeps it too.
    It vouches for its own confirmation step only when every route does (any route may answer).
    """

    def __init__(self, routes: Mapping[str, LlmProvider], rules: Sequence[RouteRule], default: str,
                 on_route: Callable[[str], None] | None = None) -> None:
        missing = {r.use for r in rules} - set(routes) | ({default} - set(routes))
        if missing:
            raise ProviderConfigError(f"router rules name unknown routes {sorted(missing)}",
                                      provider="router")
        self.routes = dict(routes)
        self.rules = list(rules)
        self.default = default
        self.on_route = on_route
        self.last_route: str | None = None

    @classmethod
    def from_options(cls, *, routes: Mapping[str, Mapping[str, Any]],
                     rules: Sequence[Mapping[str, Any]] = (), default: str,
                     context: Mapping[str, Any] | None = None) -> LlmRouter:
        """Builds each route through the registry from its own {"provider", "options"} spec."""
        return cls._built("llm", routes, rules, default, context)

    @classmethod
    def from_brain_options(cls, *, routes: Mapping[str, Mapping[str, Any]],
                           rules: Sequence[Mapping[str, Any]] = (), default: str,
                           context: Mapping[str, Any] | None = None) -> LlmRouter:
        """For the "brain" kind: routes are brains (a rule-based policy, a language model)."""
        return cls._built("brain", routes, rules, default, context)

    @classmethod
    def _built(cls, kind: str, routes: Mapping[str, Mapping[str, Any]], rules: Sequence[Mapping[str, Any]],
               default: str, context: Mapping[str, Any] | None) -> LlmRouter:
        from cells.providers.registry import ProviderConfig, build  # late: the registry imports adapters

        built = {name: build(kind, ProviderConfig(defaults={kind: dict(spec)}), context=context)
                 for name, spec in routes.items()}
        return cls(built, [RouteRule.from_config(r) for r in rules], default)

    @property
    def confirms_mutations(self) -> bool:
        return all(route.confirms_mutations is True for route in self.routes.values())

    def choose(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> str:
        for rule in self.rules:
            if rule.matches(messages, tools):
                return rule.use
        return self.default

    async def complete(self, messages: Sequence[Message],
                       tools: Sequence[ToolSpec] = ()) -> AsyncIterator[TextDelta | ToolCall]:
        route = self.choose(messages, tools)
        self.last_route = route
        if self.on_route is not None:
            self.on_route(route)
        inner = self.routes[route].complete(messages, tools)
        try:
            async for item in inner:
                yield item
        finally:
            close = getattr(inner, "aclose", None)
            if close is not None:
                await close()
