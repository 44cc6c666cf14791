"""Reproducible eSpeak NG synthesis: the same text, voice, rate and pitch give the same samples in every
run, whatever the process synthesised before.

The library carries state from one utterance to the next that no API resets (its wave generator's pitch
flutter index is a function-static counter, and some phase), so the samples of a line depend on every
line the process said before it. Simulated callers must not: a test's caller line came out a little
different depending on which test files its process had run first, and so did where the VAD put a pause,
what the end-of-turn model scored and which words tiny.en heard (a test passed alone and failed in CI).

Every utterance here is synthesised in a child forked from one helper process that has only initialised
the library: each starts from that same state. The helper is single-threaded (safe to fork), started on
first use and ended when this process closes its pipe. A fork costs milliseconds; results are cached.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import subprocess
import sys
import threading
from typing import IO

import numpy as np

_HEAD = struct.Struct("<BI")  # status (0 ok, 1 ValueError, 2 other error), payload length
_LEN = struct.Struct("<I")


class _Helper:
    """The forking helper process and the pipe to it (one request at a time)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "cells.speech.espeak_fresh"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lock = threading.Lock()

    def synthesize(self, request: list[object]) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        payload = json.dumps(request).encode()
        with self.lock:
            self.proc.stdin.write(_LEN.pack(len(payload)) + payload)
            self.proc.stdin.flush()
            status, size = _HEAD.unpack(_read(self.proc.stdout, _HEAD.size))
            data = _read(self.proc.stdout, size)
        if status == 1:
            raise ValueError(data.decode())
        if status:
            from cells.speech.espeak import EspeakError
            raise EspeakError(data.decode())
        return data


_helper: _Helper | None = None
_helper_lock = threading.Lock()


def _read(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("the eSpeak helper process exited")
    return data


@functools.lru_cache(maxsize=512)
def _cached(text: str, voice: str, rate_wpm: int, pitch: int) -> bytes:
    global _helper
    with _helper_lock:
        if _helper is None or _helper.proc.poll() is not None:
            _helper = _Helper()
        helper = _helper
    return helper.synthesize([text, voice, rate_wpm, pitch])


def synthesize(text: str, voice: str = "en-us", rate_wpm: int = 170, pitch: int = 50) -> np.ndarray:
    """`text` as mono int16 PCM at the library's rate (EspeakEngine().sample_rate), the same every run."""
    return np.frombuffer(_cached(text, voice, rate_wpm, pitch), dtype=np.int16).copy()


def _serve() -> None:
    """The helper: initialise the library, then fork one child per request from that state."""
    from cells.speech.espeak import EspeakEngine

    engine = EspeakEngine()  # loads and initialises the library; says nothing
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(_LEN.size)
        if len(head) < _LEN.size:
            return
        text, voice, rate_wpm, pitch = json.loads(_read(stdin, _LEN.unpack(head)[0]))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: synthesise from the pristine state, hand the samples back, exit
            os.close(r)
            try:
                out = _HEAD.pack(0, 0) + engine.synthesize(text, voice, rate_wpm, pitch).tobytes()
            except ValueError as exc:
                out = _HEAD.pack(1, 0) + str(exc).encode()
            except Exception as exc:  # handed to the requesting process, which raises it
                out = _HEAD.pack(2, 0) + f"{type(exc).__name__}: {exc}".encode()
            with os.fdopen(w, "wb") as pipe:
                pipe.write(out)
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            out = pipe.read()
        os.waitpid(pid, 0)
        status = out[0] if out else 2
        body = out[_HEAD.size:] if out else b"the synthesis child died"
        stdout.write(_HEAD.pack(status, len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    _serve()
