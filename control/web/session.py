"""The console's session: an encrypted, authenticated cookie holding the signed-in API token.

The cookie is sealed with AES-GCM, so the browser holds only ciphertext: the token cannot be read from
a stolen cookie jar without the cell's key, and a cookie altered by one bit is refused. The key comes
from the cell's region key (HKDF with a label of its own) when one is configured, so every process of a
cell accepts its sessions; without one, each process draws a random key and sessions end at restart.

The token itself is checked by the API on every page (each page asks the API through it), so a token
revoked or expired after sign-in ends the session at the next click.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from quart import Response, request

from control.api.state import api_state

COOKIE: Final = "as_session"
SIGNIN_COOKIE: Final = "as_signin"  # the sign-in form's CSRF value, before any session exists
LIFETIME_S: Final = 8 * 3600
_NONCE: Final = 12
_AAD: Final = b"autospeak-console-session-v1"


@dataclass(frozen=True, slots=True)
class WebSession:
    token: str
    tenant_id: str
    role: str
    csrf: str
    expires: float

    @property
    def tenant(self) -> uuid.UUID:
        return uuid.UUID(self.tenant_id)


def session_key(region_key: bytes | None) -> bytes:
    """A 256-bit key for the session cookie: derived from the region key, else random per process."""
    if not region_key:
        return AESGCM.generate_key(bit_length=256)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"autospeak console session cookie").derive(region_key)


class SessionCodec:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def new(self, token: str, tenant_id: uuid.UUID, role: str, now: float | None = None) -> WebSession:
        now = time.time() if now is None else now
        return WebSession(token, str(tenant_id), role, secrets.token_urlsafe(32), now + LIFETIME_S)

    def seal(self, session: WebSession) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, json.dumps(asdict(session)).encode(), _AAD)
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, cookie: str | None, now: float | None = None) -> WebSession | None:
        """The session in `cookie`, or None when it is missing, altered, foreign or expired."""
        if not cookie:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie.encode("ascii"))
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
            session = WebSession(**json.loads(plain))
        except (InvalidTag, ValueError, TypeError, binascii.Error, UnicodeError):
            return None
        if session.expires <= (time.time() if now is None else now):
            return None
        return session


def csrf_matches(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _secure() -> bool:
    """Secure when the page came over https, or the cell's public URL is https (TLS ended at a proxy
    in front of it, which the app sees as plain http)."""
    settings = api_state().settings
    public = settings.public_base_url or settings.cells.get(settings.region, "")
    return request.scheme == "https" or public.startswith("https://")


def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    """HttpOnly and SameSite=Strict always; Secure whenever the cell is served over https."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                        secure=_secure())


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="Strict", secure=_secure())
