"""The Twilio Media Streams protocol: real Twilio-shaped frames in, mark/clear out."""

from __future__ import annotations

import base64
import json

import pytest

from cells.telephony.twilio_media import (
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaStreamProtocol,
    ProtocolError,
    Start,
    Stop,
    StreamState,
)

ACCOUNT = "AC" + "a" * 32
CALL = "CA" + "b" * 32
STREAM = "MZ" + "c" * 32
PAYLOAD = base64.b64encode(b"\xff" * 160).decode()


def frame(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))


# As documented at twilio.com/docs/voice/media-streams/websocket-messages
CONNECTED = frame({"event": "connected", "protocol": "Call", "version": "1.0.0"})
START = frame({
    "event": "start", "sequenceNumber": "1",
    "start": {"accountSid": ACCOUNT, "streamSid": STREAM, "callSid": CALL, "tracks": ["inbound"],
              "customParameters": {"call_token": "v1.abc.def"},
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
    "streamSid": STREAM,
})
MEDIA = frame({"event": "media", "sequenceNumber": "3",
               "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": PAYLOAD},
               "streamSid": STREAM})
MARK = frame({"event": "mark", "sequenceNumber": "4", "streamSid": STREAM, "mark": {"name": "m1"}})
DTMF = frame({"event": "dtmf", "streamSid": STREAM, "sequenceNumber": "5",
              "dtmf": {"track": "inbound_track", "digit": "1"}})
STOP = frame({"event": "stop", "sequenceNumber": "6", "stop": {"accountSid": ACCOUNT, "callSid": CALL},
              "streamSid": STREAM})


def started() -> MediaStreamProtocol:
    p = MediaStreamProtocol()
    p.parse(CONNECTED)
    p.parse(START)
    return p


def test_a_whole_stream_parses_to_typed_events() -> None:
    p = MediaStreamProtocol()
    assert p.parse(CONNECTED) == Connected(protocol="Call", version="1.0.0")
    start = p.parse(START)
    assert isinstance(start, Start)
    assert (start.stream_sid, start.call_sid, start.account_sid) == (STREAM, CALL, ACCOUNT)
    assert start.tracks == ("inbound",)
    assert start.custom_parameters == {"call_token": "v1.abc.def"}
    assert (start.media_format.encoding, start.media_format.sample_rate, start.media_format.channels) == (
        "audio/x-mulaw", 8000, 1)
    media = p.parse(MEDIA)
    assert isinstance(media, Media) and media.raw == MEDIA  # untouched, for the Rust path
    assert p.parse(MARK) == Mark(name="m1")
    assert p.parse(DTMF) == Dtmf(digit="1", track="inbound_track")
    assert p.parse(STOP) == Stop(account_sid=ACCOUNT, call_sid=CALL)
    assert p.state is StreamState.STOPPED


def test_media_with_other_key_order_or_spacing_still_recognised() -> None:
    p = started()
    assert isinstance(p.parse(json.dumps(json.loads(MEDIA))), Media)  # json.dumps default spacing
    reordered = frame({"streamSid": STREAM, "event": "media",
                       "media": {"track": "inbound", "chunk": "2", "timestamp": "25", "payload": PAYLOAD}})
    assert isinstance(p.parse(reordered), Media)
    assert p.media_frames == 2


def test_outbound_mark_and_clear_are_twilio_shaped() -> None:
    p = started()
    assert json.loads(p.mark_message("m7")) == {"event": "mark", "streamSid": STREAM, "mark": {"name": "m7"}}
    assert json.loads(p.clear_message()) == {"event": "clear", "streamSid": STREAM}
    with pytest.raises(RuntimeError):
        MediaStreamProtocol().clear_message()  # no stream yet


@pytest.mark.parametrize(("raw", "kind", "fatal"), [
    (b'{"event":"media"}', "binary", True),
    ("x" * (64 * 1024 + 1), "oversized", True),
    ('{"event":"mark","mark":{"name":"' + "é" * 40000 + '"}}', "oversized", True),  # bytes, not chars
    ("not json", "malformed", False),
    ("[1,2,3]", "malformed", False),
    ('{"no":"event"}', "malformed", False),
    ("[" * 100000, "oversized", True),
])
def test_bad_frames_are_rejected_with_a_clear_kind(raw: str | bytes, kind: str, fatal: bool) -> None:
    p = started()
    with pytest.raises(ProtocolError) as info:
        p.parse(raw)
    assert (info.value.kind, info.value.fatal) == (kind, fatal)


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    p = MediaStreamProtocol(max_frame_bytes=1 << 20)
    with pytest.raises(ProtocolError) as info:
        p.parse("[" * 200000)
    assert info.value.kind == "malformed"


@pytest.mark.parametrize(("mutate", "what"), [
    (lambda s: s["start"].pop("callSid"), "callSid"),
    (lambda s: s["start"].update(streamSid="XX" + "c" * 32), "streamSid"),
    (lambda s: s["start"].update(tracks=[]), "tracks"),
    (lambda s: s["start"]["mediaFormat"].update(sampleRate="8000"), "sampleRate"),
    (lambda s: s["start"].pop("mediaFormat"), "mediaFormat"),
    (lambda s: s["start"].update(customParameters={"n": 1}), "customParameters"),
])
def test_start_missing_or_mistyped_fields_are_named(mutate, what: str) -> None:
    start = json.loads(START)
    mutate(start)
    with pytest.raises(ProtocolError) as info:
        MediaStreamProtocol().parse(frame(start))
    assert info.value.kind == "malformed" and what in str(info.value)


def test_events_before_start_and_a_second_start_are_fatal() -> None:
    for early in (MEDIA, MARK, DTMF, STOP):
        with pytest.raises(ProtocolError) as info:
            MediaStreamProtocol().parse(early)
        assert (info.value.kind, info.value.fatal) == ("before_start", True)
    with pytest.raises(ProtocolError) as info:
        started().parse(START)
    assert (info.value.kind, info.value.fatal) == ("duplicate_start", True)


def test_unknown_events_are_counted_not_fatal() -> None:
    p = started()
    assert p.parse(frame({"event": "someday-new", "streamSid": STREAM})) is None
    assert p.parse(frame({"event": "someday-new"})) is None
    assert p.unknown_events["someday-new"] == 2
    assert isinstance(p.parse(MEDIA), Media)  # the stream goes on


def test_frames_for_another_stream_or_after_stop_are_errors() -> None:
    p = started()
    with pytest.raises(ProtocolError) as info:
        p.parse(MARK.replace(STREAM, "MZ" + "d" * 32))
    assert info.value.kind == "wrong_stream"
    with pytest.raises(ProtocolError) as info:
        p.parse(frame({"event": "dtmf", "streamSid": STREAM, "dtmf": {"track": "inbound", "digit": "x"}}))
    assert "digit" in str(info.value)
    p.parse(STOP)
    with pytest.raises(ProtocolError) as info:
        p.parse(MARK)
    assert info.value.kind == "after_stop"


def test_media_frames_feed_the_fused_rust_path_unchanged() -> None:
    import media_core  # the Rust extension is part of the product: a missing one fails here
    p = started()
    event = p.parse(MEDIA)
    assert isinstance(event, Media)
    decoded = media_core.InboundPath(stt_rate=16000).push_message(event.raw)
    assert decoded is not None and decoded.sequence_number == 3 and len(decoded.pcm) == 320
