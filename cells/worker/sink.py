"""Where one media stream's call goes, for every worker: its events as they happen, its history after
every turn, its recording, and at the end the call marked ended (or, for a stream that only dropped,
released so that it can resume elsewhere). A cell's worker connects the sink to NATS (an
EventPublisher, a CallLease in the region's KV bucket); the embedded worker to in-process stand-ins
(cells.worker.local: a call record on disk, a lease of its own).

A call that really ended always gets its `call_ended` event (published last, once it is known the call
ended here); marking its state ended is retried in the background when NATS is away at hang-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cells.call.recorder import CallRecorder
from cells.call.recording_consent import Jurisdiction, RecordingConsent
from cells.call.recording_guard import RecordingGuard
from cells.call.session import CallSession
from cells.contract.call_redaction import CallRedactor
from cells.contract.call_state import LeaseLost
from cells.observability import CallObserver
from cells.providers.base import Message

log = logging.getLogger(__name__)
SAVE_ON = frozenset({"transcript", "agent_said", "tool_result", "turn"})
END_RETRY_S = 120.0  # how long marking a call ended is retried while NATS is away
END_TIMEOUT_S = 5.0  # one attempt at marking a call ended, at hang-up


class Lease(Protocol):
    """A call's state and its ownership by this worker (cells.contract.call_state.CallLease)."""

    state: dict[str, Any]

    @property
    def call_id(self) -> str: ...
    async def save(self, history: Iterable[Message] | None = None, **changes: Any) -> None: ...
    async def end(self, disposition: str, history: Iterable[Message] | None = None) -> None: ...
    async def release(self) -> None: ...
    def start_heartbeat(self, interval: float | None = None,
                        on_lost: Callable[[], Any] | None = None) -> None: ...
    def stop_heartbeat(self) -> None: ...


class Publisher(Protocol):
    """The call's event stream (cells.coordination.publisher.EventPublisher); it redacts what it emits."""

    def emit(self, kind: str, data: dict[str, Any]) -> None: ...
    async def close(self, timeout: float = ...) -> None: ...


class ObjectStore(Protocol):
    """Where recordings go: regions.sealed_store.SealedStore (encrypted with the tenant's data key)."""

    def put(self, key: str, data: bytes) -> int: ...
    def exists(self, key: str) -> bool: ...


@dataclass
class Recording:
    """This stream's WAV segment and where it goes. `redactor`: the call's redaction rules, which find
    the card capture to keep out of it; `consent`: the jurisdiction that needs the caller's consent
    first (None: the disclosure suffices)."""

    key: str
    store: ObjectStore
    recorder: CallRecorder
    redactor: CallRedactor | None = None
    consent: Jurisdiction | None = None


Track = Callable[[Coroutine[Any, Any, Any]], "asyncio.Future[Any]"]


