"""Type stubs for the Rust extension. Audio is mono; int16 PCM unless said otherwise."""

from typing import Final, Literal

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]
BytesLike = bytes | bytearray | str

class MediaError(ValueError):
    """Invalid audio, parameter or carrier message."""

# G.711, bit-exact with audioop (mu-law keeps the top 14 bits, A-law the top 13).
def ulaw_encode(pcm: Int16Array) -> bytes: ...
def ulaw_decode(data: bytes | bytearray) -> Int16Array: ...
def alaw_encode(pcm: Int16Array) -> bytes: ...
def alaw_decode(data: bytes | bytearray) -> Int16Array: ...

class Resampler:
    """Streaming polyphase resampler; lag is the filter's group delay (under 2 ms)."""

    def __init__(self, in_rate: int, out_rate: int) -> None: ...
    def process(self, chunk: Int16Array | Float32Array) -> Int16Array | Float32Array:
        """Any chunk size; returns the same dtype (float32 in [-1, 1]). NaN/inf raise ValueError."""
    def flush(self) -> Int16Array | Float32Array:
        """Returns the tail of the stream and resets for a new one."""
    def reset(self) -> None: ...
    @property
    def in_rate(self) -> int: ...
    @property
    def out_rate(self) -> int: ...
    @property
    def delay_ms(self) -> float: ...
    @property
    def taps_per_output(self) -> int: ...

class VadEvent:
    kind: Final[Literal["start", "end"]]
    time_ms: Final[float]

class VadResult:
    probabilities: Final[list[float]]
    events: Final[list[VadEvent]]
    speaking: Final[bool]
    @property
    def probability(self) -> float | None: ...

class NeuralVad:
    """Silero-class VAD network on the bytes of a .onnx or .safetensors weights file (16 kHz, 512-sample
    chunks)."""

    def __init__(self, weights: bytes | bytearray | memoryview) -> None: ...
    def probabilities(self, pcm: Int16Array) -> list[float]:
        """Probability of each 512-sample chunk completed by this call; state carries over."""
    def reset(self) -> None: ...
    @property
    def chunk_samples(self) -> int: ...
    @property
    def sample_rate(self) -> int: ...

class Vad:
    """Two-stage VAD with start/end events: a noise-floor gate, then earshot (16 ms frames) or, with
    `neural`, the Silero-class network (32 ms frames). 8 kHz input is upsampled to 16 kHz."""

    def __init__(
        self,
        sample_rate: int = 16000,
        threshold: float = 0.5,
        release_threshold: float | None = None,
        min_speech_ms: float = 64.0,
        min_silence_ms: float = 256.0,
        neural: NeuralVad | None = None,
    ) -> None: ...
    def process(self, pcm: Int16Array) -> VadResult: ...
    def reset(self) -> None: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def speaking(self) -> bool: ...
    @property
    def threshold(self) -> float: ...
    @property
    def frame_ms(self) -> float: ...
    @property
    def neural(self) -> bool: ...

class InboundFrame:
    pcm: Final[Int16Array]
    probabilities: Final[list[float]]
    events: Final[list[VadEvent]]
    speaking: Final[bool]
    sequence_number: Final[int | None]
    timestamp_ms: Final[int | None]
    track: Final[str]

class InboundPath:
    """Twilio Media Streams inbound: JSON text -> PCM at the STT rate + VAD, one call per message."""

    def __init__(
        self,
        stt_rate: int = 16000,
        codec: str = "ulaw",
        threshold: float = 0.5,
        release_threshold: float | None = None,
        min_speech_ms: float = 64.0,
        min_silence_ms: float = 256.0,
        max_message_bytes: int = 65536,
        neural: NeuralVad | None = None,
    ) -> None: ...
    def push_message(self, message: BytesLike) -> InboundFrame | None:
        """None for valid JSON that is not a `media` event; MediaError for anything malformed."""
    def push_payload(self, payload: BytesLike) -> InboundFrame: ...
    def reset(self) -> None: ...
    @property
    def stt_rate(self) -> int: ...
    @property
    def speaking(self) -> bool: ...

class OutboundPath:
    """PCM at the TTS rate -> ready-to-send 20 ms Twilio `media` messages (JSON text)."""

    def __init__(self, stream_sid: str, tts_rate: int = 24000, codec: str = "ulaw") -> None: ...
    def push(self, pcm: Int16Array) -> list[str]: ...
    def flush(self) -> list[str]: ...
    def clear(self) -> None: ...
    @property
    def tts_rate(self) -> int: ...
    @property
    def pending_samples(self) -> int: ...

class JitterStats:
    """Counters of a JitterBuffer; delays are ms a packet waited between arrival and playout."""

    packets_received: Final[int]
    packets_played: Final[int]
    packets_late: Final[int]
    packets_duplicate: Final[int]
    packets_lost: Final[int]
    packets_discarded: Final[int]
    frames_normal: Final[int]
    frames_concealed: Final[int]
    frames_silence: Final[int]
    frames_inserted: Final[int]
    frames_dropped: Final[int]
    concealed_samples: Final[int]
    resets: Final[int]
    mean_delay_ms: Final[float]
    p95_delay_ms: Final[float]
    target_delay_ms: Final[float]
    current_delay_ms: Final[float]
    jitter_ms: Final[float]
    def as_dict(self) -> dict[str, int | float]: ...

class JitterBuffer:
    """Adaptive jitter buffer for RTP-style packets; the caller supplies the clock (ms)."""

    def __init__(
        self,
        sample_rate: int = 8000,
        frame_ms: int = 20,
        min_delay_ms: float = 20.0,
        max_delay_ms: float = 200.0,
        initial_delay_ms: float = 40.0,
    ) -> None: ...
    def push(
        self, seq: int, timestamp: int, payload: Int16Array, arrival_ms: float
    ) -> Literal["ok", "duplicate", "late", "held", "reset"]: ...
    def pop(self, now_ms: float) -> tuple[Int16Array, Literal["normal", "concealed", "silence"]]: ...
    def stats(self) -> JitterStats: ...
    def reset(self) -> None: ...
    def __len__(self) -> int: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def frame_ms(self) -> int: ...
    @property
    def frame_samples(self) -> int: ...
    @property
    def min_delay_ms(self) -> float: ...
    @property
    def max_delay_ms(self) -> float: ...
    @property
    def target_delay_ms(self) -> float: ...
