"""A call's settings (`CallConfig`, fixed for the agent) and its running state (`CallState`), which the
call loop (cells.call.session) keeps and its workers read at the end (disposition, bad messages)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cells.call.endpointing import EndpointingConfig


@dataclass(frozen=True)
class CallConfig:
    disclosure: str = "Hi, this call is answered by an AI assistant and may be recorded. How can I help you?"
    disclosure_interruptible: bool = False  # compliance: the caller hears the whole disclosure
    voice_id: str | None = None
    system_prompt: str = ""
    barge_in_min_ms: float = 180.0  # speech this long over the agent interrupts it, if it has words
    barge_in_min_words: int = 2  # ... this many that are not backchannels (cells.call.barge_in)
    barge_in_sure_ms: float = 600.0  # ... or lasts this long whatever it is
    reprompt_after_s: float = 7.0
    reprompt_text: str = "Are you still there?"
    silence_goodbye_text: str = "I haven't heard anything, so I'll end the call now. Goodbye."
    reprompts_before_goodbye: int = 1
    max_call_s: float = 600.0
    max_call_text: str = "We've reached the time limit for this call. Thank you for calling, goodbye."
    apology_text: str = "I'm sorry, I'm having trouble right now."
    # A call resumed on another worker starts with this, then the agent's last question or owed answer.
    resume_text: str = "Sorry about that, the line dropped for a moment."
    transfer_number: str | None = None
    first_audio_deadline_s: float = 6.0  # after a turn ends; then apologise (and transfer or hang up)
    no_transfer_text: str = ("I'm sorry, no one can take your call right now. Please call back during "
                             "opening hours. Goodbye.")
    dtmf_idle_s: float = 2.0
    endpointing: EndpointingConfig = field(default_factory=EndpointingConfig)
    vad_min_silence_ms: float = 160.0
    # Silero v6 as the VAD's second stage instead of earshot: fewer false barge-ins on real speech, but
    # more comma pauses taken for ends on eSpeak callers (README, `autospeak bench turn`); opt-in.
    neural_vad: bool = False


@dataclass
class CallState:
    stream_ms: float = 0.0  # caller audio received so far
    speech_started_ms: float | None = None
    last_activity: float = 0.0
    reprompts: int = 0
    ended: bool = False
    disposition: str = "in_progress"
    dtmf: str = ""
    dtmf_at: float = 0.0
    bad_messages: int = 0
