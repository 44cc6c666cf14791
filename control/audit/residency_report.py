"""What the residency audit found: violations per store, rows checked per region, and notes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


class AuditError(RuntimeError):
    """The audit could not run to the end (a store unreachable, a schema missing): no verdict."""


@dataclass(frozen=True, slots=True)
class Violation:
    check: str  # db.region/partition/partitions/crdb_region/locality/recording, nats.*, store.object
    where: str  # table and row id, stream and sequence, or store and key
    tenant: str  # tenant id, or "-" for a finding about a whole table or stream
    expected: str  # the region the data belongs in
    found: str  # where it was found instead, and why that is wrong
    region: str = "-"  # the region whose partition, stream or store was being read


@dataclass
class RegionSummary:
    region: str
    tenants: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows checked in this region
    events: int = 0
    call_states: int = 0
    objects: int = 0
    violations: int = 0

    @property
    def rows_total(self) -> int:
        return sum(self.rows.values())


@dataclass
class AuditReport:
    dialect: str
    regions: dict[str, RegionSummary]
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.violations

    def add(self, violation: Violation) -> None:
        self.violations.append(violation)
        if violation.region in self.regions:
            self.regions[violation.region].violations += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "dialect": self.dialect,
            "regions": {
                code: {**asdict(s), "rows_total": s.rows_total} for code, s in self.regions.items()
            },
            "violations": [asdict(v) for v in self.violations],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def format(self) -> str:
        lines: list[str] = []
        verdict = "CLEAN" if self.clean else f"{len(self.violations)} VIOLATION(S)"
        lines.append(f"Residency audit ({self.dialect}): {verdict}")
        lines.append("")
        head = ("region", "tenants", "rows", "events", "call states", "objects", "violations")
        body = [
            (s.region, s.tenants, s.rows_total, s.events, s.call_states, s.objects, s.violations)
            for s in self.regions.values()
        ]
        lines += _table(head, body)
        tables = sorted({t for s in self.regions.values() for t in s.rows})
        if tables:
            lines.append("")
            lines.append("rows checked per table:")
            per_table = [(t, *(s.rows.get(t, 0) for s in self.regions.values())) for t in tables]
            lines += _table(("table", *self.regions), per_table)
        if self.violations:
            lines.append("")
            lines.append("violations:")
            lines += _table(
                ("check", "where", "tenant", "expected", "found"),
                [(v.check, v.where, v.tenant, v.expected, v.found) for v in self.violations],
            )
        if self.notes:
            lines.append("")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _table(head: tuple[Any, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    cells = [tuple(str(c) for c in head), *(tuple(str(c) for c in r) for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*cells[0]).rstrip(), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r).rstrip() for r in cells[1:]]
    return out


# --- queries ----------------------------------------------------------------------------------
# Built as statements (not run) so that their SQL can be read and tested without a server.
