"""Twilio's voice webhooks on the control API: answer a call by pointing its media stream at a worker.

{prefix}/voice         a call arrives (or an outbound call we placed is answered)
{prefix}/stream-ended  the `<Connect action>`: the stream ended while the call is still up
{prefix}/status        call status callbacks
{prefix}/whisper       a transfer's `<Number url>`: the person who answers hears the summary first
{prefix}/dial-ended    a transfer's `<Dial action>`: no one answered -> back to a worker to take a message

Each takes POST (Twilio's default) or GET (a number may be configured so). Every request must carry a
valid X-Twilio-Signature over the public URL Twilio called (configured, since behind a proxy our Host
differs) and the form parameters, made with the auth token or a shared key (twilio_signature).
The answer is always TwiML: callers hear a polite message when their number is unknown or no worker
is free, never an HTTP 500.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from quart import Blueprint, Response, abort, request
from twilio.twiml.voice_response import Connect, VoiceResponse

from cells.contract.call_token import CallTokenAuthority
from cells.contract.twilio_signature import SETTINGS_HEADER, SIGNATURE_HEADER, TwilioSigning

log = logging.getLogger(__name__)
MAX_FORM_BYTES = 64 * 1024
_CALL_ENDED = {"completed", "busy", "failed", "no-answer", "canceled"}
# A call we placed through the REST API: our number is its From. (A <Dial> leg, "outbound-dial",
# carries the parent call's caller id as From, so only "outbound-api" means that.)
OUTBOUND_API = "outbound-api"
_METHODS = ["GET", "POST"]


@dataclass(frozen=True)
class WebhookSettings:
    auth_token: str = field(repr=False)  # the Twilio auth token that signs webhooks
    shared_keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # key id -> secret
    public_base_url: str = ""  # what Twilio calls in front of this app's root, e.g. https://eu.example.com
    url_prefix: str = "/twilio"
    token_parameter: str = "call_token"  # the <Parameter> name the worker reads the token from
    # Twilio gives a webhook 15 s, then tries the fallback URL: lookup + slot answer well before that.
    lookup_timeout_s: float = 4.0
    slot_timeout_s: float = 5.0
    max_stream_resumes: int = 2
    allow_insecure_streams: bool = False  # ws:// stream URLs, for local development only
    reject_unknown_numbers: bool = False  # <Reject> (not billed) instead of a spoken message
    unknown_number_message: str = "Sorry, this number is not in service. Goodbye."
    busy_message: str = "Sorry, all our agents are busy right now. Please call again in a few minutes."
    say_language: str = "en-US"
    # Local runs only (no public URL configured): also accept a signature over the URL as this request
    # reached us (its Host header), for a peer that calls http://localhost:... where we say 127.0.0.1.
    accept_request_host: bool = False

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        base = self.public_base_url.rstrip("/") + path
        return base + ("?" + urllib.parse.urlencode(query) if query else "")


@dataclass(frozen=True)
class NumberRoute:
    """Who answers a dialled number."""

    tenant_id: str
    agent_id: str


@dataclass(frozen=True)
class SlotRequest:
    call_id: str
    call_sid: str
    tenant_id: str
    agent_id: str
    from_number: str
    to_number: str
    direction: str
    resume: bool  # the call's earlier stream ended: a worker should resume it from the saved state


@dataclass(frozen=True)
class WorkerSlot:
    stream_url: str  # the worker's wss:// media stream URL
    worker_id: str | None = None  # the token's audience; the stream URL when not given

    @property
    def audience(self) -> str:
        return self.worker_id or self.stream_url


LookupNumber = Callable[[str], Awaitable[NumberRoute | None] | NumberRoute | None]
RequestSlot = Callable[[SlotRequest], Awaitable[WorkerSlot | str | None]]
StatusSink = Callable[[dict[str, str]], Awaitable[None]]
ShouldResume = Callable[[str, dict[str, str]], Awaitable[bool]]
MakeCallId = Callable[[dict[str, str], str | None], str]
WhisperFor = Callable[[str], Awaitable[str | None] | str | None]  # call id -> the transfer's summary
# A transfer's Dial ended without a bridge: the caller comes back to an agent, which takes a message.
DIAL_UNANSWERED = frozenset({"no-answer", "busy", "failed", "canceled"})
WHISPER_FALLBACK = "A call transferred by the AI assistant."


def say_twiml(message: str, *, language: str = "en-US") -> str:
    response = VoiceResponse()
    response.say(message, language=language)
    response.hangup()
    return str(response)


def connect_stream_twiml(stream_url: str, *, action_url: str, parameters: Mapping[str, str]) -> str:
    """`<Connect action><Stream url><Parameter/>...`: Twilio opens the media WebSocket to `stream_url`
    and requests `action_url` when the stream ends while the call is still up."""
    response = VoiceResponse()
    connect = Connect(action=action_url, method="POST")
    stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def whisper_url(settings: WebhookSettings, call_id: str) -> str:
    return settings.url(f"{settings.url_prefix}/whisper", {"call_id": call_id})


def dial_action_url(settings: WebhookSettings, call_id: str) -> str:
    return settings.url(f"{settings.url_prefix}/dial-ended", {"call_id": call_id})


def _twiml(xml: str) -> Response:
    return Response(xml, status=200, content_type="text/xml; charset=utf-8")


def twilio_voice_blueprint(settings: WebhookSettings, *, tokens: CallTokenAuthority,
                           lookup_number: LookupNumber, request_slot: RequestSlot,
                           on_status: StatusSink | None = None, should_resume: ShouldResume | None = None,
                           make_call_id: MakeCallId | None = None, whisper_for: WhisperFor | None = None,
                           name: str = "twilio_voice") -> Blueprint:
    """The webhook routes. `lookup_number` maps our dialled number to a NumberRoute (or None);
    `request_slot` reserves a worker and returns its stream URL (or None when none is free);
    `should_resume(call_sid, form)` decides whether a call whose stream ended gets a new one (default:
    hang up, so a worker that closes its stream on purpose never causes a reconnect loop).
    `make_call_id(form, call_id_query)` names the call (default: the `call_id` query parameter an
    outbound call carries, else the CallSid); the regional cell derives a UUID from the CallSid.
    `whisper_for(call_id)`: the summary of a call being transferred (None: a generic line)."""
    if not settings.public_base_url.startswith(("https://", "http://")):
        raise ValueError("WebhookSettings.public_base_url must be the absolute URL Twilio calls")
    signing = TwilioSigning(settings.auth_token, settings.shared_keys)
    bp = Blueprint(name, __name__, url_prefix=settings.url_prefix)

    async def signed_form() -> dict[str, str] | None:
        if (request.content_length or 0) > MAX_FORM_BYTES:
            abort(413)
        # A GET carries Twilio's parameters in the query string, which the signed URL already covers.
        form = await request.form if request.method == "POST" else request.args
        query = request.query_string.decode("latin-1")
        tail = request.path + (f"?{query}" if query else "")
        urls = [settings.public_base_url.rstrip("/") + tail]
        if settings.accept_request_host:
            urls.append(f"{request.scheme}://{request.host}{tail}")
        signed_params = form if request.method == "POST" else {}
        if not any(signing.is_signed(url, signed_params, request.headers.get(SIGNATURE_HEADER),
                                     request.headers.get(SETTINGS_HEADER)) for url in urls):
            log.warning("rejected a Twilio webhook with a bad signature: %s %s", request.method, request.path)
            return None
        return {k: form.get(k, "") for k in form}

    def call_id_of(form: dict[str, str]) -> str:
        query_id = request.args.get("call_id") or None
        if make_call_id is not None:
            return make_call_id(form, query_id)
        return query_id or form.get("CallSid", "")

    def unknown_number() -> Response:
        if settings.reject_unknown_numbers:
            response = VoiceResponse()
            response.reject()
            return _twiml(str(response))
        return _twiml(say_twiml(settings.unknown_number_message, language=settings.say_language))

    async def connect(form: dict[str, str], call_id: str, attempt: int,
                      extra: Mapping[str, str] | None = None) -> Response:
        call_sid = form.get("CallSid", "")
        direction = form.get("Direction", "inbound")
        our_number = form.get("From" if direction == OUTBOUND_API else "To", "")
        try:
            async with asyncio.timeout(settings.lookup_timeout_s):
                route = lookup_number(our_number)
                if inspect.isawaitable(route):
                    route = await route
        except TimeoutError:
            log.error("number lookup took over %.1f s for call %s", settings.lookup_timeout_s, call_sid)
            return _twiml(say_twiml(settings.busy_message, language=settings.say_language))
        except Exception:
            log.exception("number lookup failed for call %s", call_sid)
            return _twiml(say_twiml(settings.busy_message, language=settings.say_language))
        if route is None:
            log.info("call %s to unknown number %s", call_sid, our_number)
            return unknown_number()
        slot = await reserve(SlotRequest(call_id=call_id, call_sid=call_sid, tenant_id=route.tenant_id,
                                         agent_id=route.agent_id, from_number=form.get("From", ""),
                                         to_number=form.get("To", ""), direction=direction,
                                         resume=attempt > 0))
        if slot is None:
            return _twiml(say_twiml(settings.busy_message, language=settings.say_language))
        token = tokens.mint(call_id=call_id, tenant_id=route.tenant_id, agent_id=route.agent_id,
                            audience=slot.audience, call_sid=call_sid)
        action = settings.url(f"{settings.url_prefix}/stream-ended",
                              {"attempt": str(attempt + 1), "call_id": call_id})
        log.info("call %s (%s) -> worker %s, attempt %d", call_id, call_sid, slot.audience, attempt)
        return _twiml(connect_stream_twiml(slot.stream_url, action_url=action,
                                           parameters={settings.token_parameter: token, **(extra or {})}))

    async def reserve(req: SlotRequest) -> WorkerSlot | None:
        try:
            async with asyncio.timeout(settings.slot_timeout_s):
                slot = await request_slot(req)
        except TimeoutError:
            log.warning("no worker answered in %.1f s for call %s", settings.slot_timeout_s, req.call_id)
            return None
        except Exception:
            log.exception("worker slot request failed for call %s", req.call_id)
            return None
        if slot is None:
            log.warning("no free worker for call %s", req.call_id)
            return None
        slot = WorkerSlot(slot) if isinstance(slot, str) else slot
        schemes = ("wss://", "ws://") if settings.allow_insecure_streams else ("wss://",)
        if not slot.stream_url.startswith(schemes):
            log.error("worker %s offered a stream URL Twilio cannot use: %s", slot.audience, slot.stream_url)
            return None
        return slot

    @bp.route("/voice", methods=_METHODS)
    async def voice() -> Response:
        form = await signed_form()
        if form is None:
            return Response("invalid Twilio signature", status=403)
        if not form.get("CallSid"):
            return Response("CallSid is required", status=400)
        # An outbound call we placed carries our call id in the voice URL; inbound calls use the CallSid.
        return await connect(form, call_id_of(form), attempt=0)

    @bp.route("/stream-ended", methods=_METHODS)
    async def stream_ended() -> Response:
        form = await signed_form()
        if form is None:
            return Response("invalid Twilio signature", status=403)
        call_sid = form.get("CallSid", "")
        if form.get("CallStatus") in _CALL_ENDED:
            return _twiml(str(VoiceResponse()))
        try:
            attempt = int(request.args.get("attempt", "1"))
        except ValueError:
            attempt = settings.max_stream_resumes + 1
        resume = False
        if should_resume is not None and attempt <= settings.max_stream_resumes:
            try:
                resume = await should_resume(call_sid, form)
            except Exception:
                log.exception("should_resume failed for call %s", call_sid)
        if not resume:
            log.info("stream of call %s ended; hanging up", call_sid)
            response = VoiceResponse()
            response.hangup()
            return _twiml(str(response))
        return await connect(form, call_id_of(form), attempt=attempt)

    @bp.route("/status", methods=_METHODS)
    async def status() -> Response:
        form = await signed_form()
        if form is None:
            return Response("invalid Twilio signature", status=403)
        if on_status is not None:
            try:
                await on_status(form)
            except Exception:
                log.exception("status callback handler failed for call %s", form.get("CallSid", ""))
        return Response("", status=204)

    @bp.route("/whisper", methods=_METHODS)
    async def whisper() -> Response:
        """On the answering person's leg, before the bridge (its CallSid is that leg's, so our call id
        comes in the URL we gave the `<Number url>`, which the signature covers)."""
        form = await signed_form()
        if form is None:
            return Response("invalid Twilio signature", status=403)
        call_id = request.args.get("call_id", "")
        summary = None
        if whisper_for is not None and call_id:
            try:
                summary = whisper_for(call_id)
                if inspect.isawaitable(summary):
                    summary = await summary
            except Exception:
                log.exception("no whisper summary for call %s", call_id)
        response = VoiceResponse()
        response.say(" ".join(str(summary or WHISPER_FALLBACK).split())[:600], language=settings.say_language)
        return _twiml(str(response))

    @bp.route("/dial-ended", methods=_METHODS)
    async def dial_ended() -> Response:
        """The transfer's `<Dial action>`: bridged and over -> hang up; no one answered -> the caller goes
        back to a worker (stream parameter `after_transfer`), whose agent takes a message."""
        form = await signed_form()
        if form is None:
            return Response("invalid Twilio signature", status=403)
        status = form.get("DialCallStatus", "")
        if status not in DIAL_UNANSWERED or form.get("CallStatus") in _CALL_ENDED:
            response = VoiceResponse()
            response.hangup()
            return _twiml(str(response))
        log.info("transfer of call %s ended %s; back to an agent for a message", form.get("CallSid"), status)
        caller = form.get("To" if form.get("Direction") == OUTBOUND_API else "From", "")
        return await connect(form, call_id_of(form), attempt=1,
                             extra={"after_transfer": status, "caller_number": caller})

    return bp
