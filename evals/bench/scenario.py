"""Scenario files: what a caller says and does, in which voice over which line, and what must be true
after the call. A suite is a directory of YAML files (one scenario, or `scenarios: [...]`) with an
optional `suite.yaml` of defaults; `load_suite` checks every field and names the file of a mistake."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
TURN_KINDS = ("say", "wav", "dtmf", "silence_ms", "hang_up")


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written."""


@dataclass(frozen=True)
class Caller:
    voice: str = "en-us+f2"
    rate: int = 170  # words per minute
    noise_rms: float = 0.0  # extra line noise over the caller's audio (16-bit PCM RMS; 0 = none)
    loss: float = 0.0  # share of the caller's 20 ms frames lost on the way (0..0.5)

    def label(self) -> str:
        extra = (f" noise{self.noise_rms:g}" if self.noise_rms else "") + (
            f" loss{self.loss:g}" if self.loss else "")
        return f"{self.voice}@{self.rate}{extra}"


@dataclass(frozen=True)
class Turn:
    kind: str  # one of TURN_KINDS
    text: str = ""  # say: the words; dtmf: the keys
    then: str = ""  # more of the same turn after gap_ms ("five five five, ... nine eight one four")
    gap_ms: float = 0.0
    wav: Path | None = None
    silence_ms: float = 0.0
    barge_in_ms: float | None = None  # speak over the agent this long after its audio starts
    pause_ms: float = 300.0  # thinking time after the agent finishes
    hang_up_after_ms: float = 0.0  # hang_up: how long after the previous line the caller hangs up
    max_latency_ms: float | None = None  # the agent's first audio after this turn, at the latest


@dataclass(frozen=True)
class BookingSpec:
    """The one booking the call must leave (day as "next:thu", "next_week:thu" or "same_week:wed>fri")."""
    service: str
    day: str
    time: str
    name: str
    phone: str | None = None


@dataclass(frozen=True)
class Expect:
    booking: BookingSpec | None = None
    nothing_written: bool = False  # the calendar must be exactly as before
    bookings_after: int | None = None  # how many bookings the calendar holds after the call
    disposition: str | None = None  # prefix: "transfer" matches "transfer_unavailable"
    hear: tuple[tuple[str, ...], ...] = ()  # each: phrases of which one must be heard
    never_say: tuple[str, ...] = ()
    tools_called: tuple[str, ...] = ()
    tools_not_called: tuple[str, ...] = ()
    confirmation: bool = True  # a mutating tool only after the agent asked and the caller said yes
    max_latency_ms: float | None = None  # every turn's voice-to-voice latency


@dataclass(frozen=True)
class SeedBooking:
    name: str
    service: str
    day: str
    time: str
    phone: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    category: str
    turns: tuple[Turn, ...]
    expect: Expect
    caller: Caller = field(default_factory=Caller)
    seed: tuple[SeedBooking, ...] = ()
    source: str = ""
    max_call_s: float = 150.0


@dataclass(frozen=True)
class Suite:
    name: str
    agent: str
    mutating_tools: tuple[str, ...]
    scenarios: tuple[Scenario, ...]


