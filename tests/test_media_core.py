"""media_core from Python: G.711 against audioop, the streaming resampler (chunking
invariance, float32 path, passband, aliases, lag) and argument checking.

Quality checks here are deterministic signal measurements; timing lives in loadtest/media.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import media_core
from media_core import MediaError, Resampler

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop is the reference, deprecated in 3.11
    import audioop

PAIRS = [(8000, 16000), (16000, 8000), (24000, 8000), (22050, 8000), (48000, 16000), (16000, 24000)]
PAIR_IDS = [f"{a}->{b}" for a, b in PAIRS]
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))
LAWS = ["ulaw", "alaw"]


def noise(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-20000, 20000, n).astype(np.int16)


def one_shot(r: Resampler, x: np.ndarray) -> np.ndarray:
    return np.concatenate([r.process(x), r.flush()])


def amplitudes_phases(y: np.ndarray, t: np.ndarray, freqs: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude and phase (of a sine) of each frequency in y(t), fitted jointly by least
    squares, so that a strong tone cannot leak into the estimate for a weak one."""
    cols = [np.ones_like(t)]
    for f in freqs:
        cols += [np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)]
    coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y.astype(np.float64), rcond=None)
    s, c = coef[1::2], coef[2::2]
    return np.hypot(s, c), np.arctan2(c, s)