class CallSink:
    """One stream's record of its call. `resumable`: a stream that drops without the call ending leaves
    the call to be resumed (a cell); otherwise a dropped stream ends the call (the embedded worker)."""

    def __init__(self, *, lease: Lease, publisher: Publisher, observer: CallObserver, worker_id: str,
                 recording: Recording | None = None, resumable: bool = True,
                 track: Track = asyncio.ensure_future,
                 on_done: Sequence[Callable[[CallSession], Any]] = ()) -> None:
        self.lease, self.publisher, self.observer = lease, publisher, observer
        self.worker_id = worker_id
        self.recording = recording
        self.resumable = resumable
        self.track = track
        self.on_done = list(on_done)
        self.saver = StateSaver(lease)
        self.session: CallSession | None = None
        self.finishing = False  # `finish` is scheduled: it closes the publisher and runs `on_done`
        self._held: list[tuple[str, dict[str, Any]]] = []
        self.guard: RecordingGuard | None = None
        self.hooks: RecordingConsent | None = None  # the session's hooks (the consent question)
        if recording is not None:
            redactor = recording.redactor or CallRedactor(pii=False)
            self.guard = RecordingGuard(recording.recorder, self.event, redactor,
                                        lambda: getattr(self.session, "started_at", None))
            if recording.consent is not None:
                self.hooks = RecordingConsent(recording.consent, self.event, self._consent_answered)

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "call_ended":
            self._held.append((kind, data))  # published by `finish`, once it is known the call ended
            return
        self.observer.event(kind, data)
        if kind == "call_started":
            data = {**data, "worker_id": self.worker_id}
        self.publisher.emit(kind, data)
        redactor = getattr(self.session, "redactor", None)
        if kind in SAVE_ON and self.session is not None and not (redactor is not None and redactor.pending):
            # Not while the caller's last digits may begin a card: the next input tells (and masks them).
            self.saver.request(self.session)
        if self.guard is not None:
            self.guard.on_event(kind, data)

    def _consent_answered(self, answer: str) -> None:
        """Kept with the call's state: a resumed stream records (or not) as the caller answered."""
        if answer != "yes" and self.recording is not None:
            self.recording.recorder.discard()

        async def save() -> None:
            with contextlib.suppress(Exception):
                await self.lease.save(recording_consent=answer)

        self.track(save())

    async def before_close(self, reason: str) -> None:
        """The worker closes the stream on purpose: the call is marked ended first, as the carrier asks
        what to do next as soon as the stream ends and must not resume a call we hung up."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lease.end(reason, self.session.history if self.session else ()), 3.0)

    async def finish(self, session: CallSession, caller_hung_up: bool, close: Any = None) -> None:
        """The stream is over. `close`: a transport to close once the state is settled (a hand-over)."""
        call_id = self.lease.call_id
        ended = (session.state.ended or session.state.disposition != "in_progress" or caller_hung_up
                 or not self.resumable)
        lost = False
        try:
            try:
                await session.stop("caller_hung_up")  # keeps a disposition already decided
            except Exception:
                log.exception("call %s: stopping the session failed", call_id)
            finally:
                self.lease.stop_heartbeat()
                await self.saver.close()
            if self.recording is not None:
                await self._save_recording(self.recording)
            if ended:
                lost = not await self._end(session.state.disposition, session.history)
            else:
                log.info("call %s: stream %s %s; the call may resume elsewhere", call_id, session.stream_sid,
                         "handed over" if close is not None else "dropped")
                await self._release(session)
        finally:
            # A call that really ended is reported ended even when its state could not be written yet
            # (the publisher retries with the same event id); only a call another worker owns is not.
            if ended and not lost:
                started = float(self.lease.state.get("started_at") or time.time())
                for kind, data in self._held:
                    self.publisher.emit(kind, {**data, "duration_s": round(time.time() - started, 3)})
                    self.observer.event(kind, data)
            self.observer.finished(session)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close.close("worker_shutdown")
            try:
                await self.publisher.close(timeout=30.0)
            finally:
                for done in self.on_done:  # e.g. the worker's count of active streams
                    done(session)

    async def _release(self, session: CallSession) -> None:
        try:
            await self.lease.save(session.history)
            await self.lease.release()
        except LeaseLost:
            log.info("call %s: another worker has taken the call over", self.lease.call_id)
        except Exception as exc:  # NATS away: the lease expires and the call resumes anyway
            log.warning("call %s: saving the dropped call's state failed: %s", self.lease.call_id, exc)

    async def _save_recording(self, rec: Recording) -> None:
        """Write this stream's segment; `recording_ready` lists every segment of the call so far that
        exists (a worker killed mid-call never wrote its own), in stream order."""
        if self.hooks is not None:
            self.hooks.end()  # unanswered: not recorded
            if not self.hooks.allowed:
                log.info("call %s: no recording consent; nothing written", self.lease.call_id)
                return
        if self.guard is not None:
            self.guard.close()
        listed = [k for k in self.lease.state.get("recordings") or () if isinstance(k, str)]
        if rec.key not in listed:
            listed.append(rec.key)

        def write() -> tuple[int, list[str]]:
            size = rec.store.put(rec.key, rec.recorder.wav())
            return size, [k for k in listed if k == rec.key or rec.store.exists(k)]

        try:
            size, segments = await asyncio.to_thread(write)
        except Exception:
            log.exception("call %s: writing the recording failed", self.lease.call_id)
            return
        self.publisher.emit("recording_ready", {
            "object_key": rec.key, "duration_ms": rec.recorder.duration_ms, "size_bytes": size,
            "content_type": "audio/wav", "segments": segments})

    async def _end(self, disposition: str, history: Any) -> bool:
        """Mark the call ended; False when another worker owns it. When NATS is away (restarting) the
        write is retried in the background, bounded, so that the state ends up ended too."""
        history = list(history)
        try:
            await asyncio.wait_for(self.lease.end(disposition, history), END_TIMEOUT_S)
            return True
        except LeaseLost:
            log.info("call %s: another worker has taken the call over", self.lease.call_id)
            return False
        except Exception as exc:
            log.warning("call %s: marking the call ended failed (%s: %s); retrying in the background",
                        self.lease.call_id, type(exc).__name__, exc)
            self.track(self._end_later(disposition, history))
            return True

    async def _end_later(self, disposition: str, history: list[Any]) -> None:
        deadline = time.monotonic() + END_RETRY_S
        wait = 0.5
        while time.monotonic() < deadline:
            await asyncio.sleep(wait)
            wait = min(2 * wait, 3.0)
            try:
                await asyncio.wait_for(self.lease.end(disposition, history), END_TIMEOUT_S)
            except LeaseLost:
                log.warning("call %s: taken over before it could be marked ended", self.lease.call_id)
                return
            except Exception:
                continue
            log.warning("call %s: marked ended after NATS came back", self.lease.call_id)
            return
        log.error("call %s: could not mark the call ended within %.0f s; its lease expires",
                  self.lease.call_id, END_RETRY_S)


class StateSaver:
    """Saves the history after every turn: one write at a time, the latest state wins."""

    def __init__(self, lease: Lease) -> None:
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
