"""Worker slot assignment over NATS request/reply.

The control plane's voice webhook asks `slot_subject(region)`; the region's workers listen in queue
group `workers`, so exactly one of them answers each request. A worker that accepts reserves a slot
for the call until its media stream arrives (or the reservation expires), so a burst of calls never
assigns more calls to a worker than its capacity.

A worker with no free slot leaves the queue group (drains its subscription) and joins again when a
slot frees up: NATS then routes requests only to workers with room, instead of the requester
retrying at random across a pool of mostly full workers. A request that still reaches a full worker
(in flight while it left) gets `accepted=false` and the requester tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from cells.contract.envelope import SLOT_QUEUE, call_id_for_sid, slot_subject

log = logging.getLogger(__name__)
RESERVATION_S = 30.0  # Twilio opens the stream within seconds of the TwiML answer
MAX_REQUEST_BYTES = 256 * 1024

# Decides on a request the worker has room for: None accepts, a string refuses with that reason
# (an agent the worker cannot run, a malformed request). Called before the slot is reserved.
Vetting = Callable[[dict[str, Any]], str | None]


def call_key(call_id: str, call_sid: str = "") -> str:
    """The call's UUID: the webhook names an inbound call by its CallSid (in the slot request and the
    call token), an outbound one by our UUID; events, state and slots all use the UUID."""
    try:
        return str(uuid.UUID(str(call_id)))
    except ValueError:
        return str(call_id_for_sid(call_sid or call_id))


@dataclass
class _Reservation:
    expires_at: float
    timer: asyncio.TimerHandle | None
    request: dict[str, Any] | None = None


class SlotServer:
    """A worker's side: answers slot requests and counts reserved and active calls against capacity.

    The worker calls `stream_started(call_id)` when a reserved call's media stream arrives and
    `stream_ended(call_id)` when it is over; both may be called for calls that were never reserved.
    """

    def __init__(self, nc: Client, region: str, *, worker_id: str, stream_url: str, capacity: int,
                 vet: Vetting | None = None, on_accept: Callable[[dict[str, Any]], None] | None = None,
                 on_expire: Callable[[dict[str, Any]], None] | None = None,
                 reservation_s: float = RESERVATION_S, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.nc = nc
        self.region = region
        self.subject = slot_subject(region)
        self.worker_id = worker_id
        self.stream_url = stream_url
        self.capacity = capacity
        self.vet = vet
        self.on_accept = on_accept
        # Told when a reserved call's stream never came: nobody else knows the call will not start.
        self.on_expire = on_expire
        self.reservation_s = reservation_s
        self.clock = clock
        self.reserved: dict[str, _Reservation] = {}
        self.active: set[str] = set()
        self.accepted = 0  # requests accepted since start (for tests and health)
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()
        self._running = False
        self._sync_task: asyncio.Task[None] | None = None

    # -- load ----------------------------------------------------------------------------------------
    @property
    def used(self) -> int:
        return len(self.active) + len(self.reserved)

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)

    @property
    def listening(self) -> bool:
        return self._sub is not None

    def stream_started(self, call_id: str) -> None:
        self._drop_reservation(call_id)
        self.active.add(call_id)
        self._resync()

    def stream_ended(self, call_id: str) -> None:
        self.active.discard(call_id)
        self._drop_reservation(call_id)
        self._resync()

    def stream_arriving(self, call_id: str) -> None:
        """A reserved call's stream is here and being set up (its agent may still be warming up): its
        reservation starts over, so a slow set-up is not taken for a stream that never came."""
        res = self.reserved.get(call_id)
        if res is None:
            return
        if res.timer is not None:
            res.timer.cancel()
        res.timer = asyncio.get_running_loop().call_later(self.reservation_s, self._expire, call_id)
        res.expires_at = self.clock() + self.reservation_s

    def _drop_reservation(self, call_id: str) -> None:
        res = self.reserved.pop(call_id, None)
        if res is not None and res.timer is not None:
            res.timer.cancel()

    def _expire(self, call_id: str) -> None:
        log.info("slot reserved for call %s expired before its stream arrived", call_id)
        res = self.reserved.pop(call_id, None)
        self._resync()
        if res is not None and res.request is not None and self.on_expire is not None:
            try:
                self.on_expire(res.request)
            except Exception:
                log.exception("on_expire failed for call %s", call_id)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._running = True
        await self._sync()

    async def stop(self) -> None:
        """Leave the queue group (a draining worker takes no new calls; its active calls go on)."""
        self._running = False
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sync_task
        async with self._lock:
            sub, self._sub = self._sub, None
            if sub is not None and not self.nc.is_closed:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        for res in self.reserved.values():
            if res.timer is not None:
                res.timer.cancel()

    def _resync(self) -> None:
        """Join or leave the queue group to match the free capacity (in the background: a
        subscription's own callback must not drain it)."""
        if not self._running:
            return
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync())
        else:  # one running already may have decided on stale counts: run once more after it
            prev = self._sync_task

            async def again() -> None:
                with contextlib.suppress(Exception):
                    await prev
                await self._sync()

            self._sync_task = asyncio.get_running_loop().create_task(again())

    async def _sync(self) -> None:
        async with self._lock:
            if self.nc.is_closed:
                return
            want = self._running and self.free > 0
            try:
                if want and self._sub is None:
                    self._sub = await self.nc.subscribe(self.subject, queue=SLOT_QUEUE, cb=self._on_request)
                    await self.nc.flush()
                elif not want and self._sub is not None:
                    sub, self._sub = self._sub, None
                    # drain: requests already delivered to us are still answered (accepted=false).
                    await sub.drain()
            except Exception:  # NATS is reconnecting; the next stream start or end tries again
                log.warning("could not update the slot subscription", exc_info=True)

    # -- requests ------------------------------------------------------------------------------------
    def _reply(self, accepted: bool, reason: str | None = None) -> bytes:
        body: dict[str, Any] = {"accepted": accepted, "worker_id": self.worker_id,
                                "stream_url": self.stream_url, "active": len(self.active),
                                "capacity": self.capacity}
        if reason:
            body["reason"] = reason
        return json.dumps(body).encode()

    def handle(self, data: bytes) -> bytes:
        """Decide on one request (synchronously, so concurrent requests cannot both take the last slot)."""
        try:
            if len(data) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            request = json.loads(data)
            if not isinstance(request, dict) or not isinstance(request.get("call_id"), str) \
                    or not request["call_id"]:
                raise ValueError("a slot request is a JSON object with a call_id")
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("bad slot request: %s", exc)
            return self._reply(False, "bad_request")
        call_id = request["call_id"] = call_key(request["call_id"], str(request.get("call_sid") or ""))
        if not self._running:
            return self._reply(False, "draining")
        again = call_id in self.reserved or call_id in self.active  # a retried request: same slot
        if not again and self.free <= 0:
            return self._reply(False, "full")
        if self.vet is not None:
            try:
                reason = self.vet(request)
            except Exception:
                log.exception("vetting slot request for call %s failed", call_id)
                reason = "internal_error"
            if reason:
                return self._reply(False, reason)
        if call_id not in self.active:
            self._drop_reservation(call_id)
            loop = asyncio.get_running_loop()
            self.reserved[call_id] = _Reservation(
                self.clock() + self.reservation_s, loop.call_later(self.reservation_s, self._expire, call_id),
                request)
        self.accepted += 1
        if self.on_accept is not None:
            try:
                self.on_accept(request)
            except Exception:
                log.exception("on_accept failed for call %s", call_id)
        log.info("accepted a slot for call %s (%d/%d used)", call_id, self.used, self.capacity)
        return self._reply(True)

    async def _on_request(self, msg: Msg) -> None:
        body = self.handle(msg.data)
        if msg.reply:
            # Shielded: a drain that cancels this callback must not swallow an accepted reply.
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.respond(body))
        if self.free <= 0:
            self._resync()


