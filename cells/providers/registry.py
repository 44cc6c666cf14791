"""Builds providers from layered configuration: defaults < region < plan < tenant.

Adapters are registered by (kind, name) as a "module:attribute" string and imported only when chosen, so a
vendor SDK loads only in processes whose configuration selects it.

Configuration shape (plain dicts, e.g. from YAML or the database)::

    {"stt": {"provider": "whisper", "options": {...}}, "tts": {...}, ...}

Each layer may override a whole kind or only some options; options merge key by key, and a layer that
changes the provider starts from that layer's options only (another adapter's options would not fit).

The dialogue brain (kind "brain") decides the agent's words and tool calls. It is either a rule-based
policy ("reception_rules", the embedded default; "flow_rules" for an agent defined by its flows, which
the flow agent picks) or the language model the "llm" kind configures
(brain "llm"); a layer that names an llm provider and no brain picks the LLM path, and a brain
chain (fallback, router) may name any llm provider as one of its brains. Brains and LLMs
speak one interface (`LlmProvider`) and declare `confirms_mutations`. The old name
`llm: reception_policy` is an alias of brain "reception_rules" (agent records still carry it).

Per-call objects (the agent's clinic, clock, STT domain) go in `build(..., context=...)`: a factory
gets those its signature names, and a wrapper whose factory names `context` gets it whole to pass to
what it builds. No caller needs to know which adapter takes what.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cells.providers.base import ProviderConfigError

log = logging.getLogger(__name__)
KINDS = ("stt", "brain", "llm", "tts", "voice_cloner", "telephony")
# Kinds whose providers speak LlmProvider and must declare whether they confirm their own mutations.
DIALOGUE_KINDS: Final = ("brain", "llm")
LLM_BRAIN: Final = "llm"  # the brain that is the "llm" kind's language model


@dataclass(frozen=True)
class Slot:
    """A table entry meaning "build this other kind from the same configuration"."""

    kind: str


# (kind, name) -> "module:factory" (or a Slot). The factory is called with the merged options as
# keyword arguments, plus the context entries its signature names.
_TABLE: dict[tuple[str, str], str | Slot | Callable[..., Any]] = {
    ("stt", "pocketsphinx"): "cells.providers.stt.pocketsphinx_stt:PocketsphinxStt.from_options",
    ("stt", "whisper"): "cells.providers.stt.whisper_stt:WhisperStt.from_options",
    ("stt", "speechmatics"): "cells.providers.stt.speechmatics_rt:SpeechmaticsRtStt",
    ("stt", "openai"): "cells.providers.stt.openai_stt:OpenAIStt",
    ("stt", "fallback"): "cells.providers.fallback:FallbackStt.from_options",
    ("brain", "reception_rules"): "cells.agents.reception.policy:ReceptionPolicy",
    ("brain", "flow_rules"): "cells.flows.brain:FlowRules",
    ("brain", LLM_BRAIN): Slot("llm"),
    ("brain", "router"): "cells.providers.llm.router:LlmRouter.from_brain_options",
    ("brain", "fallback"): "cells.providers.fallback:FallbackLlm.from_brain_options",
    ("llm", "openai_compat"): "cells.providers.llm.openai_compat:OpenAICompatLlm",
    ("llm", "router"): "cells.providers.llm.router:LlmRouter.from_options",
    ("llm", "fallback"): "cells.providers.fallback:FallbackLlm.from_options",
    ("tts", "espeak"): "cells.providers.tts.espeak_tts:EspeakTts",
    ("tts", "playht"): "cells.providers.tts.playht:PlayHtTts",
    ("tts", "openai"): "cells.providers.tts.openai_tts:OpenAITts",
    ("tts", "fallback"): "cells.providers.fallback:FallbackTts.from_options",
}

# Renamed entries: (kind, old name) -> (kind, new name). Configurations keep working; a log says so.
ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("llm", "reception_policy"): ("brain", "reception_rules"),  # a rule-based policy is no language model
}

# Embedded STT: Whisper tiny.en, with PocketSphinx taking over a call whose Whisper decode fails or hangs.
# The deadline is far above a decode's cost (~0.1-0.4 s) so that a busy moment does not move a call to the
# weaker recogniser for good; a fallback lasts for the rest of that call's stream.
EMBEDDED_STT: dict[str, Any] = {
    "provider": "fallback",
    "options": {"chain": [{"provider": "whisper", "name": "whisper"},
                          {"provider": "pocketsphinx", "name": "pocketsphinx"}],
                "final_timeout_s": 10.0},
}

DEFAULTS: dict[str, Any] = {
    "stt": EMBEDDED_STT,
    "tts": {"provider": "espeak", "options": {}},
    "brain": {"provider": "reception_rules", "options": {}},
}


def register(kind: str, name: str, target: str | Callable[..., Any]) -> None:
    """Adds or replaces an adapter. `target` is "module:attr[.attr]" (lazy) or a callable."""
    if kind not in KINDS:
        raise ProviderConfigError(f"unknown provider kind {kind!r}; expected one of {', '.join(KINDS)}")
    _TABLE[(kind, name)] = target  # type: ignore[assignment]


def registered(kind: str) -> list[str]:
    return sorted(name for k, name in _TABLE if k == kind)


def _brain_view(layer: Mapping[str, Any]) -> Any:
    """A layer's brain entry: its own, or the LLM path when the layer names an llm provider only."""
    over = layer.get("brain")
    if over is None and isinstance(layer.get("llm"), Mapping) and layer["llm"].get("provider"):
        return {"provider": LLM_BRAIN}
    return over


