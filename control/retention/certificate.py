"""Deletion certificates: what was deleted, where, when and how many, digested and signed.

A certificate names stores, counts and the deleted calls' ids (random UUIDs that mean nothing once the
calls are gone), never the deleted data itself: no phone number, no transcript, no object content.
Its `sha256` covers the canonical JSON of everything else, and `signature` is an HMAC-SHA256 of the
same bytes under a key derived from the region key, so a certificate kept in the audit log, or handed
to the tenant, can be checked for tampering by the region that issued it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

VERSION: Final = 1
_KEY_LABEL: Final = b"autospeak deletion certificate v1"


@dataclass
class StoreReport:
    """What one store held of the deleted calls before, and still holds after (0 when clean)."""

    store: str  # "database:calls", "jetstream:CALLS_EU", "kv:call_state_eu", "object_store:eu"
    found: int = 0
    deleted: int = 0
    remaining: int = 0
    note: str = ""
    checked: bool = True  # False: this process could not reach the store (not configured here)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"store": self.store, "found": self.found, "deleted": self.deleted,
                               "remaining": self.remaining, "checked": self.checked}
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Certificate:
    tenant_id: uuid.UUID
    region: str
    reason: str  # "retention" | "erasure"
    started_at: datetime
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    call_ids: list[str] = field(default_factory=list)
    stores: list[StoreReport] = field(default_factory=list)
    criteria: dict[str, Any] = field(default_factory=dict)  # e.g. {"older_than": ...}; never the number
    finished_at: datetime | None = None

    def report(self, store: str) -> StoreReport:
        for r in self.stores:
            if r.store == store:
                return r
        r = StoreReport(store)
        self.stores.append(r)
        return r

    @property
    def complete(self) -> bool:
        """Every store was checked and holds nothing of the calls any more."""
        return all(r.checked and r.remaining == 0 for r in self.stores)

    def body(self) -> dict[str, Any]:
        return {
            "version": VERSION, "id": str(self.id), "tenant_id": str(self.tenant_id), "region": self.region,
            "reason": self.reason, "criteria": self.criteria,
            "started_at": self.started_at.isoformat(),
            "finished_at": (self.finished_at or datetime.now(UTC)).isoformat(),
            "calls": sorted(self.call_ids), "stores": [r.as_dict() for r in self.stores],
            "complete": self.complete,
        }

    def sealed(self, key: bytes | None) -> dict[str, Any]:
        """The certificate as issued: its body plus `sha256` and, with a region key, `signature`."""
        body = self.body()
        return {**body, **seal(body, key)}


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _signing_key(region_key: bytes) -> bytes:
    # A key of its own, derived from the region key, so a certificate signature can never be
    # confused with (or reused as) anything else the region key protects.
    return hmac.new(region_key, _KEY_LABEL, hashlib.sha256).digest()


def seal(body: dict[str, Any], key: bytes | None) -> dict[str, str]:
    data = _canonical(body)
    out = {"sha256": hashlib.sha256(data).hexdigest()}
    if key:
        out["signature"] = "hmac-sha256:" + hmac.new(_signing_key(key), data, hashlib.sha256).hexdigest()
    return out


def verify(certificate: dict[str, Any], key: bytes | None) -> bool:
    """True when the certificate's digest (and, with a key, its signature) match its body."""
    body = {k: v for k, v in certificate.items() if k not in ("sha256", "signature")}
    expected = seal(body, key)
    if not hmac.compare_digest(expected["sha256"], str(certificate.get("sha256", ""))):
        return False
    if key:
        return hmac.compare_digest(expected["signature"], str(certificate.get("signature", "")))
    return True
