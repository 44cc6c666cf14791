"""Request and response bodies, validated by pydantic v2 and exported to the OpenAPI document.

Request models forbid unknown fields and run in strict mode, so a typo or a wrong type is a 422 that
names the field instead of a silently ignored or coerced value.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    model_serializer,
    model_validator,
)
from quart import request

from cells.contract.flows import agent_problems
from control.api.problems import ApiProblem, field_errors, validation_problem
from control.api.secret_options import is_secret

M = TypeVar("M", bound=BaseModel)

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]


# Required free text (a name, an id, a source): surrounding whitespace is stripped and what is left
# may not be empty, so "   " is refused like "".
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
VoiceId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Role = Literal["owner", "admin", "operator", "viewer"]
Scalar = str | int | float | bool


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- agents -----------------------------------------------------------------------------------


class Voice(Input):
    provider: Slug = "espeak"
    voice_id: VoiceId = "en-us"
    language: str = Field(default="en-US", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    speed: float = Field(default=1.0, ge=0.5, le=2.0)


class ProviderRef(Input):
    name: Slug
    model: str | None = Field(default=None, max_length=120)
    options: dict[Slug, Scalar] = Field(default_factory=dict, max_length=32)


class Providers(Input):
    stt: ProviderRef | None = None
    llm: ProviderRef | None = None
    tts: ProviderRef | None = None


# Fields a stored record leaves out while they hold their defaults, so that records written before the
# flow agent existed read back unchanged.
_TOOL_RUN_DEFAULTS: dict[str, Any] = {"kind": None, "url": None, "secret": None, "timeout_s": None,
                                      "record_kind": None, "capacity": None, "operation": None, "config": {}}
_NODE_DEFAULTS: dict[str, Any] = {"slots": [], "tool": None, "arguments": {}, "when": {}, "on_failure": None,
                                  "on_decline": None, "end": False, "assess": None}


def _drop_defaults(dumped: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dumped.items() if k not in defaults or v != defaults[k]}


class Tool(Input):
    name: Slug
    description: str = Field(default="", max_length=1000)
    # A JSON Schema for the tool's arguments, handed to the LLM as is.
    parameters: dict[str, Any] = Field(default_factory=dict)
    requires_confirmation: bool = False
    # How the worker runs it (cells.contract.flows.TOOL_KINDS): "http" POSTs the arguments to `url`,
    # signed with the secret the worker holds under the name `secret` (never the secret itself).
    kind: Literal["http", "record", "calcom", "greenhouse", "mews", "twilio_sms"] | None = None
    url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    secret: Slug | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=30)  # the worker's default when unset
    # kind "record" keeps the arguments in the tenant's store (cells.contract.records).
    record_kind: Slug | None = None
    capacity: dict[str, Any] | None = None  # checked by cells.contract.flow_rules
    # A vendor kind's operation and settings (ids, base URL, time zone; cells/tools/vendors/): never a
    # credential, only its name (`*_secret`), like `secret`.
    operation: Slug | None = None
    config: dict[Slug, Scalar | dict[str, Scalar]] = Field(default_factory=dict, max_length=32)

    @model_validator(mode="after")
    def _no_credential_in_config(self) -> Tool:
        held = [k for k in self.config if is_secret(k) and not k.endswith("_secret")]
        if held:
            raise ValueError(f"config holds credentials ({', '.join(sorted(held))}); store them as the "
                             "tenant's secrets and name them (`secret`, or config `<name>_secret`)")
        return self

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_defaults(handler(self), _TOOL_RUN_DEFAULTS)


class FlowSlot(Input):
    name: Slug
    type: Literal["date", "time", "name", "phone", "number", "yes_no", "text", "choice"]
    ask: str = Field(min_length=1, max_length=1000)  # the question that asks for it
    options: list[str | dict[str, Any]] | None = Field(default=None, max_length=32)  # a choice's

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_defaults(handler(self), {"options": None})


class FlowState(Input):
    """A node: its prompt, the slots it asks for, the tool it calls with them and where it goes next
    (cells/contract/flows.py describes how a call runs it)."""

    prompt: str = Field(default="", max_length=4000)
    next: list[Slug] = Field(default_factory=list, max_length=16)
    slots: list[FlowSlot] = Field(default_factory=list, max_length=16)
    tool: Slug | None = None
    arguments: dict[Slug, Slug] = Field(default_factory=dict, max_length=32)  # tool argument -> slot
    when: dict[Literal["yes", "no"], Slug] = Field(default_factory=dict)
    on_failure: Slug | None = None
    on_decline: Slug | None = None
    end: bool = False
    assess: dict[str, Any] | None = None  # points and knock-out rules (cells.contract.flow_rules)

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_defaults(handler(self), _NODE_DEFAULTS)


class Flow(Input):
    start: Slug
    states: dict[Slug, FlowState] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _states_connect(self) -> Flow:
        # A flow that names a state it does not define would strand the call mid-conversation.
        missing = {self.start} | {n for s in self.states.values() for n in s.next}
        missing -= set(self.states)
        if missing:
            raise ValueError(f"undefined states: {sorted(missing)}")
        return self


class Compliance(Input):
    ai_disclosure: bool = True
    disclosure_text: str | None = Field(default=None, max_length=500)
    record_calls: bool = False
    recording_consent_required: bool = True
    redact_pii: bool = True
    retention_days: int = Field(default=90, ge=1, le=3650)


# A built-in vertical (cells.contract.flows.BUILT_IN_VERTICALS), or any name for an agent its flows define.
Vertical = Slug


def check_agent_runs(vertical: str, flows: dict[str, Any], tools: list[Any]) -> None:
    """Refuses (ValueError, a 422) a record whose flows would strand a call: an undefined node, a tool
    the agent does not declare or cannot run, or a vertical with neither a built-in agent nor flows."""
    problems = agent_problems(vertical, flows, tools)
    if problems:
        raise ValueError("; ".join(problems))


class AgentCreate(Input):
    name: Name
    vertical: Vertical = "reception"
    persona: str = Field(default="", max_length=20000)
    voice: Voice = Field(default_factory=Voice)
    providers: Providers = Field(default_factory=Providers)
    tools: list[Tool] = Field(default_factory=list, max_length=32)
    flows: dict[Slug, Flow] = Field(default_factory=dict, max_length=16)
    compliance: Compliance = Field(default_factory=Compliance)

    @model_validator(mode="after")
    def _runs(self) -> AgentCreate:
        dumped = self.model_dump(mode="json", include={"flows", "tools"})
        check_agent_runs(self.vertical, dumped["flows"], dumped["tools"])
        return self


class AgentUpdate(Input):
    """Partial update: each field given replaces the stored one whole."""

    name: Name | None = None
    vertical: Vertical | None = None
    persona: str | None = Field(default=None, max_length=20000)
    voice: Voice | None = None
    providers: Providers | None = None
    tools: list[Tool] | None = Field(default=None, max_length=32)
    flows: dict[Slug, Flow] | None = Field(default=None, max_length=16)
    compliance: Compliance | None = None
    # Not stored: a provider change needs a passing eval run (control/api/agent_gate.py) unless an owner
    # gives this reason, which goes to the audit log.
    override_reason: str | None = Field(default=None, min_length=1, max_length=500)


class AgentOut(Output):
    id: uuid.UUID
    tenant_id: uuid.UUID
    region: str
    name: str
    vertical: str
    persona: str
    voice: dict[str, Any]
    providers: dict[str, Any]
    tools: list[Any]
    flows: dict[str, Any]
    compliance: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    published_version: int | None = None


class AgentList(Output):
    items: list[AgentOut]
    next_offset: int | None


# --- tenants and tokens -----------------------------------------------------------------------


class TenantOut(Output):
    id: uuid.UUID
    name: str
    home_region: str
    plan: str
    created_at: datetime


class TenantCreate(Input):
    name: Name
    home_region: Literal["eu", "in", "us"]
    plan: Slug = "starter"


class TenantCreated(Output):
    tenant: TenantOut
    owner_token: str | None = Field(description="The first owner token; shown once, absent on a replay")


class TenantUpdate(Input):
    # home_region is deliberately absent: a tenant's region is fixed at creation (residency).
    name: Name


class TokenCreate(Input):
    name: str = Field(default="", max_length=120)
    role: Role
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(Output):
    id: uuid.UUID
    name: str
    role: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret, shown only in this response.")


class TokenList(Output):
    items: list[TokenOut]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, str]] | None = None


async def parse_body(model: type[M]) -> M:
    """The request's JSON body as `model`: 415 if not JSON, 400 if malformed, 422 if invalid."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiProblem(415, "Unsupported Media Type", "Send the body as application/json.",
                         slug="unsupported-media-type")
    raw = await request.get_data(as_text=False)  # raises 413 beyond MAX_CONTENT_LENGTH
    check_json(raw)
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False, include_input=False)):
            raise _malformed_json() from None
        raise validation_problem(field_errors(exc)) from None
    # PostgreSQL text and JSONB cannot hold U+0000; refuse it here rather than fail in the database.
    bad = list(_nul_paths(parsed.model_dump(mode="json"), ""))
    if bad:
        raise validation_problem({"path": p or "(body)", "message": "U+0000 is not allowed in text",
                                  "code": "nul_character"} for p in bad[:10])
    return parsed


def _malformed_json() -> ApiProblem:
    return ApiProblem(400, "Bad Request", "The body is not valid JSON.", slug="malformed-json")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: valid JSON, but no JSON encoder can write it back
        raise ValueError(f"{text} is out of range")
    return value


def check_json(raw: bytes) -> None:
    """400 unless `raw` is strict JSON (RFC 8259) in UTF-8.

    pydantic's parser accepts NaN, Infinity and -Infinity, which are not JSON: in a JSONB column they
    fail in PostgreSQL (a 500), elsewhere they become null. Python's parser refuses them only when
    asked, through parse_constant; a number too large for a double (1e999) is refused the same way.
    """
    try:
        json.loads(raw.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _malformed_json() from None


def _nul_paths(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                yield sub
            yield from _nul_paths(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nul_paths(item, f"{path}.{i}" if path else str(i))