def _merge_kind(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    if "provider" in over and over["provider"] != base.get("provider"):
        return {"provider": over["provider"], "options": dict(over.get("options", {}))}
    options = {**base.get("options", {}), **over.get("options", {})}
    return {"provider": base.get("provider"), "options": options}


@dataclass(frozen=True)
class ProviderConfig:
    """The layers for one call's scope. `resolve(kind)` gives the effective provider and options."""

    defaults: Mapping[str, Any] = field(default_factory=lambda: DEFAULTS)
    region: Mapping[str, Any] = field(default_factory=dict)
    plan: Mapping[str, Any] = field(default_factory=dict)
    tenant: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self, kind: str) -> tuple[str, dict[str, Any]]:
        if kind not in KINDS:
            raise ProviderConfigError(f"unknown provider kind {kind!r}; expected one of {', '.join(KINDS)}")
        merged: dict[str, Any] = {}
        for layer_name, layer in (("defaults", self.defaults), ("region", self.region), ("plan", self.plan),
                                  ("tenant", self.tenant)):
            over = _brain_view(layer) if kind == "brain" else layer.get(kind)
            if over is None:
                continue
            if not isinstance(over, Mapping) or set(over) - {"provider", "options"}:
                raise ProviderConfigError(
                    f"{layer_name} config for {kind!r} must be a mapping with 'provider' and/or 'options'")
            merged = _merge_kind(merged, over)
        name = merged.get("provider")
        if not name:
            raise ProviderConfigError(f"no {kind} provider configured in any layer")
        return str(name), merged["options"]


def _load(target: str | Callable[..., Any], kind: str, name: str) -> Callable[..., Any]:
    if callable(target):
        return target
    module_name, _, attr_path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProviderConfigError(
            f"{kind} provider {name!r} is registered but its module {module_name!r} cannot be imported "
            f"(missing SDK?): {exc}", provider=name) from exc
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


def _entry(kind: str, name: str) -> tuple[str, str, str | Slot | Callable[..., Any]]:
    if (kind, name) in ALIASES:
        new_kind, new_name = ALIASES[(kind, name)]
        log.info("%s provider %r is now %s %r", kind, name, new_kind, new_name)
        kind, name = new_kind, new_name
    target = _TABLE.get((kind, name))
    if target is None and kind == "brain" and ("llm", name) in _TABLE:
        kind, target = "llm", _TABLE[("llm", name)]  # any language model can be the brain
    if target is None:
        known = ", ".join(registered(kind)) or "none"
        raise ProviderConfigError(f"unknown {kind} provider {name!r}; registered: {known}", provider=name)
    return kind, name, target


def _from_context(factory: Callable[..., Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The context entries `factory` names as parameters; `context` whole when it names `context`."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature (builtin): it takes none
        return {}
    named = {n for n, p in params.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    picked = {k: v for k, v in context.items() if k in named}
    if "context" in named:
        picked["context"] = context
    return picked


def build(kind: str, config: ProviderConfig | None = None, *, context: Mapping[str, Any] | None = None,
          **extra: Any) -> Any:
    """The provider of `kind` for `config`. `context` holds per-call objects (an agent's clinic, clock,
    STT domain); each factory gets those its signature names. `extra` keyword arguments go to every
    factory and win over configured options."""
    config = config or ProviderConfig()
    name, options = config.resolve(kind)
    kind, name, target = _entry(kind, name)
    if isinstance(target, Slot):
        return build(target.kind, config, context=context, **extra)
    factory = _load(target, kind, name)
    kwargs = {**options, **_from_context(factory, context or {}), **extra}
    try:  # check the options against the signature so that a TypeError inside the adapter is not masked
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise ProviderConfigError(f"bad options for {kind} provider {name!r}: {exc}", provider=name) from exc
    except ValueError:  # no signature available (builtin); let the call decide
        pass
    provider = factory(**kwargs)
    if kind in DIALOGUE_KINDS and not isinstance(getattr(provider, "confirms_mutations", None), bool):
        raise ProviderConfigError(
            f"{kind} provider {name!r} does not declare confirms_mutations (True only when it asks for "
            "and checks the caller's yes itself before every mutating tool call)", provider=name)
    return provider
