"""The key service that wraps tenants' data keys with the region's key (envelope encryption).

`Kms` is the small interface a cloud KMS would implement (`wrap`/`unwrap` a data key for a tenant).
`LocalKms`, the embedded default, holds the region key from the cell's secret store
(`AUTOSPEAK_SECRETS_KEY`, which `autospeak up` hands to the control plane and to every worker). It
does not use that key directly: it derives a key-encryption key of its own (HKDF), so the recordings'
keys and the sealed provider secrets never share a key. `key_id` names the region key (not secret):
a data key wrapped under another region key (rotated, or a cell without it) gives a clear error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE: Final = 12
_KEK_INFO: Final = b"autospeak recordings key-encryption key v1"
REGION_KEY_ENV: Final = "AUTOSPEAK_SECRETS_KEY"  # the cell's secret store (control.api.sealing reads it too)


class KeyUnavailable(RuntimeError):
    """A key needed to open a recording is not here: no region key, another (rotated) region key, or
    a wrapped key that was tampered with."""


class Kms(Protocol):
    @property
    def key_id(self) -> str: ...
    def wrap(self, tenant_id: str, data_key: bytes) -> bytes: ...
    def unwrap(self, tenant_id: str, wrapped: bytes) -> bytes: ...


def region_key_id(region_key: bytes) -> str:
    """A public name for a region key (16 hex digits of a hash that reveals nothing of the key)."""
    return hashlib.sha256(b"autospeak region key id:" + region_key).hexdigest()[:16]


class LocalKms:
    """The region key kept in the cell's secret store. Wrapped keys are bound to their tenant (AAD):
    a data key copied into another tenant's keyring does not unwrap."""

    def __init__(self, region_key: bytes) -> None:
        if len(region_key) != 32:
            raise ValueError("the region key must hold 32 bytes")
        self._kek = HKDF(hashes.SHA256(), 32, salt=None, info=_KEK_INFO).derive(region_key)
        self._id = region_key_id(region_key)

    @property
    def key_id(self) -> str:
        return self._id

    def _aad(self, tenant_id: str) -> bytes:
        return f"recording-data-key:{tenant_id}:{self._id}".encode()

    def wrap(self, tenant_id: str, data_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self._kek).encrypt(nonce, data_key, self._aad(tenant_id))

    def unwrap(self, tenant_id: str, wrapped: bytes) -> bytes:
        try:
            return AESGCM(self._kek).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], self._aad(tenant_id))
        except (InvalidTag, ValueError) as exc:
            raise KeyUnavailable(f"a data key of tenant {tenant_id} does not unwrap with region key "
                                 f"{self._id} (another tenant's key, or tampered)") from exc


def kms_from_env(env: Mapping[str, str] | None = None) -> LocalKms | None:
    """The embedded key service from the cell's secret store; None when no region key is set. A key
    that is set but malformed is an error (recording without it would silently record nothing)."""
    raw = (os.environ if env is None else env).get(REGION_KEY_ENV, "").strip()
    if not raw:
        return None
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{REGION_KEY_ENV} must be URL-safe base64") from None
    if len(key) != 32:
        raise ValueError(f"{REGION_KEY_ENV} must hold 32 bytes, got {len(key)}")
    return LocalKms(key)
