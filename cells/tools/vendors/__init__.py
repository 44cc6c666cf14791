"""Vendor tool kinds: tools a record declares by `kind`, each built on that vendor's documented API.

    calcom      Cal.com API v2 bookings (Reception): slots, book, reschedule, cancel
    greenhouse  Greenhouse Harvest (Recruit): the screen's result on the candidate's application
    mews        Mews Connector API (Stay): availability, reserve
    twilio_sms  Twilio Messages API: a confirmation text

A record names its credentials (`secret`, and for Mews `config.client_token_secret`), never holds them;
the worker resolves them through AgentEnv.secrets. `config` holds the rest (base URL, ids, time zone).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cells.tools.vendors.base import CALL_SCOPE, VendorTool
from cells.tools.vendors.calcom import CalcomTool
from cells.tools.vendors.greenhouse import GreenhouseTool
from cells.tools.vendors.mews import MewsTool
from cells.tools.vendors.twilio_sms import TwilioSmsTool

VENDOR_KINDS: dict[str, type[VendorTool]] = {
    "calcom": CalcomTool, "greenhouse": GreenhouseTool, "mews": MewsTool, "twilio_sms": TwilioSmsTool}

__all__ = ["CALL_SCOPE", "VENDOR_KINDS", "VendorTool", "build_vendor_tool"]


def build_vendor_tool(tool: Mapping[str, Any], secrets: Callable[[str], str | None],
                      allow_private: bool = False) -> VendorTool:
    """The adapter for a declared vendor tool; a missing credential or config is an error now."""
    cls = VENDOR_KINDS[str(tool.get("kind"))]
    return cls.from_record(tool, secrets, allow_private)
