"""Residency rules as code: a cell serves only tenants homed in its own region.

A request for a tenant homed elsewhere is redirected to the home cell or refused, never proxied and
never served. The functions here are pure: the control API turns a decision into an HTTP answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

from regions.catalogue import Region, RegionError, get_region

__all__ = [
    "REDIRECT_STATUS",
    "Allow",
    "Decision",
    "Redirect",
    "Refuse",
    "TenantLike",
    "cell_directory",
    "check_residency",
    "home_region",
]

# 307 keeps the method and body, so a POST lands on the home cell as a POST.
REDIRECT_STATUS: Final = 307


class TenantLike(Protocol):
    """Anything that knows its home region code (an ORM row, a directory entry, a token claim)."""

    @property
    def region(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Allow:
    region: Region


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str
    region: Region
    status: int = REDIRECT_STATUS


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str
    region: Region


Decision = Allow | Redirect | Refuse


def home_region(tenant: TenantLike) -> Region:
    """The tenant's home region; an unknown code is a data error and raises UnknownRegionError."""
    return get_region(tenant.region)


def cell_directory(urls: Mapping[str, str]) -> dict[str, str]:
    """Validate a region -> cell base URL map (absolute http(s), no query or fragment)."""
    out: dict[str, str] = {}
    for code, url in urls.items():
        get_region(code)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise RegionError(f"cell URL for {code!r} must be an absolute http(s) base URL: {url!r}")
        out[code] = url.rstrip("/")
    return out


def _check_path(path: str, query: str) -> None:
    # The location is built as base + path by concatenation, never urljoin, and the path must not be
    # able to change the host we redirect to: browsers read "//x" and "/\x" as another host.
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        raise ValueError(f"path must be absolute and start with a single '/': {path!r}")
    # Control characters or spaces would let a caller inject headers through the Location value.
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in path + query):
        raise ValueError("path and query must be URL-encoded (no spaces or control characters)")


def check_residency(
    request_region: str,
    tenant_region: str,
    cells: Mapping[str, str],
    *,
    path: str = "/",
    query: str = "",
    redirect: bool = True,
) -> Decision:
    """Decide what the cell of `request_region` does with a request for a tenant of `tenant_region`.

    `cells` maps region codes to cell base URLs (see cell_directory). `path` and `query` are the
    request's own, carried to the home cell. With redirect=False every cross-region request is refused
    (for callers, such as carrier webhooks, that must not be bounced around).
    """
    _check_path(path, query)
    here = get_region(request_region)
    home = get_region(tenant_region)
    if here == home:
        return Allow(here)
    if not redirect:
        return Refuse(f"tenant is homed in {home.code}, not {here.code}", home)
    base = cells.get(home.code)
    if base is None:
        return Refuse(f"no cell URL known for region {home.code}", home)
    location = base.rstrip("/") + path + (f"?{query}" if query else "")
    return Redirect(location, home)
