"""The VAD evaluation: metrics on hand-made inputs, the labelled set's construction, detector plumbing."""

from __future__ import annotations

import numpy as np
import pytest

import media_core
from cells.speech.espeak import EspeakEngine
from evals.vad import bench, dataset
from evals.vad.dataset import Track


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> list[Track]:
    # A private cache directory, so this also exercises a build from scratch.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOSPEAK_DATA_DIR", str(tmp_path_factory.mktemp("vad-data")))
        return dataset.load()


def _dbfs_noise(kind: str, level_db: float, seconds: float = 5.0) -> np.ndarray:
    """Telephone-band noise as the call loop would see it: 8 kHz, through G.711 mu-law."""
    n16 = dataset.make_noise(kind, int(16000 * seconds), 16000, np.random.default_rng(7))
    x = np.clip(dataset.resample(n16, 16000, 8000) * 32768 * 10 ** (level_db / 20), -32768, 32767)
    return media_core.ulaw_decode(media_core.ulaw_encode(x.astype(np.int16)))


# --- metrics -------------------------------------------------------------------------------------------


def test_roc_auc_known_answers() -> None:
    assert bench.roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert bench.roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert bench.roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5
    # Pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) lose, (0.8, *) win twice -> 3/4.
    assert bench.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    # A tie between a positive and a negative counts half: (0.5 vs 0.5) = 0.5, (0.5 vs 0.2) = 1 -> 0.75.
    assert bench.roc_auc(np.array([0.5, 0.2, 0.5]), np.array([0, 0, 1])) == pytest.approx(0.75)
    assert np.isnan(bench.roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 200) / 4  # many ties
    labels = rng.random(200) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert bench.roc_auc(scores, labels) == pytest.approx(pairwise)


def test_binary_scores_known_answers() -> None:
    # tp=2 fp=1 fn=1 tn=1
    s = bench.binary_scores(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (s.precision, s.recall, s.f1, s.fpr) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 0.5))
    perfect = bench.binary_scores(np.array([1, 0, 1]), np.array([1, 0, 1]))
    assert (perfect.f1, perfect.fpr) == (1.0, 0.0)
    silent = bench.binary_scores(np.zeros(4), np.array([1, 0, 1, 0]))
    assert np.isnan(silent.precision) and silent.recall == 0.0 and silent.f1 == 0.0


def test_best_f1_finds_the_separating_threshold() -> None:
    f1, th = bench.best_f1(np.array([0.1, 0.2, 0.7, 0.9]), np.array([0, 0, 1, 1]))
    assert f1 == 1.0 and 0.2 < th <= 0.7


def test_hold_puts_detector_frames_on_the_10ms_grid() -> None:
    # 16 ms frames [0,16) [16,32) [32,48); label midpoints 5, 15, 25, 35, 45, 55 ms.
    assert bench.hold([0.0, 1.0, 2.0], 16, 6).tolist() == [0, 0, 1, 2, 2, 0]
    # 30 ms frames: midpoints 5..55 fall in frames 0,0,0,1,1,1.
    assert bench.hold([1, 0], 30, 6).tolist() == [1, 1, 1, 0, 0, 0]


# --- the labelled set ------------------------------------------------------------------------------------


def test_speech_labels_by_construction() -> None:
    rate = 8000
    t = np.arange(int(0.3 * rate)) / rate
    tone = 8000 * np.sin(2 * np.pi * 440 * t)
    quiet = 1e-3 * tone[: int(0.1 * rate)]  # 60 dB down: a pause, not speech
    x = np.concatenate([np.zeros(int(0.2 * rate)), tone, quiet, tone, np.zeros(int(0.2 * rate))])
    labels = dataset.speech_labels(x, rate)
    expected = np.concatenate([np.zeros(20), np.ones(30), np.zeros(10), np.ones(30), np.zeros(20)])
    assert labels.tolist() == expected.astype(bool).tolist()


def test_set_layout_and_noise_rotation(tracks: list[Track]) -> None:
    for rate in dataset.RATES:
        at_rate = [t for t in tracks if t.rate == rate]
        assert len(at_rate) == dataset.N_TRACKS * len(dataset.SNRS)
        for snr in dataset.SNRS:
            kinds = sorted(t.noise for t in at_rate if t.snr_db == snr)
            assert kinds == (["none"] * dataset.N_TRACKS if snr is None else sorted(dataset.NOISE_KINDS))
    for t in tracks:
        assert t.audio.dtype == np.int16 and len(t.audio) == len(t.clean)
        assert len(t.labels) * dataset.frame_len(t.rate) == len(t.audio)
        assert 0.3 < t.labels.mean() < 0.85


