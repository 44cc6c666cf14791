"""Transfer to a person with a whisper summary, and a message when no one answers.

TwiML against Twilio's documented shapes (<Dial action method timeout><Number url method>, <Say> for the
whisper, <Connect><Stream><Parameter> back to a worker), the signed webhook routes (/whisper,
/dial-ended), and the whole no-answer path: a call asks for a person -> the carrier gets the Dial with
the whisper URL -> the person's leg hears who and what -> the Dial ends no-answer -> the caller is sent
back to a worker with `after_transfer` -> that session offers to take a message, the take_message tool
stores it (a message_taken call event) and the caller hears it confirmed.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from call_harness import Phone, noise_frames, speech_frames, stream, wait_for
from quart import Quart
from test_call_session import make_session, start
from twilio.request_validator import RequestValidator

from cells.call.confirmation import ConfirmationGate
from cells.call.guard import CallGuard
from cells.call.handoff import (
    NO_ANSWER_TEXT,
    NOT_TAKEN_TEXT,
    MessageHandoff,
    prepare_after_transfer,
    whisper_summary,
)
from cells.call.reply import Reply
from cells.call.timeline import TurnTiming
from cells.contract.call_token import CallTokenAuthority
from cells.contract.twilio_webhook import (
    NumberRoute,
    SlotRequest,
    WebhookSettings,
    WorkerSlot,
    dial_action_url,
    twilio_voice_blueprint,
    whisper_url,
)
from cells.dialogue.chunker import SentenceChunker
from cells.providers.base import Message, ProviderConfigError, ToolCall
from cells.telephony.twilio_rest import dial_twiml, whisper_twiml
from cells.tools.base import TakeMessage, ToolRegistry
from loadtest.calls.instant import InstantLlm

AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"
BASE = "https://eu.autospeak.example"
WORKER_URL = "wss://worker-3.eu.autospeak.example/media"
OUR_NUMBER = "+442071838750"
CALLER = "+447700900123"
DESK = "+442071838799"
CALL_SID = "CA" + "5" * 32
SETTINGS = WebhookSettings(auth_token=AUTH_TOKEN, public_base_url=BASE)


# --- TwiML shapes ------------------------------------------------------------------------------------

def test_the_transfer_dial_whispers_then_reports_how_it_ended() -> None:
    xml = dial_twiml(DESK, caller_id=OUR_NUMBER, timeout_s=20, whisper_url=whisper_url(SETTINGS, "c1"),
                     action_url=dial_action_url(SETTINGS, "c1"))
    root = ET.fromstring(xml)
    assert root.tag == "Response" and [c.tag for c in root] == ["Dial"]
    dial = root[0]
    assert dial.attrib == {"action": f"{BASE}/twilio/dial-ended?call_id=c1", "method": "POST",
                           "timeout": "20", "callerId": OUR_NUMBER}
    assert [c.tag for c in dial] == ["Number"]
    number = dial[0]
    assert number.text == DESK
    assert number.attrib == {"url": f"{BASE}/twilio/whisper?call_id=c1", "method": "POST"}
    plain = ET.fromstring(dial_twiml(DESK))[0]  # without a whisper: a bare bridge, as before
    assert "action" not in plain.attrib and plain[0].attrib == {}
    with pytest.raises(ProviderConfigError):
        dial_twiml(DESK, whisper_url="/twilio/whisper")  # Twilio needs an absolute URL
    with pytest.raises(ProviderConfigError):
        dial_twiml("0207 183 8799")


def test_the_whisper_is_a_say_of_the_summary() -> None:
    root = ET.fromstring(whisper_twiml("Call from Anna Kowalski.\n They said: move my filling."))
    assert [c.tag for c in root] == ["Say"]
    assert root[0].text == "Call from Anna Kowalski. They said: move my filling."
    assert root[0].attrib == {"language": "en-US"}


def test_the_summary_says_who_and_what_not_the_request_for_a_person() -> None:
    history = [Message("assistant", "Hello."), Message("user", "Hi, this is Anna Kowalski."),
               Message("user", "I need to move my filling to next week."),
               Message("user", "Can I just talk to a person please?")]
    summary = whisper_summary(history)
    assert summary.startswith("Call from Anna Kowalski")
    assert summary.endswith("They said: I need to move my filling to next week.")
    assert whisper_summary([Message("user", "Put me through to reception.")], CALLER) == (
        f"Call from a caller on {CALLER}, transferred by the AI assistant. They asked for a person.")


# --- the webhook routes ------------------------------------------------------------------------------

class Webhooks:
    def __init__(self, summaries: dict[str, str]) -> None:
        self.slots: list[SlotRequest] = []

        async def slot(req: SlotRequest) -> WorkerSlot:
            self.slots.append(req)
            return WorkerSlot(WORKER_URL, worker_id="worker-3")

        self.tokens = CallTokenAuthority("k" * 40)
        self.app = Quart(__name__)
        self.app.register_blueprint(twilio_voice_blueprint(
            SETTINGS, tokens=self.tokens, request_slot=slot, whisper_for=summaries.get,
            lookup_number=lambda n: NumberRoute("t-dental", "reception") if n == OUR_NUMBER else None))

    def post(self, path: str, form: dict[str, str], *, signed: bool = True) -> tuple[int, str]:
        signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE + path, form) if signed else "bad"

        async def main() -> tuple[int, str]:
            response = await self.app.test_client().post(path, form=form,
                                                          headers={"X-Twilio-Signature": signature})
            return response.status_code, await response.get_data(as_text=True)

        return asyncio.run(main())


def _dial_form(status: str) -> dict[str, str]:
    return {"AccountSid": "AC" + "9" * 32, "CallSid": CALL_SID, "CallStatus": "in-progress",
            "Direction": "inbound", "From": CALLER, "To": OUR_NUMBER, "DialCallStatus": status,
            "DialCallSid": "CA" + "7" * 32}


def test_the_whisper_route_says_the_calls_summary_and_is_signed() -> None:
    hooks = Webhooks({"c1": "Call from Anna Kowalski. They said: move my filling."})
    leg = {"AccountSid": "AC" + "9" * 32, "CallSid": "CA" + "7" * 32, "ParentCallSid": CALL_SID,
           "CallStatus": "in-progress", "From": OUR_NUMBER, "To": DESK}
    status, body = hooks.post("/twilio/whisper?call_id=c1", leg)
    assert status == 200
    root = ET.fromstring(body)
    assert [c.tag for c in root] == ["Say"]
    assert root[0].text == "Call from Anna Kowalski. They said: move my filling."
    assert hooks.post("/twilio/whisper?call_id=c1", leg, signed=False)[0] == 403
    # An unknown call still gets a whisper, never an error on the person's phone.
    unknown = ET.fromstring(hooks.post("/twilio/whisper?call_id=zz", leg)[1])
    assert unknown[0].text == "A call transferred by the AI assistant."


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed"])
def test_an_unanswered_transfer_sends_the_caller_back_to_a_worker(status: str) -> None:
    hooks = Webhooks({})
    code, body = hooks.post("/twilio/dial-ended?call_id=c1", _dial_form(status))
    assert code == 200
    root = ET.fromstring(body)
    assert [c.tag for c in root] == ["Connect"]
    stream_el = root[0][0]
    assert stream_el.tag == "Stream" and stream_el.attrib["url"] == WORKER_URL
    params = {p.attrib["name"]: p.attrib["value"] for p in stream_el}
    assert params["after_transfer"] == status and params["caller_number"] == CALLER
    claims = hooks.tokens.verify(params["call_token"], audience="worker-3")
    assert claims.call_id == "c1" and claims.tenant_id == "t-dental"
    assert hooks.slots[0].call_id == "c1" and hooks.slots[0].resume


def test_an_answered_transfer_ends_with_the_bridge() -> None:
    hooks = Webhooks({})
    root = ET.fromstring(hooks.post("/twilio/dial-ended?call_id=c1", _dial_form("completed"))[1])
    assert [c.tag for c in root] == ["Hangup"] and hooks.slots == []
    assert hooks.post("/twilio/dial-ended?call_id=c1", _dial_form("no-answer"), signed=False)[0] == 403


# --- take_message ------------------------------------------------------------------------------------

def test_take_message_stores_who_number_and_message_and_refuses_an_empty_one() -> None:
    kept: list[dict[str, str]] = []
    registry = ToolRegistry([TakeMessage(lambda r: kept.append(r) or "m-1")])

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        ok = await registry.call("take_message", {"name": "Anna", "number": CALLER, "message": "Call me."})
        empty = await registry.call("take_message", {"name": "Anna", "message": "   "})
        return ok, empty

    ok, empty = asyncio.run(main())
    assert ok == {"ok": True, "status": "message_taken", "name": "Anna", "number": CALLER,
                  "message": "Call me.", "message_id": "m-1"}
    assert empty["ok"] is False and kept == [{"name": "Anna", "number": CALLER, "message": "Call me."}]


# --- the whole no-answer path ------------------------------------------------------------------------

def test_the_whole_no_answer_path_ends_with_a_confirmed_message() -> None:
    hooks = Webhooks({})
    controls: list[ToolCall] = []

    async def first_stream() -> None:
        phone = Phone()
        session = make_session(phone, stt_lines=["I'm Anna Kowalski, I need to move my filling.",
                                                 "Can I talk to a person?"],
                               llm=InstantLlm(tool_on={"person": "transfer_to_human"}), transfer_number=DESK)

        async def control(name: str, call: ToolCall) -> None:
            controls.append(call)

        session._on_control = control
        seq = await start(session, phone)
        seq = await stream(session, speech_frames("I'm Anna Kowalski, I need to move my filling."), seq)
        seq = await wait_for(lambda: len(session.turns) >= 1 and not session._agent_busy(), 30, session, seq)
        seq = await stream(session, speech_frames("Can I talk to a person?"), seq)
        await wait_for(lambda: phone.closed is not None, 30, session, seq)
        await session.stop()

    asyncio.run(first_stream())
    assert controls[0].name == "transfer_to_human"
    summary = controls[0].arguments["summary"]
    assert "Anna Kowalski" in summary and "move my filling" in summary
    # The carrier's Dial ends no-answer: the caller comes back with the parameters of the new stream.
    root = ET.fromstring(hooks.post("/twilio/dial-ended?call_id=c1", _dial_form("no-answer"))[1])
    parameters = {p.attrib["name"]: p.attrib["value"] for p in root[0][0]}
    events: list[tuple[str, dict[str, Any]]] = []
    message = "This is Anna Kowalski. Please call me back about my filling."

    async def second_stream() -> tuple[Any, Phone]:
        phone = Phone()
        session = make_session(phone, stt_lines=[message], llm=InstantLlm(reply="The brain must not answer."))
        session._on_event = lambda kind, data: events.append((kind, data))
        assert prepare_after_transfer(session, parameters)
        seq = await start(session, phone)
        # The caller pauses between the two sentences (0.7 s of line noise): still one message.
        seq = await stream(session, speech_frames("This is Anna Kowalski."), seq)
        seq = await stream(session, noise_frames(0.7, seed=seq), seq)
        seq = await stream(session, speech_frames("Please call me back about my filling."), seq)
        await wait_for(lambda: phone.closed is not None, 45, session, seq)
        await session.stop()
        return session, phone

    session, phone = asyncio.run(second_stream())
    said = [m.content for m in session.history if m.role == "assistant" and m.content]
    assert said[0] == NO_ANSWER_TEXT
    assert [m.content for m in session.history if m.role == "user"] == [message]  # one turn, not two
    taken = [d for k, d in events if k == "message_taken"]
    assert taken == [{"name": "Anna Kowalski", "number": CALLER, "message": message}]
    assert said[-1] == (f"Thank you, Anna Kowalski. I've taken your message: \"{message}\". "
                        f"Someone will call you back on {CALLER}. Goodbye.")
    assert "The brain must not answer." not in said
    assert phone.closed == "completed"


def test_a_message_the_store_could_not_keep_is_not_confirmed() -> None:
    def broken(record: dict[str, str]) -> None:
        raise OSError("message store is down")

    said: list[str] = []
    controls: list[str] = []

    class Speaker:
        async def say(self, text: str, timing: Any = None, clock: Any = None) -> None:
            said.append(text)

    async def control(call: ToolCall) -> dict[str, Any]:
        controls.append(call.name)
        return {"ok": True}

    guard = CallGuard()
    guard.handoff = MessageHandoff(TakeMessage(broken), CALLER)
    history = [Message("user", "Please ask the dentist to call me back.")]
    reply = Reply(InstantLlm(), ToolRegistry(), Speaker(), SentenceChunker, history,  # type: ignore[arg-type]
                  TurnTiming(0), lambda: 0.0, control, lambda kind, data: None, ConfirmationGate(),
                  guard=guard)
    asyncio.run(reply.run())
    assert said == [NOT_TAKEN_TEXT] and controls == ["end_call"]


def test_the_embedded_workers_transfer_whispers_through_its_own_webhook() -> None:
    from cells.worker.app import _carrier_control

    class Carrier:
        def __init__(self) -> None:
            self.transfers: list[tuple[str, str, dict[str, str]]] = []

        async def transfer(self, call_sid: str, to: str, **urls: str) -> None:
            self.transfers.append((call_sid, to, urls))

    carrier, summaries = Carrier(), {}  # type: ignore[var-annotated]
    control = _carrier_control(carrier, CALL_SID, DESK, call_id="c1", webhook=SETTINGS, summaries=summaries)
    transfer = ToolCall("t", "transfer_to_human", {"summary": "Call from Anna."})
    asyncio.run(control("transfer_to_human", transfer))
    assert carrier.transfers == [(CALL_SID, DESK, {"whisper_url": whisper_url(SETTINGS, "c1"),
                                                   "action_url": dial_action_url(SETTINGS, "c1")})]
    assert summaries == {"c1": "Call from Anna."}
    # A cell's worker (no webhook of its own) bridges as before.
    plain = Carrier()
    asyncio.run(_carrier_control(plain, CALL_SID, DESK)("transfer_to_human", transfer))
    assert plain.transfers == [(CALL_SID, DESK, {})]


def test_the_stream_after_an_unanswered_transfer_keeps_the_first_streams_record(tmp_path: Any) -> None:
    from cells.worker.calls import CallLog

    log = CallLog(tmp_path)
    first = log.open("c1", "t", "a", CALL_SID)
    assert first.path is not None
    first.path.parent.mkdir(parents=True)
    first.path.write_text("{}")
    second = log.open("c1", "t", "a", CALL_SID)
    assert second.path == first.path.with_name(f"{CALL_SID}-2.json")
