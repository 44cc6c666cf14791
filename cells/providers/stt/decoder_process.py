"""A PocketSphinx decoder process: serves several calls' streams over a length-prefixed pipe protocol.

Run by `decoder_pool` as `python -m cells.providers.stt.decoder_process`. PocketSphinx's Python binding
holds the GIL while it builds a decoder and while it decodes, so in the worker's process it stalls the
event loop that paces every call's audio; here it only delays this process's own replies.

Protocol (both directions): a header `<IIB` (payload length, stream id, opcode) then the payload. Every
request except CLOSE gets exactly one reply (OK, RESULT or ERROR) for the same stream id, in order, so the
parent can keep one outstanding request per stream and match replies without sequence numbers.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import sys
from collections import OrderedDict
from typing import Any

import pocketsphinx

HEADER = struct.Struct("<IIB")
# parent -> child
OPEN, WARM, FEED, FINISH, CLOSE = 1, 2, 3, 4, 5
# child -> parent
OK, RESULT, ERROR = 10, 11, 12

SAMPLE_RATE = 16000  # the shipped acoustic model's rate
_FRAME_MS = 10  # the decoder's frame shift
_NON_WORDS = ("<s>", "</s>", "<sil>")
# Distinct decoder configurations (one per agent's domain) whose spares are kept; older ones are dropped
# so that a worker serving many tenants does not hold a decoder per tenant in every process.
_MAX_SPARE_KEYS = 4


def new_decoder(options: dict[str, Any], cmn_prior: str | None) -> pocketsphinx.Decoder:
    decoder = pocketsphinx.Decoder(**options)
    if cmn_prior is not None:
        decoder.set_cmn(cmn_prior)
    return decoder


class Turn:
    """Decoder state of one stream across its turns."""

    def __init__(self, decoder: pocketsphinx.Decoder, partial_interval_ms: int) -> None:
        self.decoder = decoder
        self.open = False
        self._partial_samples = SAMPLE_RATE * partial_interval_ms // 1000
        self._samples = 0  # stream position
        self._utt_start = 0  # stream position where the open utterance began
        self._since_partial = 0
        self._last_partial = ""

    def feed(self, pcm: bytes) -> list[Any] | None:
        """`pcm`: int16 little-endian samples. A partial (as `Transcript` fields) when it changed."""
        if not self.open:
            self.decoder.start_utt()
            self.open, self._utt_start, self._last_partial, self._since_partial = True, self._samples, "", 0
        self.decoder.process_raw(pcm, False, False)
        count = len(pcm) // 2
        self._samples += count
        self._since_partial += count
        if self._since_partial < self._partial_samples:
            return None
        self._since_partial = 0
        hyp = self.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if not text or text == self._last_partial:
            return None
        self._last_partial = text
        return [text, False, self._ms(self._utt_start), self._ms(self._samples), None]

    def finish(self) -> list[Any]:
        if not self.open:  # end of turn without audio since the last final
            now = self._ms(self._samples)
            return ["", True, now, now, None]
        self.decoder.end_utt()
        self.open = False
        hyp = self.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        # seg() is None, not empty, when the utterance produced no hypothesis at all.
        segments = self.decoder.seg() if hyp is not None else None
        words = [s for s in (segments or []) if s.word not in _NON_WORDS and not s.word.startswith("[")]
        base = self._ms(self._utt_start)
        start = base + words[0].start_frame * _FRAME_MS if words else base
        end = base + (words[-1].end_frame + 1) * _FRAME_MS if words else self._ms(self._samples)
        confidence = self.decoder.get_logmath().exp(hyp.prob) if hyp is not None and text else None
        return [text, True, start, end, confidence]

    @staticmethod
    def _ms(samples: int) -> float:
        return 1000.0 * samples / SAMPLE_RATE


class _Server:
    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._in, self._out = read_fd, write_fd
        self._buf = bytearray()
        self._streams: dict[int, Turn] = {}
        # key -> (decoder arguments, wanted spare count, built spares). Decoders are never reused across
        # streams: live CMN history survives set_cmn and one call must not colour the next.
        self._spares: OrderedDict[str, tuple[dict[str, Any], int, list[pocketsphinx.Decoder]]] = OrderedDict()

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = os.read(self._in, max(65536, n - len(self._buf)))
            if not chunk:
                return False
            self._buf += chunk
        return True

    def _input_waiting(self) -> bool:
        return bool(self._buf) or bool(select.select([self._in], [], [], 0)[0])

    def _send(self, stream: int, op: int, payload: bytes = b"") -> None:
        data = HEADER.pack(len(payload), stream, op) + payload
        view = memoryview(data)
        while view:
            view = view[os.write(self._out, view):]

    def _want_spares(self, key: str, spec: dict[str, Any]) -> None:
        entry = self._spares.pop(key, None)
        wanted = int(spec.get("spares", 1))
        self._spares[key] = (spec, wanted, entry[2] if entry else [])
        while len(self._spares) > _MAX_SPARE_KEYS:
            self._spares.popitem(last=False)

    def _take(self, key: str, spec: dict[str, Any]) -> pocketsphinx.Decoder:
        self._want_spares(key, spec)
        built = self._spares[key][2]
        return built.pop() if built else new_decoder(spec["options"], spec["cmn_prior"])

    def _build_one_spare(self) -> bool:
        """Builds one missing spare, if any (only called while no request is waiting)."""
        for spec, wanted, built in reversed(self._spares.values()):
            if len(built) < wanted:
                built.append(new_decoder(spec["options"], spec["cmn_prior"]))
                return True
        return False

    def serve(self) -> None:
        while True:
            # Spares are built only while no request waits, so a stream's frames are not held up behind a
            # ~25 ms decoder build unless the process is idle anyway.
            while not self._input_waiting() and self._build_one_spare():
                pass
            if not self._fill(HEADER.size):
                return
            length, stream, op = HEADER.unpack_from(self._buf)
            if not self._fill(HEADER.size + length):
                return
            payload = bytes(self._buf[HEADER.size:HEADER.size + length])
            del self._buf[:HEADER.size + length]
            try:
                self._handle(stream, op, payload)
            except Exception as exc:  # reported to the stream's caller; the process keeps serving others
                if op != CLOSE:
                    self._send(stream, ERROR, f"{type(exc).__name__}: {exc}".encode())

    def _handle(self, stream: int, op: int, payload: bytes) -> None:
        if op == FEED:
            partial = self._streams[stream].feed(payload)
            self._send(stream, RESULT if partial else OK, json.dumps(partial).encode() if partial else b"")
        elif op == FINISH:
            self._send(stream, RESULT, json.dumps(self._streams[stream].finish()).encode())
        elif op == OPEN:
            spec = json.loads(payload)
            self._streams[stream] = Turn(self._take(spec["key"], spec), int(spec["partial_interval_ms"]))
            self._send(stream, OK)
        elif op == CLOSE:
            self._streams.pop(stream, None)
        elif op == WARM:
            spec = json.loads(payload)
            self._want_spares(spec["key"], spec)
            while self._build_one_spare():
                pass
            self._send(stream, OK)
        else:
            raise ValueError(f"unknown opcode {op}")


def main() -> None:
    # Ctrl-C reaches the whole process group; the parent decides when decoders go (it closes our stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol gets its own descriptor and fd 1 goes to stderr, so nothing the C library prints can
    # corrupt the reply stream.
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _Server(sys.stdin.fileno(), out).serve()


if __name__ == "__main__":
    main()