def test_labelled_speech_is_louder_than_non_speech(tracks: list[Track]) -> None:
    for t in (t for t in tracks if t.snr_db is None):
        frames = t.clean.astype(np.float64).reshape(len(t.labels), -1)
        energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
        assert energy_db[t.labels].mean() > energy_db[~t.labels].mean() + 20
        # Non-speech frames are at least SPEECH_RANGE_DB below the loudest speech of the track (but for
        # a few at clip edges, where the resampler's filter tail spills over), and most of them are the
        # digital silence between clips.
        loud = energy_db[~t.labels] >= energy_db[t.labels].max() - dataset.SPEECH_RANGE_DB
        assert loud.mean() < 0.01, f"{loud.sum()} of {loud.size} non-speech frames are loud"
        silent = np.all(frames == 0, axis=1)
        assert not silent[t.labels].any() and silent[~t.labels].mean() > 0.5


def test_mixes_hit_their_nominal_snr(tracks: list[Track]) -> None:
    for t in (t for t in tracks if t.rate == 16000 and t.snr_db is not None):
        clean = t.clean.astype(np.float64)
        noise = t.audio.astype(np.float64) - clean
        speech = np.repeat(t.labels, dataset.frame_len(t.rate))
        snr = 10 * np.log10(np.mean(clean[speech] ** 2) / np.mean(noise**2))
        # Loud clicks can clip at 0-5 dB SNR, which takes a little power out of the noise.
        clipped = bool(np.any(np.abs(t.audio.astype(np.int32)) >= 32767))
        assert snr == pytest.approx(t.snr_db, abs=1.0 if clipped else 0.1), (t.name, t.noise, t.snr_db)


def test_phone_band_mixes_went_through_mu_law(tracks: list[Track]) -> None:
    for t in (t for t in tracks if t.rate == 8000):
        assert np.array_equal(media_core.ulaw_decode(media_core.ulaw_encode(t.audio)), t.audio)


def test_noise_is_deterministic_unit_rms_and_known() -> None:
    for kind in dataset.NOISE_KINDS:
        a = dataset.make_noise(kind, 8000, 16000, np.random.default_rng(1))
        b = dataset.make_noise(kind, 8000, 16000, np.random.default_rng(1))
        assert np.array_equal(a, b)
        assert np.sqrt(np.mean(a.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=0.01)
    with pytest.raises(ValueError):
        dataset.make_noise("babble", 100, 16000, np.random.default_rng(1))


# --- detectors -------------------------------------------------------------------------------------------


def test_our_vad_detects_a_clean_synthesised_utterance() -> None:
    engine = EspeakEngine()
    speech = dataset.resample(engine.synthesize("Hello, I would like to book an appointment for Tuesday."),
                              engine.sample_rate, 8000)
    pad = np.zeros(8000, dtype=np.int16)
    result = media_core.Vad(sample_rate=8000).process(np.concatenate([pad, speech, pad]))
    starts = [e.time_ms for e in result.events if e.kind == "start"]
    ends = [e.time_ms for e in result.events if e.kind == "end"]
    assert starts and 900 <= starts[0] <= 1300
    assert ends and ends[-1] > starts[0] + 1000
    probs = np.array(result.probabilities)
    assert (probs[: int(900 / 16)] < 0.5).all()  # quiet before the speech


@pytest.mark.parametrize(("kind", "level_db"), [("car", -30.0), ("hum", -30.0), ("brown", -40.0)])
def test_our_vad_stays_quiet_on_telephone_noise(kind: str, level_db: float) -> None:
    result = media_core.Vad(sample_rate=8000).process(_dbfs_noise(kind, level_db))
    assert not [e for e in result.events if e.kind == "start"]
    assert np.mean(np.array(result.probabilities) >= 0.5) < 0.05


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_our_vad_stays_quiet_on_telephone_hiss(kind: str) -> None:
    # The neural detector alone takes band-limited hiss for speech; the noise-floor gate must not.
    result = media_core.Vad(sample_rate=8000).process(_dbfs_noise(kind, -30.0))
    assert np.mean(np.array(result.probabilities) >= 0.5) < 0.05


def test_our_vad_hears_speech_over_hiss() -> None:
    engine = EspeakEngine()
    speech = dataset.resample(engine.synthesize("I need to move my appointment to Friday afternoon."),
                              engine.sample_rate, 8000).astype(np.float64)
    noise = _dbfs_noise("white", -30.0).astype(np.float64)
    lead = len(noise) // 2
    mix = noise.copy()
    mix[lead:lead + len(speech)] += speech[: len(mix) - lead]
    result = media_core.Vad(sample_rate=8000).process(np.clip(mix, -32768, 32767).astype(np.int16))
    starts = [e.time_ms for e in result.events if e.kind == "start"]
    assert starts and abs(starts[0] - 1000 * lead / 8000) < 400


def test_every_detector_lands_on_the_label_grid(tracks: list[Track]) -> None:
    track = next(t for t in tracks if t.rate == 8000 and t.snr_db is None)
    for det in bench.detectors(quick=True):
        scores = det.run(track)
        assert scores.shape == track.labels.shape
        assert ((scores >= 0) & (scores <= 1)).all()
        if det.probabilistic:
            assert bench.roc_auc(scores, track.labels) > 0.85, det.name
        assert bench.binary_scores(scores >= det.threshold, track.labels).recall > 0.8, det.name
