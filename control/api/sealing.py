"""Sealed provider secrets: envelope encryption of an agent's secret options at rest.

Each secret is encrypted (AES-256-GCM) with a fresh data key, and the data key is wrapped with the
region's key, which lives in the cell's secret store (the environment, `AUTOSPEAK_SECRETS_KEY`; the
embedded stack keeps it in `autospeak-data/secrets.json`), never in the database. Both layers take
the tenant's id as associated data, so a sealed value copied into another tenant's agent does not
open. A sealed option is stored as {"sealed": "v1.<wrapped key>.<ciphertext>"} (URL-safe base64,
each with its 12-byte nonce in front). Without a region key secrets are stored as given (and still
never returned by the API).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control.api.secret_options import is_secret

SECRETS_KEY_ENV: Final = "AUTOSPEAK_SECRETS_KEY"
_VERSION: Final = "v1"
_NONCE: Final = 12


class SealError(ValueError):
    """A sealed value that does not open with this region's key (another key, tenant or a tamper)."""


def parse_region_key(raw: str | None) -> bytes | None:
    """The region key from its URL-safe base64 form (32 bytes); None when unset."""
    if not raw or not raw.strip():
        return None
    try:
        key = base64.urlsafe_b64decode(raw.strip() + "=" * (-len(raw.strip()) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{SECRETS_KEY_ENV} must be URL-safe base64") from None
    if len(key) != 32:
        raise ValueError(f"{SECRETS_KEY_ENV} must hold 32 bytes, got {len(key)}")
    return key


def new_region_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(region_key: bytes, tenant_id: str, plaintext: str) -> dict[str, str]:
    aad = str(tenant_id).encode()
    data_key = AESGCM.generate_key(bit_length=256)
    n1, n2 = os.urandom(_NONCE), os.urandom(_NONCE)
    wrapped = n1 + AESGCM(region_key).encrypt(n1, data_key, b"data-key:" + aad)
    body = n2 + AESGCM(data_key).encrypt(n2, plaintext.encode(), aad)
    return {"sealed": f"{_VERSION}.{_b64(wrapped)}.{_b64(body)}"}


def is_sealed(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("sealed"), str)


def unseal(region_key: bytes, tenant_id: str, value: Mapping[str, Any]) -> str:
    aad = str(tenant_id).encode()
    try:
        version, wrapped_text, body_text = str(value["sealed"]).split(".")
        if version != _VERSION:
            raise SealError(f"unknown sealed value version {version!r}")
        wrapped, body = _unb64(wrapped_text), _unb64(body_text)
        data_key = AESGCM(region_key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], b"data-key:" + aad)
        return AESGCM(data_key).decrypt(body[:_NONCE], body[_NONCE:], aad).decode()
    except (InvalidTag, ValueError, KeyError, binascii.Error) as exc:
        raise SealError("a sealed secret does not open with this region's key") from exc


def _each_secret(providers: Any, change: Any) -> Any:
    """`providers` with `change(value)` applied to every secret option's value."""
    if not isinstance(providers, Mapping):
        return providers
    out: dict[str, Any] = {}
    for role, ref in providers.items():
        if isinstance(ref, Mapping) and isinstance(ref.get("options"), Mapping):
            options = {k: (change(v) if is_secret(str(k)) else v) for k, v in ref["options"].items()}
            out[role] = {**ref, "options": options}
        else:
            out[role] = ref
    return out


def seal_providers(providers: Any, region_key: bytes | None, tenant_id: str) -> Any:
    """Every secret option given in clear sealed (sealed ones stay); as given without a region key."""
    if region_key is None:
        return providers
    return _each_secret(providers, lambda v: seal(region_key, tenant_id, v) if isinstance(v, str) else v)


def unseal_providers(providers: Any, region_key: bytes | None, tenant_id: str) -> Any:
    """The providers as a worker needs them (secrets in clear). A sealed option that does not open
    (no key, another key) is left out: the provider then fails as it would without its key."""
    drop = object()

    def open_one(value: Any) -> Any:
        if not is_sealed(value):
            return value
        if region_key is None:
            return drop
        try:
            return unseal(region_key, tenant_id, value)
        except SealError:
            return drop

    opened = _each_secret(providers, open_one)
    if not isinstance(opened, Mapping):
        return opened
    return {role: ({**ref, "options": {k: v for k, v in ref["options"].items() if v is not drop}}
                   if isinstance(ref, Mapping) and isinstance(ref.get("options"), Mapping) else ref)
            for role, ref in opened.items()}
