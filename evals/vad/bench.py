"""VAD accuracy and cost: media_core.Vad against webrtcvad and Silero on the labelled set (evals.vad.dataset).

Ours in two forms: the noise-floor gate + earshot (the default without weights), and the gate + the native
Silero-class network (media_core.NeuralVad on the installed silero-vad weights). The reference Silero runs
the same weights file through onnxruntime in Python. `--manifest FILE.csv` swaps in real recordings.

Every detector's output is put on the 10 ms label grid by holding each decision or probability over the
span of the frame it was computed on (ours: 16 ms, Silero: 32 ms, webrtcvad: 10/20/30 ms); a label frame
takes the value of the detector frame that contains its midpoint. Audio is fed the way the call loop would:
ours and webrtcvad one 20 ms (or native-frame) call at a time, Silero 512-sample chunks at 16 kHz (the
8 kHz phone audio is upsampled for it, and that resampling is charged to Silero).

Run: python -m evals.vad.bench [--quick] [--manifest FILE.csv]
(quick: 8 kHz only, 2 of 6 tracks, webrtcvad at 20 ms only)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import webrtcvad

import media_core
from evals.vad import dataset
from evals.vad.dataset import FRAME_MS, Track
from evals.vad.silero_ort import OrtSilero


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Rank-based ROC-AUC (Mann-Whitney U), ties counted half. NaN when one class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct value: ranks before it, plus the middle of its own run.
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = avg_rank[inverse][labels].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class BinaryScores:
    precision: float
    recall: float
    f1: float
    fpr: float


def binary_scores(pred: np.ndarray, labels: np.ndarray) -> BinaryScores:
    """Precision, recall (= TPR), F1 and false-positive rate; 0/0 is reported as NaN."""
    pred = np.asarray(pred, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    tp = float(np.sum(pred & labels))
    fp = float(np.sum(pred & ~labels))
    fn = float(np.sum(~pred & labels))
    tn = float(np.sum(~pred & ~labels))

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    p, r = div(tp, tp + fp), div(tp, tp + fn)
    return BinaryScores(p, r, div(2 * tp, 2 * tp + fp + fn), div(fp, fp + tn))


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The best F1 over thresholds 0.05, 0.10, ... 0.95 and the threshold achieving it (calibration check)."""
    grid = np.round(np.arange(0.05, 1.0, 0.05), 2)
    return max((binary_scores(scores >= th, labels).f1, float(th)) for th in grid)


def hold(values: Sequence[float], frame_ms: float, n_labels: int) -> np.ndarray:
    """Per 10 ms label frame, the value of the detector frame containing the label frame's midpoint.

    Label frames past the detector's last complete frame get 0 (no decision was made for them).
    """
    v = np.asarray(values, dtype=np.float64)
    idx = ((np.arange(n_labels) + 0.5) * FRAME_MS // frame_ms).astype(np.int64)
    out = np.zeros(n_labels)
    ok = idx < v.size
    out[ok] = v[idx[ok]]
    return out


@dataclass
class Detector:
    name: str
    probabilistic: bool
    run: Callable[[Track], np.ndarray]  # per-10 ms scores
    threshold: float = 0.5
    seconds: float = 0.0  # detector CPU time (thread_time: a shared machine's preemptions excluded), summed
    audio_seconds: float = 0.0
    scores: dict[int, np.ndarray] = field(default_factory=dict)  # id(track) -> per-10 ms scores
    call_us: list[float] | None = None  # per 20 ms call, for detectors timed call by call

    def evaluate(self, track: Track) -> None:
        t0 = time.thread_time()
        s = self.run(track)
        self.seconds += time.thread_time() - t0
        self.audio_seconds += track.seconds
        self.scores[id(track)] = s

    @property
    def us_per_20ms(self) -> float:
        return self.seconds / (self.audio_seconds / 0.02) * 1e6 if self.audio_seconds else float("nan")


def _ours(track: Track, endpointer: bool = False, neural: media_core.NeuralVad | None = None,
          call_us: list[float] | None = None) -> np.ndarray:
    vad = media_core.Vad(sample_rate=track.rate, neural=neural)
    step = track.rate // 50
    probs: list[float] = []
    events: list[media_core.VadEvent] = []
    clock = time.perf_counter_ns
    for i in range(0, len(track.audio), step):
        chunk = track.audio[i : i + step]
        t0 = clock()
        r = vad.process(chunk)
        if call_us is not None:
            call_us.append((clock() - t0) / 1e3)
        probs.extend(r.probabilities)
        events.extend(r.events)
    if not endpointer:
        return hold(probs, vad.frame_ms, len(track.labels))
    # The endpointer's segments: events are stamped at the start of the run that triggered them.
    t = (np.arange(len(track.labels)) + 0.5) * FRAME_MS
    state = np.zeros(len(track.labels))
    start: float | None = None
    for ev in events:
        if ev.kind == "start":
            start = ev.time_ms
        elif start is not None:
            state[(t >= start) & (t < ev.time_ms)] = 1.0
            start = None
    if start is not None:
        state[t >= start] = 1.0
    return state


def _silero(track: Track) -> np.ndarray:
    det = OrtSilero()
    audio = track.audio if track.rate == 16000 else dataset.resample(track.audio, track.rate, 16000)
    return hold(det.probabilities(audio), 32.0, len(track.labels))


def _webrtc(mode: int, frame_ms: int) -> Callable[[Track], np.ndarray]:
    def run(track: Track) -> np.ndarray:
        vad = webrtcvad.Vad(mode)
        buf = track.audio.tobytes()
        nbytes = track.rate * frame_ms // 1000 * 2
        ends = range(nbytes, len(buf) + 1, nbytes)
        dec = [vad.is_speech(buf[e - nbytes : e], track.rate) for e in ends]
        return hold(dec, frame_ms, len(track.labels))

    return run


def detectors(quick: bool) -> list[Detector]:
    """Ours (two-stage, neural) first: the comparisons below are made against it."""
    model = media_core.NeuralVad.from_installed()
    neural_us: list[float] = []
    earshot_us: list[float] = []
    dets = [
        Detector("ours gate+silero", True, lambda t: _ours(t, neural=model, call_us=neural_us),
                 call_us=neural_us),
        Detector("ours silero endpt", False, lambda t: _ours(t, endpointer=True, neural=model)),
        Detector("ours gate+earshot", True, lambda t: _ours(t, call_us=earshot_us), call_us=earshot_us),
        Detector("silero v6 ort (py)", True, _silero),
    ]
    for frame_ms in (20,) if quick else (10, 20, 30):
        dets += [Detector(f"webrtc m{m} {frame_ms}ms", False, _webrtc(m, frame_ms)) for m in range(4)]
    return dets


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if np.isnan(x) else f"{x:.{digits}f}"


def _snr_name(snr: float | None) -> str:
    return "clean" if snr is None else f"{snr:g}dB"


def _pooled(det: Detector, tracks: list[Track]) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([det.scores[id(t)] for t in tracks]), np.concatenate([t.labels for t in tracks]))


