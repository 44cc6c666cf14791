"""The OpenAI-compatible LLM adapter and the fast/smart router, through the `openai` SDK against a local
server speaking the chat completions streaming format."""

from __future__ import annotations

import asyncio
import time

import pytest
from vendor_fakes import Fault
from vendor_fakes.openai_fake import ChatReply, OpenAIFake

from cells.providers.base import (
    Message,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    TextDelta,
    ToolCall,
    ToolSpec,
)
from cells.providers.llm.openai_compat import OpenAICompatLlm
from cells.providers.llm.router import LlmRouter, RouteRule

KEY = "sk-test-key"
TOOLS = [ToolSpec("check_availability", "Free slots on a day",
                  {"type": "object", "properties": {"day": {"type": "string"}}})]


def _llm(fake: OpenAIFake, **kw: object) -> OpenAICompatLlm:
    opts: dict[str, object] = {"model": "gpt-fake", "base_url": fake.base_url, "api_key": KEY,
                               "max_retries": 0, "timeout_s": 5.0}
    opts.update(kw)
    return OpenAICompatLlm(**opts)  # type: ignore[arg-type]


async def _collect(llm: object, messages: list[Message], tools: list[ToolSpec] = TOOLS) -> list[object]:
    return [item async for item in llm.complete(messages, tools)]  # type: ignore[attr-defined]


USER = [Message("system", "You are a receptionist."), Message("user", "Is Tuesday free?")]


def test_text_streams_in_order() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.chat_script.append(ChatReply(text="Yes, Tuesday at ten is free.", piece=3))
            items = await _collect(_llm(fake), USER)
            assert all(isinstance(i, TextDelta) for i in items)
            assert len(items) > 5  # streamed, not one blob
            assert "".join(i.text for i in items) == "Yes, Tuesday at ten is free."  # type: ignore[union-attr]
            sent = fake.requests[0]
            assert sent["stream"] is True and sent["model"] == "gpt-fake"
            assert sent["tools"][0]["function"]["name"] == "check_availability"
            assert sent["messages"][1] == {"role": "user", "content": "Is Tuesday free?"}

    asyncio.run(main())


def test_tool_calls_assembled_from_fragments() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.chat_script.append(ChatReply(
                text="Let me check.",
                tool_calls=[("check_availability", {"day": "2025-06-03", "party": {"size": 2}}),
                            ("send_message", {"to": "+441234", "text": "see you \"soon\""})],
                piece=2))
            items = await _collect(_llm(fake), USER)
            calls = [i for i in items if isinstance(i, ToolCall)]
            assert calls == [
                ToolCall("call_0_fake", "check_availability", {"day": "2025-06-03", "party": {"size": 2}}),
                ToolCall("call_1_fake", "send_message", {"to": "+441234", "text": 'see you "soon"'}),
            ]
            assert isinstance(items[0], TextDelta) and isinstance(items[-1], ToolCall)

    asyncio.run(main())


def test_tool_results_round_trip_in_messages() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            call = ToolCall("call_0", "check_availability", {"day": "tue"})
            history = [*USER, Message("assistant", "", tool_calls=(call,)),
                       Message("tool", '{"slots": ["10:00"]}', tool_call_id="call_0")]
            await _collect(_llm(fake), history)
            sent = fake.requests[0]["messages"]
            assert sent[2]["tool_calls"][0]["function"] == {"name": "check_availability",
                                                            "arguments": '{"day": "tue"}'}
            assert sent[3] == {"role": "tool", "content": '{"slots": ["10:00"]}', "tool_call_id": "call_0"}

    asyncio.run(main())


@pytest.mark.parametrize(("status", "error", "retryable"), [
    (401, ProviderError, False), (429, ProviderUnavailable, True), (500, ProviderUnavailable, True),
    (400, ProviderError, False)])
def test_http_errors_are_mapped(status: int, error: type[Exception], retryable: bool) -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.chat_script.append(ChatReply(fault=Fault(status=status, message="nope")))
            with pytest.raises(error) as info:
                await _collect(_llm(fake), USER)
            assert info.value.retryable is retryable  # type: ignore[attr-defined]
            assert str(status) in str(info.value)

    asyncio.run(main())


