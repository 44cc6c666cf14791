"""Is a call's media stream still up on the worker that holds its lease? Asked by the control plane
before it grants a resume (the carrier's `<Connect action>` callback says the stream ended, but a
replayed callback says so while the stream is still up).

Each worker answers on its own subject, `<region>.workers.probe.<hash of its id>`, with {"live": bool};
a worker that is gone (killed, its connection closed) has no subscription, so NATS answers "no
responders" at once and the stream is taken for gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from regions.catalogue import get_region

log = logging.getLogger(__name__)


def probe_subject(region: str, worker_id: str) -> str:
    # A worker id may be a URL (dots and slashes are no subject tokens): its hash names the subject.
    token = hashlib.sha256(worker_id.encode()).hexdigest()[:24]
    return f"{get_region(region).code}.workers.probe.{token}"


async def serve_probe(nc: Client, region: str, worker_id: str,
                      is_live: Callable[[str], bool]) -> Subscription:
    """The worker's side: answers whether it still has the stream of the call id asked about."""

    async def on_probe(msg: Msg) -> None:
        try:
            call_id = str(json.loads(msg.data).get("call_id") or "")
        except (ValueError, AttributeError):
            call_id = ""
        try:
            await msg.respond(json.dumps({"live": bool(call_id) and is_live(call_id)}).encode())
        except Exception:  # the asker gave up, or NATS is away: it decides without us
            log.debug("could not answer a stream probe", exc_info=True)

    sub = await nc.subscribe(probe_subject(region, worker_id), cb=on_probe)
    await nc.flush()
    return sub


async def stream_live(nc: Client, region: str, worker_id: str, call_id: str, *,
                      timeout: float = 1.0) -> bool | None:
    """The control plane's side: True when the worker still has the call's stream, False when it says
    not, None when it does not answer (gone, or unreachable)."""
    body = json.dumps({"call_id": call_id}).encode()
    try:
        msg = await nc.request(probe_subject(region, worker_id), body, timeout=timeout)
        return bool(json.loads(msg.data).get("live"))
    except (NoRespondersError, NatsTimeout):
        return None
    except (ValueError, AttributeError):
        log.warning("worker %s gave an unreadable answer to a stream probe", worker_id)
        return None
