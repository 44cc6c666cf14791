"""Deliver the queued webhook deliveries of one region, signed per Standard Webhooks.

A delivery is claimed in a short transaction (SELECT .. FOR UPDATE SKIP LOCKED, then its attempt
count goes up and its next attempt moves a lease ahead), sent outside any transaction, and its
outcome written back only if nobody re-claimed it meanwhile. So two dispatchers never send one
attempt twice, a dispatcher that dies mid-send leaves the delivery to be retried when the lease ends,
and no database connection waits on a slow receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from control.api.netguard import UnsafeWebhookTarget, check_webhook_url, pin_to_address, resolve_public
from control.db.models import WebhookDelivery, WebhookEndpoint
from control.db.session import run_transaction
from control.db.tenancy import TenantScope, scoped_update, unscoped
from regions.catalogue import get_region

log = logging.getLogger(__name__)

__all__ = ["DispatchStats", "RetryPolicy", "WebhookDispatcher"]

DUE_STATUSES: Final = ("pending", "retrying")
USER_AGENT: Final = "AutoSpeak-Webhooks/1"
MAX_ERROR_CHARS: Final = 300


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before attempt n+1 is delays[n-1] (the last one repeats), with +-jitter; at most max_attempts."""

    delays: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 3600.0, 3 * 3600.0, 6 * 3600.0)
    max_attempts: int = 8
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or not self.delays or min(self.delays) < 0 or not 0 <= self.jitter < 1:
            raise ValueError("max_attempts >= 1, non-negative delays and 0 <= jitter < 1 are required")

    def delay(self, attempts_done: int) -> float:
        base = self.delays[min(max(attempts_done, 1), len(self.delays)) - 1]
        # Jitter spreads the retries of many deliveries that failed together (a receiver outage).
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


@dataclass
class DispatchStats:
    attempts: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    poll_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class _Claim:
    id: uuid.UUID
    scope: TenantScope
    attempt: int  # the attempt number this claim makes (attempts after the claim)
    event_id: str
    payload: dict[str, Any]
    url: str
    secret: str = field(repr=False)
    enabled: bool


@dataclass(frozen=True)
class _Result:
    delivered: bool
    final: bool  # no retry, whatever the attempt count (bad URL or secret, disabled endpoint)
    status: int | None
    error: str | None


