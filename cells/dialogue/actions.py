"""What a rule-based brain decides a turn does: say a line, or call a tool. The clinic's policy and
the flow agent both plan in these and turn them into the provider protocol's deltas and tool calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]


Action = Say | Call
