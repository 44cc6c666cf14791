"""media_core.NeuralVad: the native Silero-class forward pass against onnxruntime on the same weights,
the two-stage Vad and fused inbound path built on it, and clear errors for bad weights and odd input."""

from __future__ import annotations

import base64
import csv
import json
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

import media_core
from cells.speech.espeak import EspeakEngine
from evals.vad import dataset
from evals.vad.silero_ort import OrtSilero

# The per-chunk tolerance: float32 summation order differs (AVX2 FMA dot products vs onnxruntime's
# kernels); measured differences are ~1e-6, so 1e-3 leaves room yet catches any real layer error.
TOLERANCE = 1e-3
# Real recordings for development measurement, beside the checkout when present (CI has them there).
SPEECH_DEV = Path(__file__).resolve().parents[2] / "shared" / "speech-dev"

try:
    media_core.installed_weights_path()
except FileNotFoundError as e:  # tests/run_all.sh installs it; a missing file must fail, not hide
    pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def model() -> media_core.NeuralVad:
    return media_core.NeuralVad.from_installed()


def _espeak_16k(text: str, voice: str = "en-us") -> np.ndarray:
    engine = EspeakEngine()
    return dataset.resample(engine.synthesize(text, voice=voice), engine.sample_rate, 16000)


def _real_clips_16k(n: int) -> list[np.ndarray]:
    """A few real recordings (8 kHz) upsampled, when the development set is present."""
    manifest = SPEECH_DEV / "manifest.csv"
    if not manifest.exists():
        return []
    with manifest.open() as f:
        rows = list(csv.DictReader(f))
    clips = []
    for row in rows[:: max(1, len(rows) // n)][:n]:
        with wave.open(str(SPEECH_DEV / row["file"])) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        clips.append(dataset.resample(pcm, 8000, 16000))
    return clips


def _with_pauses(*clips: np.ndarray) -> np.ndarray:
    gap = np.zeros(8000, dtype=np.int16)
    noise = (np.random.default_rng(1).standard_normal(8000) * 30).astype(np.int16)
    return np.concatenate([gap, *[np.concatenate([c.astype(np.int16), noise]) for c in clips], gap])


def test_probabilities_match_onnxruntime_on_synthetic_and_real_speech(model: media_core.NeuralVad) -> None:
    audio = _with_pauses(_espeak_16k("Hello, I would like to book an appointment for Tuesday."),
                         _espeak_16k("Yes, that's right, thank you.", voice="en-gb"), *_real_clips_16k(6))
    reference = OrtSilero()
    model.reset()
    # An odd split on purpose: the stream must carry partial chunks over.
    ours = np.array(model.probabilities(audio[:777]) + model.probabilities(audio[777:]))
    ref = np.array(reference.probabilities(audio))
    assert ours.shape == ref.shape and len(ref) > 100
    assert np.max(np.abs(ours - ref)) < TOLERANCE
    # Not a vacuous match: the audio holds both clear speech and clear silence.
    assert (ref > 0.9).sum() > 20 and (ref < 0.1).sum() > 20


def test_reset_restarts_the_stream(model: media_core.NeuralVad) -> None:
    audio = _espeak_16k("Please hold the line.")
    model.reset()
    first = model.probabilities(audio)
    model.reset()
    assert model.probabilities(audio) == first


def test_any_length_input_gives_one_probability_per_whole_chunk(model: media_core.NeuralVad) -> None:
    model.reset()
    rng = np.random.default_rng(5)
    total = 0
    lengths = [0, 1, 511, 1, 1024, 3, 4000]
    for n in lengths:
        p = model.probabilities(rng.integers(-32768, 32768, n, dtype=np.int16))
        assert all(0.0 <= v <= 1.0 for v in p)
        total += len(p)
    assert total == sum(lengths) // model.chunk_samples
    with pytest.raises(TypeError):
        model.probabilities(np.zeros(512, dtype=np.float64))


def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    header, data = {}, b""
    for name, arr in tensors.items():
        raw = arr.astype("<f4").tobytes()
        offsets = [len(data), len(data) + len(raw)]
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": offsets}
        data += raw
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def test_bad_weights_are_clear_errors() -> None:
    good = media_core.installed_weights_path().read_bytes()
    for bad in (b"", b"not a model at all", good[: len(good) // 3]):
        with pytest.raises(media_core.MediaError, match="invalid VAD weights"):
            media_core.NeuralVad(bad)
    with pytest.raises(media_core.MediaError, match=r"missing tensor conv1\.weight"):
        media_core.NeuralVad(_safetensors({"conv1.bias": np.zeros(128)}))
    with pytest.raises(TypeError):
        media_core.NeuralVad("silero_vad.onnx")  # a path is not the weights


def test_the_packaged_safetensors_checkpoint_loads_too() -> None:
    other = media_core.NeuralVad.from_installed("silero_vad_16k.safetensors")
    p = other.probabilities(_with_pauses(_espeak_16k("Good morning.")))
    assert len(p) > 10 and all(0.0 <= v <= 1.0 for v in p)


def _phone_call(clips: list[np.ndarray]) -> np.ndarray:
    """8 kHz telephone audio: speech separated by second-long pauses of quiet line noise."""
    rng = np.random.default_rng(2)
    parts = []
    for c in clips:
        parts += [(rng.standard_normal(8000) * 20).astype(np.int16), dataset.resample(c, 16000, 8000)]
    parts.append((rng.standard_normal(8000) * 20).astype(np.int16))
    return np.concatenate(parts)


def test_two_stage_vad_finds_each_utterance(model: media_core.NeuralVad) -> None:
    call = _phone_call([_espeak_16k("I need to cancel my reservation."), _espeak_16k("Thanks, goodbye.")])
    vad = media_core.Vad(sample_rate=8000, neural=model)
    assert vad.neural and vad.frame_ms == 32.0
    events = [e for i in range(0, len(call), 160) for e in vad.process(call[i : i + 160]).events]
    assert [e.kind for e in events] == ["start", "end", "start", "end"]
    assert 900 <= events[0].time_ms <= 1200  # the first utterance begins 1 s in
    assert not media_core.Vad(sample_rate=8000).neural  # earshot stays the default without weights


def test_fused_inbound_path_uses_the_neural_stage(model: media_core.NeuralVad) -> None:
    call = _phone_call([_espeak_16k("Can I speak to someone in billing, please?")])
    codes = media_core.ulaw_encode(call)
    path = media_core.InboundPath(stt_rate=16000, neural=model)
    kinds = []
    for i in range(0, len(codes) - 159, 160):
        payload = base64.b64encode(codes[i : i + 160]).decode()
        msg = json.dumps({"event": "media", "media": {"payload": payload}})
        frame = path.push_message(msg)
        assert frame is not None and len(frame.pcm) == 320
        kinds += [e.kind for e in frame.events]
    assert kinds == ["start", "end"]


@pytest.mark.parametrize("kind", ["car", "hum", "white", "pink"])
def test_two_stage_vad_stays_quiet_on_telephone_noise(model: media_core.NeuralVad, kind: str) -> None:
    level_db = -30.0
    n16 = dataset.make_noise(kind, 16000 * 5, 16000, np.random.default_rng(7))
    x = np.clip(dataset.resample(n16, 16000, 8000) * 32768 * 10 ** (level_db / 20), -32768, 32767)
    noise = media_core.ulaw_decode(media_core.ulaw_encode(x.astype(np.int16)))
    result = media_core.Vad(sample_rate=8000, neural=model).process(noise)
    assert not [e for e in result.events if e.kind == "start"]
    assert np.mean(np.array(result.probabilities) >= 0.5) < 0.05
