"""Live call state in the region's KV bucket (call_state_<region>, key = call id), with a lease.

The worker that runs a call owns its entry: it takes a lease (worker_id, lease_until) with a
compare-and-set on the entry's KV revision, saves the history after every turn and renews the lease
with heartbeats. Every write is conditional on the revision it last saw, so when another worker takes
the call over (the caller's stream came back to it) the old owner's next write fails and it knows it
lost the call. A worker that dies simply stops renewing; the control plane resumes the call on
another worker while the entry says "active".

Value (JSON): {call_id, tenant_id, region, agent_id, call_sid, worker_id, lease_until, status,
history, disposition, updated_at, started_at, stream_sid, recordings}; lease_until and updated_at are
unix seconds; recordings lists the object keys of the call's recording segments (one per media stream
that records), in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from cells.contract.call_redaction import redact_history
from cells.contract.jetstream import ensure_call_state_bucket
from cells.providers.base import Message, ToolCall

log = logging.getLogger(__name__)
LEASE_S = 15.0
MAX_STATE_BYTES = 512 * 1024  # a KV value must stay well under the server's max payload


RINGING = "ringing"  # claimed by the control plane's webhook, no worker's stream yet
# (worker id, call id) -> the worker still has the call's stream (True), says not (False), no answer (None)
StreamLive = Callable[[str, str], Awaitable[bool | None]]


class LeaseLost(RuntimeError):
    """Another worker owns the call now (or its entry is gone): stop writing its state."""


def message_to_dict(m: Message) -> dict[str, Any]:
    doc: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_call_id:
        doc["tool_call_id"] = m.tool_call_id
    if m.tool_calls:
        doc["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls]
    return doc


def message_from_dict(doc: dict[str, Any]) -> Message:
    role = doc.get("role")
    if role not in ("system", "user", "assistant", "tool"):
        raise ValueError(f"bad message role {role!r}")
    calls = tuple(ToolCall(str(c.get("id", "")), str(c["name"]), dict(c.get("arguments") or {}))
                  for c in doc.get("tool_calls") or ())
    return Message(role, str(doc.get("content") or ""), tool_call_id=doc.get("tool_call_id"),
                   tool_calls=calls)


def history_to_dicts(history: Iterable[Message]) -> list[dict[str, Any]]:
    return [message_to_dict(m) for m in history]


def history_from_dicts(docs: Sequence[dict[str, Any]]) -> list[Message]:
    return [message_from_dict(d) for d in docs]


def _stored(history: Iterable[Message]) -> list[dict[str, Any]]:
    """The history as the bucket keeps it: card numbers masked (read again whole at every save, so a
    card completed in a later turn is masked in the earlier ones too). E-mails and phone numbers stay:
    a resumed call still needs the booking's details."""
    return redact_history(history_to_dicts(history), pii=False)