def _rate_report(rate: int, tracks: list[Track], dets: list[Detector]) -> list[str]:
    for det in dets:
        det.seconds = det.audio_seconds = 0.0
        if det.call_us is not None:
            det.call_us.clear()
        for t in tracks:
            det.evaluate(t)
    seconds = sum(t.seconds for t in tracks)
    speech = np.concatenate([t.labels for t in tracks]).mean()
    band = "telephone band, G.711 mu-law" if rate == 8000 else "wideband"
    lines = [f"=== {rate // 1000} kHz ({band}): {len(tracks)} mixes, {seconds:.0f} s, "
             f"{speech:.0%} of 10 ms frames labelled speech "
             f"(F1 of always-speech: {2 * speech / (1 + speech):.3f}) ==="]

    def split(key: Callable[[Track], object]) -> dict[object, list[Track]]:
        groups: dict[object, list[Track]] = {}
        for t in tracks:
            groups.setdefault(key(t), []).append(t)
        return groups

    by_snr, by_noise = split(lambda t: t.snr_db), split(lambda t: t.noise)
    w = 20
    lines.append(f"{'F1 by SNR':<{w}}" + "".join(f"{_snr_name(s):>8}" for s in by_snr) + f"{'all':>8}")
    for det in dets:
        cells = [binary_scores(s >= det.threshold, y).f1 for s, y in
                 (_pooled(det, g) for g in [*by_snr.values(), tracks])]
        lines.append(f"{det.name:<{w}}" + "".join(f"{_fmt(c):>8}" for c in cells))
    lines.append(f"{'ROC-AUC by SNR':<{w}}" + "".join(f"{_snr_name(s):>8}" for s in by_snr) + f"{'all':>8}")
    for det in (d for d in dets if d.probabilistic):
        cells = [roc_auc(*_pooled(det, g)) for g in [*by_snr.values(), tracks]]
        lines.append(f"{det.name:<{w}}" + "".join(f"{_fmt(c):>8}" for c in cells))
    lines.append(f"{'F1 / FPR by noise':<{w}}" + "".join(f"{k:>12}" for k in by_noise))
    for det in dets:
        pooled = (_pooled(det, g) for g in by_noise.values())
        cells = [binary_scores(s >= det.threshold, y) for s, y in pooled]
        text = [f"{_fmt(c.f1, 2)}/{_fmt(c.fpr, 2)}".rjust(12) for c in cells]
        lines.append(f"{det.name:<{w}}" + "".join(text))
    lines.append(f"{'overall':<{w}}{'AUC':>7}{'F1':>7}{'prec':>7}{'recall':>7}{'FPR':>7}{'us/20ms':>10}{'RTF':>9}"
                 f"{'best F1@thr':>14}")
    for det in dets:
        s, y = _pooled(det, tracks)
        b = binary_scores(s >= det.threshold, y)
        auc, best = np.nan, ""
        if det.probabilistic:
            auc, best = roc_auc(s, y), "{:.3f}@{:.2f}".format(*best_f1(s, y))
        lines.append(f"{det.name:<{w}}{_fmt(auc):>7}{_fmt(b.f1):>7}{_fmt(b.precision):>7}{_fmt(b.recall):>7}"
                     f"{_fmt(b.fpr):>7}{det.us_per_20ms:>10.1f}{det.us_per_20ms / 20000:>9.5f}{best:>14}")
    ours = dets[0]
    s0, y0 = _pooled(ours, tracks)
    f1_ours = binary_scores(s0 >= ours.threshold, y0).f1
    lines.append("ours vs reference (same run): cost ratio ref/ours (>1: ours cheaper), F1 ours/ref, "
                 "AUC ours-ref")
    for det in dets[2:]:
        s, y = _pooled(det, tracks)
        f1_ref = binary_scores(s >= det.threshold, y).f1
        auc_diff = roc_auc(s0, y0) - roc_auc(s, y) if det.probabilistic else float("nan")
        lines.append(f"  vs {det.name:<{w}} cost x{det.us_per_20ms / ours.us_per_20ms:7.1f}   "
                     f"F1 x{f1_ours / f1_ref:.3f}   AUC {_fmt(auc_diff) if det.probabilistic else '  -  '}")
    lines.append("cost per 20 ms process() call of ours: CPU mean (the detector's thread_time over the run, "
                 "Python call included); wall p50/p99 timed call by call (perf_counter; the p99 is the "
                 "frames the network runs on)")
    lines.append(f"{'':<{w}}{'CPU mean':>9}{'p50':>8}{'p99':>8}  us")
    for det in (d for d in dets if d.call_us):
        us = np.asarray(det.call_us)
        p50, p99 = np.percentile(us, [50, 99])
        lines.append(f"{det.name:<{w}}{det.us_per_20ms:>9.2f}{p50:>8.2f}{p99:>8.2f}")
    return lines


