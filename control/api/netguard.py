"""The SSRF guard lives in the contract (cells.contract.netguard), shared with the worker's tools; this
name stays for the control plane's importers."""

from cells.contract.netguard import (
    PinnedTarget,
    UnsafeWebhookTarget,
    check_webhook_url,
    is_public_address,
    pin_to_address,
    resolve_public,
    url_origin,
)

__all__ = [
    "PinnedTarget", "UnsafeWebhookTarget", "check_webhook_url", "is_public_address", "pin_to_address",
    "resolve_public", "url_origin",
]
