"""A worker of a regional cell: takes calls assigned over NATS, publishes their events to JetStream,
keeps their live state (and lease) in the region's KV bucket, resumes calls whose stream dropped on
another worker, and writes recordings to the region's object store.

Per media stream: redeem the call token (minted by the control plane's webhook for this worker), take
the call's lease (a resumed call takes it over from the worker that lost its stream), run the session
with every event published, save the history after every turn, and at the end either mark the call
ended (the worker hung up, or Twilio sent `stop` because the caller did) or, when only the socket
dropped, release the lease so that the call can continue elsewhere.

A call that really ended always gets its `call_ended` event (the publisher retries it until NATS is
back); marking its state ended is retried in the background when NATS is away at hang-up. On SIGTERM
the worker leaves the slot queue group, hands its active calls over (saves their state, releases their
leases, then closes their streams so the carrier resumes them on another worker), and flushes their
events before it disconnects. Each media stream records its own WAV segment; the call's state lists
every segment's key, and `recording_ready` carries them all (`segments`, in order).

Workers are stateless: nothing of a call is kept on this worker's disk (the control plane stores it).
The stream's lifecycle (cells.worker.stream) and its sink (cells.worker.sink) are the embedded worker's
too; this module connects them to NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from cells.call.recorder import CallRecorder, RecordingTransport
from cells.call.recording_consent import consent_needed, other_party
from cells.call.session import CallSession
from cells.contract.call_redaction import CallRedactor
from cells.contract.call_state import CallLease, CallStateStore, history_from_dicts
from cells.contract.call_token import CallClaims
from cells.contract.envelope import CallEventEnvelope
from cells.contract.jetstream import publish_event
from cells.contract.slots import SlotServer, call_key
from cells.contract.stream_probe import serve_probe
from cells.coordination.publisher import EventPublisher
from cells.observability import WorkerTelemetry
from cells.providers import registry
from cells.worker.agent import CallAgent, agent_from_spec
from cells.worker.assignments import Assignments
from cells.worker.sink import CallSink, Recording
from cells.worker.stream import Handover, StreamStart, run_call
from regions.kms import kms_from_env
from regions.objectstore import RegionStore
from regions.sealed_store import SealedStore

log = logging.getLogger(__name__)
DRAIN_S = 10.0  # how long a stopping worker waits for its calls' final events and state writes


class Coordination:
    """The NATS side of one worker process (one per process; started before serving)."""

    def __init__(self, *, nats_url: str, region: str, worker_id: str, stream_url: str, capacity: int,
                 data_dir: Path | None, object_store: Path | None,
                 providers: registry.ProviderConfig | None = None, transfer_number: str | None = None,
                 lease_s: float = 15.0, telemetry: WorkerTelemetry | None = None) -> None:
        self.nats_url = nats_url
        self.region = region
        self.worker_id = worker_id
        self.stream_url = stream_url
        self.capacity = capacity
        self.data_dir = data_dir
        self.store_root = object_store
        self.kms = kms_from_env()  # recordings are sealed with it; without it none are written
        self.providers = providers
        self.transfer_number = transfer_number
        self.lease_s = lease_s
        self.telemetry = telemetry or WorkerTelemetry(region=region, capacity=capacity,
                                                      active=lambda: len(self._streams))
        self.agents: dict[tuple[str, str], CallAgent] = {}
        self.assignments: Assignments[CallAgent] = Assignments(
            on_arriving=lambda key: self.slots.stream_arriving(key) if self.slots is not None else None)
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.calls: CallStateStore | None = None
        self.slots: SlotServer | None = None
        self.draining = False
        # Active streams (their hand-over signals) and the background work of ended ones (finish steps,
        # event flushes, retried state writes): a stopping worker waits for both.
        self._streams: set[Handover] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Calls whose media socket is open on this worker (the control plane asks before a resume).
        self._live: set[str] = set()

    async def start(self, connect_timeout: float = 30.0) -> None:
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.nc = await nats.connect(self.nats_url, name=self.worker_id, connect_timeout=2,
                                             allow_reconnect=True, max_reconnect_attempts=-1,
                                             reconnect_time_wait=0.5)
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot reach NATS at {self.nats_url}: {exc}") from exc
                await asyncio.sleep(0.5)
        self.js = self.nc.jetstream(timeout=3.0)
        self.calls = await CallStateStore.open(self.js, self.region, worker_id=self.worker_id,
                                               lease_s=self.lease_s)
        self.slots = SlotServer(self.nc, self.region, worker_id=self.worker_id, stream_url=self.stream_url,
                                capacity=self.capacity, vet=self._vet, on_accept=self._accepted,
                                on_expire=self._stream_never_came)
        await self.slots.start()
        await serve_probe(self.nc, self.region, self.worker_id, self._live.__contains__)
        log.info("worker %s takes calls of region %s (capacity %d)", self.worker_id, self.region,
                 self.capacity)

    async def hand_over(self, timeout: float = DRAIN_S) -> None:
        """Stop taking calls and hand the active ones over (SIGTERM, before the server stops): leave
        the slot queue group, then end every stream as a dropped one (history saved, lease released,
        then the socket closed: the carrier asks the control plane, which resumes the call on another
        worker), and wait (bounded) until their final events are published."""
        self.draining = True
        if self.slots is not None:
            await self.slots.stop()
        for stream in list(self._streams):
            stream.hand_over()
        await self._settle(timeout, streams_only=True)

    async def stop(self, timeout: float = DRAIN_S) -> None:
        """Hand over what is still active, flush (bounded) every finish step, event publisher and state
        write, and only then drain the NATS connection."""
        deadline = time.monotonic() + timeout
        await self.hand_over(timeout)
        await self._settle(max(0.0, deadline - time.monotonic()))
        for task in list(self._tasks):  # out of time (NATS away): give up what is left
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def _settle(self, timeout: float, streams_only: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while self._streams or (self._tasks and not streams_only):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("stopping with %d streams and %d tasks unsettled", len(self._streams),
                            len(self._tasks))
                return
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=min(left, 0.2))
            else:  # a stream between its hand-over signal and its finish step
                await asyncio.sleep(min(left, 0.02))

    def _track(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def health(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "region": self.region, "capacity": self.capacity,
                "reserved": len(self.slots.reserved) if self.slots else 0,
                "nats": bool(self.nc and self.nc.is_connected), "draining": self.draining}

    # -- slot requests ----------------------------------------------------------------------------
    def _agent_for(self, spec: dict[str, Any]) -> CallAgent:
        """Agents are built once per agent (and version) and shared by its calls. A published version
        (`version`) is immutable; an unpublished record is told apart by its `updated_at`."""
        version = spec.get("version")
        edition = f"v{version}" if version is not None else str(spec.get("updated_at") or "")
        key = (str(spec.get("id") or ""), edition)
        agent = self.agents.get(key)
        if agent is None:
            agent = agent_from_spec(spec, data_dir=self.data_dir, providers=self.providers,
                                    transfer_number=self.transfer_number,
                                    calendar_path=self._calendar_path(spec), nc=self.nc, region=self.region)
            for old in [k for k in self.agents if k[0] == key[0]]:
                del self.agents[old]  # an older version of the same agent
            self.agents[key] = agent
            self.telemetry.watch_providers(agent.stt, agent.brain, agent.tts)
        return agent

    def _calendar_path(self, spec: dict[str, Any]) -> Path | None:
        """The agent's demo calendar in the region's store (shared by the region's workers, and kept in
        the tenant's home region like every other piece of its data); None without a store."""
        if self.store_root is None:
            return None
        try:
            key = RegionStore.key(str(spec.get("tenant_id") or ""), f"calendar-{spec.get('id')}.json")
        except ValueError:
            return None
        return RegionStore(self.store_root, self.region).path(key)

    def _vet(self, request: dict[str, Any]) -> str | None:
        spec = request.get("agent")
        if not isinstance(spec, dict) or str(spec.get("id") or "") != str(request.get("agent_id") or ""):
            return "bad_agent"
        if request.get("region") not in (None, self.region):
            return "wrong_region"
        try:
            agent = self._agent_for(spec)
        except Exception as exc:
            log.warning("cannot run agent %s: %s", spec.get("id"), exc)
            return "agent_unavailable"
        self.assignments.assign(str(request["call_id"]), request, agent)
        return None

    def _accepted(self, request: dict[str, Any]) -> None:
        self.assignments.accepted(str(request["call_id"]))

    def _stream_never_came(self, request: dict[str, Any]) -> None:
        """A new call we took whose stream never arrived (the carrier could not connect it): it ends as
        rejected, or it would stay "ringing" until a status callback an inbound number may never send.
        (A resumed call is left alone: it is live, and its carrier comes back through `<Connect action>`.)"""
        call_id, tenant_id = str(request.get("call_id") or ""), str(request.get("tenant_id") or "")
        if request.get("resume") or not call_id or not tenant_id or self.js is None:
            return
        event = CallEventEnvelope.new(call_id=call_id, tenant_id=tenant_id, region=self.region,
                                      kind="call_rejected", event_id=f"{call_id}:rejected",
                                      source=self.worker_id, data={"reason": "stream_never_connected"})
        self._track(self._publish_quietly(event))

    async def _publish_quietly(self, event: CallEventEnvelope) -> None:
        try:
            await publish_event(self.js, event.subject, event.to_bytes(), msg_id=event.event_id)
        except Exception as exc:  # the carrier's status callback (if any) still ends the call
            log.warning("could not publish %s for call %s: %s", event.kind, event.call_id, exc)

    # -- one media stream ---------------------------------------------------------------------------
    def _recording_key(self, agent: CallAgent, tenant_id: str, call_id: str,
                       stream_sid: str) -> str | None:
        """This stream's recording segment (None when the agent does not record or there is no store)."""
        if not agent.record_calls or self.store_root is None:
            return None
        if self.kms is None:
            log.warning("call %s: not recording: no region key (AUTOSPEAK_SECRETS_KEY) to seal it with",
                        call_id)
            return None
        try:
            return RegionStore.key(tenant_id, f"{call_id}-{stream_sid}.wav")
        except ValueError as exc:
            log.warning("call %s: not recording stream %s: %s", call_id, stream_sid, exc)
            return None

    async def run_stream(self, ws: Any, claims: CallClaims, start: StreamStart, agent: CallAgent,
                         on_control: Any) -> None:
        assert self.js is not None and self.calls is not None and self.slots is not None
        call_id, tenant_id = call_key(claims.call_id, claims.call_sid), claims.tenant_id
        assignment = self.assignments.take(call_id)
        request = assignment.request if assignment else {}
        resume = bool(request.get("resume"))
        recording = self._recording_key(agent, tenant_id, call_id, start.stream_sid)
        handover = Handover()
        if self.draining:
            handover.hand_over()  # arrived while this worker stops: on to another worker at once
        self._streams.add(handover)
        self.slots.stream_started(call_id)
        sink: CallSink | None = None
        try:
            lease = await self.calls.acquire(call_id, takeover=resume, stream_sid=start.stream_sid,
                                             recording=recording, tenant_id=tenant_id,
                                             agent_id=claims.agent_id, call_sid=start.call_sid)
            if lease is None:
                log.warning("call %s: owned by another worker or already ended; refusing stream %s", call_id,
                            start.stream_sid)
                await ws.close("call_owned_elsewhere")
                return
            history = _saved_history(lease) if resume else None
            sink = self._sink(lease, tenant_id, request, history, start.stream_sid, recording, handover)
            transport = (RecordingTransport(ws, sink.recording.recorder, sink.guard.on_dtmf)
                         if sink.recording and sink.guard else ws)
            # Wall clock: the call started on another worker, whose monotonic clock means nothing here.
            elapsed = time.time() - float(lease.state.get("started_at") or time.time()) if history else 0.0

            def started(session: CallSession) -> None:
                lease.start_heartbeat(on_lost=lambda: asyncio.ensure_future(ws.close("taken_over")))
                self._live.add(call_id)

            try:
                await run_call(agent, transport, start, sink, on_control=on_control, history=history,
                               elapsed_s=elapsed, handover=handover, on_started=started,
                               on_over=lambda: self._live.discard(call_id))
            finally:
                self._live.discard(call_id)  # in case the session never ran
                if not sink.finishing:  # the session never ran; otherwise the sink's finish does this
                    with contextlib.suppress(Exception):
                        await asyncio.shield(lease.release())
                    await asyncio.shield(self._track(sink.publisher.close(timeout=30.0)))
        finally:
            if sink is None or not sink.finishing:
                self.slots.stream_ended(call_id)
                self._streams.discard(handover)

    def _sink(self, lease: CallLease, tenant_id: str, request: dict[str, Any], history: list[Any] | None,
              stream_sid: str, recording: str | None, handover: Handover) -> CallSink:
        """The stream's sink, connected to the region's NATS (events, call state, recordings)."""
        assert self.js is not None
        call_id, region = lease.call_id, str(request.get("region") or self.region)
        publisher = EventPublisher(self.js, call_id=call_id, tenant_id=tenant_id, region=region,
                                   stream_sid=stream_sid, source=self.worker_id,
                                   redactor=CallRedactor.for_agent(request.get("agent"), history))
        observer = self.telemetry.call(call_id=call_id, tenant_id=tenant_id,
                                       agent_id=str(lease.state.get("agent_id") or ""),
                                       started_unix=lease.state.get("started_at"))
        store = None
        consent = consent_needed(other_party(request))
        if consent is not None and request.get("resume"):
            # Asked on the first stream: record the rest only if the caller said yes there.
            recording = recording if lease.state.get("recording_consent") == "yes" else None
            consent = None
        if recording is not None and self.store_root is not None and self.kms is not None:
            store = Recording(recording, SealedStore(RegionStore(self.store_root, region), self.kms),
                              CallRecorder(), redactor=CallRedactor.for_agent(request.get("agent"), history),
                              consent=consent)

        def done(session: CallSession) -> None:
            if self.slots is not None:
                self.slots.stream_ended(call_id)
            self._streams.discard(handover)

        return CallSink(lease=lease, publisher=publisher, observer=observer, worker_id=self.worker_id,
                        recording=store, track=self._track, on_done=[done])


def _saved_history(lease: CallLease) -> list[Any] | None:
    """The history a resumed call continues from (None: none saved, or unreadable)."""
    if not lease.state.get("history"):
        return None
    try:
        return history_from_dicts(lease.state["history"])
    except (ValueError, KeyError, TypeError):
        log.error("call %s: saved history unreadable; starting afresh", lease.call_id)
        return None
