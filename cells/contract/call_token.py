"""One-time signed call tokens: how a media worker knows a stream was sent to it by our control plane.

The voice webhook mints a token when it hands a call to a worker and Twilio carries it to the worker as a
`<Parameter>` of `<Stream>` (Twilio drops query strings from stream URLs). The worker redeems it exactly
once: signature, expiry, audience (that worker) and single use are all checked.

Wire format (URL-safe, no padding): `v1.<base64url(json claims)>.<base64url(HMAC-SHA256)>`. Claims are
signed, not encrypted: they hold ids only, never secrets.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

VERSION = "v1"
MIN_SECRET_BYTES = 32
DEFAULT_TTL_S = 60.0  # Twilio connects the stream within a second or two of the TwiML answer
MAX_TOKEN_CHARS = 2048  # refuse to even decode anything bigger
SECRET_ENV = "AUTOSPEAK_CALL_TOKEN_SECRET"


class CallTokenError(ValueError):
    """The token cannot be accepted. `reason` is short, stable and safe to log (never the token)."""

    reason = "bad_token"


class BadCallToken(CallTokenError):
    """Malformed, or the signature does not match (tampered, or minted with another secret)."""

    reason = "bad_token"


class ExpiredCallToken(CallTokenError):
    reason = "expired_token"


class WrongAudience(CallTokenError):
    """The token was minted for another worker."""

    reason = "wrong_audience"


class ReusedCallToken(CallTokenError):
    """The token was already redeemed (a replayed or duplicated stream)."""

    reason = "reused_token"


@dataclass(frozen=True, slots=True)
class CallClaims:
    call_id: str
    tenant_id: str
    agent_id: str
    audience: str  # the worker the call was assigned to
    expires_at: int  # unix seconds
    nonce: str
    call_sid: str = ""  # the carrier's call id, so a token cannot be spliced onto another call's stream

    def _to_wire(self) -> dict[str, str | int]:
        wire: dict[str, str | int] = {"c": self.call_id, "t": self.tenant_id, "a": self.agent_id,
                                      "w": self.audience, "e": self.expires_at, "n": self.nonce}
        if self.call_sid != self.call_id:  # inbound calls use the CallSid as call id: keep tokens short
            wire["s"] = self.call_sid
        return wire

    @classmethod
    def _from_wire(cls, data: object) -> CallClaims:
        if not isinstance(data, dict):
            raise BadCallToken("call token claims are not an object")
        try:
            strings = {k: data[k] for k in ("c", "t", "a", "w", "n")}
            strings["s"] = data.get("s", strings["c"])
            expires_at = data["e"]
        except KeyError as exc:
            raise BadCallToken(f"call token lacks claim {exc.args[0]!r}") from None
        if not all(isinstance(v, str) for v in strings.values()) or type(expires_at) is not int:
            raise BadCallToken("call token claims have the wrong types")
        return cls(call_id=strings["c"], tenant_id=strings["t"], agent_id=strings["a"], audience=strings["w"],
                   expires_at=expires_at, nonce=strings["n"], call_sid=strings["s"])


class ReplayStore(Protocol):
    """Remembers redeemed nonces until their token expires. A NATS KV bucket (create-if-absent, with a
    TTL) can implement the same method so that single use holds across workers."""

    async def claim(self, nonce: str, expires_at: float) -> bool:
        """True the first time `nonce` is claimed; False if it was claimed before."""
        ...


class MemoryReplayStore:
    """In-process replay store. Entries expire with their token, so memory stays bounded by the rate of
    calls times the token TTL."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def claim(self, nonce: str, expires_at: float) -> bool:
        async with self._lock:
            now = self._clock()
            if len(self._seen) > 1024:  # amortised purge; lookups below still honour expiry
                self._seen = {n: t for n, t in self._seen.items() if t > now}
            seen_until = self._seen.get(nonce)
            if seen_until is not None and seen_until > now:
                return False
            self._seen[nonce] = max(expires_at, now)
            return True

    def __len__(self) -> int:
        return len(self._seen)


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadCallToken("call token is not base64url") from None


def _as_key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the call token secret must be at least {MIN_SECRET_BYTES} bytes")
    return key


class CallTokenAuthority:
    """Mints and redeems call tokens. `previous_secrets` still verify (key rotation) but never sign.

    The secret is never part of repr, logs or error messages.
    """

    def __init__(self, secret: str | bytes, *, previous_secrets: Sequence[str | bytes] = (),
                 ttl_s: float = DEFAULT_TTL_S, replay_store: ReplayStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = _as_key(secret)
        self._verify_keys = (self._key, *(_as_key(s) for s in previous_secrets))
        self.ttl_s = ttl_s
        self._clock = clock
        self.replay_store: ReplayStore = replay_store or MemoryReplayStore(clock)

    @classmethod
    def from_env(cls, env_var: str = SECRET_ENV, **kwargs: object) -> CallTokenAuthority:
        secret = os.environ.get(env_var)
        if not secret:
            raise ValueError(f"set {env_var} to a random secret of at least {MIN_SECRET_BYTES} bytes")
        return cls(secret, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"CallTokenAuthority(ttl_s={self.ttl_s})"

    def _sign(self, key: bytes, body: str) -> bytes:
        return hmac.new(key, f"{VERSION}.{body}".encode("ascii"), hashlib.sha256).digest()

    def mint(self, *, call_id: str, tenant_id: str, agent_id: str, audience: str, call_sid: str = "",
             ttl_s: float | None = None) -> str:
        if not (call_id and tenant_id and agent_id and audience):
            raise ValueError("a call token needs a call id, tenant, agent and audience")
        claims = CallClaims(call_id=call_id, tenant_id=tenant_id, agent_id=agent_id, audience=audience,
                            expires_at=int(self._clock() + (self.ttl_s if ttl_s is None else ttl_s)),
                            nonce=_b64e(secrets.token_bytes(12)), call_sid=call_sid)
        body = _b64e(json.dumps(claims._to_wire(), separators=(",", ":")).encode("utf-8"))
        return f"{VERSION}.{body}.{_b64e(self._sign(self._key, body))}"

    def verify(self, token: str, *, audience: str) -> CallClaims:
        """Signature, expiry and audience; does not consume the token (see `redeem`)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise BadCallToken("call token is missing or too long")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise BadCallToken("call token is not in the v1 format")
        _, body, signature = parts
        try:
            given = _b64d(signature)
            body.encode("ascii")
        except UnicodeEncodeError:
            raise BadCallToken("call token is not base64url") from None
        if not any(hmac.compare_digest(given, self._sign(k, body)) for k in self._verify_keys):
            raise BadCallToken("call token signature does not match")
        try:
            claims = CallClaims._from_wire(json.loads(_b64d(body)))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadCallToken("call token claims are not JSON") from None
        if claims.expires_at <= self._clock():
            raise ExpiredCallToken(f"call token for call {claims.call_id} has expired")
        if not hmac.compare_digest(claims.audience.encode(), audience.encode()):
            raise WrongAudience(f"call token for call {claims.call_id} was issued for another worker")
        return claims

    async def redeem(self, token: str, *, audience: str) -> CallClaims:
        """`verify`, then consume the token: a second redeem of the same token raises ReusedCallToken."""
        claims = self.verify(token, audience=audience)
        if not await self.replay_store.claim(claims.nonce, claims.expires_at):
            raise ReusedCallToken(f"call token for call {claims.call_id} was already used")
        return claims