def test_wrong_key_is_rejected_and_never_shown() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            llm = _llm(fake, api_key="sk-secret-wrong-123")
            with pytest.raises(ProviderError) as info:
                await _collect(llm, USER)
            assert "sk-secret-wrong-123" not in str(info.value) and "sk-secret" not in repr(llm)

    asyncio.run(main())


def test_error_event_mid_stream_is_mapped() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.chat_script.append(ChatReply(text="Partial answer that", fault=Fault(error_after=3)))
            got: list[object] = []
            with pytest.raises(ProviderError):
                async for item in _llm(fake).complete(USER, TOOLS):
                    got.append(item)
            assert got  # text before the error was already streamed

    asyncio.run(main())


def test_hang_times_out() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            fake.chat_script.append(ChatReply(fault=Fault(hang=True)))
            fake.chat_script.append(ChatReply(text="Some text then a stall", fault=Fault(hang_after=3)))
            start = time.monotonic()
            with pytest.raises(ProviderTimeout):
                await _collect(_llm(fake, timeout_s=0.5), USER)
            with pytest.raises(ProviderTimeout):
                await _collect(_llm(fake, timeout_s=0.5), USER)
            assert time.monotonic() - start < 10

    asyncio.run(main())


def test_connection_refused_is_unavailable() -> None:
    async def main() -> None:
        llm = OpenAICompatLlm(model="m", base_url="http://127.0.0.1:9/v1", api_key=KEY, max_retries=0)
        with pytest.raises(ProviderUnavailable):
            await _collect(llm, USER)

    asyncio.run(main())


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_ENV", raising=False)
    with pytest.raises(ProviderConfigError):
        OpenAICompatLlm(model="m", api_key_env="NO_SUCH_KEY_ENV")
    llm = OpenAICompatLlm(model="m", base_url="http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY_ENV",
                          api_key_required=False)  # a local vLLM/Ollama server
    assert llm.model == "m"


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            monkeypatch.setenv("AUTOSPEAK_TEST_LLM_KEY", KEY)
            llm = OpenAICompatLlm(model="m", base_url=fake.base_url, api_key_env="AUTOSPEAK_TEST_LLM_KEY")
            assert [i async for i in llm.complete(USER)]

    asyncio.run(main())


def test_router_picks_configured_model() -> None:
    async def main() -> None:
        async with OpenAIFake() as fake:
            routes = {"fast": _llm(fake, model="small-fast"), "smart": _llm(fake, model="big-smart")}
            rules = [RouteRule.from_config(r) for r in (
                {"when": {"first_reply": True}, "use": "fast"},
                {"when": {"after_tool_result": True}, "use": "smart"},
                {"when": {"keywords": ["refund", "complaint"]}, "use": "smart"},
                {"when": {"max_user_chars": 40}, "use": "fast"},
            )]
            seen: list[str] = []
            router = LlmRouter(routes, rules, default="smart", on_route=seen.append)
            later = [*USER, Message("assistant", "Yes."), Message("user", "ok")]
            tool_turn = [*later, Message("tool", "{}", tool_call_id="c")]
            long_turn = [*later[:-1], Message("user", "x" * 100)]
            refund = [*later[:-1], Message("user", "I want a refund")]
            for history in (USER, later, tool_turn, long_turn, refund):
                await _collect(router, history)
            assert [r["model"] for r in fake.requests] == [
                "small-fast", "small-fast", "big-smart", "big-smart", "big-smart"]
            assert seen == ["fast", "fast", "smart", "smart", "smart"]

    asyncio.run(main())


def test_router_config_is_validated() -> None:
    with pytest.raises(ProviderConfigError):
        RouteRule.from_config({"when": {"moon_phase": "full"}, "use": "fast"})
    with pytest.raises(ProviderConfigError):
        LlmRouter({}, [RouteRule("fast")], default="fast")
