"""Region-placed JetStream assets of a cell: the call event stream and the live call-state bucket.

Every asset is pinned to its region's NATS cluster (or, alternatively, to servers tagged
`region:<code>`), whichever server the client that creates it is connected to, so call events and
live call state never rest outside their region.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Final, Literal

from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, Placement, PubAck, StorageType, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from regions.catalogue import Region, get_region

__all__ = [
    "CALL_DUPLICATE_WINDOW",
    "PlaceBy",
    "call_state_bucket_name",
    "call_stream_name",
    "call_subject",
    "ensure_call_state_bucket",
    "ensure_call_stream",
    "placement",
    "publish_event",
]

PlaceBy = Literal["cluster", "tags"]

# Publishers retry with the same Nats-Msg-Id after a lost ack; two minutes covers any retry we make.
CALL_DUPLICATE_WINDOW: Final = 120.0
# The database is the record of a call; the stream only has to outlive the consumer's worst backlog.
CALL_EVENT_MAX_AGE: Final = 7 * 86400.0
# Live call state must outlive the longest call plus the resume window, and no more (it holds caller
# data). Workers and the control plane both declare the bucket, so both use these defaults.
CALL_STATE_TTL: Final = 86400.0
# JetStream error code for "stream name already in use with a different configuration".
_STREAM_CONFIG_CHANGED: Final = 10058
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def _region(region: str | Region) -> Region:
    return region if isinstance(region, Region) else get_region(region)


def placement(region: str | Region, by: PlaceBy = "cluster") -> Placement:
    r = _region(region)
    if by == "cluster":
        return Placement(cluster=r.nats_cluster)
    if by == "tags":
        return Placement(tags=[r.nats_tag])
    raise ValueError(f"placement must be by 'cluster' or 'tags', not {by!r}")


def call_stream_name(region: str | Region) -> str:
    return f"CALLS_{_region(region).code.upper()}"


def call_state_bucket_name(region: str | Region) -> str:
    return f"call_state_{_region(region).code}"


def call_subject(region: str | Region, tenant: str, call: str, kind: str) -> str:
    """`<region>.calls.<tenant>.<call>.<kind>`; each part must be one plain subject token."""
    for part in (tenant, call, kind):
        if not _TOKEN.fullmatch(part):
            raise ValueError(f"not a plain subject token: {part!r}")
    return f"{_region(region).code}.calls.{tenant}.{call}.{kind}"


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    # Creating with an identical config is a no-op on the server, so this is safe to call at every start.
    try:
        return await js.add_stream(config)
    except BadRequestError as err:
        if err.err_code != _STREAM_CONFIG_CHANGED:
            raise
    return await js.update_stream(config)


async def ensure_call_stream(
    js: JetStreamContext,
    region: str | Region,
    *,
    by: PlaceBy = "cluster",
    duplicate_window: float = CALL_DUPLICATE_WINDOW,
    max_age: float | None = CALL_EVENT_MAX_AGE,
) -> StreamInfo:
    """Create (or update) stream CALLS_<REGION> on `<region>.calls.>`, placed in the region.

    The stream exists when this returns, but a client of another region's server can get "no
    responders" for a moment, until the stream's interest has crossed the gateways; publish_event
    retries exactly that.
    """
    r = _region(region)
    config = StreamConfig(
        name=call_stream_name(r),
        description=f"call events of region {r.code}",
        subjects=[f"{r.code}.calls.>"],
        storage=StorageType.FILE,
        num_replicas=1,  # one server per cell in the embedded stack
        duplicate_window=duplicate_window,
        max_age=max_age,
        placement=placement(r, by),
    )
    return await _ensure_stream(js, config)


async def ensure_call_state_bucket(
    js: JetStreamContext,
    region: str | Region,
    *,
    by: PlaceBy = "cluster",
    history: int = 5,
    ttl: float | None = CALL_STATE_TTL,
) -> KeyValue:
    """Create (or update) KV bucket call_state_<region>, placed in the region, and bind to it.

    nats-py's create_key_value drops KeyValueConfig.placement, so the bucket's backing stream is
    declared here following the KV conventions (stream KV_<bucket> on `$KV.<bucket>.>`, one message
    per key revision, rollups allowed, direct get on) and then bound with js.key_value.
    """
    if not 1 <= history <= 64:
        raise ValueError("history must be between 1 and 64")
    r = _region(region)
    bucket = call_state_bucket_name(r)
    window = CALL_DUPLICATE_WINDOW if ttl is None else min(ttl, CALL_DUPLICATE_WINDOW)
    config = StreamConfig(
        name=f"KV_{bucket}",
        description=f"live call state of region {r.code}",
        subjects=[f"$KV.{bucket}.>"],
        storage=StorageType.FILE,
        num_replicas=1,
        max_msgs_per_subject=history,
        max_age=ttl,
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        duplicate_window=window,
        placement=placement(r, by),
    )
    await _ensure_stream(js, config)
    return await js.key_value(bucket)


async def publish_event(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    headers: Mapping[str, str] | None = None,
    attempts: int = 10,
    retry_wait: float = 0.05,
) -> PubAck:
    """Publish one event idempotently (Nats-Msg-Id) and wait for the stream's ack.

    "No responders" means no stream has taken the subject yet (it is being created or moving, or
    its interest is still crossing a gateway); the message was not stored, and the msg id makes a
    retry safe, so it is retried a bounded number of times. Any other failure is raised.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    hdrs = {**(headers or {}), "Nats-Msg-Id": msg_id}
    for attempt in range(1, attempts):
        try:
            return await js.publish(subject, payload, headers=hdrs)
        except NoRespondersError:
            await asyncio.sleep(retry_wait * attempt)
    return await js.publish(subject, payload, headers=hdrs)
