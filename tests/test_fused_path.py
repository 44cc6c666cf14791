"""The fused Twilio Media Streams paths: InboundPath against audioop + our own resampler and
VAD, its handling of odd and hostile messages (with a hypothesis fuzz), and OutboundPath
framing, escaping, flush and clear."""

from __future__ import annotations

import base64
import itertools
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import media_core
from media_core import InboundFrame, InboundPath, MediaError, OutboundPath, Resampler

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop is the reference, deprecated in 3.11
    import audioop

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def voice(n: int, rate: int = 8000, seed: int = 0) -> np.ndarray:
    """A voiced-sounding signal (harmonics of 150 Hz under a syllable envelope, plus noise)."""
    t = np.arange(n) / rate
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    x = x * np.clip(np.sin(2 * np.pi * 3 * t), 0, None) + np.random.default_rng(seed).normal(0, 0.01, n)
    return (x / np.abs(x).max() * 20000).astype(np.int16)


def media_message(payload: bytes, seq: int, numbers_as: type = str, track: str = "inbound") -> str:
    """A `media` message shaped like Twilio's (which sends its numbers as strings)."""
    msg = {
        "event": "media",
        "sequenceNumber": numbers_as(seq),
        "media": {
            "track": track,
            "chunk": numbers_as(seq - 1),
            "timestamp": numbers_as(20 * (seq - 2)),
            "payload": base64.b64encode(payload).decode(),
        },
        "streamSid": SID,
    }
    return json.dumps(msg, separators=(",", ":"))


def ulaw_frames(pcm: np.ndarray) -> list[bytes]:
    raw = audioop.lin2ulaw(pcm.tobytes(), 2)
    return [raw[i : i + 160] for i in range(0, len(raw), 160)]


# ---------------------------------------------------------------------------------- inbound


@pytest.mark.parametrize("numbers_as", [str, int], ids=["numbers-as-strings", "numbers-as-ints"])
def test_inbound_decodes_like_audioop_plus_resampler_plus_vad(numbers_as: type) -> None:
    path = InboundPath(stt_rate=16000, codec="ulaw")
    resampler, vad = Resampler(8000, 16000), media_core.Vad(16000)
    for i, payload in enumerate(ulaw_frames(voice(8000 * 2))):
        frame = path.push_message(media_message(payload, i + 2, numbers_as))
        assert isinstance(frame, InboundFrame)
        expected = resampler.process(np.frombuffer(audioop.ulaw2lin(payload, 2), np.int16))
        np.testing.assert_array_equal(frame.pcm, expected)
        assert frame.pcm.dtype == np.int16 and len(frame.pcm) == 320
        ref = vad.process(expected)
        assert frame.probabilities == pytest.approx(ref.probabilities)
        assert frame.speaking == ref.speaking
        assert [(e.kind, e.time_ms) for e in frame.events] == [(e.kind, e.time_ms) for e in ref.events]
        assert (frame.sequence_number, frame.timestamp_ms, frame.track) == (i + 2, 20 * i, "inbound")


