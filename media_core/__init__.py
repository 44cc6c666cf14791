"""AutoSpeak media core: the per-frame audio work of a phone call, implemented in Rust.

G.711 codecs, low-lag streaming resampling, voice activity detection, an adaptive jitter
buffer, and fused per-message paths for Twilio Media Streams.
"""

from media_core._native import (
    InboundFrame,
    InboundPath,
    JitterBuffer,
    JitterStats,
    MediaError,
    OutboundPath,
    Resampler,
    Vad,
    VadEvent,
    VadResult,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)
from media_core.neural_vad import NeuralVad, installed_weights_path

__all__ = [
    "InboundFrame",
    "InboundPath",
    "JitterBuffer",
    "JitterStats",
    "MediaError",
    "NeuralVad",
    "OutboundPath",
    "Resampler",
    "Vad",
    "VadEvent",
    "VadResult",
    "alaw_decode",
    "alaw_encode",
    "installed_weights_path",
    "ulaw_decode",
    "ulaw_encode",
]
