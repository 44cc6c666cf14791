"""Operator audits of the running platform (`python -m control.audit ...`)."""

from control.audit.residency import AuditError, AuditReport, RegionSummary, Violation, audit_residency

__all__ = ["AuditError", "AuditReport", "RegionSummary", "Violation", "audit_residency"]