def _fused_report(tracks: list[Track], max_seconds: float = 120.0, snr_db: float = 20.0) -> list[str]:
    """The fused inbound path per Twilio message over a call with its pauses: an equal slice of every 8 kHz
    mix at `snr_db` (so every noise kind of that SNR), end to end, as carrier messages."""
    from loadtest.media import fused_bench

    call = [t for t in tracks if t.rate == 8000 and t.snr_db == snr_db]
    if not call:
        return []
    per = int(max_seconds / len(call) * 100)  # 10 ms label frames per mix
    audio = np.concatenate([t.audio[: per * 80] for t in call])
    labels = np.concatenate([t.labels[:per] for t in call])
    snr = snr_db
    costs = fused_bench.call_costs(fused_bench.twilio_messages(audio))
    w = 40
    lines = [f"=== fused inbound path per 20 ms message: one {len(audio) / 8000:.0f} s call at {snr:g} dB, "
             f"{labels.mean():.0%} speech, messages in call order (no warm-up) ===",
             f"{'':<{w}}{'CPU mean':>9}{'p50':>8}{'p95':>8}{'p99':>8}   us   (CPU mean: thread_time over "
             "the call / messages; percentiles: wall time per message)"]
    for name, c in costs.items():
        lines.append(f"{name:<{w}}{c.cpu_mean:>9.2f}{c.median:>8.2f}{c.p95:>8.2f}{c.p99:>8.2f}")
    return lines


def report(quick: bool = False, manifest: Path | str | None = None) -> str:
    """Evaluate every detector on the labelled set (eSpeak, or the real recordings a manifest lists);
    returns a plain-text table of measured figures."""
    if manifest is not None:
        rates: tuple[int, ...] = (dataset.MANIFEST_RATE,)
        tracks = dataset.load_manifest(manifest, max_clips=60 if quick else None, n_tracks=2 if quick else 6)
        source = f"real recordings listed in {manifest}"
    else:
        rates = (8000,) if quick else dataset.RATES
        tracks = dataset.load(rates=rates, max_tracks=2 if quick else None)
        source = "eSpeak NG speech"
    dets = detectors(quick)
    lines = [f"VAD bench on {source}: detector scores held on 10 ms label frames; threshold 0.5 for "
             "probabilistic detectors;",
             "cost = CPU time (thread_time) per 20 ms of audio, RTF = cost / 20 ms."]
    for rate in rates:
        lines += ["", *_rate_report(rate, [t for t in tracks if t.rate == rate], dets)]
    lines += ["", *_fused_report(tracks)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 kHz only, fewer tracks")
    parser.add_argument("--manifest", type=Path, help="CSV with a `file` column of WAV recordings (real)")
    args = parser.parse_args(argv)
    print(report(quick=args.quick, manifest=args.manifest))


if __name__ == "__main__":
    main()