class WebhookDispatcher:
    """Poll and send the due webhook deliveries of `region`; `start()` it or drive `run_once()`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        region: str,
        *,
        client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        poll_interval: float = 1.0,
        batch: int = 50,
        concurrency: int = 16,
        lease: float | None = None,
        allow_private: bool = False,
    ) -> None:
        self.region = get_region(region).code
        # False in production: a tenant's URL must not reach the cell's own network (SSRF).
        self.allow_private = allow_private
        self.sessions = sessions
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.batch = batch
        # A claim outlives the request it guards, so a slow send is never claimed twice.
        self.lease = lease if lease is not None else timeout + 60.0
        self._own_client = client is None
        # No redirects (a receiver must not bounce a signed payload elsewhere) and no proxy from the
        # environment unless the operator passes a client configured for one.
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False,
            headers={"user-agent": USER_AGENT},
        )
        self._limit = asyncio.Semaphore(concurrency)
        self.stats = DispatchStats()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("dispatcher already started")
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"webhook-dispatcher-{self.region}")

    async def stop(self, timeout: float = 15.0) -> None:
        """Finish the sends in flight, then close the HTTP client if this dispatcher made it."""
        self._stopping.set()
        self._wakeup.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._own_client:
            await self._client.aclose()

    def wake(self) -> None:
        """Poll now instead of at the next interval: EventConsumer(on_applied=dispatcher.wake) calls it
        after each event that enqueued deliveries. Synchronous and cheap; wakes that come together
        make one poll."""
        self._wakeup.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def health(self) -> dict[str, Any]:
        return {"running": self.running, **self.stats.as_dict()}

    async def _run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before the poll, not after: a wake() that arrives while it runs is kept.
            self._wakeup.clear()
            try:
                sent = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down: keep polling
                self.stats.poll_errors += 1
                log.warning("webhook dispatcher %s: poll failed (%s)", self.region, type(exc).__name__)
                sent = 0
            if sent >= self.batch or self._stopping.is_set():
                continue  # more may be due right now (or stop() was called during the poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)

    # -- one round -------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim the due deliveries, send them, record the outcomes; returns how many were sent."""
        claims = await run_transaction(self.sessions, self._claim)
        if claims:
            await asyncio.gather(*(self._deliver(claim) for claim in claims))
        return len(claims)

    async def _claim(self, session: AsyncSession) -> list[_Claim]:
        now = await session.scalar(select(func.now()))
        stmt = unscoped(
            select(
                WebhookDelivery, WebhookEndpoint.url, WebhookEndpoint.signing_secret, WebhookEndpoint.enabled
            )
            .join(
                WebhookEndpoint,
                (WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                & (WebhookEndpoint.region == WebhookDelivery.region),
            )
            .where(
                WebhookDelivery.region == self.region,
                WebhookDelivery.status.in_(DUE_STATUSES),
                WebhookDelivery.next_attempt_at <= now,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(self.batch)
            # Rows another dispatcher is claiming right now are skipped, never waited for.
            .with_for_update(skip_locked=True, of=WebhookDelivery),
            "the region's dispatcher serves the due deliveries of every tenant of the region",
        )
        claims = []
        for delivery, url, secret, enabled in (await session.execute(stmt)).all():
            delivery.attempts += 1
            delivery.next_attempt_at = now + timedelta(seconds=self.lease)
            claims.append(_Claim(
                id=delivery.id, scope=TenantScope(delivery.tenant_id, delivery.region),
                attempt=delivery.attempts, event_id=delivery.event_id, payload=delivery.payload,
                url=url, secret=secret, enabled=enabled,
            ))
        return claims

    async def _deliver(self, claim: _Claim) -> None:
        async with self._limit:
            result = await self._send(claim)
        self.stats.attempts += 1
        try:
            await run_transaction(self.sessions, lambda s: self._record(s, claim, result), scope=claim.scope)
        except Exception as exc:  # the lease ends and the delivery is tried again
            log.warning("webhook dispatcher %s: could not record delivery %s (%s)", self.region, claim.id,
                        type(exc).__name__)

    async def _send(self, claim: _Claim) -> _Result:
        if not claim.enabled:
            return _Result(False, True, None, "the endpoint is disabled")
        try:
            check_webhook_url(claim.url, allow_private=self.allow_private)
            parts = urlsplit(claim.url)
            # Checked at send time too: the name may resolve elsewhere than when the URL was saved.
            addresses = await resolve_public(
                parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80),
                allow_private=self.allow_private)
        except UnsafeWebhookTarget as exc:
            return _Result(False, True, None, str(exc))
        except OSError:
            return _Result(False, False, None, "ConnectError: the host name does not resolve")
        try:
            signer = Webhook(claim.secret)
        except Exception:  # never echo the secret
            return _Result(False, True, None, "the endpoint's signing secret is not valid")
        body = json.dumps(claim.payload, separators=(",", ":"), ensure_ascii=False)
        # Must be UTC: Webhook.sign reads the wall-clock fields as UTC whatever the tzinfo says.
        timestamp = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": claim.event_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signer.sign(claim.event_id, timestamp, body),
        }
        try:
            response = await self._post(claim.url, addresses, body.encode(), headers)
        except httpx.HTTPError as exc:
            return _Result(False, False, None, _describe(exc, claim.url))
        except Exception as exc:  # anything else still ends as a recorded attempt, never a stuck claim
            log.warning("webhook delivery %s: unexpected %s", claim.id, type(exc).__name__)
            return _Result(False, False, None, type(exc).__name__)
        if 200 <= response.status_code < 300:
            return _Result(True, True, response.status_code, None)
        return _Result(False, False, response.status_code, f"HTTP {response.status_code}")

    async def _post(self, url: str, addresses: list[str], body: bytes,
                    headers: dict[str, str]) -> httpx.Response:
        """POST to the checked addresses in the resolver's order, never to a fresh DNS answer (which
        could be a rebinding to a private address); the next address only if one cannot be reached."""
        for i, address in enumerate(addresses):
            target = pin_to_address(url, address)
            # No connection is kept for the next delivery: the pool knows connections by address, so a
            # kept one would carry another host name's request over a TLS session checked for this one.
            try:
                return await self._client.post(target.url, content=body,
                                               headers={**headers, **target.headers, "connection": "close"},
                                               extensions=target.extensions)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if i == len(addresses) - 1:
                    raise
        raise httpx.ConnectError("no address to connect to")

    async def _record(self, session: AsyncSession, claim: _Claim, result: _Result) -> None:
        now = await session.scalar(select(func.now()))
        values: dict[str, Any] = {"response_status": result.status, "last_error": result.error}
        if result.delivered:
            values.update(status="delivered", delivered_at=now, next_attempt_at=None)
            self.stats.delivered += 1
        elif result.final or claim.attempt >= self.retry.max_attempts:
            values.update(status="failed", next_attempt_at=None)
            self.stats.failed += 1
            log.info("webhook delivery %s failed after %d attempts", claim.id, claim.attempt)
        else:
            delay = self.retry.delay(claim.attempt)
            values.update(status="retrying", next_attempt_at=now + timedelta(seconds=delay))
            self.stats.retrying += 1
        # Only while the claim is still ours: a lease that ran out may have been claimed again.
        await session.execute(
            scoped_update(WebhookDelivery, claim.scope)
            .where(
                WebhookDelivery.id == claim.id,
                WebhookDelivery.attempts == claim.attempt,
                WebhookDelivery.status.in_(DUE_STATUSES),
            )
            .values(**values)
        )


def _describe(exc: Exception, url: str) -> str:
    """An error for last_error: the exception type and message, never the URL (it may carry a token)."""
    text = str(exc).replace(url, "<endpoint>")
    parts = urlsplit(url)
    if parts.path.strip("/") or parts.query:  # also as part of the address-pinned URL
        text = text.replace(urlunsplit(("", "", parts.path, parts.query, "")), "<path>")
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return detail[:MAX_ERROR_CHARS]
