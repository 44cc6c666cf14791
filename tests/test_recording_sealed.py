"""Recordings sealed at rest (regions.sealed_store, regions.kms): what is on disk is not the audio,
only the tenant's own data key opens it, and a lost or rotated key says so."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

import media_core
from cells.call.recorder import CallRecorder
from regions.kms import KeyUnavailable, LocalKms, kms_from_env
from regions.objectstore import RegionStore
from regions.sealed_store import KEYRING, RecordingFormatError, SealedStore, decrypt, encrypt

TENANT_A, TENANT_B = str(uuid.uuid4()), str(uuid.uuid4())


def tone_ulaw(seconds: float) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return media_core.ulaw_encode((6000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16))


def recording(seconds: float = 2.0) -> tuple[bytes, bytes]:
    """A call recording (WAV) whose caller track is a 1 kHz test tone, and that tone in mu-law."""
    ulaw = tone_ulaw(seconds)
    rec = CallRecorder()
    for i in range(0, len(ulaw), 160):
        rec.caller_ulaw(ulaw[i:i + 160])
    return rec.wav(), ulaw


def sealed(tmp_path: Path, key: bytes | None = None) -> SealedStore:
    return SealedStore(RegionStore(tmp_path, "eu"), LocalKms(key or os.urandom(32)))


def test_the_file_on_disk_is_not_the_audio_and_opens_with_the_key(tmp_path: Path) -> None:
    store = sealed(tmp_path)
    wav, ulaw = recording()
    key = RegionStore.key(TENANT_A, "call-1-MZ1.wav")
    store.put(key, wav)
    raw = store.store.path(key).read_bytes()
    assert b"RIFF" not in raw and b"WAVE" not in raw
    # No run of the tone, neither as the carrier sent it (mu-law) nor as the WAV holds it (PCM).
    pcm = wav[44:]
    for at in range(0, 8000, 997):
        assert ulaw[at:at + 16] not in raw
        assert pcm[2 * at:2 * at + 16] not in raw
    assert store.get(key) == wav
    assert oct(store.store.path(key).stat().st_mode & 0o777) == "0o600"
    # The keyring holds the data key only wrapped.
    ring = json.loads(store.store.get(RegionStore.key(TENANT_A, KEYRING)))
    assert list(ring["keys"]) == [ring["current"]] and "wrapped" in ring["keys"][ring["current"]]


def test_another_tenants_key_does_not_open_a_recording(tmp_path: Path) -> None:
    store = sealed(tmp_path)
    wav, _ = recording(0.5)
    mine, theirs = RegionStore.key(TENANT_A, "x.wav"), RegionStore.key(TENANT_B, "x.wav")
    store.put(mine, wav)
    store.put(RegionStore.key(TENANT_B, "other.wav"), wav)  # tenant B has a data key of its own
    # A's file copied under B: B's keyring has no such key.
    store.store.put(theirs, store.store.get(mine))
    with pytest.raises(KeyUnavailable, match="not in its keyring"):
        store.get(theirs)
    # B's data key on A's file (its id forced to match): the AEAD refuses it.
    _, b_key = store.current_key(TENANT_B)
    a_id, _ = store.current_key(TENANT_A)
    with pytest.raises(RecordingFormatError):
        decrypt(b_key, mine, store.store.get(mine))
    # A's wrapped data key planted in B's keyring does not unwrap for B (the tenant is bound in).
    ring_a = json.loads(store.store.get(RegionStore.key(TENANT_A, KEYRING)))
    ring_b = json.loads(store.store.get(RegionStore.key(TENANT_B, KEYRING)))
    ring_b["keys"][a_id] = ring_a["keys"][a_id]
    store.store.put(RegionStore.key(TENANT_B, KEYRING), json.dumps(ring_b).encode())
    with pytest.raises(KeyUnavailable, match="does not unwrap"):
        store.get(theirs)
    assert store.get(mine) == wav


def test_a_rotated_or_missing_region_key_is_a_clear_error(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    wav, _ = recording(0.5)
    key = RegionStore.key(TENANT_A, "old.wav")
    sealed(tmp_path, old).put(key, wav)
    rotated = sealed(tmp_path, new)
    with pytest.raises(KeyUnavailable, match="rotated or lost"):
        rotated.get(key)
    # New recordings get a new data key under the new region key; the old one stays for reading.
    rotated.put(RegionStore.key(TENANT_A, "new.wav"), wav)
    assert rotated.get(RegionStore.key(TENANT_A, "new.wav")) == wav
    assert sealed(tmp_path, old).get(key) == wav
    with pytest.raises(KeyUnavailable, match="no region key"):
        SealedStore(RegionStore(tmp_path, "eu"), None).get(key)


def test_without_a_key_service_nothing_is_written(tmp_path: Path) -> None:
    store = SealedStore(RegionStore(tmp_path, "eu"), None)
    with pytest.raises(KeyUnavailable):
        store.put(RegionStore.key(TENANT_A, "a.wav"), recording(0.2)[0])
    assert RegionStore(tmp_path, "eu").keys() == []


def test_chunks_cut_short_reordered_or_moved_do_not_open() -> None:
    data_key, plain = os.urandom(32), os.urandom(10_000)
    blob = encrypt(data_key, "0" * 16, "t/a.wav", plain, chunk=1000)
    assert decrypt(data_key, "t/a.wav", blob) == plain
    head, body = 34, 1016
    cut = blob[:head + 3 * body]  # whole chunks, the last one missing
    first, second = blob[head:head + body], blob[head + body:head + 2 * body]
    swapped = blob[:head] + second + first + blob[head + 2 * body:]
    for bad, key in ((cut, "t/a.wav"), (swapped, "t/a.wav"), (blob, "t/b.wav")):
        with pytest.raises(RecordingFormatError):
            decrypt(data_key, key, bad)
    assert decrypt(data_key, "t/e.wav", encrypt(data_key, "0" * 16, "t/e.wav", b"")) == b""


def test_deleting_and_listing_need_no_key(tmp_path: Path) -> None:
    store = sealed(tmp_path)
    key = RegionStore.key(TENANT_A, "call-9-MZ1.wav")
    store.put(key, recording(0.2)[0])
    plain = RegionStore(tmp_path, "eu")  # what retention and the residency audit use
    assert key in plain.keys() and plain.delete(key) and not plain.exists(key)


def test_the_region_key_comes_from_the_cells_secret_store() -> None:
    assert kms_from_env({}) is None
    raw = os.urandom(32)
    kms = kms_from_env({"AUTOSPEAK_SECRETS_KEY": base64.urlsafe_b64encode(raw).decode().rstrip("=")})
    assert kms is not None and kms.key_id == LocalKms(raw).key_id
    with pytest.raises(ValueError):
        kms_from_env({"AUTOSPEAK_SECRETS_KEY": "c2hvcnQ"})
