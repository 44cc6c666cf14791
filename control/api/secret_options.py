"""Provider options that are secrets (an `api_key`, a `client_secret`, an `auth_token`) are write-only:
stored, handed to the cell's workers with the agent, never returned by the API.

A response shows such an option as `{"set": true}`. An update that names the same provider and leaves
the option out keeps the stored value (a client can send back what it read without erasing it); an
empty string removes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

# *api_key*, *secret*, *password*, *credential*, and "token" as a word of the name (an `auth_token`,
# not an LLM's `max_tokens`).
_SECRET_KEY: Final = re.compile(r"api_?key|secret|passw(?:or)?d|credential|(?:^|[_-])token(?:$|[_-])",
                                re.IGNORECASE)
MASKED: Final = {"set": True}


def is_secret(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def mask_providers(providers: Any) -> Any:
    """The agent's providers as the API shows them: every secret option as {"set": true}."""
    if not isinstance(providers, Mapping):
        return providers
    out: dict[str, Any] = {}
    for role, ref in providers.items():
        if isinstance(ref, Mapping) and isinstance(ref.get("options"), Mapping):
            options = {k: (dict(MASKED) if is_secret(str(k)) else v) for k, v in ref["options"].items()}
            out[role] = {**ref, "options": options}
        else:
            out[role] = ref
    return out


def merge_providers(stored: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The providers an update stores: `given`, with the stored secret options of a provider it names
    again kept where it leaves them out, and secret options given as "" removed."""
    old = stored if isinstance(stored, Mapping) else {}
    out: dict[str, Any] = {}
    for role, ref in given.items():
        if not isinstance(ref, Mapping):
            out[role] = ref
            continue
        options = dict(ref.get("options") or {})
        before = old.get(role)
        if isinstance(before, Mapping) and before.get("name") == ref.get("name"):
            for key, value in (before.get("options") or {}).items():
                if is_secret(str(key)) and key not in options:
                    options[key] = value
        options = {k: v for k, v in options.items() if not (is_secret(str(k)) and v == "")}
        out[role] = {**ref, "options": options}
    return out