class CallLease:
    """One worker's ownership of one call's entry. Writes are serialised and conditional."""

    def __init__(self, store: CallStateStore, state: dict[str, Any], revision: int) -> None:
        self.store = store
        self.state = state
        self.revision = revision
        self.lost = False
        self._lock = asyncio.Lock()
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def call_id(self) -> str:
        return str(self.state["call_id"])

    async def _write(self, changes: dict[str, Any]) -> None:
        # Shielded: a caller cancelled mid-write (a heartbeat being stopped) must not leave the lease
        # with a stale revision, or its next write would look like a takeover.
        await asyncio.shield(self._write_locked(changes))

    async def _write_locked(self, changes: dict[str, Any]) -> None:
        async with self._lock:
            if self.lost:
                raise LeaseLost(f"call {self.call_id} is owned by another worker")
            new = {**self.state, **changes, "worker_id": self.store.worker_id,
                   "updated_at": self.store.clock()}
            if new.get("status") == "active":
                new["lease_until"] = self.store.clock() + self.store.lease_s
            body = json.dumps(new, separators=(",", ":"), default=str).encode()
            if len(body) > MAX_STATE_BYTES:
                # A history this long is trimmed to its newest messages rather than not saved at all.
                hist = list(new.get("history") or [])
                while hist and len(body) > MAX_STATE_BYTES:
                    hist = hist[len(hist) // 4 or 1:]
                    new["history"] = hist
                    body = json.dumps(new, separators=(",", ":"), default=str).encode()
            self.revision = await self._update(body)
            self.state = new

    async def _update(self, body: bytes) -> int:
        """One conditional write (the lock is held); LeaseLost when another worker owns the entry."""
        try:
            return await self.store.kv.update(self.call_id, body, last=self.revision)
        except KeyWrongLastSequenceError:
            revision = await self._still_ours()
        if revision is not None:
            try:
                return await self.store.kv.update(self.call_id, body, last=revision)
            except KeyWrongLastSequenceError:
                self.lost = True
        raise LeaseLost(f"call {self.call_id} was taken over by another worker")

    async def _still_ours(self) -> int | None:
        """After a revision conflict: the entry's revision when the entry is still this lease's own
        (an earlier write of ours that timed out on the client had landed: NATS restarting), else None
        and the lease is lost. Another worker's write always names another worker or stream. A failed
        read raises (NATS away again): the next write decides."""
        loaded = await self.store.load_entry(self.call_id)
        if loaded is not None:
            current, revision = loaded
            if (current.get("worker_id") == self.store.worker_id
                    and current.get("stream_sid") == self.state.get("stream_sid")):
                return revision
        self.lost = True
        return None

    async def save(self, history: Iterable[Message] | None = None, **changes: Any) -> None:
        """Save the history (and other fields) and renew the lease."""
        if history is not None:
            changes["history"] = await asyncio.to_thread(_stored, list(history))  # off the audio loop
        await self._write(changes)

    async def renew(self) -> None:
        await self._write({})

    async def end(self, disposition: str, history: Iterable[Message] | None = None) -> None:
        """The call is over (the worker hung up or the caller did): never resume it."""
        self.stop_heartbeat()
        changes: dict[str, Any] = {"status": "ended", "disposition": disposition, "lease_until": 0}
        if history is not None:
            changes["history"] = await asyncio.to_thread(_stored, list(history))  # off the audio loop
        await self._write(changes)

    async def release(self) -> None:
        """Give the lease up without ending the call (the stream dropped; another worker may resume)."""
        self.stop_heartbeat()
        await asyncio.shield(self._release_locked())

    async def _release_locked(self) -> None:
        with contextlib.suppress(LeaseLost):
            async with self._lock:
                if self.lost:
                    return
                new = {**self.state, "lease_until": 0, "updated_at": self.store.clock()}
                self.revision = await self._update(json.dumps(new, default=str).encode())
                self.state = new

    def start_heartbeat(self, interval: float | None = None,
                        on_lost: Callable[[], None] | None = None) -> None:
        interval = interval or self.store.lease_s / 3

        async def beat() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.renew()
                except LeaseLost:
                    log.warning("call %s: lease lost to another worker", self.call_id)
                    if on_lost is not None:
                        on_lost()
                    return
                except Exception as exc:  # NATS away: try again next beat (the lease has slack)
                    log.warning("call %s: lease renewal failed: %s", self.call_id, exc)

        self.stop_heartbeat()
        self._heartbeat = asyncio.get_running_loop().create_task(beat())

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat is not asyncio.current_task():
            self._heartbeat.cancel()
        self._heartbeat = None


class CallStateStore:
    def __init__(self, kv: KeyValue, region: str, *, worker_id: str = "", lease_s: float = LEASE_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.region = region
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.clock = clock

    @classmethod
    async def open(cls, js: JetStreamContext, region: str, **kwargs: Any) -> CallStateStore:
        return cls(await ensure_call_state_bucket(js, region), region, **kwargs)

    async def load_entry(self, call_id: str) -> tuple[dict[str, Any], int] | None:
        try:
            entry = await self.kv.get(call_id)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if entry.value is None:
            return None
        try:
            state = json.loads(entry.value)
        except ValueError:
            log.error("call %s: unreadable call state", call_id)
            return None
        return (state, int(entry.revision or 0)) if isinstance(state, dict) else None

    async def load(self, call_id: str) -> dict[str, Any] | None:
        entry = await self.load_entry(call_id)
        return entry[0] if entry else None

    async def acquire(self, call_id: str, *, takeover: bool = False, stream_sid: str = "",
                      recording: str | None = None, attempts: int = 3, **fields: Any) -> CallLease | None:
        """Take the call's lease; None if another worker holds it (or won the race for it).

        A new call's entry is created with `fields` (tenant_id, agent_id, call_sid, ...). `takeover`
        is for a resumed stream (the carrier told the control plane the old stream is gone): it takes
        a lease another worker still holds, but only from an owner of another stream than
        `stream_sid`, so two contenders never both win. A conflicting write (the old owner's last
        save) is re-read and decided again. `recording` (this stream's recording object key) is
        appended to the entry's `recordings` in the same write, so a resumed call knows every segment
        even when the stream before it never got to write its state.
        """
        for _ in range(attempts):
            now = self.clock()
            loaded = await self.load_entry(call_id)
            if loaded is None:
                state = {"call_id": call_id, "region": self.region, "status": "active", "history": [],
                         "disposition": None, "started_at": now, **fields, "worker_id": self.worker_id,
                         "stream_sid": stream_sid, "lease_until": now + self.lease_s, "updated_at": now,
                         "recordings": [recording] if recording else []}
                try:
                    revision = await self.kv.create(call_id, json.dumps(state, default=str).encode())
                except KeyWrongLastSequenceError:
                    continue  # another worker created it first: decide on what it wrote
                return CallLease(self, state, revision)
            current, revision = loaded
            holder = current.get("worker_id")
            held = bool(holder) and holder != self.worker_id and float(current.get("lease_until") or 0) > now
            same_stream = bool(stream_sid) and current.get("stream_sid") == stream_sid
            if current.get("status") == "ended" or (held and (not takeover or same_stream)):
                return None
            recordings = [str(k) for k in current.get("recordings") or () if isinstance(k, str)]
            if recording and recording not in recordings:
                recordings.append(recording)
            state = {**current, **{k: v for k, v in fields.items() if k not in ("history", "status")},
                     "status": "active", "worker_id": self.worker_id, "stream_sid": stream_sid,
                     "lease_until": now + self.lease_s, "updated_at": now, "recordings": recordings}
            try:
                revision = await self.kv.update(call_id, json.dumps(state, default=str).encode(),
                                                last=revision)
            except KeyWrongLastSequenceError:
                continue
            return CallLease(self, state, revision)
        return None

    async def should_resume(self, call_id: str) -> bool:
        """For the control plane: the call has live state that is not ended."""
        state = await self.load(call_id)
        return bool(state) and state.get("status") == "active"

    async def claim(self, call_id: str, **fields: Any) -> bool:
        """For the control plane's voice webhook: the call's entry is created ("ringing", no lease) the
        first time its carrier asks; False when it exists already (a replayed or repeated webhook for a
        call that is ringing, live or over: it gets no second worker). A worker's acquire takes the
        entry over. NATS errors are raised (the caller decides)."""
        now = self.clock()
        state = {"call_id": call_id, "region": self.region, "status": RINGING, "history": [],
                 "disposition": None, "started_at": now, **fields, "worker_id": "", "stream_sid": "",
                 "lease_until": 0, "updated_at": now, "recordings": []}
        try:
            await self.kv.create(call_id, json.dumps(state, default=str).encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def resumable(self, call_id: str, stream_live: StreamLive, *, settle_s: float = 3.0,
                        poll_s: float = 0.2) -> bool:
        """For the control plane's `<Connect action>` callback: the call is live and its stream is
        really gone: its lease released or expired, or its worker says it has no stream for it (or
        does not answer: killed). A worker that still has the stream (a replayed callback) gets up to
        `settle_s` to notice a stream that did just end; then the answer is no."""
        deadline = self.clock() + settle_s
        while True:
            state = await self.load(call_id)
            if not state or state.get("status") != "active":
                return False
            holder = str(state.get("worker_id") or "")
            if not holder or float(state.get("lease_until") or 0) <= self.clock():
                return True
            if await stream_live(holder, call_id) is not True:
                return True
            if self.clock() >= deadline:
                log.warning("call %s: the carrier says its stream ended, but worker %s still has it; "
                            "no resume", call_id, holder)
                return False
            await asyncio.sleep(poll_s)