def _check_keys(d: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(d) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def check_day(day: str, where: str) -> str:
    kind, _, rest = day.partition(":")
    days = rest.split(">") if kind == "same_week" else [rest]
    if kind not in ("next", "next_week", "same_week") or not all(d in WEEKDAYS for d in days) or (
            kind == "same_week" and len(days) != 2):
        raise ScenarioError(f"{where}: day {day!r}: write next:thu, next_week:thu or same_week:wed>fri")
    return day


def _turn(raw: Any, base: Path, where: str) -> Turn:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: a turn is a mapping such as {{say: 'hello'}}, got {raw!r}")
    _check_keys(raw, {*TURN_KINDS, "then", "gap_ms", "barge_in_ms", "pause_ms", "max_latency_ms"}, where)
    kinds = [k for k in TURN_KINDS if k in raw]
    if len(kinds) != 1:
        raise ScenarioError(f"{where}: a turn needs exactly one of {TURN_KINDS}, got {kinds or 'none'}")
    kind = kinds[0]
    common = {"pause_ms": float(raw.get("pause_ms", 300.0)), "max_latency_ms": raw.get("max_latency_ms"),
              "barge_in_ms": raw.get("barge_in_ms")}
    if kind == "say":
        if not str(raw["say"]).strip():
            raise ScenarioError(f"{where}: say is empty (use silence_ms for a caller who says nothing)")
        return Turn("say", str(raw["say"]), then=str(raw.get("then", "")), gap_ms=float(raw.get("gap_ms", 0)),
                    **common)
    if kind == "wav":
        path = (base / str(raw["wav"])).resolve()
        if not path.is_file():
            raise ScenarioError(f"{where}: no WAV file at {path}")
        return Turn("wav", wav=path, **common)
    if kind == "dtmf":
        keys = str(raw["dtmf"])
        if not keys or any(c not in "0123456789*#" for c in keys):
            raise ScenarioError(f"{where}: dtmf {keys!r}: only 0-9, * and #")
        return Turn("dtmf", keys, **common)
    if kind == "silence_ms":
        return Turn("silence", silence_ms=float(raw["silence_ms"]), **common)
    after = raw["hang_up"] if isinstance(raw["hang_up"], dict) else {}
    return Turn("hang_up", hang_up_after_ms=float(after.get("after_ms", 0)))


def _expect(raw: dict[str, Any], where: str) -> Expect:
    _check_keys(raw, {"booking", "nothing_written", "bookings_after", "disposition", "hear", "never_say",
                      "tools_called", "tools_not_called", "confirmation", "max_latency_ms"}, where)
    booking = None
    if isinstance(raw.get("booking"), dict):
        b = raw["booking"]
        _check_keys(b, {"service", "day", "time", "name", "phone"}, where + " booking")
        missing = {"service", "day", "time", "name"} - set(b)
        if missing:
            raise ScenarioError(f"{where}: booking lacks {sorted(missing)}")
        booking = BookingSpec(str(b["service"]), check_day(str(b["day"]), where), str(b["time"]),
                              str(b["name"]).lower(), None if b.get("phone") is None else str(b["phone"]))
    hear = tuple(tuple(str(x) for x in (h if isinstance(h, list) else [h])) for h in raw.get("hear", []))
    after = raw.get("bookings_after")
    return Expect(booking=booking, nothing_written=bool(raw.get("nothing_written", False)),
                  bookings_after=None if after is None else int(after),
                  disposition=raw.get("disposition"), hear=hear,
                  never_say=tuple(str(x) for x in raw.get("never_say", [])),
                  tools_called=tuple(raw.get("tools_called", [])),
                  tools_not_called=tuple(raw.get("tools_not_called", [])),
                  confirmation=bool(raw.get("confirmation", True)), max_latency_ms=raw.get("max_latency_ms"))


def _caller(raw: dict[str, Any], default: Caller, where: str) -> Caller:
    _check_keys(raw, {"voice", "rate", "noise_rms", "loss"}, where + " caller")
    c = replace(default, **{k: raw[k] for k in raw})
    if not 80 <= int(c.rate) <= 450 or not 0 <= float(c.loss) <= 0.5 or float(c.noise_rms) < 0:
        raise ScenarioError(f"{where}: caller rate 80..450 wpm, loss 0..0.5, noise_rms >= 0; got {c}")
    return c


def parse_scenario(raw: dict[str, Any], base: Path, where: str, default_caller: Caller) -> list[Scenario]:
    """One scenario mapping; several scenarios when it lists caller `variants`."""
    _check_keys(raw, {"name", "category", "caller", "variants", "seed", "turns", "expect", "max_call_s"},
                where)
    if "name" not in raw or not raw.get("turns"):
        raise ScenarioError(f"{where}: a scenario needs a name and turns")
    where = f"{where} ({raw['name']})"
    turns = tuple(_turn(t, base, f"{where} turn {i + 1}") for i, t in enumerate(raw["turns"]))
    if any(t.kind == "hang_up" for t in turns[:-1]):
        raise ScenarioError(f"{where}: hang_up can only be the last turn")
    seed = tuple(SeedBooking(str(s["name"]), str(s["service"]), check_day(str(s["day"]), where),
                             str(s["time"]), None if s.get("phone") is None else str(s["phone"]))
                 for s in raw.get("seed", []))
    caller = _caller(raw.get("caller", {}), default_caller, where)
    base_sc = Scenario(str(raw["name"]), str(raw.get("category", "other")), turns,
                       _expect(raw.get("expect", {}), where), caller, seed, where,
                       float(raw.get("max_call_s", 150)))
    variants = raw.get("variants") or []
    if not variants:
        return [base_sc]
    out = []
    for v in variants:
        vc = _caller(v, caller, where)
        out.append(replace(base_sc, name=f"{base_sc.name}[{vc.label()}]", caller=vc))
    return out


def load_suite(directory: Path) -> Suite:
    if not directory.is_dir():
        raise ScenarioError(f"{directory}: not a directory of scenario files")
    meta_path = directory / "suite.yaml"
    meta = _read(meta_path) if meta_path.exists() else {}
    _check_keys(meta, {"name", "agent", "mutating_tools", "caller"}, str(meta_path))
    default_caller = _caller(meta.get("caller", {}), Caller(), str(meta_path))
    scenarios: list[Scenario] = []
    for path in sorted(directory.glob("*.y*ml")):
        if path.name == "suite.yaml":
            continue
        doc = _read(path)
        items = doc["scenarios"] if "scenarios" in doc else [doc]
        for i, raw in enumerate(items):
            scenarios.extend(parse_scenario(raw, path.parent, f"{path.name}#{i + 1}", default_caller))
    if not scenarios:
        raise ScenarioError(f"{directory}: no scenarios (*.yaml)")
    names = [s.name for s in scenarios]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ScenarioError(f"{directory}: scenario names repeat: {dupes}")
    return Suite(str(meta.get("name", directory.name)), str(meta.get("agent", directory.parent.name)),
                 tuple(meta.get("mutating_tools", ["create_booking", "move_booking", "cancel_booking"])),
                 tuple(scenarios))


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top")
    return doc
