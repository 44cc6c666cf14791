"""Recordings encrypted at rest: envelope encryption over the region's object store.

Each tenant has a random 256-bit data key, kept only wrapped (by the region key, through a `Kms`) in
the tenant's keyring object `<tenant>/recording-keys.json`. A recording object is

    header: b"ASREC" | version (1 byte) | data key id (16 hex) | nonce prefix (8) | chunk size (u32)
    body:   AES-256-GCM chunks of `chunk size` plaintext bytes (the last one shorter)

chunk i's nonce is the prefix and i (u32); its associated data is the header, the object's key and
whether it is the last chunk, so a file moved to another key or tenant, reordered or cut short does
not open. Nothing is written in clear: without a key service a recording is not written at all.
Deleting (retention, erasure) and listing (the residency audit) need no key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import time
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from regions.kms import KeyUnavailable, Kms
from regions.objectstore import RegionStore, private_dirs

MAGIC: Final = b"ASREC"
VERSION: Final = 1
KEYRING: Final = "recording-keys.json"
CHUNK: Final = 64 * 1024
_HEAD: Final = struct.Struct(">5sB16s8sI")
_TAG: Final = 16


class RecordingFormatError(ValueError):
    """Bytes that are not a sealed recording, or one that was altered or cut short."""


def is_sealed(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC


def encrypt(data_key: bytes, key_id: str, object_key: str, plaintext: bytes, chunk: int = CHUNK) -> bytes:
    head = _HEAD.pack(MAGIC, VERSION, key_id.encode("ascii"), os.urandom(8), chunk)
    aead, prefix, out = AESGCM(data_key), head[22:30], [head]
    starts = range(0, max(len(plaintext), 1), chunk)
    for i, at in enumerate(starts):
        last = i == len(starts) - 1
        out.append(aead.encrypt(prefix + struct.pack(">I", i), plaintext[at:at + chunk],
                                head + object_key.encode() + (b"\x01" if last else b"\x00")))
    return b"".join(out)


def header_key_id(sealed: bytes) -> str:
    if len(sealed) < _HEAD.size + _TAG or not is_sealed(sealed):
        raise RecordingFormatError("not a sealed recording")
    _, version, key_id, _, chunk = _HEAD.unpack_from(sealed)
    if version != VERSION or chunk <= 0:
        raise RecordingFormatError(f"unknown sealed recording version {version}")
    return key_id.decode("ascii", "replace")


def decrypt(data_key: bytes, object_key: str, sealed: bytes) -> bytes:
    header_key_id(sealed)
    head = sealed[:_HEAD.size]
    chunk = _HEAD.unpack_from(sealed)[4]
    aead, prefix, body = AESGCM(data_key), head[22:30], memoryview(sealed)[_HEAD.size:]
    out, i, at = [], 0, 0
    try:
        while True:
            piece = body[at:at + chunk + _TAG]
            at += len(piece)
            last = at >= len(body)
            out.append(aead.decrypt(prefix + struct.pack(">I", i), bytes(piece),
                                    head + object_key.encode() + (b"\x01" if last else b"\x00")))
            if last:
                return b"".join(out)
            i += 1
    except InvalidTag as exc:
        raise RecordingFormatError("the recording does not open with its key: another tenant's key, "
                                   "another object, or altered or cut short") from exc


class SealedStore:
    """A region store whose objects are sealed with their tenant's data key. Same `put`/`get`/`exists`/
    `delete` as RegionStore; `get` returns the plaintext (callers decide who may have it)."""

    def __init__(self, store: RegionStore, kms: Kms | None) -> None:
        self.store, self.kms = store, kms

    # -- the tenant's keyring --------------------------------------------------------------------
    def _keyring(self, tenant: str) -> dict[str, Any]:
        try:
            doc = json.loads(self.store.get(RegionStore.key(tenant, KEYRING)))
        except FileNotFoundError:
            return {"current": None, "keys": {}}
        except (ValueError, OSError) as exc:
            raise KeyUnavailable(f"tenant {tenant}'s recording keyring is unreadable") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
            raise KeyUnavailable(f"tenant {tenant}'s recording keyring is malformed")
        return doc

    def _create_keyring(self, tenant: str, doc: dict[str, Any]) -> bool:
        """Write the keyring only if none exists (two workers may record a tenant's first call at once):
        a link of a complete temp file, which fails if the name is taken."""
        path = self.store.path(RegionStore.key(tenant, KEYRING))
        private_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            json.dump(doc, f)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def _new_key(self, tenant: str, doc: dict[str, Any]) -> dict[str, Any]:
        assert self.kms is not None
        key_id = os.urandom(8).hex()
        wrapped = self.kms.wrap(tenant, AESGCM.generate_key(bit_length=256))
        doc["keys"][key_id] = {"wrapped": base64.b64encode(wrapped).decode(),
                               "region_key_id": self.kms.key_id, "created_at": int(time.time())}
        doc["current"] = key_id
        return doc

    def _data_key(self, tenant: str, doc: dict[str, Any], key_id: str) -> bytes:
        entry = doc["keys"].get(key_id)
        if not isinstance(entry, dict):
            raise KeyUnavailable(f"recording key {key_id} of tenant {tenant} is not in its keyring (lost)")
        if self.kms is None:
            raise KeyUnavailable("this cell has no region key (AUTOSPEAK_SECRETS_KEY); recordings cannot "
                                 "be opened")
        if entry.get("region_key_id") != self.kms.key_id:
            raise KeyUnavailable(f"recording key {key_id} is wrapped by region key "
                                 f"{entry.get('region_key_id')}; this cell holds region key {self.kms.key_id}"
                                 " (rotated or lost)")
        try:
            return self.kms.unwrap(tenant, base64.b64decode(entry["wrapped"]))
        except (KeyError, binascii.Error) as exc:
            raise KeyUnavailable(f"recording key {key_id} of tenant {tenant} is malformed") from exc

    def current_key(self, tenant: str) -> tuple[str, bytes]:
        """The tenant's data key for new recordings (made on first use, or when the region key changed)."""
        if self.kms is None:
            raise KeyUnavailable("no region key (AUTOSPEAK_SECRETS_KEY): recordings are not written in clear")
        for _ in range(3):
            doc = self._keyring(tenant)
            current = doc.get("current")
            entry = doc["keys"].get(current) if isinstance(current, str) else None
            if isinstance(entry, dict) and entry.get("region_key_id") == self.kms.key_id:
                return current, self._data_key(tenant, doc, current)  # type: ignore[arg-type]
            if not doc["keys"]:
                if self._create_keyring(tenant, self._new_key(tenant, doc)):
                    continue
            else:  # the region key was rotated: a new data key under it; older ones stay for reading
                doc = self._new_key(tenant, doc)
                self.store.put(RegionStore.key(tenant, KEYRING), json.dumps(doc).encode())
        raise KeyUnavailable(f"could not settle tenant {tenant}'s recording key")

    # -- objects ---------------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> int:
        self.store.path(key)  # a bad key fails before any key is made
        tenant = key.partition("/")[0]
        key_id, data_key = self.current_key(tenant)
        return self.store.put(key, encrypt(data_key, key_id, key, data))

    def get(self, key: str) -> bytes:
        """The recording in clear. A file written before recordings were sealed (a plain WAV) is returned
        as it is; a sealed one whose key is not here raises KeyUnavailable."""
        raw = self.store.get(key)
        if not is_sealed(raw):
            if raw[:4] == b"RIFF":
                return raw
            raise RecordingFormatError(f"object {key} is neither a sealed recording nor a WAV")
        tenant = key.partition("/")[0]
        data_key = self._data_key(tenant, self._keyring(tenant), header_key_id(raw))
        return decrypt(data_key, key, raw)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def delete(self, key: str) -> bool:
        return self.store.delete(key)
