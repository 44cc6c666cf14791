"""Bodies of the users and phone-number routes, and the field types other schema modules share."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Final

from pydantic import AfterValidator, Field, StringConstraints

from control.api.schemas import Input, Output
from regions.catalogue import RegionError, validate_e164

# The shape only; which cell serves the number is a business rule checked by the route (422 with the
# serving cell), so that the error can say more than "pattern mismatch".
E164_PATTERN: Final = r"^\+[1-9][0-9]{7,14}$"


def _e164(value: str) -> str:
    try:
        return validate_e164(value)
    except RegionError as exc:
        raise ValueError(str(exc)) from None


E164 = Annotated[str, StringConstraints(pattern=E164_PATTERN), AfterValidator(_e164)]

# Deliberately loose (RFC 5322 allows far more than anyone uses) but enough to refuse typos: one @,
# no spaces, a dotted domain. Stored lower-cased, so uniqueness per tenant ignores case.
_EMAIL_RE: Final = re.compile(r"[^@\s\x00-\x1f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                              r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+")


def _email(value: str) -> str:
    if not _EMAIL_RE.fullmatch(value):
        raise ValueError("not an email address")
    return value.lower()


Email = Annotated[str, StringConstraints(min_length=3, max_length=320), AfterValidator(_email)]


# --- users ------------------------------------------------------------------------------------


class UserCreate(Input):
    email: Email
    name: str = Field(default="", max_length=200)


class UserOut(Output):
    id: uuid.UUID
    email: str
    name: str
    created_at: datetime


class UserList(Output):
    items: list[UserOut]
    next_offset: int | None


# --- phone numbers ----------------------------------------------------------------------------


class PhoneNumberCreate(Input):
    e164: E164
    agent_id: uuid.UUID | None = Field(default=None, description="The agent that answers this number.")


class PhoneNumberUpdate(Input):
    agent_id: uuid.UUID | None = Field(description="The agent that answers this number; null detaches it.")


class PhoneNumberOut(Output):
    e164: str
    region: str
    agent_id: uuid.UUID | None


class PhoneNumberList(Output):
    items: list[PhoneNumberOut]
    next_offset: int | None
