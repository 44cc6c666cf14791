"""API tokens, roles and the `require(role)` guard every tenant route goes through.

A token reads `as_<region>_<43 url-safe chars>` (256 random bits). Only its SHA-256 is stored: a
token this random cannot be brute-forced from its digest, so a slow password hash buys nothing. The
region in the token lets a cell send it to the home cell without a database lookup.

The guard's order matters for "no existence leak": a token that does not belong to the tenant named
in the path gets the same 401 as an invalid token, whether that tenant exists here, lives in another
region or does not exist at all, before any role check. A token minted in another region is
redirected (307) to that region's cell, whatever tenant it names.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, ParamSpec, TypeVar

from quart import g, request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control.api.problems import ApiProblem
from control.api.ratelimit import retry_after_header
from control.api.residency import enforce_residency
from control.api.state import api_state, sessions
from control.db.base import TOKEN_ROLES
from control.db.models import ApiToken, Plan, Tenant
from control.db.tenancy import TenantScope, unscoped
from control.db.topology import REGIONS, check_region

P = ParamSpec("P")
T = TypeVar("T")

ROLE_RANK: Final = {role: rank for rank, role in enumerate(reversed(TOKEN_ROLES))}  # viewer=0 .. owner=3
_TOKEN_RE: Final = re.compile(r"^as_(" + "|".join(REGIONS) + r")_[A-Za-z0-9_-]{43}$")
PREFIX_LEN: Final = 12


@dataclass(frozen=True, slots=True)
class AuthContext:
    token_id: uuid.UUID
    role: str
    scope: TenantScope

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.scope.tenant_id


def new_token(region: str) -> tuple[str, bytes, str]:
    """A fresh token for `region`: (plaintext shown once, stored digest, display prefix)."""
    check_region(region)
    plaintext = f"as_{region}_{secrets.token_urlsafe(32)}"
    return plaintext, hash_token(plaintext), plaintext[:PREFIX_LEN]


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def token_region(token: str) -> str | None:
    m = _TOKEN_RE.match(token)
    return m.group(1) if m else None


def make_token_row(scope: TenantScope, role: str, *, name: str = "", ttl: timedelta | None,
                   now: datetime | None = None) -> tuple[ApiToken, str]:
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")
    plaintext, digest, prefix = new_token(scope.region)
    now = now or datetime.now(UTC)
    row = scope.new(ApiToken, name=name, token_hash=digest, prefix=prefix, role=role, created_at=now,
                    expires_at=(now + ttl) if ttl is not None else None)
    return row, plaintext


async def bootstrap_tenant(session: AsyncSession, name: str, region: str, *, plan: str = "starter",
                           token_ttl: timedelta | None = None,
                           tenant_id: uuid.UUID | None = None) -> tuple[Tenant, str]:
    """Operator command: create a tenant homed in `region` and its first owner token.

    Used by `POST /v1/tenants` (the platform operator) and the embedded stack's seed. The caller owns the
    transaction (run it inside `run_transaction`). The token's plaintext is returned once, never stored.
    """
    check_region(region)
    if await session.get(Plan, plan) is None:
        session.add(Plan(id=plan, name=plan.title(), monthly_price_cents=0, included_minutes=0, limits={}))
    tenant = Tenant(id=tenant_id or uuid.uuid4(), name=name, home_region=region, plan=plan,
                    created_at=datetime.now(UTC))
    session.add(tenant)
    await session.flush()  # the token's (tenant_id, region) foreign key needs the tenant row first
    token, plaintext = make_token_row(TenantScope(tenant.id, region), "owner", name="bootstrap owner",
                                      ttl=token_ttl)
    session.add(token)
    await session.flush()
    return tenant, plaintext


async def _load_token(region: str, token: str) -> ApiToken | None:
    digest = hash_token(token)
    stmt = unscoped(select(ApiToken).where(ApiToken.region == region, ApiToken.token_hash == digest),
                    "authentication: the token's tenant is not known until the token is found")
    async with sessions()() as session:
        row = await session.scalar(stmt)
    # The lookup is by digest, so timing reveals nothing about the secret; the constant-time compare
    # guards against a lookup that ever matches loosely (collation, prefix index, caching layer).
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "Unauthorized", detail, slug="unauthorized",
                      headers={"WWW-Authenticate": 'Bearer realm="autospeak"'})


def _not_valid_here() -> ApiProblem:
    # One answer for a bad token and for a good token naming a tenant that is not its own (existing
    # here, homed elsewhere, or unknown), so a token cannot probe which tenant ids exist.
    return _unauthorized("The token is not valid or has expired.")


async def authenticate(tenant_id: uuid.UUID) -> AuthContext:
    """Resolve the caller for a request on `tenant_id`, or raise 401 / 307 / 421 / 429."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Send an API token as 'Authorization: Bearer <token>'.")
    claimed = token_region(token)
    if claimed is None:
        raise _unauthorized("The token is not valid.")
    state = api_state()
    # A token is kept in its tenant's home region and names that region, so a token of another
    # region is sent there (307, or 421 when redirects are off) on its own say-so, without looking
    # the tenant up: whatever tenant id it names, real or not, here or elsewhere, the answer is the
    # same, so no token (made up or real) learns from this cell which tenants exist or where. The
    # home cell then checks the token; it never bounces back, since there the token is local.
    if claimed != state.settings.region:
        enforce_residency(claimed)
    # A token is stored in its tenant's home region, so one minted elsewhere is not valid here.
    row = await _load_token(state.settings.region, token) if claimed == state.settings.region else None
    now = datetime.now(UTC)
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise _not_valid_here()
    if row.tenant_id != tenant_id:
        raise _not_valid_here()
    wait = state.limiter.take(str(row.id))
    if wait > 0:
        raise ApiProblem(429, "Too Many Requests", "Rate limit exceeded for this token.",
                         slug="rate-limited", headers={"Retry-After": retry_after_header(wait)})
    return AuthContext(row.id, row.role, TenantScope(row.tenant_id, row.region))


def require(role: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Guard a view whose URL has `<uuid:tenant_id>`: the caller needs at least `role` on that tenant."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    def decorate(view: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(view)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            tenant_id: Any = kwargs["tenant_id"]
            ctx = await authenticate(tenant_id)
            g.auth = ctx  # before the role check, so that a refused attempt is audited too
            if ROLE_RANK[ctx.role] < ROLE_RANK[role]:
                raise ApiProblem(403, "Forbidden", f"This action needs the {role} role.", slug="forbidden")
            return await view(*args, **kwargs)

        guarded.required_role = role  # type: ignore[attr-defined]  # read by the OpenAPI builder
        return guarded

    return decorate


def current_auth() -> AuthContext:
    return g.auth
