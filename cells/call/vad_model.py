"""The process's Silero VAD weights for the calls' inbound paths (media_core.NeuralVad).

Loaded once (the parsed network is shared by every call; each call's path keeps only its own
stream state), on first use or at the worker's warm-up. When the `silero-vad` package is not
installed, calls fall back to the gate + earshot VAD: logged once, never an error for a caller.
"""

from __future__ import annotations

import logging
import threading

import media_core

log = logging.getLogger(__name__)

_shared: media_core.NeuralVad | None = None
_failed: str | None = None
_lock = threading.Lock()


def shared_neural_vad() -> media_core.NeuralVad | None:
    """The shared weights, or None (logged once) when they cannot be loaded."""
    global _shared, _failed
    with _lock:
        if _shared is None and _failed is None:
            try:
                _shared = media_core.NeuralVad.from_installed()
            except (OSError, ValueError) as exc:  # missing package, or a file that does not parse
                _failed = str(exc)
                log.warning("Silero VAD unavailable, calls use the gate + earshot VAD: %s", exc)
        return _shared


def neural_vad_for(use_neural: bool) -> media_core.NeuralVad | None:
    """What a call's inbound path gets as its second VAD stage: None means earshot."""
    return shared_neural_vad() if use_neural else None
