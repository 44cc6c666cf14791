"""What the OpenAI-format adapters (chat, transcription, speech) share: the client and the error mapping.

Only adapters import this module, because it imports the `openai` SDK. The API key comes from the options
or from an environment variable (where the secret store puts it); it is handed to the SDK and never kept
in a repr, a log line or an error message.
"""

from __future__ import annotations

import os

import openai

try:  # openai >= 3 ships its own fork of httpx; errors raised while reading a body come from it unwrapped
    import httpx2 as _httpx
except ImportError:  # pragma: no cover - older openai releases use httpx
    import httpx as _httpx  # type: ignore[no-redef]

from cells.providers.base import ProviderConfigError, ProviderError, ProviderTimeout, ProviderUnavailable

# Local OpenAI-compatible servers (vLLM, llama.cpp server, Ollama) ignore the key, but the SDK wants one.
_NO_KEY = "sk-no-key-required"


def resolve_api_key(api_key: str | None, api_key_env: str | None, *, required: bool, provider: str) -> str:
    if api_key:
        return api_key
    if api_key_env and os.environ.get(api_key_env):
        return os.environ[api_key_env]
    if required:
        where = f" or in ${api_key_env}" if api_key_env else ""
        raise ProviderConfigError(f"{provider}: no API key in the options{where}", provider=provider)
    return _NO_KEY


def make_client(*, base_url: str | None, api_key: str, timeout_s: float, connect_timeout_s: float,
                max_retries: int) -> openai.AsyncOpenAI:
    # The read timeout bounds the gap between two streamed chunks, so a server that stalls mid-stream
    # fails instead of holding the call silent.
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        timeout=openai.Timeout(timeout_s, connect=connect_timeout_s),
        max_retries=max_retries,
    )


# What adapters catch: SDK errors, plus transport errors surfacing while a streamed body is read.
SDK_ERRORS: tuple[type[Exception], ...] = (openai.OpenAIError, _httpx.HTTPError)


def map_error(exc: Exception, provider: str) -> ProviderError:
    """The SDK's error as one of ours; the message carries status and vendor text, never the key."""
    if isinstance(exc, _httpx.TimeoutException):
        return ProviderTimeout(f"{provider}: stream stalled (read timeout)", provider=provider)
    if isinstance(exc, _httpx.HTTPError):
        return ProviderUnavailable(f"{provider}: transport error: {type(exc).__name__}", provider=provider)
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(f"{provider}: request timed out", provider=provider)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(f"{provider}: connection failed: {exc}", provider=provider)
    if isinstance(exc, openai.RateLimitError):
        return ProviderUnavailable(f"{provider}: rate limited (429): {exc.message}", provider=provider)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500 or status in (408, 409):
            return ProviderUnavailable(f"{provider}: server error {status}: {exc.message}", provider=provider)
        # 400/401/403/404/422: this request or this configuration will not work on a retry either.
        return ProviderError(f"{provider}: rejected with {status}: {exc.message}", provider=provider,
                             retryable=False)
    # An error event inside a stream (APIError without a status) or a malformed response.
    return ProviderError(f"{provider}: {exc}", provider=provider)