def tone_response(a: int, b: int, f_in: float, measure: list[float], amp: float = 0.5) -> np.ndarray:
    """Resamples 0.5 s of a float32 tone; amplitudes (relative) of `measure` in the output."""
    x = (amp * np.sin(2 * np.pi * f_in * np.arange(a // 2) / a)).astype(np.float32)
    y = one_shot(Resampler(a, b), x)
    edge = b // 20  # the filter's start and end transients
    t = np.arange(len(y)) / b
    amps, _ = amplitudes_phases(y[edge:-edge], t[edge:-edge], measure)
    return amps / amp


# ---------------------------------------------------------------------------------- G.711


@pytest.mark.parametrize("law", LAWS)
def test_encode_is_bit_exact_with_audioop_for_every_sample(law: str) -> None:
    encode = getattr(media_core, f"{law}_encode")
    assert encode(ALL_SAMPLES) == getattr(audioop, f"lin2{law}")(ALL_SAMPLES.tobytes(), 2)


@pytest.mark.parametrize("law", LAWS)
def test_decode_is_bit_exact_with_audioop_for_every_code(law: str) -> None:
    got = getattr(media_core, f"{law}_decode")(ALL_CODES)
    assert got.dtype == np.int16
    expected = np.frombuffer(getattr(audioop, f"{law}2lin")(ALL_CODES, 2), dtype=np.int16)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("law", LAWS)
def test_decoded_values_are_fixed_points_of_encoding(law: str) -> None:
    encode, decode = getattr(media_core, f"{law}_encode"), getattr(media_core, f"{law}_decode")
    once = decode(ALL_CODES)
    np.testing.assert_array_equal(decode(encode(once)), once)


@pytest.mark.parametrize("law", LAWS)
def test_codec_lengths_and_input_kinds(law: str) -> None:
    encode, decode = getattr(media_core, f"{law}_encode"), getattr(media_core, f"{law}_decode")
    # G.711 is one byte per sample: odd lengths are normal, not a framing error.
    assert len(decode(b"\x01\x02\x03")) == 3
    assert decode(b"").dtype == np.int16 and len(decode(b"")) == 0
    assert encode(np.zeros(0, np.int16)) == b""
    raw = bytes(range(7))
    ref = decode(raw)
    np.testing.assert_array_equal(decode(bytearray(raw)), ref)
    np.testing.assert_array_equal(decode(np.frombuffer(raw, np.uint8)), ref)
    for bad in (np.zeros(4, np.float32), np.zeros(4, np.int32), [1, 2], np.zeros((2, 2), np.int16)):
        with pytest.raises(TypeError):
            encode(bad)
    with pytest.raises(ValueError):
        encode(ALL_SAMPLES[::2])
    with pytest.raises(TypeError):
        decode(5)


# ------------------------------------------------------------------------- resampler: streaming


@settings(max_examples=120, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    cuts=st.lists(st.integers(0, 2500), max_size=12),
    dtype=st.sampled_from(["int16", "float32"]),
    seed=st.integers(0, 1000),
)
def test_chunked_output_equals_one_shot(
    pair: tuple[int, int], cuts: list[int], dtype: str, seed: int
) -> None:
    x = noise(2500, seed)
    if dtype == "float32":
        x = (x / 32768).astype(np.float32)
    expected = one_shot(Resampler(*pair), x)
    r = Resampler(*pair)
    bounds = [0, *sorted(cuts), len(x)]
    parts = [r.process(x[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
    got = np.concatenate([*parts, r.flush()])
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=PAIR_IDS)
def test_output_length_follows_the_ratio(a: int, b: int) -> None:
    r = Resampler(a, b)
    total = sum(len(r.process(noise(a // 50, i))) for i in range(50))  # 1 s in 20 ms chunks
    assert total == b


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=PAIR_IDS)
def test_float32_path_matches_int16_path(a: int, b: int) -> None:
    x = noise(a // 10)
    y16 = one_shot(Resampler(a, b), x)
    r = Resampler(a, b)
    yf = np.concatenate([r.process((x / 32768).astype(np.float32)), r.flush()])
    assert yf.dtype == np.float32
    # Same arithmetic in both paths; only the final rounding to int16 differs.
    assert np.max(np.abs(yf.astype(np.float64) * 32768 - y16)) <= 0.5 + 1e-3


def test_flush_and_reset_start_a_new_stream() -> None:
    x = noise(1000, 3)
    fresh = Resampler(8000, 16000).process(x)
    r = Resampler(8000, 16000)
    r.process(noise(777, 4))
    r.flush()
    np.testing.assert_array_equal(r.process(x), fresh)
    r.process(noise(333, 5))
    r.reset()
    np.testing.assert_array_equal(r.process(x), fresh)


def test_equal_rates_pass_through() -> None:
    r = Resampler(8000, 8000)
    x = noise(321)
    np.testing.assert_array_equal(r.process(x), x)
    assert r.delay_ms == 0 and len(r.flush()) == 0


def test_ten_second_chunk_works_and_matches_streaming() -> None:
    # Large chunks take the GIL-releasing branch of the binding: same result as small ones.
    x = noise(480_000, 9)
    big = Resampler(48000, 16000).process(x)
    assert len(big) == 160_000
    r = Resampler(48000, 16000)
    small = np.concatenate([r.process(x[i : i + 960]) for i in range(0, len(x), 960)])
    np.testing.assert_array_equal(big, small)


# ------------------------------------------------------------------------ resampler: quality, lag


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=PAIR_IDS)
def test_telephone_band_is_flat(a: int, b: int) -> None:
    for f in (300.0, 1000.0, 2000.0, 3000.0, 3400.0):
        gain_db = 20 * np.log10(tone_response(a, b, f, [f])[0])
        assert abs(gain_db) < 0.05, f"{f} Hz: {gain_db:.3f} dB"


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=PAIR_IDS)
def test_aliases_and_images_are_70_db_down(a: int, b: int) -> None:
    nyq = min(a, b) / 2
    if a > b:
        # Tones above the stop edge (1.15 x the output Nyquist) fold back to |f - k*b|.
        for f in np.arange(1.15 * nyq + 20, a / 2 - 20, 211.0):
            alias = abs(f - b * round(f / b))
            level = 20 * np.log10(tone_response(a, b, f, [alias])[0])
            assert level < -70, f"{f:.0f} Hz aliases to {alias:.0f} Hz at {level:.1f} dB"
    else:
        # Passband tones leave images at k*a +- f, which the filter must remove.
        for f in np.arange(100.0, 0.85 * nyq, 211.0):
            images = [im for k in range(1, b // a + 2) for im in (k * a - f, k * a + f) if im < b / 2]
            if not images:  # every image lies above the output Nyquist
                continue
            levels = 20 * np.log10(tone_response(a, b, f, [f, *images])[1:])
            assert levels.max() < -70, f"{f:.0f} Hz: image at {levels.max():.1f} dB"


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=PAIR_IDS)
def test_lag_is_under_2ms_and_matches_delay_ms(a: int, b: int) -> None:
    r = Resampler(a, b)
    assert 0 < r.delay_ms < 2
    # A sum of tones with known phases is its own ideal resampling: the output phase of each
    # tone lags by 2*pi*f*delay, so the slope of the unwrapped phase over f is the delay.
    rng = np.random.default_rng(1)
    freqs = list(np.arange(100.0, 0.8 * min(a, b) / 2, 100.0))
    phases = rng.uniform(-np.pi, np.pi, len(freqs))
    t_in = np.arange(a // 2) / a
    x = sum(np.sin(2 * np.pi * f * t_in + p) for f, p in zip(freqs, phases, strict=True))
    x = (0.9 * x / np.abs(x).max()).astype(np.float32)
    y = np.concatenate([r.process(x[i : i + a // 50]) for i in range(0, len(x), a // 50)])
    edge = b // 20
    t = np.arange(len(y)) / b
    _, out_phases = amplitudes_phases(y[edge:], t[edge:], freqs)
    lag = np.unwrap(phases - out_phases)
    measured_ms = 1e3 * np.polyfit(2 * np.pi * np.array(freqs), lag, 1)[0]
    assert abs(measured_ms - r.delay_ms) < 1e3 / max(a, b), (measured_ms, r.delay_ms)


# ---------------------------------------------------------------------------- argument checking


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(10, np.float64),
        np.zeros(10, np.int32),
        np.zeros(10, ">i2"),  # wrong byte order must not be read as native int16
        np.zeros((2, 5), np.int16),
        np.zeros((2, 5), np.float32),
        np.int16(3),
        [1, 2, 3],
    ],
    ids=["float64", "int32", "big-endian", "2-D int16", "2-D float32", "scalar", "list"],
)
def test_wrong_kinds_of_array_are_type_errors(bad: object) -> None:
    with pytest.raises(TypeError):
        Resampler(8000, 16000).process(bad)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_non_contiguous_arrays_are_value_errors(dtype: type) -> None:
    x = np.zeros(100, dtype)
    for view in (x[::2], x[::-1], np.zeros((10, 2), dtype)[:, 0]):
        with pytest.raises(ValueError, match="contiguous"):
            Resampler(8000, 16000).process(view)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_float32_is_a_value_error(value: float) -> None:
    x = np.zeros(100, np.float32)
    x[37] = value
    with pytest.raises(ValueError, match="NaN or infinity"):
        Resampler(8000, 16000).process(x)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_empty_chunks_return_empty_and_leave_state_alone(dtype: type) -> None:
    r = Resampler(16000, 8000)
    out = r.process(np.zeros(0, dtype))
    assert out.dtype == dtype and len(out) == 0
    x = noise(640, 2).astype(dtype)
    np.testing.assert_array_equal(r.process(x), Resampler(16000, 8000).process(x))


@pytest.mark.parametrize(("a", "b"), [(0, 8000), (3999, 8000), (8000, 192_001), (8000, 8001), (44100, 8003)])
def test_unsupported_rates_are_media_errors(a: int, b: int) -> None:
    with pytest.raises(MediaError):
        Resampler(a, b)
    assert issubclass(MediaError, ValueError)


def test_negative_rate_is_rejected() -> None:
    # Rates are u32 in the binding: a negative one fails conversion (OverflowError), not MediaError.
    with pytest.raises((MediaError, OverflowError)):
        Resampler(-8000, 16000)


def test_vad_rejects_rates_other_than_8k_and_16k() -> None:
    with pytest.raises(MediaError):
        media_core.Vad(sample_rate=44100)
    assert media_core.Vad(sample_rate=8000).process(np.zeros(0, np.int16)).probabilities == []