def test_inbound_alaw_and_8k_stt_rate_are_exact_decodes() -> None:
    pcm = voice(1600, seed=1)
    path = InboundPath(stt_rate=8000, codec="alaw")
    for i in range(0, len(pcm), 160):
        payload = audioop.lin2alaw(pcm[i : i + 160].tobytes(), 2)
        frame = path.push_message(media_message(payload, 2 + i // 160))
        np.testing.assert_array_equal(frame.pcm, np.frombuffer(audioop.alaw2lin(payload, 2), np.int16))


def test_inbound_accepts_bytes_and_other_tracks() -> None:
    path = InboundPath()
    frame = path.push_message(media_message(b"\xff" * 160, 7, track="outbound").encode())
    assert frame.track == "outbound" and not frame.pcm.any()


@pytest.mark.parametrize(
    "message",
    [
        {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        {"event": "start", "sequenceNumber": "1", "start": {"streamSid": SID, "tracks": ["inbound"]}},
        {"event": "mark", "sequenceNumber": "9", "streamSid": SID, "mark": {"name": "reply-1"}},
        {"event": "dtmf", "streamSid": SID, "dtmf": {"track": "inbound_track", "digit": "1"}},
        {"event": "stop", "sequenceNumber": "99", "streamSid": SID, "stop": {"callSid": "CA1"}},
    ],
    ids=lambda m: m["event"],
)
def test_non_media_events_return_none(message: dict) -> None:
    assert InboundPath().push_message(json.dumps(message)) is None


@pytest.mark.parametrize("n_bytes", [0, 1, 3, 159, 161, 800])
def test_any_payload_length_decodes_to_two_samples_per_byte(n_bytes: int) -> None:
    # G.711 is one byte per sample, so odd lengths are legal; 8k -> 16k doubles the count.
    payload = bytes(i % 256 for i in range(n_bytes))
    frame = InboundPath().push_message(media_message(payload, 2))
    assert len(frame.pcm) == 2 * n_bytes


def test_missing_or_odd_numbers_become_none() -> None:
    payload = base64.b64encode(b"\xff" * 160).decode()
    msg = {"event": "media", "media": {"payload": payload}}
    frame = InboundPath().push_message(json.dumps(msg))
    assert (frame.sequence_number, frame.timestamp_ms, frame.track) == (None, None, "inbound")
    msg = {"event": "media", "sequenceNumber": "n/a", "media": {"timestamp": None, "payload": payload}}
    frame = InboundPath().push_message(json.dumps(msg))
    assert (frame.sequence_number, frame.timestamp_ms) == (None, None)


@pytest.mark.parametrize(
    "message",
    [
        "",
        "not json",
        "[]",
        '{"event":5}',
        '{"media":{"payload":"AAAA"}}',  # no event
        '{"event":"media"}',  # no media object
        '{"event":"media","media":null}',
        '{"event":"media","media":{}}',  # no payload
        '{"event":"media","media":{"payload":5}}',
        '{"event":"media","media":{"payload":"***"}}',
        '{"event":"media","media":{"payload":"YQ"}}',  # unpadded base64
        '{"event":"media","media":{"payload":"YWJj\\n"}}',
        '{"event":"stop"} trailing',
        "\ufeff" + '{"event":"stop"}',
        "[" * 5000,
    ],
)
def test_malformed_messages_are_media_errors(message: str) -> None:
    with pytest.raises(MediaError):
        InboundPath().push_message(message)


def test_oversized_messages_are_refused_before_parsing() -> None:
    path = InboundPath(max_message_bytes=1024)
    with pytest.raises(MediaError, match="too large"):
        path.push_message(media_message(bytes(1000), 2))
    with pytest.raises(MediaError, match="too large"):
        path.push_payload("A" * 2048)
    # The default limit (64 KiB) still takes a whole second of audio in one message.
    assert len(InboundPath().push_message(media_message(bytes(8000), 2)).pcm) == 16000


def test_wrong_argument_types_are_type_errors() -> None:
    for bad in (5, None, ["media"]):
        with pytest.raises(TypeError):
            InboundPath().push_message(bad)


def test_lone_surrogates_are_media_errors() -> None:
    with pytest.raises(MediaError):
        InboundPath().push_message('{"event":"\ud800"}')


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_media_like = st.fixed_dictionaries(
    {"event": st.sampled_from(["media", "mark", "start", "Media"]) | st.text(max_size=6)},
    optional={
        "sequenceNumber": _json_values,
        "media": st.fixed_dictionaries(
            {},
            optional={
                "payload": st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()) | _json_values,
                "timestamp": _json_values,
                "track": _json_values,
            },
        )
        | _json_values,
    },
).map(json.dumps)


@settings(max_examples=400, deadline=None)
@given(message=st.binary(max_size=600) | st.text(max_size=300) | _media_like)
def test_fuzzed_messages_never_crash(message: str | bytes) -> None:
    path = InboundPath(max_message_bytes=4096)
    if isinstance(message, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in message):
        return  # lone surrogates: see test_lone_surrogates_are_media_errors
    try:
        frame = path.push_message(message)
    except MediaError:
        return
    assert frame is None or isinstance(frame, InboundFrame)
    if frame is not None:
        assert frame.pcm.dtype == np.int16 and len(frame.pcm) % 2 == 0
    # The path stays usable after whatever it was given.
    assert len(path.push_message(media_message(b"\xff" * 160, 2)).pcm) == 320


# --------------------------------------------------------------------------------- outbound


def payloads(messages: list[str], sid: str = SID) -> bytes:
    raw = b""
    for m in messages:
        doc = json.loads(m)
        assert doc.keys() == {"event", "streamSid", "media"} and doc["event"] == "media"
        assert doc["streamSid"] == sid and doc["media"].keys() == {"payload"}
        chunk = base64.b64decode(doc["media"]["payload"], validate=True)
        assert len(chunk) == 160  # exactly 20 ms of 8 kHz G.711
        raw += chunk
    return raw


def test_outbound_frames_are_20ms_and_match_resampler_plus_encoder() -> None:
    tts = voice(24000, rate=24000)
    out = OutboundPath(SID, tts_rate=24000, codec="ulaw")
    messages = [m for i in range(0, len(tts), 480) for m in out.push(tts[i : i + 480])]
    assert len(messages) == 50 and out.pending_samples == 0
    r = Resampler(24000, 8000)
    expected = b"".join(media_core.ulaw_encode(r.process(tts[i : i + 480])) for i in range(0, len(tts), 480))
    assert payloads(messages) == expected


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, 7200), max_size=10))
def test_outbound_chunking_does_not_change_the_stream(cuts: list[int]) -> None:
    tts = voice(7200, rate=24000, seed=2)
    one = OutboundPath(SID)
    expected = payloads(one.push(tts) + one.flush())
    path = OutboundPath(SID)
    bounds = [0, *sorted(cuts), len(tts)]
    got = [m for lo, hi in itertools.pairwise(bounds) for m in path.push(tts[lo:hi])]
    assert payloads(got + path.flush()) == expected


