"""The residency audit's NATS half: every message of a region's call stream, and the live call-state
bucket, belong to the region and to tenants homed there; both streams sit on the region's cluster.

Messages are read by an ephemeral ordered consumer, so durable consumers are not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Final

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StreamInfo
from nats.js.errors import NotFoundError

from cells.contract.envelope import CallEventEnvelope, EnvelopeError
from cells.contract.jetstream import call_state_bucket_name, call_stream_name
from control.audit.residency_report import AuditError, AuditReport, Violation
from regions.catalogue import get_region

_READ_TIMEOUT: Final = 10.0
_CONNECT_TIMEOUT: Final = 10.0



async def _connect(url: str, region: str) -> Client:
    async def quiet(_exc: Exception) -> None:  # failures are raised from connect() instead
        return None

    try:
        # nats-py retries the initial connect up to max_reconnect_attempts times per server (0 means
        # forever), whatever allow_reconnect says; bound both the attempts and the total time.
        connecting = nats.connect(url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=1,
                                  reconnect_time_wait=0.2, error_cb=quiet)
        return await asyncio.wait_for(connecting, _CONNECT_TIMEOUT)
    except (TimeoutError, OSError, NatsError) as exc:
        raise AuditError(f"cannot connect to NATS of region {region}: {type(exc).__name__}: {exc}") from exc


async def audit_nats_region(
    region: str, url: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    nc = await _connect(url, region)
    try:
        js = nc.jetstream()
        await _audit_call_stream(js, region, report, homes)
        await _audit_call_state(js, region, report, homes)
    except (TimeoutError, NatsError) as exc:
        raise AuditError(f"NATS audit of region {region} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        await nc.close()


async def _stream_info(js: JetStreamContext, name: str, report: AuditReport, what: str) -> StreamInfo | None:
    try:
        return await js.stream_info(name)
    except NotFoundError:
        report.notes.append(f"{what} stream {name} does not exist (nothing to check)")
        return None


def _check_placement(info: StreamInfo, region: str, report: AuditReport) -> None:
    r = get_region(region)
    name = info.config.name or "?"
    wanted = info.config.placement
    placed_by_config = wanted is not None and (
        wanted.cluster == r.nats_cluster or (wanted.cluster is None and r.nats_tag in (wanted.tags or []))
    )
    actual = info.cluster.name if info.cluster is not None else None
    if not placed_by_config or actual != r.nats_cluster:
        asked = "none" if wanted is None else f"cluster={wanted.cluster} tags={wanted.tags or []}"
        report.add(Violation("nats.placement", f"stream {name}", "-", f"{region} (cluster {r.nats_cluster})",
                             f"placement {asked}, running on cluster {actual}", region))
    for subject in info.config.subjects or ():
        if subject.split(".")[0] not in (region, "$KV"):
            report.add(Violation("nats.placement", f"stream {name}", "-", f"{region}.calls.>",
                                 f"stream captures subject {subject}", region))


async def _read_all(js: JetStreamContext, info: StreamInfo, handle: Callable[[Msg], None]) -> None:
    """Hand every message of the stream to `handle`, through an ephemeral ordered consumer (no filter,
    no acks), one at a time so that a long stream is not held in memory.

    The consumer lives in memory on the stream's server and is deleted once read; durable consumers
    and their positions are left alone.
    """
    if not info.state.messages:
        return
    name = info.config.name or ""
    # The inactivity threshold reaps the consumer even if the audit dies before deleting it.
    sub = await js.subscribe("", stream=name, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL,
                             inactive_threshold=10.0)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=_READ_TIMEOUT)
            except TimeoutError:  # nats-py raises its own or asyncio's
                raise AuditError(f"stream {name}: no message for {_READ_TIMEOUT:.0f} s while reading") \
                    from None
            handle(msg)
            if msg.metadata.num_pending == 0:
                return
    finally:
        consumer = sub._consumer  # the ordered consumer's current name (it changes on a reset)
        await sub.unsubscribe()
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(name, consumer)


async def _audit_call_stream(
    js: JetStreamContext, region: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    name = call_stream_name(region)
    info = await _stream_info(js, name, report, "event")
    if info is None:
        return
    _check_placement(info, region, report)

    def check(msg: Msg) -> None:
        report.regions[region].events += 1
        _check_event(msg, name, region, report, homes)

    await _read_all(js, info, check)


def _check_event(
    msg: Msg, stream: str, region: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    parts = msg.subject.split(".")
    where = f"stream {stream} seq {msg.metadata.sequence.stream}: {msg.subject}"
    subject_tenant = parts[2] if len(parts) > 2 else "?"
    try:
        env = CallEventEnvelope.from_bytes(msg.data)
    except EnvelopeError as exc:
        home = _home(homes, subject_tenant)
        report.add(Violation("nats.event", where, subject_tenant, home or "?",
                             f"stream {stream}; unreadable envelope ({exc})", region))
        return
    home = _home(homes, env.tenant_id)
    problems = []
    if parts[0] != region:
        problems.append(f"subject region {parts[0]}")
    if env.region != region:
        problems.append(f"envelope region {env.region}")
    if home is None:
        problems.append("tenant not in the directory")
    elif home != region:
        problems.append(f"tenant homed in {home}")
    if subject_tenant != env.tenant_id:
        problems.append(f"subject tenant {subject_tenant}")
    if problems:
        report.add(Violation("nats.event", where, env.tenant_id, home or env.region,
                             f"stream {stream} ({'; '.join(problems)})", region))


def _home(homes: Mapping[uuid.UUID, str], tenant: str) -> str | None:
    try:
        return homes.get(uuid.UUID(str(tenant)))
    except ValueError:
        return None


async def _audit_call_state(
    js: JetStreamContext, region: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    bucket = call_state_bucket_name(region)
    name = f"KV_{bucket}"
    info = await _stream_info(js, name, report, "call-state")
    if info is None:
        return
    _check_placement(info, region, report)
    await _read_all(js, info, lambda msg: _check_call_state(msg, bucket, region, report, homes))


def _check_call_state(
    msg: Msg, bucket: str, region: str, report: AuditReport, homes: Mapping[uuid.UUID, str]
) -> None:
    if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
        return  # a tombstone carries no state
    report.regions[region].call_states += 1
    key = msg.subject.removeprefix(f"$KV.{bucket}.")
    where = f"bucket {bucket} key {key} rev {msg.metadata.sequence.stream}"
    try:
        state = json.loads(msg.data)
        tenant, state_region = str(state["tenant_id"]), str(state["region"])
    except (ValueError, KeyError, TypeError):
        report.add(Violation("nats.call_state", where, "?", region,
                             "unreadable call state: owner unknown", region))
        return
    home = _home(homes, tenant)
    if state_region != region or home != region:
        found = f"bucket {bucket} (state region {state_region}; tenant homed in {home or 'nowhere'})"
        report.add(Violation("nats.call_state", where, tenant, home or state_region, found, region))
