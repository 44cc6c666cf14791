"""The region catalogue: what each regional cell is called in every system it touches.

Data only, plus strict lookups. Nothing here falls back to a default region: a number or a region
code we do not serve is an error, because guessing a region would put a tenant's data in the wrong
jurisdiction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "DEFAULT_BASE_PORT",
    "REGIONS",
    "InvalidE164Error",
    "Region",
    "RegionError",
    "RegionPorts",
    "UnknownRegionError",
    "UnservedNumberError",
    "all_regions",
    "calling_code",
    "get_region",
    "region_for_number",
    "validate_e164",
]


class RegionError(ValueError):
    """Base class for catalogue lookups that cannot be answered."""


class UnknownRegionError(RegionError):
    """A region code that is not in the catalogue."""


class InvalidE164Error(RegionError):
    """A phone number that is not strictly E.164 as we accept it.

    `+`, no leading zero, 8 to 15 digits, no separators: 15 is the E.164 maximum and 8 is below the
    shortest number in any plan a cell serves.
    """


class UnservedNumberError(RegionError):
    """A valid E.164 number whose country calling code no cell serves."""


# The embedded stack (`autospeak up`) lays ports out as base + region offset + service offset, so a
# port number tells an operator which cell and which service it belongs to.
DEFAULT_BASE_PORT: Final = 14000
_SERVICE_OFFSETS: Final = MappingProxyType(
    {"nats_client": 0, "nats_gateway": 1, "nats_monitor": 2, "nats_cluster": 3, "api": 10, "worker": 20}
)


@dataclass(frozen=True, slots=True)
class RegionPorts:
    """The loopback ports of one cell of the embedded stack."""

    nats_client: int
    nats_gateway: int
    nats_monitor: int
    nats_cluster: int
    api: int
    worker: int  # first media-worker port; workers count up from here


@dataclass(frozen=True, slots=True)
class Region:
    """One regional cell and its names in the database, the broker and the object store."""

    code: str  # our short code, also the NATS subject prefix: "<code>.calls.>"
    name: str
    db_region: str  # CockroachDB database region (a cloud region name)
    db_super_region: str  # CockroachDB super region used for domiciling
    nats_cluster: str  # NATS cluster (and gateway) name of the cell
    bucket: str  # object-store bucket in production; directory name in the embedded stack
    port_offset: int
    calling_codes: tuple[str, ...]  # E.164 country calling codes, digits only

    @property
    def nats_tag(self) -> str:
        """The server tag JetStream placement can select the region by."""
        return f"region:{self.code}"

    def ports(self, base: int = DEFAULT_BASE_PORT) -> RegionPorts:
        start = base + self.port_offset
        return RegionPorts(**{svc: start + off for svc, off in _SERVICE_OFFSETS.items()})


# European calling codes (EU/EEA, the UK and Switzerland) are served from the eu cell.
_EUROPE: Final = (
    "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49",
    "350", "351", "352", "353", "354", "356", "357", "358", "359",
    "370", "371", "372", "385", "386", "420", "421", "423",
)  # fmt: skip

REGIONS: Final[MappingProxyType[str, Region]] = MappingProxyType(
    {
        "eu": Region(
            code="eu",
            name="Europe",
            db_region="europe-west1",
            db_super_region="europe",
            nats_cluster="eu",
            bucket="autospeak-eu",
            port_offset=0,
            calling_codes=_EUROPE,
        ),
        "in": Region(
            code="in",
            name="India",
            db_region="asia-south1",
            db_super_region="india",
            nats_cluster="in",
            bucket="autospeak-in",
            port_offset=100,
            calling_codes=("91",),
        ),
        "us": Region(
            code="us",
            name="United States",
            db_region="us-east1",
            db_super_region="americas",
            nats_cluster="us",
            bucket="autospeak-us",
            port_offset=200,
            # +1 is the whole North American Numbering Plan (US, Canada, parts of the Caribbean).
            calling_codes=("1",),
        ),
    }
)

# National significant number lengths where the plan is closed, so that e.g. a 9-digit Indian number
# is rejected rather than stored. Other codes only get the generic E.164 bounds.
_NATIONAL_LENGTHS: Final = MappingProxyType({"1": (10,), "91": (10,)})

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def _build_code_index() -> dict[str, Region]:
    index: dict[str, Region] = {}
    for region in REGIONS.values():
        for code in region.calling_codes:
            if code in index:
                raise RuntimeError(f"calling code +{code} is claimed by {index[code].code} and {region.code}")
            index[code] = region
    return index


_CODE_INDEX: Final = MappingProxyType(_build_code_index())


def all_regions() -> tuple[Region, ...]:
    return tuple(REGIONS.values())


def get_region(code: str) -> Region:
    try:
        return REGIONS[code]
    except KeyError:
        raise UnknownRegionError(f"unknown region {code!r}; known: {', '.join(REGIONS)}") from None


def validate_e164(number: str) -> str:
    """Return the number unchanged if it is strictly E.164, else raise InvalidE164Error."""
    if not isinstance(number, str) or _E164.fullmatch(number) is None:
        raise InvalidE164Error(f"not an E.164 number: {number!r}")
    return number


def calling_code(e164: str) -> str:
    """The country calling code of a valid E.164 number that a cell serves (digits only).

    Calling codes are prefix-free (ITU-T E.164), so at most one of the 1-3 digit prefixes matches.
    """
    digits = validate_e164(e164)[1:]
    for size in (1, 2, 3):
        if digits[:size] in _CODE_INDEX:
            return digits[:size]
    raise UnservedNumberError(f"no cell serves the country calling code of {e164}")


def region_for_number(e164: str) -> Region:
    """The region whose cell serves this number; raises rather than guessing."""
    code = calling_code(e164)
    national = len(e164) - 1 - len(code)
    allowed = _NATIONAL_LENGTHS.get(code)
    if allowed is not None and national not in allowed:
        raise InvalidE164Error(f"{e164}: +{code} numbers have {allowed} national digits, not {national}")
    return _CODE_INDEX[code]