@pytest.mark.parametrize(
    "sid", ['MZ"quoted"', "back\\slash", "new\nline\ttab", "uni\u2028\u00e9\U0001f600", "</script>"]
)
def test_stream_sid_is_json_escaped(sid: str) -> None:
    path = OutboundPath(sid, tts_rate=8000)
    assert payloads(path.push(np.zeros(160, np.int16)), sid=sid)


@pytest.mark.parametrize(("codec", "silence"), [("ulaw", 0xFF), ("alaw", 0xD5)])
def test_flush_pads_the_last_frame_with_silence(codec: str, silence: int) -> None:
    path = OutboundPath(SID, tts_rate=8000, codec=codec)
    assert path.push(np.full(100, 1000, np.int16)) == [] and path.pending_samples == 100
    raw = payloads(path.flush())
    assert len(raw) == 160 and set(raw[100:]) == {silence} and silence not in raw[:100]
    assert path.pending_samples == 0


def test_clear_drops_pending_audio_and_resampler_state() -> None:
    tts = voice(2400, rate=24000, seed=3)
    path = OutboundPath(SID)
    path.push(tts[:1000])
    path.clear()
    assert path.pending_samples == 0
    assert path.push(tts) == OutboundPath(SID).push(tts)  # as good as a new stream


def test_flush_with_nothing_pending_sends_nothing() -> None:
    path = OutboundPath(SID, tts_rate=24000)
    assert path.flush() == []  # a fresh path
    path.push(np.full(480, 500, np.int16))
    path.clear()
    assert path.flush() == []  # after barge-in
    path.push(np.full(480, 500, np.int16))
    assert len(path.flush()) == 1
    assert path.flush() == []  # a second flush


def test_outbound_rejects_bad_audio_and_parameters() -> None:
    path = OutboundPath(SID)
    for bad in (np.zeros(480, np.float32), np.zeros((2, 240), np.int16), [0] * 480):
        with pytest.raises(TypeError):
            path.push(bad)
    with pytest.raises(ValueError):
        path.push(np.zeros(960, np.int16)[::2])
    assert path.push(np.zeros(0, np.int16)) == []
    with pytest.raises(MediaError):
        OutboundPath(SID, codec="opus")
    with pytest.raises(MediaError):
        OutboundPath(SID, tts_rate=1000)
