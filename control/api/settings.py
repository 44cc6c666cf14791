"""What a cell's control API needs to know about itself and its neighbours."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from control.knowledge.settings import KnowledgeSettings
from regions.catalogue import get_region
from regions.residency import cell_directory


@dataclass(frozen=True)
class ControlSettings:
    region: str
    """The cell's own region: the only region whose tenants it serves."""
    database_url: str
    cells: Mapping[str, str] = field(default_factory=dict)
    """Region code -> base URL of that region's control API, for residency redirects."""
    redirect_cross_region: bool = True
    """False: answer 421 instead of redirecting (for deployments that must not reveal other cells)."""
    max_body_bytes: int = 64 * 1024
    rate_per_second: float = 20.0
    rate_burst: int = 40
    idempotency_ttl: timedelta = timedelta(hours=24)
    default_token_ttl: timedelta = timedelta(days=90)
    public_base_url: str = ""
    """This cell's URL as the carrier sees it (Twilio signs webhooks over it); defaults to cells[region]."""
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_shared_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Twilio webhook signing keys (id -> secret) for URLs a Webhook Rule signs with a shared key."""
    nats_url: str | None = None
    """The region's NATS server; None runs the REST API alone (no calls, no event consumer)."""
    object_store_root: Path | None = None
    """Root of the per-region object stores (recordings); see regions.objectstore.RegionStore."""
    dialer: Any = None
    """Places outbound calls (control.api.outbound.Dialer); None answers 503 to outbound requests."""
    platform_token: str | None = field(default=None, repr=False)
    """The platform operator's secret for creating tenants (POST /v1/tenants); None disables it."""
    allow_private_webhooks: bool = False
    """Let tenant webhooks target loopback/private addresses over http (the embedded stack, tests)."""
    secrets_key: bytes | None = field(default=None, repr=False)
    """The region key that seals agents' provider secrets at rest (control.api.sealing); None: unsealed."""
    run_background: bool = True
    """Run the event consumer and the webhook dispatcher in this process (needs nats_url)."""
    knowledge: KnowledgeSettings = field(default_factory=KnowledgeSettings)
    """Knowledge base limits (document size, quotas), URL-fetch policy and the search threshold."""

    def __post_init__(self) -> None:
        get_region(self.region)
        object.__setattr__(self, "cells", cell_directory(self.cells))
        if self.max_body_bytes < 1 or self.rate_per_second <= 0 or self.rate_burst < 1:
            raise ValueError("body limit and rate limits must be positive")
