"""Builds providers from layered configuration: defaults < region < plan < tenant.

Adapters are registered by (kind, name) as a "module:attribute" string and imported only when chosen, so a
vendor SDK loads only in processes whose configuration selects it.

Configuration shape (plain dicts, e.g. from YAML or the database)::

    {"stt": {"provider": "whisper", "options": {...}}, "tts": {...}, ...}

Each layer may override a whole kind or only some options; options merge key by key, and a layer that
changes the provider starts from that layer's options only (another adapter's options would not fit).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cells.providers.base import ProviderConfigError

KINDS = ("stt", "llm", "tts", "voice_cloner", "telephony")

# (kind, name) -> "module:factory". The factory is called with the merged options as keyword arguments.
_TABLE: dict[tuple[str, str], str] = {
    ("stt", "pocketsphinx"): "cells.providers.stt.pocketsphinx_stt:PocketsphinxStt.from_options",
    ("stt", "whisper"): "cells.providers.stt.whisper_stt:WhisperStt.from_options",
    ("stt", "speechmatics"): "cells.providers.stt.speechmatics_rt:SpeechmaticsRtStt",
    ("stt", "openai"): "cells.providers.stt.openai_stt:OpenAIStt",
    ("stt", "fallback"): "cells.providers.fallback:FallbackStt.from_options",
    ("llm", "reception_policy"): "cells.dialogue.reception_policy:ReceptionPolicy.from_options",
    ("llm", "openai_compat"): "cells.providers.llm.openai_compat:OpenAICompatLlm",
    ("llm", "router"): "cells.providers.llm.router:LlmRouter.from_options",
    ("llm", "fallback"): "cells.providers.fallback:FallbackLlm.from_options",
    ("tts", "espeak"): "cells.providers.tts.espeak_tts:EspeakTts",
    ("tts", "playht"): "cells.providers.tts.playht:PlayHtTts",
    ("tts", "openai"): "cells.providers.tts.openai_tts:OpenAITts",
    ("tts", "fallback"): "cells.providers.fallback:FallbackTts.from_options",
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
    "llm": {"provider": "reception_policy", "options": {}},
}


def register(kind: str, name: str, target: str | Callable[..., Any]) -> None:
    """Adds or replaces an adapter. `target` is "module:attr[.attr]" (lazy) or a callable."""
    if kind not in KINDS:
        raise ProviderConfigError(f"unknown provider kind {kind!r}; expected one of {', '.join(KINDS)}")
    _TABLE[(kind, name)] = target  # type: ignore[assignment]


def registered(kind: str) -> list[str]:
    return sorted(name for k, name in _TABLE if k == kind)


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
            over = layer.get(kind)
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


def _takes(factory: Callable[..., Any], keyword: str) -> bool:
    try:
        parameter = inspect.signature(factory).parameters.get(keyword)
    except ValueError:
        return False
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return parameter is not None and parameter.kind in named


def build(kind: str, config: ProviderConfig | None = None, *, optional: Mapping[str, Any] | None = None,
          **extra: Any) -> Any:
    """The provider of `kind` for `config`. `extra` keyword arguments win over configured options
    (for per-call objects); `optional` ones are passed only to a factory that names them (an agent's STT
    domain goes to every recogniser that can use one, whatever its name)."""
    name, options = (config or ProviderConfig()).resolve(kind)
    target = _TABLE.get((kind, name))
    if target is None:
        known = ", ".join(registered(kind)) or "none"
        raise ProviderConfigError(f"unknown {kind} provider {name!r}; registered: {known}", provider=name)
    factory = _load(target, kind, name)
    accepted = {k: v for k, v in (optional or {}).items() if _takes(factory, k)}
    kwargs = {**options, **accepted, **extra}
    try:  # check the options against the signature so that a TypeError inside the adapter is not masked
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise ProviderConfigError(f"bad options for {kind} provider {name!r}: {exc}", provider=name) from exc
    except ValueError:  # no signature available (builtin); let the call decide
        pass
    return factory(**kwargs)
