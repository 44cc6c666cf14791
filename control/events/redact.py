"""Redaction of call text before the control plane stores or sends it: the rules are the contract's
(cells.contract.redaction), which the worker applies first, before anything leaves it."""

from __future__ import annotations

from cells.contract.redaction import (
    CARD,
    CVV,
    EMAIL,
    EXPIRY,
    KEEP_KEYS,
    PHONE,
    luhn_valid,
    redact_payload,
    redact_text,
)

__all__ = ["CARD", "CVV", "EMAIL", "EXPIRY", "KEEP_KEYS", "PHONE", "luhn_valid", "redact_payload",
           "redact_text"]
