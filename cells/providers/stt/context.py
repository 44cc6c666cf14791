"""What an agent tells its embedded recogniser, whatever the engine: its vocabulary (`Domain`) once, and
per turn what it expects the caller to say next (a hint).

PocketSphinx turns the domain into a language model (domain_lm.py); Whisper into a text prompt
(whisper_prompt.py). Hints travel in the frame stream on `EndOfTurn(hint=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Kinds of answer the call loop may announce with EndOfTurn(hint=...); recognisers ignore unknown ones.
HINTS = ("digits", "yes_no", "date", "time", "name", "service")


@dataclass
class Domain:
    """What an agent's callers talk about, as the agent configuration states it."""

    services: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    extra_phrases: list[str] = field(default_factory=list)
    # Carrier sentences its callers say around the slots ("i'd like to book {service_np} on {date}");
    # a recogniser without them uses neutral ones.
    templates: list[str] = field(default_factory=list)
    # What its callers' answers sound like, per hint (HINTS; "" for an open question), in the agent's own
    # words: a recogniser that takes a text prompt (Whisper) uses these over its neutral examples.
    examples: dict[str, str] = field(default_factory=dict)


def domain_from(value: Domain | dict[str, object] | None, provider: str) -> Domain | None:
    """A domain given as a Domain or as a configuration mapping; a bad mapping is a config error."""
    from cells.providers.base import ProviderConfigError

    if value is None or isinstance(value, Domain):
        return value
    if not isinstance(value, dict):
        raise ProviderConfigError(f"bad STT domain {value!r}: expected a mapping", provider=provider)
    try:
        return Domain(**value)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ProviderConfigError(f"bad STT domain {value!r}: {exc}", provider=provider) from exc
