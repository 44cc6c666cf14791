"""Is a request from Twilio? X-Twilio-Signature checked with the secret Twilio signed it with.

By default Twilio signs with the account's auth token (HMAC-SHA1). With the Webhooks configuration
API a URL can be signed with a shared key instead: the request then carries
`X-Twilio-Webhooks-Signature-Settings: key=<key id>,algorithm=HMAC_SHA256` and the signature is made
with that key's secret. Keys rotate, so several may be valid at once. A request that names a key we
do not hold is refused; it never falls back to the auth token (that would let a header choose the
weaker check). The signature algorithm itself is the twilio SDK's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)

SHARED_KEYS_ENV = "TWILIO_WEBHOOK_SHARED_KEYS"  # "<key id>=<secret>,<key id>=<secret>"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
SIGNATURE_HEADER = "X-Twilio-Signature"
_DEFAULT_ALGORITHM = "HMAC_SHA1"


def parse_shared_keys(value: str | None) -> dict[str, str]:
    """`id=secret,id=secret` -> {id: secret}; raises ValueError naming the position of a bad entry."""
    keys: dict[str, str] = {}
    for i, part in enumerate(p.strip() for p in (value or "").split(",")):
        if not part:
            continue
        key_id, sep, secret = part.partition("=")
        if not sep or not key_id.strip() or not secret.strip():
            raise ValueError(f"{SHARED_KEYS_ENV}: entry {i + 1} is not <key id>=<secret>")
        keys[key_id.strip()] = secret.strip()
    return keys


def signature_settings(header: str | None) -> tuple[str | None, str]:
    """(key id or None, algorithm) named by the signature settings header."""
    key_id, algorithm = None, _DEFAULT_ALGORITHM
    for part in (header or "").split(","):
        name, sep, value = part.partition("=")
        if not sep or not value.strip():
            continue
        if name.strip() == "key":
            key_id = value.strip()
        elif name.strip() == "algorithm":
            algorithm = value.strip()
    return key_id, algorithm


@dataclass(frozen=True)
class TwilioSigning:
    """The secrets Twilio may sign our webhooks with."""

    auth_token: str = field(repr=False)
    shared_keys: Mapping[str, str] = field(default_factory=dict, repr=False)

    def is_signed(self, url: str, params: Any, signature: str | None, settings_header: str | None) -> bool:
        """`url` exactly as Twilio requested it (query included); `params` the POST form (or {})."""
        if not signature:
            return False
        key_id, algorithm = signature_settings(settings_header)
        if key_id is None:
            secret = self.auth_token
        elif (shared := self.shared_keys.get(key_id)) is not None:
            secret = shared
        else:
            log.warning("a Twilio webhook names shared key %s, which this cell does not hold", key_id)
            return False
        try:
            return bool(RequestValidator(secret).validate(url, params, signature, algorithm))
        except TypeError:  # an SDK without shared-key support takes no algorithm: SHA1 only
            return algorithm.upper() == _DEFAULT_ALGORITHM and bool(
                RequestValidator(secret).validate(url, params, signature))
