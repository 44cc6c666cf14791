"""The stores outside the database that hold a call: JetStream (events and live state) and recordings.

JetStream messages are purged by subject (the call's `<region>.calls.<tenant>.<call>.>` in the call
stream, `$KV.<bucket>.<call>` in the call-state bucket's stream): a purge removes every revision and
leaves no marker, unlike a KV delete, and it is allowed on the bucket (which only denies deleting
single messages). Counts are read from the stream's per-subject state before and after.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, NotFoundError

from cells.contract.jetstream import call_state_bucket_name, call_stream_name
from control.retention.certificate import Certificate
from regions.objectstore import ObjectKeyError, RegionStore

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A store could not be purged; nothing is deleted from the database for this run."""


async def _subject_count(js: JetStreamContext, stream: str, subject: str) -> int:
    try:
        info = await js.stream_info(stream, subjects_filter=subject)
    except NotFoundError:
        return 0
    return sum((info.state.subjects or {}).values())


async def purge_subject(js: JetStreamContext, stream: str, subject: str) -> tuple[int, int]:
    """(messages found, messages left) on `subject` of `stream`, purging between the two counts."""
    found = await _subject_count(js, stream, subject)
    if found:
        await js.purge_stream(stream, subject=subject)
    return found, await _subject_count(js, stream, subject)


async def recordings_in_state(js: JetStreamContext, region: str, call_id: str) -> list[str]:
    """The recording keys the call's live state lists (a segment the database may never have heard of)."""
    bucket = call_state_bucket_name(region)
    try:
        kv = await js.key_value(bucket)
        entry = await kv.get(call_id)
    except (BucketNotFoundError, KeyNotFoundError, KeyDeletedError, NotFoundError):
        return []
    try:
        doc = json.loads(entry.value or b"{}")
    except ValueError:
        return []
    keys = doc.get("recordings") if isinstance(doc, dict) else None
    return [k for k in keys or () if isinstance(k, str)]


async def purge_jetstream(js: JetStreamContext, cert: Certificate, call_ids: Iterable[str]) -> None:
    stream = call_stream_name(cert.region)
    bucket = call_state_bucket_name(cert.region)
    events = cert.report(f"jetstream:{stream}")
    state = cert.report(f"kv:{bucket}")
    for call_id in call_ids:
        subject = f"{cert.region}.calls.{cert.tenant_id}.{call_id}.>"
        found, left = await purge_subject(js, stream, subject)
        events.found += found
        events.deleted += found - left
        events.remaining += left
        found, left = await purge_subject(js, f"KV_{bucket}", f"$KV.{bucket}.{call_id}")
        state.found += found
        state.deleted += found - left
        state.remaining += left


def call_objects(store: RegionStore, tenant_id: uuid.UUID, call_id: str, listed: Iterable[str]) -> set[str]:
    """The call's recording keys: those listed (rows, live state) that name this tenant, and every
    object of the tenant named `<call id>-*` (the worker's naming), so a segment written after the
    last event reached the database is found too."""
    prefix = f"{tenant_id}/"
    keys = {k for k in listed if k.startswith(prefix)}
    folder = store.root / str(tenant_id)
    if folder.is_dir():
        keys |= {prefix + p.name for p in folder.glob(f"{call_id}-*") if p.is_file()}
    return keys


async def purge_objects(store: RegionStore | None, cert: Certificate, keys: Iterable[str]) -> None:
    report = cert.report(f"object_store:{cert.region}")
    if store is None:
        report.note, report.checked = "no object store configured", False
        return

    def work() -> None:
        for key in sorted(set(keys)):
            try:
                path: Path = store.path(key)
            except ObjectKeyError:
                continue
            if not path.is_file():
                continue
            report.found += 1
            store.delete(key)
            if path.exists():
                report.remaining += 1
            else:
                report.deleted += 1

    await asyncio.to_thread(work)
