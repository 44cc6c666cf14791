"""The cell as an ASGI app built from the environment, for granian (`--factory control.cell.asgi:app`).

On top of the REST API's variables (control.api.asgi): AUTOSPEAK_NATS_URL, AUTOSPEAK_PUBLIC_URL,
AUTOSPEAK_OBJECT_STORE, TWILIO_AUTH_TOKEN (+ TWILIO_WEBHOOK_SHARED_KEYS, `id=secret,...`, when Webhook
Rules sign with shared keys), AUTOSPEAK_CALL_TOKEN_SECRET, and for outbound calls
TWILIO_ACCOUNT_SID (+ TWILIO_API_BASE_URL, for a Twilio-compatible endpoint).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from quart import Quart

from cells.contract.twilio_signature import SHARED_KEYS_ENV, parse_shared_keys
from control.api.asgi import settings_from_env
from control.api.settings import ControlSettings
from control.cell.app import create_cell_app


def _dialer(env: Mapping[str, str]) -> Any:
    sid, token = env.get("TWILIO_ACCOUNT_SID"), env.get("TWILIO_AUTH_TOKEN")
    if not sid or not token:
        return None
    from control.api.outbound import TwilioDialer  # only cells that place calls need the REST client

    base = env.get("TWILIO_API_BASE_URL") or None
    return TwilioDialer(account_sid=sid, auth_token=token, api_base_url=base)


def cell_settings_from_env(env: Mapping[str, str] | None = None) -> ControlSettings:
    env = os.environ if env is None else env
    store = env.get("AUTOSPEAK_OBJECT_STORE")
    return dataclasses.replace(
        settings_from_env(env),
        public_base_url=env.get("AUTOSPEAK_PUBLIC_URL", ""),
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
        twilio_shared_keys=parse_shared_keys(env.get(SHARED_KEYS_ENV)),
        nats_url=env.get("AUTOSPEAK_NATS_URL") or None,
        object_store_root=Path(store) if store else None,
        dialer=_dialer(env))


def app() -> Quart:
    return create_cell_app(cell_settings_from_env())
