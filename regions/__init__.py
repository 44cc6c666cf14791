"""AutoSpeak regions."""

from regions.catalogue import (
    REGIONS,
    InvalidE164Error,
    Region,
    RegionError,
    UnknownRegionError,
    UnservedNumberError,
    get_region,
    region_for_number,
)
from regions.residency import Allow, Redirect, Refuse, check_residency, home_region

__all__ = [
    "REGIONS",
    "Allow",
    "InvalidE164Error",
    "Redirect",
    "Refuse",
    "Region",
    "RegionError",
    "UnknownRegionError",
    "UnservedNumberError",
    "check_residency",
    "get_region",
    "home_region",
    "region_for_number",
]
