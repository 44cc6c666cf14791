"""The worker's Quart app: the Twilio voice webhook, the media WebSocket, and a health check.

In the embedded default one process is both the webhook and the worker. With a NATS URL the worker
is one of a regional cell's pool: the control plane's webhook assigns it calls over NATS and mints
the call tokens (shared secret), and cells/worker/coordinated.py publishes events, keeps the live call
state and resumes dropped calls.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quart import Quart

from cells.contract.call_token import CallClaims, CallTokenAuthority
from cells.contract.slots import call_key
from cells.contract.twilio_webhook import (
    NumberRoute,
    SlotRequest,
    WebhookSettings,
    WorkerSlot,
    dial_action_url,
    twilio_voice_blueprint,
    whisper_url,
)
from cells.observability import WorkerTelemetry
from cells.observability.http import telemetry_blueprint
from cells.providers.base import ToolCall
from cells.telephony.twilio_ws import (
    AcceptedStream,
    MediaSocketSettings,
    media_stream_blueprint,
)
from cells.worker.agent import CallAgent, ReceptionAgent
from cells.worker.assignments import Assignments
from cells.worker.calls import CallLog
from cells.worker.coordinated import Coordination
from cells.worker.local import LocalCalls
from cells.worker.stream import OnControl

log = logging.getLogger(__name__)
COORDINATION = "autospeak.coordination"  # app.extensions key of a cell worker's Coordination


@dataclass
class WorkerSettings:
    public_base_url: str  # e.g. http://127.0.0.1:8080 (embedded) or https://w1.eu.example.com
    twilio_auth_token: str = field(repr=False)
    twilio_shared_keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # webhook signing keys
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
    # A worker of a regional cell (see the module docstring); None is the embedded worker.
    nats_url: str | None = None
    region: str = "eu"
    worker_id: str = ""  # default: the stream URL
    capacity: int = 50
    object_store: Path | None = None  # root of the regions' object stores (recordings)
    providers: Any = None  # a registry.ProviderConfig overriding every agent's providers (load tests)
    pcm_streams: bool = False  # also serve the raw PCM carrier (cells.telephony.pcm_ws) at /pcm

    @property
    def stream_url(self) -> str:
        base = self.public_base_url.rstrip("/")
        return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/media"


def _telephony(settings: WorkerSettings) -> Any:
    """Twilio REST (transfer and hang-up), or None: the worker then ends calls by closing the stream."""
    if not settings.twilio_account_sid:
        return None
    from cells.telephony.twilio_rest import TwilioRestSettings, TwilioRestTelephony

    return TwilioRestTelephony(TwilioRestSettings(
        account_sid=settings.twilio_account_sid, auth_token=settings.twilio_auth_token,
        api_base_url=settings.twilio_api_base_url))


def _carrier_control(telephony: Any, call_sid: str, transfer_to: str | None, *, call_id: str = "",
                     webhook: WebhookSettings | None = None,
                     summaries: dict[str, str] | None = None) -> OnControl:
    """The session's transfer_to_human and end_call, done by the carrier. With this worker's `webhook`
    (embedded: it answers Twilio's webhooks) a transfer whispers the call's summary to the person who
    answers and comes back here when no one does (cells.call.handoff)."""
    async def control(action: str, call: ToolCall) -> None:
        if telephony is None:
            return
        if action == "transfer_to_human":
            assert transfer_to
            urls: dict[str, str] = {}
            if webhook is not None and summaries is not None and call_id:
                summaries[call_id] = str(call.arguments.get("summary") or "")
                while len(summaries) > 1000:  # the oldest transfers were answered long ago
                    summaries.pop(next(iter(summaries)))
                urls = {"whisper_url": whisper_url(webhook, call_id),
                        "action_url": dial_action_url(webhook, call_id)}
            await telephony.transfer(call_sid, transfer_to, **urls)
        elif action == "end_call":
            await telephony.hangup(call_sid)

    return control


def _webhook(settings: WorkerSettings) -> WebhookSettings:
    return WebhookSettings(auth_token=settings.twilio_auth_token, shared_keys=settings.twilio_shared_keys,
                           public_base_url=settings.public_base_url,
                           allow_insecure_streams=settings.stream_url.startswith("ws://"),
                           # plain http is a local run: a peer may call it by another host name
                           accept_request_host=settings.stream_url.startswith("ws://"))


def _serve_streams(app: Quart, settings: WorkerSettings, tokens: CallTokenAuthority, audience: str, *,
                   request_slot: Any, resolve_call: Any, on_stream: Any,
                   summaries: dict[str, str] | None = None) -> None:
    """The voice webhook (embedded only), Twilio's media WebSocket and, when enabled, the PCM one."""
    if request_slot is not None:  # in a cell the control plane answers Twilio's webhooks
        app.register_blueprint(twilio_voice_blueprint(
            _webhook(settings), tokens=tokens, lookup_number=settings.numbers.get, request_slot=request_slot,
            whisper_for=summaries.get if summaries is not None else None))
    app.register_blueprint(media_stream_blueprint(
        MediaSocketSettings(auth_token=settings.twilio_auth_token, shared_keys=settings.twilio_shared_keys,
                            public_stream_url=settings.stream_url,
                            accept_request_host=settings.stream_url.startswith("ws://"),
                            audience=audience),
        tokens=tokens, resolve_call=resolve_call, on_stream=on_stream))
    if settings.pcm_streams:
        from cells.telephony.pcm_ws import pcm_stream_blueprint

        app.register_blueprint(pcm_stream_blueprint(tokens=tokens, audience=audience,
                                                    resolve_call=resolve_call, on_stream=on_stream))


def _coordination(settings: WorkerSettings, telemetry: WorkerTelemetry) -> Coordination:
    """A cell worker's NATS side (slots, events, call state, recordings)."""
    return Coordination(nats_url=settings.nats_url or "", region=settings.region,
                        worker_id=settings.worker_id or settings.stream_url, stream_url=settings.stream_url,
                        capacity=settings.capacity, data_dir=settings.data_dir,
                        object_store=settings.object_store, providers=settings.providers,
                        transfer_number=settings.transfer_number, telemetry=telemetry)


def create_app(settings: WorkerSettings, agent: CallAgent | None = None) -> Quart:
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    tokens = CallTokenAuthority(settings.call_token_secret)
    # The embedded worker's one demo agent; a cell's worker builds agents from the slot requests.
    agents: dict[str, Any] = {}
    if not settings.nats_url:
        demo = agent or ReceptionAgent(data_dir=settings.data_dir, transfer_number=settings.transfer_number)
        agents[str(demo.agent_id)] = demo
        # The demo numbers ring whichever agent this worker runs (the clinic, or an --agent-spec record):
        # a stream's token names the agent its number routed to, and only that agent takes it.
        settings.numbers = {number: NumberRoute(route.tenant_id, str(demo.agent_id))
                            for number, route in settings.numbers.items()}
    telephony = _telephony(settings)
    active: dict[str, Any] = {}  # call id -> its agent, while its stream runs
    summaries: dict[str, str] = {}  # call id -> its transfer's whisper summary (embedded webhook)
    webhook = None if settings.nats_url else _webhook(settings)
    coord = None
    telemetry = WorkerTelemetry(
        region=settings.region, capacity=settings.capacity if settings.nats_url else settings.max_calls,
        active=lambda: len(active),
        nats_connected=(lambda: bool(coord and coord.nc and coord.nc.is_connected))
        if settings.nats_url else None)
    for a in agents.values():
        telemetry.watch_providers(a.stt, a.brain, a.tts)
    if settings.nats_url:
        coord = _coordination(settings, telemetry)
    # Both modes find a stream's agent the same way (the slot request assigned the call to it) and run
    # it the same way; they differ in what they are connected to: NATS, or in-process stand-ins.
    assignments = coord.assignments if coord is not None else Assignments[CallAgent]()
    streams: Coordination | LocalCalls = coord if coord is not None else LocalCalls(
        CallLog(settings.data_dir), assignments, telemetry, settings.stream_url)

    async def request_slot(req: SlotRequest) -> WorkerSlot | None:  # the embedded worker's webhook
        if len(active) >= settings.max_calls or req.agent_id not in agents:
            return None
        assignments.assign(call_key(req.call_id, req.call_sid),
                           {"call_id": req.call_id, "agent_id": req.agent_id}, agents[req.agent_id])
        return WorkerSlot(settings.stream_url, worker_id=settings.stream_url)

    async def resolve_call(claims: CallClaims, start: Any) -> CallAgent | None:
        return await assignments.resolve(claims)

    async def on_stream(transport: Any, accepted: AcceptedStream[CallAgent]) -> None:
        start, call_id = accepted.start, accepted.claims.call_id
        transfer_to = accepted.call.call.transfer_number if accepted.call.call else None
        active[call_id] = accepted.call
        try:
            await streams.run_stream(transport, accepted.claims, start, accepted.call,
                                     _carrier_control(telephony, start.call_sid, transfer_to, call_id=call_id,
                                                      webhook=webhook, summaries=summaries))
        finally:
            active.pop(call_id, None)

    _serve_streams(app, settings, tokens, coord.worker_id if coord is not None else settings.stream_url,
                   request_slot=None if coord is not None else request_slot, resolve_call=resolve_call,
                   on_stream=on_stream, summaries=summaries)
    app.register_blueprint(telemetry_blueprint(telemetry))
    if coord is not None:  # `python -m cells.worker` hands calls over on SIGTERM before the server stops
        app.extensions[COORDINATION] = coord

    @app.before_serving
    async def warm() -> None:
        if coord is not None:
            await coord.start()
            return
        for a in agents.values():
            await a.warm_up()

    @app.after_serving
    async def shutdown() -> None:
        if coord is not None:
            await coord.stop()
        telemetry.shutdown()

    app.add_url_rule("/healthz", "healthz", _health(active, coord))
    return app


def _health(active: Mapping[str, Any], coord: Coordination | None) -> Any:
    async def healthz() -> dict[str, Any]:
        out: dict[str, Any] = {"ok": True, "active_calls": len(active)}
        if coord is not None:
            out.update(coord.health())
            out["ok"] = bool(out["nats"])
        return out

    return healthz