async def request_slot(nc: Client, region: str, request: dict[str, Any], *, timeout: float = 1.0,
                       attempts: int = 3, retry_wait: float = 0.1) -> dict[str, Any] | None:
    """The control plane's side: ask the region's workers for a slot. Retries on a refusal (the worker
    that answered was full), a timeout and "no responders" (every worker is full or none runs);
    returns the accepted reply, or None when no worker took the call."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    body = json.dumps(request, default=str).encode()
    subject = slot_subject(region)
    for attempt in range(1, attempts + 1):
        try:
            msg = await nc.request(subject, body, timeout=timeout)
            reply = json.loads(msg.data)
        except NoRespondersError:
            log.info("slot request for call %s: no worker listening (attempt %d)", request.get("call_id"),
                     attempt)
        except NatsTimeout:
            log.info("slot request for call %s timed out (attempt %d)", request.get("call_id"), attempt)
        except ValueError:
            log.warning("slot request for call %s: unreadable reply", request.get("call_id"))
        else:
            if isinstance(reply, dict) and reply.get("accepted") is True and reply.get("stream_url"):
                return reply
            log.info("slot request for call %s refused by %s: %s", request.get("call_id"),
                     reply.get("worker_id") if isinstance(reply, dict) else "?",
                     reply.get("reason") if isinstance(reply, dict) else reply)
        if attempt < attempts:
            await asyncio.sleep(retry_wait * attempt)
    return None
