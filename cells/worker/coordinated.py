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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from cells.call.recorder import CallRecorder
from cells.call.session import CallSession
from cells.contract.call_state import CallLease, CallStateStore, LeaseLost, history_from_dicts
from cells.contract.call_token import CallClaims
from cells.contract.envelope import CallEventEnvelope
from cells.contract.jetstream import publish_event
from cells.contract.redaction import CallRedactor
from cells.contract.slots import SlotServer, call_key
from cells.contract.stream_probe import serve_probe
from cells.coordination.publisher import EventPublisher
from cells.observability import CallObserver, WorkerTelemetry
from cells.providers import registry
from cells.telephony.twilio_media import Start
from cells.worker.agent import ReceptionAgent, agent_from_spec
from regions.objectstore import RegionStore

log = logging.getLogger(__name__)
SAVE_ON = frozenset({"transcript", "agent_said", "tool_result", "turn"})
DRAIN_S = 10.0  # how long a stopping worker waits for its calls' final events and state writes
END_RETRY_S = 120.0  # how long marking a call ended is retried while NATS is away
END_TIMEOUT_S = 5.0  # one attempt at marking a call ended, at hang-up


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
                 lease_s: float = 15.0, telemetry: WorkerTelemetry | None = None) -> None:
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
        self.telemetry = telemetry or WorkerTelemetry(region=region, capacity=capacity,
                                                      active=lambda: len(self._streams))
        self.agents: dict[tuple[str, str], ReceptionAgent] = {}
        self.assignments: dict[str, Assignment] = {}
        self._warm: dict[int, asyncio.Task[None]] = {}
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.calls: CallStateStore | None = None
        self.slots: SlotServer | None = None
        self.draining = False
        # Active streams (their hand-over signals) and the background work of ended ones (finish steps,
        # event flushes, retried state writes): a stopping worker waits for both.
        self._streams: set[_Stream] = set()
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
    def _agent_for(self, spec: dict[str, Any]) -> ReceptionAgent:
        """Agents are built once per agent (and version) and shared by its calls."""
        key = (str(spec.get("id") or ""), str(spec.get("updated_at") or ""))
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
        self.assignments[str(request["call_id"])] = Assignment(request, agent)
        return None

    def _accepted(self, request: dict[str, Any]) -> None:
        agent = self.assignments[str(request["call_id"])].agent
        if id(agent) not in self._warm:  # load models now, before the stream arrives
            self._warm[id(agent)] = asyncio.get_running_loop().create_task(agent.warm_up())
        cutoff = time.monotonic() - 120.0
        for call_id in [c for c, a in self.assignments.items() if a.at < cutoff]:
            del self.assignments[call_id]

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

    async def resolve_call(self, claims: CallClaims, start: Start) -> ReceptionAgent | None:
        key = call_key(claims.call_id, claims.call_sid)
        assignment = self.assignments.get(key)
        if assignment is None or str(assignment.agent.agent_id) != claims.agent_id:
            return None
        if self.slots is not None:
            self.slots.stream_arriving(key)
        warm = self._warm.get(id(assignment.agent))
        if warm is not None:
            await asyncio.shield(warm)
        return assignment.agent

    # -- one media stream ---------------------------------------------------------------------------
    def _recording_key(self, agent: ReceptionAgent, tenant_id: str, call_id: str,
                       stream_sid: str) -> str | None:
        """This stream's recording segment (None when the agent does not record or there is no store)."""
        if not agent.record_calls or self.store_root is None:
            return None
        try:
            return RegionStore.key(tenant_id, f"{call_id}-{stream_sid}.wav")
        except ValueError as exc:
            log.warning("call %s: not recording stream %s: %s", call_id, stream_sid, exc)
            return None

    async def run_stream(self, ws: Any, claims: CallClaims, start: Start, agent: ReceptionAgent,
                         events: Callable[[], Any], on_control: Any) -> None:
        assert self.js is not None and self.calls is not None and self.slots is not None
        call_id, tenant_id = call_key(claims.call_id, claims.call_sid), claims.tenant_id
        assignment = self.assignments.pop(call_id, None)
        request = assignment.request if assignment else {}
        region = str(request.get("region") or self.region)
        resume = bool(request.get("resume"))
        recording = self._recording_key(agent, tenant_id, call_id, start.stream_sid)
        handover = _Stream()
        if self.draining:
            handover.hand_over()  # arrived while this worker stops: on to another worker at once
        self._streams.add(handover)
        self.slots.stream_started(call_id)
        handed_over: list[bool] = []
        try:
            lease = await self.calls.acquire(call_id, takeover=resume, stream_sid=start.stream_sid,
                                             recording=recording, tenant_id=tenant_id,
                                             agent_id=claims.agent_id, call_sid=start.call_sid)
            if lease is None:
                log.warning("call %s: owned by another worker or already ended; refusing stream %s", call_id,
                            start.stream_sid)
                await ws.close("call_owned_elsewhere")
                return
            history = None
            if resume and lease.state.get("history"):
                try:
                    history = history_from_dicts(lease.state["history"])
                except (ValueError, KeyError, TypeError):
                    log.error("call %s: saved history unreadable; starting afresh", call_id)
            publisher = EventPublisher(self.js, call_id=call_id, tenant_id=tenant_id, region=region,
                                       stream_sid=start.stream_sid, source=self.worker_id,
                                       redactor=CallRedactor.for_agent(request.get("agent"), history))
            try:
                await self._run(ws, start, agent, events, on_control, lease, history, publisher, tenant_id,
                                region, recording, handover, handed_over)
            finally:
                if not handed_over:  # the session never ran; otherwise the finish step does this
                    with contextlib.suppress(Exception):
                        await asyncio.shield(lease.release())
                    await asyncio.shield(self._track(publisher.close(timeout=30.0)))
        finally:
            if not handed_over:
                self.slots.stream_ended(call_id)
                self._streams.discard(handover)

    async def _run(self, ws: Any, start: Start, agent: ReceptionAgent, events: Callable[[], Any],
                   on_control: Any, lease: CallLease, history: Any, publisher: EventPublisher, tenant_id: str,
                   region: str, recording: str | None, handover: _Stream,
                   handed_over: list[bool]) -> None:
        from cells.telephony.twilio_media import Dtmf, Mark, Media, Stop

        call_id = lease.call_id
        recorder = CallRecorder() if recording else None
        saver = _StateSaver(lease)
        held: list[tuple[str, dict[str, Any]]] = []
        observer = self.telemetry.call(call_id=call_id, tenant_id=tenant_id,
                                       agent_id=str(lease.state.get("agent_id") or ""),
                                       started_unix=lease.state.get("started_at"))

        def event(kind: str, data: dict[str, Any]) -> None:
            if kind == "call_ended":
                held.append((kind, data))  # published by the finish step, once it is known the call ended
                return
            observer.event(kind, data)
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

        caller_hung_up = handing_over = False
        try:
            # Wall clock: the call started on another worker, whose monotonic clock means nothing here.
            elapsed = 0.0
            if history is not None:
                elapsed = time.time() - float(lease.state.get("started_at") or time.time())
            await session.start(start.stream_sid, start.call_sid, history=history, elapsed_s=elapsed)
            lease.start_heartbeat(on_lost=lambda: asyncio.ensure_future(ws.close("taken_over")))
            self._live.add(call_id)
            with handover.interruptible():
                async for ev in events() if not handover.requested else _no_events():
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
        except asyncio.CancelledError:
            if not handover.consume_cancel():
                raise  # the server's: the socket is gone (a dropped stream)
        except Exception:  # the socket died under us: end this stream, keep the worker
            log.info("call %s: stream %s ended abruptly", call_id, start.stream_sid, exc_info=True)
        finally:
            self._live.discard(call_id)
            # The worker is stopping: this stream ends as a dropped one, and its socket is closed only
            # once the call's state is saved and its lease released, so that another worker resumes it.
            handing_over = handover.requested and not caller_hung_up
            # A task of its own: the server cancels this handler when the socket goes; the call must
            # still be wound down, its state settled and its events published.
            finish = self._track(self._finish(session, lease, saver, publisher, recorder, recording, held,
                                              caller_hung_up, ws if handing_over else None, region,
                                              start.stream_sid, handover, observer))
            handed_over.append(True)
            await asyncio.shield(finish)

    async def _finish(self, session: CallSession, lease: CallLease, saver: _StateSaver,
                      publisher: EventPublisher, recorder: CallRecorder | None, recording: str | None,
                      held: list[tuple[str, dict[str, Any]]], caller_hung_up: bool, close_ws: Any,
                      region: str, stream_sid: str, handover: _Stream, observer: CallObserver) -> None:
        call_id = lease.call_id
        agent_ended = session.state.ended or session.state.disposition != "in_progress"
        ended = agent_ended or caller_hung_up
        lost = False
        try:
            try:
                await session.stop("caller_hung_up")  # keeps a disposition already decided
            except Exception:
                log.exception("call %s: stopping the session failed", call_id)
            finally:
                lease.stop_heartbeat()
                await saver.close()
            if recorder is not None and recording is not None:
                await self._save_recording(recorder, recording, lease, publisher, region)
            if ended:
                lost = not await self._end(lease, session.state.disposition, session.history)
            else:
                log.info("call %s: stream %s %s; the call may resume elsewhere", call_id, stream_sid,
                         "handed over" if close_ws is not None else "dropped")
                try:
                    await lease.save(session.history)
                    await lease.release()
                except LeaseLost:
                    log.info("call %s: another worker has taken the call over", call_id)
                except Exception as exc:  # NATS away: the lease expires and the call resumes anyway
                    log.warning("call %s: saving the dropped call's state failed: %s", call_id, exc)
        finally:
            # A call that really ended is reported ended even when its state could not be written yet
            # (the publisher retries with the same event id); only a call another worker owns is not.
            if ended and not lost:
                started = float(lease.state.get("started_at") or time.time())
                for kind, data in held:
                    publisher.emit(kind, {**data, "duration_s": round(time.time() - started, 3)})
                    observer.event(kind, data)
            observer.finished(session)
            if close_ws is not None:
                with contextlib.suppress(Exception):
                    await close_ws.close("worker_shutdown")
            if self.slots is not None:
                self.slots.stream_ended(call_id)
            try:
                await publisher.close(timeout=30.0)
            finally:
                self._streams.discard(handover)

    async def _save_recording(self, recorder: CallRecorder, key: str, lease: CallLease,
                              publisher: EventPublisher, region: str) -> None:
        """Write this stream's segment; `recording_ready` lists every segment of the call so far that
        exists (a worker killed mid-call never wrote its own), in stream order."""
        assert self.store_root is not None
        store = RegionStore(self.store_root, region)
        listed = [k for k in lease.state.get("recordings") or () if isinstance(k, str)]
        if key not in listed:
            listed.append(key)

        def write() -> tuple[int, list[str]]:
            size = store.put(key, recorder.wav())
            return size, [k for k in listed if k == key or store.exists(k)]

        try:
            size, segments = await asyncio.to_thread(write)
        except Exception:
            log.exception("call %s: writing the recording failed", lease.call_id)
            return
        publisher.emit("recording_ready", {"object_key": key, "duration_ms": recorder.duration_ms,
                                           "size_bytes": size, "content_type": "audio/wav",
                                           "segments": segments})

    async def _end(self, lease: CallLease, disposition: str, history: Any) -> bool:
        """Mark the call ended; False when another worker owns it. When NATS is away (restarting) the
        write is retried in the background, bounded, so that the state ends up ended too."""
        history = list(history)
        try:
            await asyncio.wait_for(lease.end(disposition, history), END_TIMEOUT_S)
            return True
        except LeaseLost:
            log.info("call %s: another worker has taken the call over", lease.call_id)
            return False
        except Exception as exc:
            log.warning("call %s: marking the call ended failed (%s: %s); retrying in the background",
                        lease.call_id, type(exc).__name__, exc)
            self._track(self._end_later(lease, disposition, history))
            return True

    async def _end_later(self, lease: CallLease, disposition: str, history: list[Any]) -> None:
        deadline = time.monotonic() + END_RETRY_S
        wait = 0.5
        while time.monotonic() < deadline:
            await asyncio.sleep(wait)
            wait = min(2 * wait, 3.0)
            try:
                await asyncio.wait_for(lease.end(disposition, history), END_TIMEOUT_S)
            except LeaseLost:
                log.warning("call %s: taken over before it could be marked ended", lease.call_id)
                return
            except Exception:
                continue
            log.warning("call %s: marked ended after NATS came back", lease.call_id)
            return
        log.error("call %s: could not mark the call ended within %.0f s; its lease expires",
                  lease.call_id, END_RETRY_S)


async def _no_events() -> AsyncIterator[Any]:
    """The read loop of a stream handed over before it began."""
    return
    yield


class _Stream:
    """One active media stream's hand-over switch: a stopping worker interrupts the stream's read loop
    (by cancelling the task that runs it, only while it waits for the carrier's next message) and the
    stream then ends as a dropped one."""

    def __init__(self) -> None:
        self.requested = False
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def hand_over(self) -> None:
        self.requested = True
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._task = asyncio.current_task()
        try:
            yield
        finally:
            self._task = None

    def consume_cancel(self) -> bool:
        """True when the CancelledError being handled is our own hand-over (then it is swallowed)."""
        if not self._cancelled:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True


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
