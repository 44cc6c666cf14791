"""Provider interfaces and the registry: layered configuration, lazy adapters, clear errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest

from cells.providers import (
    Consent,
    ConsentError,
    EndOfTurn,
    FrameFeed,
    ProviderConfig,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    SttProvider,
    TtsProvider,
    build,
    register,
    registry,
)


def test_layers_override_in_order_and_options_merge() -> None:
    config = ProviderConfig(
        defaults={"stt": {"provider": "pocketsphinx", "options": {"partial_interval_ms": 100,
                                                                  "general_weight": 0.15}}},
        region={"stt": {"options": {"partial_interval_ms": 200}}},
        plan={"stt": {"options": {"general_weight": 0.3}}},
        tenant={"stt": {"options": {"partial_interval_ms": 50}}},
    )
    assert config.resolve("stt") == ("pocketsphinx", {"partial_interval_ms": 50, "general_weight": 0.3})


def test_changing_provider_in_a_layer_drops_the_options_of_the_previous_one() -> None:
    config = ProviderConfig(
        defaults={"tts": {"provider": "espeak", "options": {"rate_wpm": 170}}},
        tenant={"tts": {"provider": "vendor_x", "options": {"api_voice": "nova"}}},
    )
    assert config.resolve("tts") == ("vendor_x", {"api_voice": "nova"})


def test_build_picks_the_adapter_the_tenant_layer_selects() -> None:
    register("tts", "fake", lambda **options: ("fake-tts", options))
    try:
        config = ProviderConfig(plan={"tts": {"provider": "espeak"}},
                                tenant={"tts": {"provider": "fake", "options": {"speed": 2}}})
        assert build("tts", config) == ("fake-tts", {"speed": 2})
        espeak = build("tts", ProviderConfig(region={"tts": {"options": {"rate_wpm": 150}}}))
        assert isinstance(espeak, TtsProvider)
        assert espeak.rate_wpm == 150
    finally:
        registry._TABLE.pop(("tts", "fake"))


def test_build_stt_with_a_domain_from_configuration() -> None:
    config = ProviderConfig(plan={"stt": {"provider": "pocketsphinx"}},
                            tenant={"stt": {"options": {"partial_interval_ms": 60}}})
    stt = build("stt", config, domain={"services": ["cleaning"], "names": ["Doctor Patel"],
                                       "extra_phrases": []})
    assert isinstance(stt, SttProvider)
    assert stt.partial_interval_ms == 60
    assert stt.domain is not None and stt.domain.services == ["cleaning"]


def test_unknown_names_and_kinds_fail_clearly() -> None:
    with pytest.raises(ProviderConfigError,
                       match=r"unknown stt provider 'vosk'; registered:.*pocketsph.*whisper"):
        build("stt", ProviderConfig(tenant={"stt": {"provider": "vosk"}}))
    with pytest.raises(ProviderConfigError, match="unknown provider kind 'payments'"):
        build("payments")
    with pytest.raises(ProviderConfigError, match="no voice_cloner provider configured"):
        build("voice_cloner")
    with pytest.raises(ProviderConfigError, match="bad options for tts provider 'espeak'"):
        build("tts", ProviderConfig(tenant={"tts": {"options": {"colour": "blue"}}}))
    with pytest.raises(ProviderConfigError, match="must be a mapping"):
        ProviderConfig(tenant={"tts": {"provdier": "espeak"}}).resolve("tts")


def test_adapter_modules_load_only_when_chosen() -> None:
    register("llm", "absent_sdk", "vendor_sdk_that_is_not_installed.adapter:Llm")
    try:
        with pytest.raises(ProviderConfigError, match="cannot be imported"):
            build("llm", ProviderConfig(tenant={"llm": {"provider": "absent_sdk"}}))
    finally:
        registry._TABLE.pop(("llm", "absent_sdk"))
    code = ("import sys, cells.providers as p; p.ProviderConfig().resolve('stt');"
            "assert not {'pocketsphinx', 'ctranslate2', 'faster_whisper', 'cells.speech.espeak'}"
            " & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_errors_form_one_hierarchy_a_fallback_can_catch() -> None:
    assert issubclass(ProviderTimeout, ProviderError)
    assert not ProviderConfigError("x").retryable
    assert ProviderTimeout("slow", provider="x").retryable


def test_consent_is_checked() -> None:
    consent = Consent("Ana Ruiz", datetime(2025, 1, 1, tzinfo=UTC), "recorded_statement", "s3://c/1", "t1")
    consent.check()
    with pytest.raises(ConsentError):
        Consent("Ana Ruiz", datetime(2025, 1, 1, tzinfo=UTC), "signed_form", "s3://c/1", "t1",
                revoked=True).check()
    with pytest.raises(ConsentError):
        Consent("Ana Ruiz", datetime(2025, 1, 1, tzinfo=UTC), "signed_form", " ", "t1").check()


def test_frame_feed_keeps_frames_and_turn_ends_in_push_order() -> None:
    async def main() -> list[object]:
        feed = FrameFeed()
        feed.push(np.zeros(320, np.int16))
        feed.end_of_turn()
        feed.push(np.ones(320, np.int16))
        feed.close()
        feed.end_of_turn()  # after close: ignored
        return [item async for item in feed]

    items = asyncio.run(main())
    assert [type(i) for i in items] == [np.ndarray, EndOfTurn, np.ndarray]


def test_the_embedded_default_is_whisper_with_pocketsphinx_behind_it_both_given_the_domain() -> None:
    from cells.providers.fallback import FallbackStt
    from cells.providers.stt.context import Domain
    from cells.providers.stt.pocketsphinx_stt import PocketsphinxStt
    from cells.providers.stt.whisper_stt import WhisperStt

    domain = Domain(services=["cleaning"], names=["Doctor Patel"])
    stt = build("stt", context={"domain": domain})
    assert isinstance(stt, FallbackStt)
    (first, whisper), (second, sphinx) = stt.providers
    assert (first, second) == ("whisper", "pocketsphinx")
    assert isinstance(whisper, WhisperStt) and isinstance(sphinx, PocketsphinxStt)
    assert whisper.domain == domain and sphinx.domain == domain
    assert "Doctor Patel" in whisper._domain_text
    # PocketSphinx stays selectable; a context entry is not forced on a factory that cannot take it.
    chosen = build("stt", ProviderConfig(plan={"stt": {"provider": "pocketsphinx"}}),
                   context={"domain": domain})
    assert isinstance(chosen, PocketsphinxStt) and chosen.domain == domain
    register("stt", "plain", lambda sample_rate=16000: ("plain", sample_rate))
    try:
        assert build("stt", ProviderConfig(plan={"stt": {"provider": "plain"}}),
                     context={"domain": domain}) == ("plain", 16000)
    finally:
        registry._TABLE.pop(("stt", "plain"))


def test_a_turn_hint_survives_the_fallback_wrapper_and_its_replay() -> None:
    from cells.providers.base import Transcript
    from cells.providers.fallback import FallbackStt

    class Recorder:
        sample_rate = 16000

        def __init__(self, fail: bool) -> None:
            self.fail, self.hints = fail, []

        async def stream(self, frames):  # type: ignore[no-untyped-def]
            async for item in frames:
                if isinstance(item, EndOfTurn):
                    self.hints.append(item.hint)
                    if self.fail:
                        raise ProviderError("down")
                    yield Transcript("ok", True, 0.0, 0.0)

    async def main() -> list[str]:
        feed = FrameFeed()
        feed.push(np.zeros(320, np.int16))
        feed.end_of_turn("digits")
        feed.close()
        stt = FallbackStt([("a", primary), ("b", secondary)])
        return [t.text async for t in stt.stream(feed) if t.is_final]

    primary, secondary = Recorder(fail=True), Recorder(fail=False)
    assert asyncio.run(main()) == ["ok"]
    assert primary.hints == ["digits"] and secondary.hints == ["digits"]


def test_the_agent_gives_its_vocabulary_to_whichever_embedded_recogniser_it_runs() -> None:
    from cells.providers.fallback import FallbackStt
    from cells.providers.stt.pocketsphinx_stt import PocketsphinxStt
    from cells.worker.agent import ReceptionAgent

    agent = ReceptionAgent()
    assert isinstance(agent.stt, FallbackStt)
    for _, member in agent.stt.providers:
        assert member.domain is not None and "doctor patel" in member.domain.names
    assert "Doctor Patel" in agent.stt.providers[0][1]._domain_text
    chosen = ReceptionAgent(providers=ProviderConfig(tenant={"stt": {"provider": "pocketsphinx"}}))
    assert isinstance(chosen.stt, PocketsphinxStt) and chosen.stt.domain is not None


def test_the_fallback_warms_its_primary_only() -> None:
    from cells.providers.fallback import FallbackStt

    class Warmable:
        sample_rate = 16000

        def __init__(self) -> None:
            self.warmed = False

        async def warm_up(self) -> None:
            self.warmed = True

        def stream(self, frames):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    primary, secondary = Warmable(), Warmable()
    asyncio.run(FallbackStt([("a", primary), ("b", secondary)]).warm_up())
    assert primary.warmed and not secondary.warmed
