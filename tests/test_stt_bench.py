"""`autospeak bench stt` on a small manifest of real recordings (eSpeak NG WAVs written for the test), and
Whisper on real human recordings when the shared speech-dev set is present."""

from __future__ import annotations

import asyncio
import csv
import os
import wave
from pathlib import Path

import numpy as np
import pytest

from cells.cli import main
from cells.providers.stt.whisper_stt import WhisperStt
from cells.speech.espeak import EspeakEngine
from evals.stt.manifest_bench import load_manifest
from evals.stt.phone_path import Variant, phone_audio, read_wav
from evals.stt.scoring import hypothesis_digits, reference_digits, words
from evals.stt.wer import edit_distance

# CI checks the repository out beside ../shared; AUTOSPEAK_SPEECH_DEV points elsewhere (a worktree).
SPEECH_DEV = Path(os.environ.get("AUTOSPEAK_SPEECH_DEV")
                  or Path(__file__).resolve().parents[2] / "shared" / "speech-dev")


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def test_bench_stt_prints_providers_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = EspeakEngine()
    (tmp_path / "audio").mkdir()
    rows = [("audio/name.wav", "My name is Sarah Johnson.", "en-us"),
            ("audio/where.wav", "Where are you located?", "en-gb"),
            ("audio/digits.wav", "seven three one nine", "en-us")]
    for file, text, voice in rows:
        _write_wav(tmp_path / file, engine.synthesize(text, voice=voice, rate_wpm=150), engine.sample_rate)
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "text", "speaker"])
        writer.writerows([(file, text, voice) for file, text, voice in rows])

    code = main(["bench", "stt", "--manifest", str(manifest), "--providers", "pocketsphinx,whisper+hints",
                 "--variants", "clean,noise20,loss5"])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    assert "pocketsphinx" in header and "whisper+hints" in header
    for variant in ("clean", "noise20", "loss5"):
        measures = [line.split()[1:3] for line in lines if line.startswith(variant)]
        assert ["WER"] in [m[:1] for m in measures]
        assert ["real-time", "factor"] in measures
    digit_row = next(line for line in lines if line.startswith("clean") and "digit sequences" in line)
    assert digit_row.count("/1)") == 2  # one digit reference, scored for each provider
    assert "3/3" in out.err or "3/3" in out.out  # progress on stderr


def test_bench_stt_rejects_a_bad_manifest_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("path,transcript\nx.wav,hello\n")
    assert main(["bench", "stt", "--manifest", str(bad)]) == 2
    assert "needs the columns file,text" in capsys.readouterr().err
    missing = tmp_path / "n.csv"
    missing.write_text("file,text\nnope.wav,hello\n")
    assert main(["bench", "stt", "--manifest", str(missing)]) == 2
    assert "n.csv:2: no such audio file 'nope.wav'" in capsys.readouterr().err
    assert main(["bench", "stt", "--manifest", str(missing), "--variants", "reverb"]) == 2


def test_scoring_reads_digits_and_numbers() -> None:
    assert reference_digits("Nine") == "9" and reference_digits("five five, oh") == "550"
    assert reference_digits("ten of clubs") is None and reference_digits("right") is None
    assert hypothesis_digits("555-0134.") == "5550134" and hypothesis_digits("Nine.") == "9"
    assert words("Eleven!") == words("11") == ["eleven"]


def _speech_dev() -> Path:
    if (SPEECH_DEV / "manifest.csv").is_file():
        return SPEECH_DEV
    if os.environ.get("AUTOSPEAK_REQUIRE_SPEECH_DEV") == "1":
        pytest.fail(f"AUTOSPEAK_REQUIRE_SPEECH_DEV=1 but there is no speech-dev set at {SPEECH_DEV} "
                    "(set AUTOSPEAK_SPEECH_DEV to its directory)")
    pytest.skip(f"no speech-dev recordings at {SPEECH_DEV}")


def test_whisper_on_real_human_recordings() -> None:
    """Read sentences by real speakers through the phone path, and spoken digits with the digits hint."""
    clips = load_manifest(_speech_dev() / "manifest.csv")
    sentences = [c for c in clips if "/lj" in str(c.path).lower()][:6]
    digits = [c for c in clips if reference_digits(c.text) is not None][:12]
    assert len(sentences) == 6 and len(digits) == 12, "the speech-dev set changed"
    stt = WhisperStt()
    rng = np.random.default_rng(0)

    async def recognise(clip_path: Path, hint: str | None) -> str:
        return await stt.transcribe(phone_audio(*read_wav(clip_path), Variant("clean"), rng), hint)

    async def run() -> tuple[list[str], list[str]]:
        return ([await recognise(c.path, None) for c in sentences],
                [await recognise(c.path, "digits") for c in digits])

    said, numbers = asyncio.run(run())
    errors = sum(edit_distance(words(c.text), words(h)) for c, h in zip(sentences, said, strict=True))
    total = sum(len(words(c.text)) for c in sentences)
    assert errors / total < 0.15, list(zip([c.text for c in sentences], said, strict=True))
    right = sum(hypothesis_digits(h) == reference_digits(c.text)
                for c, h in zip(digits, numbers, strict=True))
    print(f"speech-dev: sentence WER {errors / total:.1%}, digits {right}/{len(digits)}")
    assert right >= 8, list(zip([c.text for c in digits], numbers, strict=True))


def test_provider_specs_name_where_the_digits_hint_goes() -> None:
    from evals.stt.manifest_bench import parse_provider

    specs = ("whisper", "whisper+hints", "whisper+digits:beam_size=2")
    plain, hinted, every = (parse_provider(s) for s in specs)
    assert (plain.hints, plain.every) == (False, False)
    assert (hinted.hints, hinted.every) == (True, False)
    assert (every.hints, every.every, every.options) == (True, True, {"beam_size": 2})
    with pytest.raises(ValueError, match="name"):
        parse_provider("whisper+all")
    word = parse_provider("whisper+yes_no:hold_words=true")
    assert (word.hints, word.every, word.every_hint, word.options) == (False, False, "yes_no",
                                                                       {"hold_words": True})
    assert plain.every_hint is None and every.every_hint is None
