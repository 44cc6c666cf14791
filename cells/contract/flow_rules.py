"""The parts of a flow that are rules rather than states: a `choice` slot's options, a node's `assess`
(points and knock-out rules over the answers), and a `record` tool's declaration. Each has its check
(for the control API's 422) and, for rules, its evaluation, so the API and the worker agree.

A rule compares one slot's value with `value` by `op`: eq, ne, gte, lte, gt, lt, in (value is a list),
or `answered` (the slot has any value). A yes/no slot's value is true or false; a number's an integer;
a date's an ISO day (compared as text, which orders ISO days), or with `"value": "today+N"` N days
from the call's day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any, Final

from cells.contract.records import RECORD_KIND_PATTERN, capacity_problems

ASSESSED: Final = ("score", "knocked_out", "reason")  # the slots an `assess` fills
OPS: Final = ("eq", "ne", "gte", "lte", "gt", "lt", "in", "answered")
_RELATIVE = re.compile(r"^today\+(\d{1,3})$")


def option_problems(options: Any) -> list[str]:
    if not isinstance(options, list) or not options:
        return ["a choice slot needs a list of options"]
    problems = []
    for opt in options:
        if isinstance(opt, str) and opt.strip():
            continue
        if isinstance(opt, Mapping) and isinstance(opt.get("value"), str) and opt["value"].strip() \
                and all(isinstance(w, str) and w for w in opt.get("words") or []):
            continue
        problems.append(f"option {opt!r} must be a string or {{value, words}}")
    return problems


def read_options(options: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(value, the words that name it) per option; a plain string is named by its own words."""
    out = []
    for opt in options or []:
        if isinstance(opt, str):
            out.append((opt, ()))
        else:
            out.append((str(opt["value"]), tuple(str(w).lower() for w in opt.get("words") or ())))
    return tuple(out)


def _rule_problems(rule: Any, slots: set[str], extra: str) -> list[str]:
    if not isinstance(rule, Mapping):
        return ["a rule must be an object"]
    problems = []
    if rule.get("slot") not in slots:
        problems.append(f"rule reads slot {rule.get('slot')!r}, which no node asks for")
    if rule.get("op") not in OPS:
        problems.append(f"rule op {rule.get('op')!r}; expected one of {', '.join(OPS)}")
    elif rule["op"] == "in" and not isinstance(rule.get("value"), list):
        problems.append("an 'in' rule's value is a list")
    elif rule["op"] != "answered" and "value" not in rule:
        problems.append(f"a {rule['op']!r} rule needs a value")
    points = rule.get("points")
    if extra == "points" and (not isinstance(points, int | float) or isinstance(points, bool)):
        problems.append("a points rule needs a number of points")
    if extra == "reason" and not (isinstance(rule.get("reason"), str) and rule["reason"].strip()):
        problems.append("a knock-out rule needs a reason")
    return problems


def assess_problems(assess: Any, slots: set[str]) -> list[str]:
    if not isinstance(assess, Mapping):
        return ["assess must be an object with points and knock_out rules"]
    unknown = set(assess) - {"points", "knock_out"}
    problems = [f"unknown key {k!r}" for k in sorted(unknown)]
    for key, extra in (("points", "points"), ("knock_out", "reason")):
        rules = assess.get(key) or []
        if not isinstance(rules, list):
            problems.append(f"{key} must be a list of rules")
            continue
        problems += [f"{key}[{i}]: {p}" for i, r in enumerate(rules) for p in _rule_problems(r, slots, extra)]
    return problems


def record_tool_problems(tool: Mapping[str, Any]) -> list[str]:
    problems = []
    if not re.match(RECORD_KIND_PATTERN, str(tool.get("record_kind") or "")):
        problems.append("a record tool needs a record_kind (lower-case letters, digits and _)")
    if tool.get("capacity") is not None:
        problems += capacity_problems(tool["capacity"])
    return problems


def _target(value: Any, today: date) -> Any:
    if isinstance(value, str) and (m := _RELATIVE.match(value)):
        return (today + timedelta(days=int(m.group(1)))).isoformat()
    return value


def holds(rule: Mapping[str, Any], slots: Mapping[str, Any], today: date) -> bool:
    """Whether the rule is true of the answers; a rule on an unanswered slot is false (except `ne`)."""
    op = rule["op"]
    if rule["slot"] not in slots or slots[rule["slot"]] is None:
        return op == "ne"
    have, want = slots[rule["slot"]], _target(rule.get("value"), today)
    if op == "answered":
        return True
    if op == "eq":
        return bool(have == want)
    if op == "ne":
        return bool(have != want)
    if op == "in":
        return have in want
    try:
        return bool({"gte": have >= want, "lte": have <= want, "gt": have > want, "lt": have < want}[op])
    except TypeError:  # a number rule on a text answer: not true
        return False


def assess(rules: Mapping[str, Any], slots: Mapping[str, Any], today: date) -> dict[str, Any]:
    """{score, knocked_out, reason}: the points of every rule that holds; knocked out by the first
    knock-out rule that holds, whose reason is given ("" when none)."""
    score = sum(r["points"] for r in rules.get("points") or [] if holds(r, slots, today))
    first = next((r for r in rules.get("knock_out") or [] if holds(r, slots, today)), None)
    return {"score": score, "knocked_out": first is not None, "reason": str(first["reason"]) if first else ""}
