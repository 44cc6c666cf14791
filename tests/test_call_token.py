"""One-time call tokens: a stream is accepted once, by the worker it was sent to, before it expires."""

from __future__ import annotations

import asyncio

import pytest

from cells.contract.call_token import (
    BadCallToken,
    CallTokenAuthority,
    ExpiredCallToken,
    MemoryReplayStore,
    ReusedCallToken,
    WrongAudience,
)

SECRET = "s" * 40


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def mint(auth: CallTokenAuthority, **overrides: str) -> str:
    fields = {"call_id": "CA" + "1" * 32, "tenant_id": "t-dental", "agent_id": "reception",
              "audience": "worker-eu-3", "call_sid": "CA" + "1" * 32}
    return auth.mint(**(fields | overrides))


def test_valid_token_is_accepted_once_then_replay_is_rejected() -> None:
    auth = CallTokenAuthority(SECRET)
    token = mint(auth)

    async def main() -> None:
        claims = await auth.redeem(token, audience="worker-eu-3")
        assert (claims.tenant_id, claims.agent_id) == ("t-dental", "reception")
        assert claims.call_sid == "CA" + "1" * 32
        with pytest.raises(ReusedCallToken) as info:
            await auth.redeem(token, audience="worker-eu-3")
        assert info.value.reason == "reused_token"

    asyncio.run(main())


def test_token_is_compact_and_url_safe() -> None:
    token = mint(CallTokenAuthority(SECRET))
    assert len(token) < 400  # Twilio limits the size of <Parameter> values
    assert all(c.isalnum() or c in "-_." for c in token)


def test_expired_token_is_rejected() -> None:
    clock = Clock()
    auth = CallTokenAuthority(SECRET, ttl_s=30, clock=clock)
    token = mint(auth)
    clock.now += 31
    with pytest.raises(ExpiredCallToken):
        auth.verify(token, audience="worker-eu-3")


def test_token_for_another_worker_is_rejected() -> None:
    auth = CallTokenAuthority(SECRET)
    with pytest.raises(WrongAudience):
        auth.verify(mint(auth), audience="worker-eu-4")


@pytest.mark.parametrize("tamper", ["claims", "signature", "version", "truncate", "garbage", "empty"])
def test_tampered_or_malformed_token_is_rejected(tamper: str) -> None:
    auth = CallTokenAuthority(SECRET)
    token = mint(auth)
    version, body, sig = token.split(".")
    forged_body = mint(auth, tenant_id="t-other").split(".")[1]
    bad = {
        "claims": f"{version}.{forged_body}.{sig}",
        "signature": f"{version}.{body}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",
        "version": f"v2.{body}.{sig}",
        "truncate": f"{version}.{body}",
        "garbage": "v1.!!!.???",
        "empty": "",
    }[tamper]
    with pytest.raises(BadCallToken):
        auth.verify(bad, audience="worker-eu-3")


def test_token_from_another_secret_is_rejected_but_rotation_keeps_old_tokens_valid() -> None:
    old = CallTokenAuthority("o" * 40)
    token = mint(old)
    with pytest.raises(BadCallToken):
        CallTokenAuthority(SECRET).verify(token, audience="worker-eu-3")
    rotated = CallTokenAuthority(SECRET, previous_secrets=["o" * 40])
    assert rotated.verify(token, audience="worker-eu-3").agent_id == "reception"


def test_secret_is_never_shown_and_must_be_long() -> None:
    auth = CallTokenAuthority(SECRET)
    assert SECRET not in repr(auth)
    with pytest.raises(ValueError):
        CallTokenAuthority("short")
    try:
        auth.verify(mint(auth) + "x", audience="worker-eu-3")
    except BadCallToken as exc:
        assert SECRET not in str(exc)


def test_replay_store_forgets_nonces_after_their_tokens_expire() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock)

    async def main() -> None:
        assert await store.claim("n1", clock.now + 10)
        assert not await store.claim("n1", clock.now + 10)
        clock.now += 11
        for i in range(1100):  # enough entries to trigger the purge
            await store.claim(f"x{i}", clock.now + 10)
        assert "n1" not in store._seen

    asyncio.run(main())
