"""The worker's Quart app: the Twilio voice webhook, the media WebSocket, and a health check.

In the embedded default one process is both the webhook and the worker; the control plane
(regional cells, NATS slot assignment) takes the webhook over in production.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quart import Quart

from cells.call.session import CallSession
from cells.providers.base import ToolCall
from cells.telephony.call_token import CallClaims, CallTokenAuthority
from cells.telephony.twilio_media import Dtmf, Mark, Media, Start, Stop
from cells.telephony.twilio_webhook import (
    NumberRoute,
    SlotRequest,
    WebhookSettings,
    WorkerSlot,
    twilio_voice_blueprint,
)
from cells.telephony.twilio_ws import (
    AcceptedStream,
    MediaSocketSettings,
    TwilioMediaSession,
    media_stream_blueprint,
)
from cells.worker.agent import ReceptionAgent
from cells.worker.calls import CallLog

log = logging.getLogger(__name__)


@dataclass
class WorkerSettings:
    public_base_url: str  # e.g. http://127.0.0.1:8080 (embedded) or https://w1.eu.example.com
    twilio_auth_token: str = field(repr=False)
    call_token_secret: str = field(repr=False, default_factory=lambda: secrets.token_urlsafe(48))
    data_dir: Path | None = None
    numbers: dict[str, NumberRoute] = field(
        default_factory=lambda: {"+15005550001": NumberRoute("demo", "reception-demo")})
    max_calls: int = 50
    # Twilio REST (transfer and hang-up); without an account SID the worker ends calls by closing
    # the media stream, which is all the embedded simulator needs.
    twilio_account_sid: str | None = None
    twilio_api_base_url: str | None = None
    transfer_number: str | None = None

    @property
    def stream_url(self) -> str:
        base = self.public_base_url.rstrip("/")
        return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/media"


def create_app(settings: WorkerSettings, agent: ReceptionAgent | None = None) -> Quart:
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    tokens = CallTokenAuthority(settings.call_token_secret)
    agents = {"reception-demo": agent or ReceptionAgent(data_dir=settings.data_dir,
                                                         transfer_number=settings.transfer_number)}
    telephony = None
    if settings.twilio_account_sid:
        from cells.telephony.twilio_rest import TwilioRestSettings, TwilioRestTelephony

        telephony = TwilioRestTelephony(TwilioRestSettings(
            account_sid=settings.twilio_account_sid, auth_token=settings.twilio_auth_token,
            api_base_url=settings.twilio_api_base_url))
    calls = CallLog(settings.data_dir)
    active: dict[str, CallSession] = {}

    async def request_slot(req: SlotRequest) -> WorkerSlot | None:
        if len(active) >= settings.max_calls or req.agent_id not in agents:
            return None
        return WorkerSlot(settings.stream_url, worker_id=settings.stream_url)

    async def resolve_call(claims: CallClaims, start: Start) -> ReceptionAgent | None:
        return agents.get(claims.agent_id)

    async def on_stream(ws: TwilioMediaSession, accepted: AcceptedStream[ReceptionAgent]) -> None:
        start = accepted.start
        call_id = accepted.claims.call_id
        record = calls.open(call_id, accepted.claims.tenant_id, accepted.claims.agent_id, start.call_sid)
        async def control(action: str, call: ToolCall) -> None:
            if telephony is None:
                return
            if action == "transfer_to_human":
                assert session.config.transfer_number
                await telephony.transfer(start.call_sid, session.config.transfer_number)
            elif action == "end_call":
                await telephony.hangup(start.call_sid)

        session = accepted.call.new_session(ws, on_event=record.event, on_control=control)
        active[call_id] = session
        try:
            await session.start(start.stream_sid, start.call_sid)
            async for event in ws.events():
                if isinstance(event, Media):
                    session.on_media(event.raw)
                elif isinstance(event, Mark):
                    session.on_mark(event.name)
                elif isinstance(event, Dtmf):
                    session.on_dtmf(event.digit)
                elif isinstance(event, Stop):
                    break
                if session.state.ended:
                    break
        except Exception:  # the socket died under us: end this call, keep the worker
            log.info("call %s: stream ended abruptly", call_id, exc_info=True)
        finally:
            log.info("call %s: stream over, stopping the session", call_id)

            async def finish() -> None:
                try:
                    await session.stop("caller_hung_up")  # keeps a disposition already decided
                finally:
                    active.pop(call_id, None)
                    record.close(session)

            # The server cancels this handler when the caller's socket goes away; the call must
            # still be wound down and recorded.
            await asyncio.shield(finish())

    app.register_blueprint(twilio_voice_blueprint(
        WebhookSettings(auth_token=settings.twilio_auth_token, public_base_url=settings.public_base_url,
                        allow_insecure_streams=settings.stream_url.startswith("ws://")),
        tokens=tokens, lookup_number=settings.numbers.get, request_slot=request_slot))
    app.register_blueprint(media_stream_blueprint(
        MediaSocketSettings(auth_token=settings.twilio_auth_token, public_stream_url=settings.stream_url,
                            audience=settings.stream_url),
        tokens=tokens, resolve_call=resolve_call, on_stream=on_stream))

    @app.before_serving
    async def warm() -> None:
        for a in agents.values():
            await a.warm_up()

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "active_calls": len(active)}

    return app
