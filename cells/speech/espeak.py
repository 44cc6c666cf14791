"""eSpeak NG text-to-speech through ctypes, using the library and data shipped by `espeakng-loader`.

The C library keeps all of its state in globals (one voice, one parameter set, one callback), so every
synthesis in the process runs under one lock and sets its own voice and parameters. Audio arrives in the
synth callback as 16-bit mono PCM at the library's rate (22050 Hz for the shipped build).
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

# speak_lib.h constants (stable across eSpeak and eSpeak NG releases).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE = 1
_VOLUME = 2
_PITCH = 3
_EE_OK = 0
_EE_NOT_FOUND = 2
_BUFFER_MS = 60  # how much audio the library accumulates before each callback (the streaming chunk)

MIN_RATE_WPM, MAX_RATE_WPM = 80, 450


class EspeakError(RuntimeError):
    """The eSpeak NG library could not be loaded, initialised, or failed to synthesise."""


class VoiceNotFoundError(EspeakError, ValueError):
    """The requested voice (language or `+variant`) is not in the shipped data."""


class _Event(ctypes.Structure):
    # espeak_EVENT; only passed through, but typed so that the callback signature is exact.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),
    ]


class _Voice(ctypes.Structure):
    # espeak_VOICE; `languages` is a run of (priority byte, NUL-terminated name) pairs ending in a 0 byte.
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.POINTER(ctypes.c_char)),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))

# Receives each chunk of samples; returns True to abort the synthesis in progress.
_Sink = Callable[[np.ndarray], bool]


class _Library:
    """The loaded, initialised C library. Exactly one per process; use only while holding _LOCK."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - dependency of the project
            raise EspeakError("the espeakng-loader package is not installed") from exc
        lib_path = espeakng_loader.get_library_path()
        try:
            self.data_path = espeakng_loader.get_data_path()
            self.lib = ctypes.CDLL(lib_path)
        except (OSError, RuntimeError) as exc:
            raise EspeakError(f"cannot load eSpeak NG from {lib_path}: {exc}") from exc
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))

        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, self.data_path.encode(), 0)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (data path {self.data_path})")
        self.sample_rate: int = rate
        self.sink: _Sink | None = None
        # Kept referenced for the life of the process: the library holds the raw pointer.
        self._callback = _SynthCallback(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed is not None:
            self._seed.argtypes = [ctypes.c_long]
            self._seed.restype = None
        variants_dir = Path(self.data_path) / "voices" / "!v"
        self.variants = frozenset(p.name for p in variants_dir.iterdir()) if variants_dir.is_dir() else None
        self.languages = self._list_languages()

    def _list_languages(self) -> dict[str, str]:
        """Language tag (lower case) -> identifier of the voice file that claims it with the best priority.

        espeak_SetVoiceByName matches file names ("en-us", "gmw/en") but not every language tag ("en-gb" is
        declared inside the file "en"); this map lets callers use the tags.
        """
        best: dict[str, tuple[int, str]] = {}
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices and voices[i]:
            voice = voices[i].contents
            i += 1
            if not voice.identifier:
                continue
            ident = voice.identifier.decode()
            raw, pos = voice.languages, 0
            while (priority := raw[pos][0]) != 0:
                end = pos + 1
                while raw[end] != b"\0":
                    end += 1
                tag = raw[pos + 1 : end].decode(errors="replace").lower()
                if tag not in best or priority < best[tag][0]:
                    best[tag] = (priority, ident)
                pos = end + 1
        return {tag: ident for tag, (_, ident) in best.items()}

    def _on_audio(self, wav: ctypes._Pointer, n: int, _events: ctypes._Pointer) -> int:
        # Exceptions cannot cross the C boundary; a sink must not raise.
        sink = self.sink
        if sink is None or n <= 0 or not wav:
            return 0
        chunk = np.frombuffer(ctypes.string_at(wav, n * 2), dtype=np.int16).copy()
        return 1 if sink(chunk) else 0

    def configure(self, voice: str, rate_wpm: int, pitch: int) -> None:
        base, _, variant = voice.partition("+")
        # An unknown variant is silently ignored by the library; check the shipped files instead.
        if variant and self.variants is not None and variant not in self.variants:
            raise VoiceNotFoundError(f"unknown eSpeak NG voice variant {variant!r} in {voice!r}")
        status = self.lib.espeak_SetVoiceByName(voice.encode())
        if status == _EE_NOT_FOUND and base.lower() in self.languages:
            resolved = self.languages[base.lower()] + (f"+{variant}" if variant else "")
            status = self.lib.espeak_SetVoiceByName(resolved.encode())
        if status == _EE_NOT_FOUND:
            raise VoiceNotFoundError(f"unknown eSpeak NG voice {voice!r}")
        if status != _EE_OK:
            raise EspeakError(f"espeak_SetVoiceByName({voice!r}) failed with status {status}")
        for param, value in ((_RATE, rate_wpm), (_PITCH, pitch), (_VOLUME, 100)):
            status = self.lib.espeak_SetParameter(param, value, 0)
            if status != _EE_OK:
                raise EspeakError(f"espeak_SetParameter({param}, {value}) failed with status {status}")
        if self._seed is not None:
            # Pins the noise generator; the wave generator still carries a little phase state from one
            # utterance to the next, so repeats match in sound but not bit for bit.
            self._seed(0)

    def synth(self, text: str, sink: _Sink) -> None:
        data = text.replace("\0", " ").encode("utf-8") + b"\0"  # an inner NUL would end the C string
        self.sink = sink
        try:
            status = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if status == _EE_OK:
                status = self.lib.espeak_Synchronize()
        finally:
            self.sink = None
        if status != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with status {status}")


_LOCK = threading.Lock()
_LIBRARY: _Library | None = None


def _library() -> _Library:
    """The process-wide library; call with _LOCK held."""
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = _Library()
    return _LIBRARY


class EspeakEngine:
    """Thread-safe eSpeak NG synthesiser. Cheap to construct; all instances share the one C library."""

    def __init__(self) -> None:
        with _LOCK:
            lib = _library()
        self.sample_rate: int = lib.sample_rate
        self.data_path: str = lib.data_path
        self._languages = sorted(lib.languages)

    def languages(self) -> list[str]:
        """Language tags accepted as `voice` (optionally followed by "+variant", e.g. "en-gb+f3")."""
        return list(self._languages)

    @staticmethod
    def _check(rate_wpm: int, pitch: int) -> None:
        if not MIN_RATE_WPM <= rate_wpm <= MAX_RATE_WPM:
            raise ValueError(f"rate_wpm must be in [{MIN_RATE_WPM}, {MAX_RATE_WPM}], got {rate_wpm}")
        if not 0 <= pitch <= 100:
            raise ValueError(f"pitch must be in [0, 100], got {pitch}")

    def synthesize(self, text: str, voice: str = "en-us", rate_wpm: int = 170, pitch: int = 50) -> np.ndarray:
        """Synthesise `text` to mono int16 PCM at `self.sample_rate`."""
        self._check(rate_wpm, pitch)
        chunks: list[np.ndarray] = []

        def sink(chunk: np.ndarray) -> bool:
            chunks.append(chunk)
            return False

        with _LOCK:
            lib = _library()
            lib.configure(voice, rate_wpm, pitch)
            if text.strip():
                lib.synth(text, sink)
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def iter_synthesize(self, text: str, voice: str = "en-us", rate_wpm: int = 170,
                        pitch: int = 50) -> Iterator[np.ndarray]:
        """Yield int16 chunks (about 60 ms each) as the library produces them.

        Synthesis runs on a helper thread that holds the process lock; closing the iterator early aborts it.
        Errors (unknown voice, ...) are raised from the first `next()`.
        """
        self._check(rate_wpm, pitch)
        out: queue.SimpleQueue[np.ndarray | BaseException | None] = queue.SimpleQueue()
        cancelled = threading.Event()

        def sink(chunk: np.ndarray) -> bool:
            out.put(chunk)
            return cancelled.is_set()

        def run() -> None:
            try:
                with _LOCK:
                    lib = _library()
                    lib.configure(voice, rate_wpm, pitch)
                    if text.strip() and not cancelled.is_set():
                        lib.synth(text, sink)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                out.put(exc)
            finally:
                out.put(None)

        worker = threading.Thread(target=run, name="espeak-synth", daemon=True)
        worker.start()
        try:
            while (item := out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()
            if worker is not threading.current_thread():
                worker.join()

