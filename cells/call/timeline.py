"""Per-turn timestamps of every stage, so latency can be shown where it goes."""

from __future__ import annotations

from dataclasses import asdict, dataclass

STAGES = ("speech_end", "turn_end", "stt_final", "first_token", "first_tts_audio", "first_frame_sent")


@dataclass
class TurnTiming:
    """Monotonic clock seconds; None where the stage did not happen (e.g. barge-in)."""

    index: int
    caller_text: str = ""
    agent_text: str = ""
    speech_start: float | None = None  # the caller started speaking (VAD, back-dated to the audio)
    speech_end: float | None = None  # the caller stopped speaking (VAD, back-dated to the audio)
    turn_end: float | None = None  # the endpointer decided the turn was over
    stt_final: float | None = None
    first_token: float | None = None
    first_tts_audio: float | None = None
    first_frame_sent: float | None = None
    interrupted: bool = False

    def mark(self, stage: str, at: float) -> None:
        if getattr(self, stage) is None:
            setattr(self, stage, at)

    def stage_ms(self) -> dict[str, float | None]:
        """Milliseconds from the caller's end of speech to each later stage."""
        base = self.speech_end
        out: dict[str, float | None] = {}
        for stage in STAGES[1:]:
            t = getattr(self, stage)
            out[stage] = None if base is None or t is None else round((t - base) * 1000, 1)
        return out

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["ms_after_speech_end"] = self.stage_ms()
        return d

    def as_event(self, call_start: float) -> dict[str, object]:
        """For the call's event stream: each stage as milliseconds since the call started (monotonic
        clock readings mean nothing outside the worker that took them)."""
        at_ms = {stage: round((t - call_start) * 1000) for stage in ("speech_start", *STAGES)
                 if (t := getattr(self, stage)) is not None}
        return {"index": self.index, "caller_text": self.caller_text, "agent_text": self.agent_text,
                "interrupted": self.interrupted, "at_ms": at_ms, "ms_after_speech_end": self.stage_ms()}
