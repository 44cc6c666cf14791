"""Tools an agent can call: the ToolAdapter interface and a registry.

A tool is a name, a description, a JSON-schema for its arguments, whether it changes the world
(`mutating`), and an async `call(args) -> dict`. The registry hands out the same tools as
`ToolSpec`s (our LlmProvider interface) and as OpenAI-style schemas (for a real LLM endpoint).

Mutating tools (bookings, payments) run only with `confirmed=True`: the caller of `ToolRegistry.call`
must be the deterministic confirmation gate (see DESIGN.md, Interfaces); the registry refuses otherwise.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import jsonschema

from cells.providers.base import Message, ToolCall, ToolSpec


class ToolError(Exception):
    """A tool refused the request; becomes {"ok": false, "error": code, "message": ...} for the dialogue."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def as_result(self) -> dict[str, Any]:
        return {"ok": False, "error": self.code, "message": self.message, **self.details}


class ToolAdapter(ABC):
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    mutating: bool = False

    @abstractmethod
    async def call(self, args: Mapping[str, Any]) -> dict[str, Any]: ...

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def openai_schema(self) -> dict[str, Any]:
        fn = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": fn}


class FunctionTool(ToolAdapter):
    """A tool backed by a plain (sync or async) function taking the arguments as keywords."""

    def __init__(self, name: str, description: str, parameters: dict[str, Any],
                 fn: Callable[..., dict[str, Any] | Awaitable[dict[str, Any]]], *,
                 mutating: bool = False) -> None:
        self.name = name
        self.description = description
        self.parameters = parameters
        self.mutating = mutating
        self._fn = fn

    async def call(self, args: Mapping[str, Any]) -> dict[str, Any]:
        try:
            result = self._fn(**args)
            if inspect.isawaitable(result):
                result = await result
        except ToolError as e:
            return e.as_result()
        return result  # type: ignore[return-value]


def _check_args(tool: ToolAdapter, args: Mapping[str, Any]) -> None:
    """Arguments against the tool's JSON Schema, before it runs: a model's wrong type, value out of
    range or unknown argument comes back as one clear error result it can correct, and nothing runs."""
    if not isinstance(args, Mapping):
        raise ToolError("invalid_arguments", f"{tool.name} takes an object of arguments")
    props = tool.parameters.get("properties", {})
    missing = [k for k in tool.parameters.get("required", []) if args.get(k) in (None, "")]
    if missing:
        raise ToolError("missing_argument", f"{tool.name} needs {', '.join(missing)}", missing=missing)
    unknown = [k for k in args if props and k not in props]
    if unknown:
        raise ToolError("unknown_argument", f"{tool.name} does not take {', '.join(unknown)}")
    # An optional argument sent as null means "not given" (models do this); the schema need not say so.
    required = tool.parameters.get("required", [])
    given = {k: v for k, v in args.items() if not (v is None and k not in required)}
    try:
        problems = sorted(_validator(tool).iter_errors(given), key=lambda e: str(list(e.absolute_path)))
    except (jsonschema.SchemaError, jsonschema.exceptions.UnknownType) as e:  # the tool is at fault
        raise ToolError("bad_tool_schema", f"{tool.name} has an invalid argument schema") from e
    if problems:
        where = [".".join(str(p) for p in e.absolute_path) or "arguments" for e in problems]
        detail = "; ".join(f"{w}: {e.message}" for w, e in zip(where, problems, strict=True))
        raise ToolError("invalid_argument", f"{tool.name}: {detail}", fields=where)


def _validator(tool: ToolAdapter) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(tool.parameters, default=jsonschema.Draft202012Validator)
    return cls(tool.parameters)


class ToolRegistry:
    def __init__(self, tools: Iterable[ToolAdapter] = ()) -> None:
        self._tools: dict[str, ToolAdapter] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: ToolAdapter) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._tools[tool.name] = tool

    def get(self, name: str) -> ToolAdapter | None:
        return self._tools.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def is_mutating(self, name: str) -> bool:
        tool = self._tools.get(name)
        return bool(tool and tool.mutating)

    def specs(self) -> list[ToolSpec]:
        return [t.spec() for t in self._tools.values()]

    def openai_schemas(self) -> list[dict[str, Any]]:
        return [t.openai_schema() for t in self._tools.values()]

    async def call(self, name: str, args: Mapping[str, Any], *, confirmed: bool = False) -> dict[str, Any]:
        """Runs a tool; failures come back as an error result rather than an exception, for the dialogue."""
        tool = self._tools.get(name)
        try:
            if tool is None:
                raise ToolError("unknown_tool", f"no tool named {name!r}")
            if tool.mutating and not confirmed:
                raise ToolError("confirmation_required",
                                f"{name} changes data and needs the caller's yes first")
            _check_args(tool, args)
            return await tool.call(args)
        except ToolError as e:
            return e.as_result()

    def validate(self, name: str, args: Mapping[str, Any]) -> dict[str, Any] | None:
        """The error result a call would get for its arguments, or None; runs nothing. The call loop
        asks before reading a change back, so the caller is never asked to confirm what cannot run."""
        tool = self._tools.get(name)
        try:
            if tool is None:
                raise ToolError("unknown_tool", f"no tool named {name!r}")
            _check_args(tool, args)
        except ToolError as e:
            return e.as_result()
        return None

    async def run(self, call: ToolCall, *, confirmed: bool = False) -> Message:
        """Runs a ToolCall and wraps the result as the role "tool" message that answers it."""
        result = await self.call(call.name, call.arguments, confirmed=confirmed)
        return Message(role="tool", content=json.dumps(result), tool_call_id=call.id)


class TransferToHuman(ToolAdapter):
    """Asks the call session to hand the caller to a person; the session acts on the recorded request."""

    name = "transfer_to_human"
    description = "Transfer the caller to a human member of staff."

    def __init__(self, on_transfer: Callable[[str], Any] | None = None) -> None:
        self.parameters = {"type": "object", "properties": {"reason": {"type": "string"}}, "required": []}
        self.requests: list[str] = []
        self._on_transfer = on_transfer

    async def call(self, args: Mapping[str, Any]) -> dict[str, Any]:
        reason = str(args.get("reason", ""))
        self.requests.append(reason)
        if self._on_transfer is not None:
            out = self._on_transfer(reason)
            if inspect.isawaitable(out):
                await out
        return {"ok": True, "status": "transferring"}


class TakeMessage(ToolAdapter):
    """Takes a message for the staff: who called, the number to call back and what they said.

    `store(record)` keeps it (sync or async; a call event at least, or the agent's message store) and may
    return an id. A message changes no business record, so it needs no read-back: the caller hears it
    repeated in the confirmation instead."""

    name = "take_message"
    description = "Take a message for the staff: the caller's name, a number to call back, and the message."

    def __init__(self, store: Callable[[dict[str, str]], Any]) -> None:
        self.parameters = {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 120},
                           "number": {"type": "string", "maxLength": 32},
                           "message": {"type": "string", "minLength": 1, "maxLength": 2000}},
            "required": ["message"], "additionalProperties": False,
        }
        self._store = store

    async def call(self, args: Mapping[str, Any]) -> dict[str, Any]:
        message = str(args.get("message") or "").strip()
        if not message:
            raise ToolError("missing_argument", "take_message needs the message", missing=["message"])
        record = {"name": str(args.get("name") or "").strip(),
                  "number": str(args.get("number") or "").strip(), "message": message}
        stored = self._store(record)
        if inspect.isawaitable(stored):
            stored = await stored
        return {"ok": True, "status": "message_taken", **record,
                **({"message_id": str(stored)} if stored is not None else {})}
