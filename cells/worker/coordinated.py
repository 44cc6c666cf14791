"""A worker of a regional cell: takes calls assigned over NATS, publishes their events to JetStream,
keeps their live state (and lease) in the region's KV bucket, resumes calls whose stream dropped on
another worker, and writes recordings to the region's object store.

Per media stream: redeem the call token (minted by the control plane's webhook for this worker), take
the call's lease (a resumed call takes it over from the worker that lost its stream), run the session
with every event published, save the history after every turn, and at the end either mark the call
ended (the worker hung up, or Twilio sent `stop` because the caller did) or, when only the socket
dropped, release the lease so that the call can continue elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from cells.call.recorder import CallRecorder
from cells.call.session import CallSession
from cells.coordination.call_state import CallLease, CallStateStore, LeaseLost, history_from_dicts
from cells.coordination.publisher import EventPublisher
from cells.coordination.slots import SlotServer, call_key
from cells.providers import registry
from cells.telephony.call_token import CallClaims
from cells.telephony.twilio_media import Start
from cells.worker.agent import ReceptionAgent, agent_from_spec
from regions.objectstore import RegionStore

log = logging.getLogger(__name__)
SAVE_ON = frozenset({"transcript", "agent_said", "tool_result", "turn"})


@dataclass
class Assignment:
    """A call this worker accepted a slot for, until its stream arrives."""

    request: dict[str, Any]
    agent: ReceptionAgent
    at: float = field(default_factory=time.monotonic)


class Coordination:
    """The NATS side of one worker process (one per process; started before serving)."""

    def __init__(self, *, nats_url: str, region: str, worker_id: str, stream_url: str, capacity: int,
                 data_dir: Path | None, object_store: Path | None,
                 providers: registry.ProviderConfig | None = None, transfer_number: str | None = None,
                 lease_s: float = 15.0) -> None:
        self.nats_url = nats_url
        self.region = region
        self.worker_id = worker_id
        self.stream_url = stream_url
        self.capacity = capacity
        self.data_dir = data_dir
        self.store_root = object_store
        self.providers = providers
        self.transfer_number = transfer_number
        self.lease_s = lease_s
        self.agents: dict[tuple[str, str], ReceptionAgent] = {}
        self.assignments: dict[str, Assignment] = {}
        self._warm: dict[int, asyncio.Task[None]] = {}
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.calls: CallStateStore | None = None
        self.slots: SlotServer | None = None

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
                                capacity=self.capacity, vet=self._vet, on_accept=self._accepted)
        await self.slots.start()
        log.info("worker %s takes calls of region %s (capacity %d)", self.worker_id, self.region,
                 self.capacity)

    async def stop(self) -> None:
        if self.slots is not None:
            await self.slots.stop()
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    def health(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "region": self.region, "capacity": self.capacity,
                "reserved": len(self.slots.reserved) if self.slots else 0,
                "nats": bool(self.nc and self.nc.is_connected)}

    # -- slot requests ----------------------------------------------------------------------------
    def _agent_for(self, spec: dict[str, Any]) -> ReceptionAgent:
        """Agents are built once per agent (and version) and shared by its calls."""
        key = (str(spec.get("id") or ""), str(spec.get("updated_at") or ""))
        agent = self.agents.get(key)
        if agent is None:
            agent = agent_from_spec(spec, data_dir=self.data_dir, providers=self.providers,
                                    transfer_number=self.transfer_number)
            for old in [k for k in self.agents if k[0] == key[0]]:
                del self.agents[old]  # an older version of the same agent
            self.agents[key] = agent
        return agent

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
        self.assignments[str(request["call_id"])] = Assignment(request, agent)
        return None

    def _accepted(self, request: dict[str, Any]) -> None:
        agent = self.assignments[str(request["call_id"])].agent
        if id(agent) not in self._warm:  # load models now, before the stream arrives
            self._warm[id(agent)] = asyncio.get_running_loop().create_task(agent.warm_up())
        cutoff = time.monotonic() - 120.0
        for call_id in [c for c, a in self.assignments.items() if a.at < cutoff]:
            del self.assignments[call_id]

    async def resolve_call(self, claims: CallClaims, start: Start) -> ReceptionAgent | None:
        assignment = self.assignments.get(call_key(claims.call_id, claims.call_sid))
        if assignment is None or str(assignment.agent.agent_id) != claims.agent_id:
            return None
        warm = self._warm.get(id(assignment.agent))
        if warm is not None:
            await asyncio.shield(warm)
        return assignment.agent

    # -- one media stream ---------------------------------------------------------------------------
    async def run_stream(self, ws: Any, claims: CallClaims, start: Start, agent: ReceptionAgent,
                         events: Callable[[], Any], on_event: Callable[[str, dict[str, Any]], None],
                         on_control: Any, record_close: Callable[[CallSession], Any]) -> None:
        assert self.js is not None and self.calls is not None and self.slots is not None
        call_id, tenant_id = call_key(claims.call_id, claims.call_sid), claims.tenant_id
        assignment = self.assignments.pop(call_id, None)
        request = assignment.request if assignment else {}
        region = str(request.get("region") or self.region)
        resume = bool(request.get("resume"))
        self.slots.stream_started(call_id)
        try:
            lease = await self.calls.acquire(call_id, takeover=resume, stream_sid=start.stream_sid,
                                             tenant_id=tenant_id, agent_id=claims.agent_id,
                                             call_sid=start.call_sid)
        except Exception:
            self.slots.stream_ended(call_id)
            raise
        if lease is None:
            log.warning("call %s: owned by another worker or already ended; refusing stream %s", call_id,
                        start.stream_sid)
            self.slots.stream_ended(call_id)
            await ws.close("call_owned_elsewhere")
            return
        history = None
        if resume and lease.state.get("history"):
            try:
                history = history_from_dicts(lease.state["history"])
            except (ValueError, KeyError, TypeError):
                log.error("call %s: saved history unreadable; starting afresh", call_id)
        publisher = EventPublisher(self.js, call_id=call_id, tenant_id=tenant_id, region=region,
                                   stream_sid=start.stream_sid, source=self.worker_id)
        handed_over: list[bool] = []
        try:
            await self._run(ws, start, agent, events, on_event, on_control, record_close, lease, history,
                            publisher, tenant_id, region, handed_over)
        finally:
            if not handed_over:  # the session never ran; otherwise the finish step does this
                self.slots.stream_ended(call_id)
                await asyncio.shield(lease.release())
                await asyncio.shield(publisher.close(timeout=30.0))

    async def _run(self, ws: Any, start: Start, agent: ReceptionAgent, events: Callable[[], Any],
                   on_event: Callable[[str, dict[str, Any]], None], on_control: Any,
                   record_close: Callable[[CallSession], Any], lease: CallLease, history: Any,
                   publisher: EventPublisher, tenant_id: str, region: str, handed_over: list[bool]) -> None:
        from cells.telephony.twilio_media import Dtmf, Mark, Media, Stop

        call_id = lease.call_id
        recorder = CallRecorder() if agent.record_calls and self.store_root else None
        saver = _StateSaver(lease)
        held: list[tuple[str, dict[str, Any]]] = []

        def event(kind: str, data: dict[str, Any]) -> None:
            on_event(kind, data)
            if kind == "call_ended":
                held.append((kind, data))  # published below, once it is known that the call ended
                return
            if kind == "call_started":
                data = {**data, "worker_id": self.worker_id}
            publisher.emit(kind, data)
            if kind in SAVE_ON:
                saver.request(session)

        async def before_close(reason: str) -> None:
            # The call is marked ended before the socket closes: Twilio asks the control plane what to
            # do next as soon as the stream ends, and it must not resume a call we hung up.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lease.end(reason, session.history), 3.0)

        transport = _CellTransport(ws, recorder, before_close)
        session = agent.new_session(transport, on_event=event, on_control=on_control)
        caller_hung_up = False
        try:
            await session.start(start.stream_sid, start.call_sid, history=history)
            lease.start_heartbeat(on_lost=lambda: asyncio.ensure_future(ws.close("taken_over")))
            async for ev in events():
                if isinstance(ev, Media):
                    if recorder is not None:
                        recorder.inbound_message(ev.raw)
                    session.on_media(ev.raw)
                elif isinstance(ev, Mark):
                    session.on_mark(ev.name)
                elif isinstance(ev, Dtmf):
                    session.on_dtmf(ev.digit)
                elif isinstance(ev, Stop):
                    caller_hung_up = True
                    break
                if session.state.ended:
                    break
        except Exception:  # the socket died under us: end this stream, keep the worker
            log.info("call %s: stream %s ended abruptly", call_id, start.stream_sid, exc_info=True)
        finally:
            # A task of its own: the server cancels this handler when the socket goes; the call must
            # still be wound down, its state settled and its events published.
            finish = asyncio.ensure_future(self._finish(session, lease, saver, publisher, recorder, held,
                                                        caller_hung_up, record_close, tenant_id, region,
                                                        start.stream_sid))
            handed_over.append(True)
            await asyncio.shield(finish)

    async def _finish(self, session: CallSession, lease: CallLease, saver: _StateSaver,
                      publisher: EventPublisher, recorder: CallRecorder | None,
                      held: list[tuple[str, dict[str, Any]]], caller_hung_up: bool,
                      record_close: Callable[[CallSession], Any], tenant_id: str, region: str,
                      stream_sid: str) -> None:
        call_id = lease.call_id
        agent_ended = session.state.ended or session.state.disposition != "in_progress"
        ended = agent_ended or caller_hung_up
        try:
            await session.stop("caller_hung_up")  # keeps a disposition already decided
        finally:
            lease.stop_heartbeat()
            await saver.close()
            with contextlib.suppress(Exception):
                record_close(session)
        if recorder is not None and self.store_root is not None:
            try:
                store = RegionStore(self.store_root, region)
                key = RegionStore.key(tenant_id, f"{call_id}-{stream_sid}.wav")
                size = await asyncio.to_thread(store.put, key, recorder.wav())
                publisher.emit("recording_ready", {"object_key": key, "duration_ms": recorder.duration_ms,
                                                   "size_bytes": size, "content_type": "audio/wav"})
            except Exception:
                log.exception("call %s: writing the recording failed", call_id)
        try:
            if ended:
                await lease.end(session.state.disposition, session.history)
                started = float(lease.state.get("started_at") or time.time())
                for kind, data in held:
                    publisher.emit(kind, {**data, "duration_s": round(time.time() - started, 3)})
            else:
                log.info("call %s: stream %s dropped; the call may resume elsewhere", call_id, stream_sid)
                await lease.save(session.history)
                await lease.release()
        except LeaseLost:
            log.info("call %s: another worker has taken the call over", call_id)
        except Exception:
            log.exception("call %s: settling the call state failed", call_id)
        finally:
            if self.slots is not None:
                self.slots.stream_ended(call_id)
            await publisher.close(timeout=30.0)


class _CellTransport:
    """The session's transport: records what the agent sends and settles the call state before the
    worker closes the stream on purpose."""

    def __init__(self, ws: Any, recorder: CallRecorder | None,
                 before_close: Callable[[str], Any]) -> None:
        self.ws = ws
        self.recorder = recorder
        self.before_close = before_close

    async def send(self, text: str) -> None:
        await self.ws.send(text)
        if self.recorder is not None:
            self.recorder.outbound_message(text)

    async def close(self, reason: str) -> None:
        await self.before_close(reason)
        await self.ws.close(reason)


class _StateSaver:
    """Saves the history after every turn: one write at a time, the latest state wins."""

    def __init__(self, lease: CallLease) -> None:
        self.lease = lease
        self._session: CallSession | None = None
        self._wake = asyncio.Event()
        self._dirty = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def request(self, session: CallSession) -> None:
        if self._closed:
            return
        self._session, self._dirty = session, True
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._dirty:
                if self._closed:
                    return
                continue
            self._dirty = False
            assert self._session is not None
            try:
                await self.lease.save(list(self._session.history))
            except LeaseLost:
                return
            except Exception as exc:  # NATS away: the next turn (or the final write) saves again
                log.warning("call %s: saving call state failed: %s", self.lease.call_id, exc)
            if self._closed:
                return

    async def close(self) -> None:
        """Let a write in flight finish (its revision matters to the next one); drop the rest, as the
        final state is written by end() or release()."""
        self._closed = True
        self._dirty = False
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), 10.0)
