"""Where data lives: the application regions and the CockroachDB regions that hold them.

The application names a region `eu`, `in` or `us`; CockroachDB names its database regions after the
nodes' `--locality=region=...`, which in production are cloud region names. The mapping is kept here
so that the migration, the offline DDL renderer and the tests read one source.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Final

REGIONS: Final[tuple[str, ...]] = ("eu", "in", "us")

_DEFAULT_CRDB_REGIONS: Final = {"eu": "europe-west1", "in": "asia-south1", "us": "us-east1"}


def crdb_regions() -> MappingProxyType[str, str]:
    """App region -> CockroachDB database region, overridable as `eu=europe-west1,in=...`.

    The override exists because a local three-node cluster usually names its localities `eu`, `in`, `us`.
    """
    raw = os.environ.get("AUTOSPEAK_CRDB_REGIONS", "").strip()
    mapping = dict(_DEFAULT_CRDB_REGIONS)
    if raw:
        for pair in raw.split(","):
            app, _, crdb = pair.partition("=")
            if app.strip() not in REGIONS or not crdb.strip():
                raise ValueError(f"bad AUTOSPEAK_CRDB_REGIONS entry: {pair!r}")
            mapping[app.strip()] = crdb.strip()
    return MappingProxyType(mapping)


def crdb_primary_region() -> str:
    """The database's primary region: GLOBAL tables' writes are coordinated from here."""
    return crdb_regions()[os.environ.get("AUTOSPEAK_CRDB_PRIMARY", "eu")]


def crdb_super_regions() -> dict[str, tuple[str, ...]]:
    """One super region per application region, so each tenant's rows are domiciled in its jurisdiction.

    Adding a second cloud region to a jurisdiction (say europe-west4) means adding it to that tuple.
    """
    return {app: (crdb,) for app, crdb in crdb_regions().items()}


def check_region(region: str) -> str:
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}")
    return region
