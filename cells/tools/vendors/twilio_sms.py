"""The `twilio_sms` tool kind: a confirmation text through Twilio's Messages API.

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic with the account SID
(`config.account_sid`) and its auth token (named by `secret`); sent `From` the tenant's number
(`config.from_number`) or through a Messaging Service (`config.messaging_service_sid`). The text is the
record's `config.template` with the arguments filled in (`{day}`, `{time}`, ...), so a model never
writes the words sent to a customer. Errors come as `{"code", "message", "more_info", "status"}`.

Twilio takes no idempotency key for messages, so the tool lists the latest messages to that number
first and does not send a text it has already sent (the text names what it confirms, so the same text
is the same confirmation).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from cells.tools.base import ToolError
from cells.tools.vendors.base import (
    OperationSpec,
    VendorHttp,
    VendorTool,
    bad_answer,
    common,
    http_for,
    require,
    secret_for,
)

BASE_URL = "https://api.twilio.com"
VENDOR = "Twilio"
E164 = r"^\+[1-9][0-9]{6,14}$"
NOT_SENT = ("failed", "undelivered", "canceled")
PAGE_SIZE = 50  # the latest texts to this number, where a repeat of this one would be


def _error_message(body: Any) -> str:
    code = body.get("code")
    return str(body.get("message") or "") + (f" (Twilio error {code})" if code else "")


def template_fields(template: str) -> list[str]:
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    if any(not f.isidentifier() for f in fields):
        raise ValueError("an SMS template's fields are plain names, like {day}")
    return sorted(set(fields) - {"to"})


class TwilioSmsTool(VendorTool):
    kind = "twilio_sms"

    def __init__(self, name: str, operation: str, http: VendorHttp, *, account_sid: str, template: str,
                 sender: Mapping[str, str], description: str = "", mutating: bool = False) -> None:
        super().__init__(name, operation, http, description=description, mutating=mutating)
        self.account_sid = account_sid
        self.template = template
        self.sender = dict(sender)  # {"From": number} or {"MessagingServiceSid": sid}
        fields = template_fields(template)
        self.parameters = {"type": "object",
                           "properties": {"to": {"type": "string", "pattern": E164},
                                          **{f: {"type": "string", "minLength": 1, "maxLength": 200}
                                             for f in fields}},
                           "required": ["to", *fields], "additionalProperties": False}

    @classmethod
    def from_record(cls, tool: Mapping[str, Any], secrets: Callable[[str], str | None],
                    allow_private: bool) -> TwilioSmsTool:
        name = str(tool.get("name") or "")
        config = tool.get("config") or {}
        token = secret_for(str(tool.get("secret") or ""), name, secrets)
        account_sid = str(require(config, "account_sid", name, cls.kind))
        if config.get("messaging_service_sid"):
            sender = {"MessagingServiceSid": str(config["messaging_service_sid"])}
        else:
            sender = {"From": str(require(config, "from_number", name, cls.kind))}
        template = str(require(config, "template", name, cls.kind))
        try:
            template_fields(template)
        except ValueError as exc:
            raise ValueError(f"tool {name!r} (twilio_sms): {exc}") from None
        http = http_for(tool, VENDOR, BASE_URL, _error_message, allow_private, secrets=(token,),
                        auth=httpx.BasicAuth(account_sid, token))
        return cls(name, str(tool.get("operation") or "send"), http, account_sid=account_sid,
                   template=template, sender=sender, **common(tool))

    @property
    def path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"


async def _send(tool: TwilioSmsTool, args: Mapping[str, Any], key: str) -> dict[str, Any]:
    to = str(args["to"])
    text = tool.template.format(**{k: str(v) for k, v in args.items()})
    # Newest first; no DateSent filter, since a message still queued has no date_sent yet.
    params = {"To": to, "PageSize": str(PAGE_SIZE)}
    if "From" in tool.sender:
        params["From"] = tool.sender["From"]
    listed = await tool.http.request("GET", tool.path, params=params)
    if not isinstance(listed, dict) or not isinstance(listed.get("messages"), list):
        raise bad_answer(VENDOR, "a list of messages")
    sent = next((m for m in listed["messages"] if isinstance(m, dict) and m.get("body") == text
                 and m.get("status") not in NOT_SENT), None)
    already = sent is not None
    if sent is None:
        sent = await tool.http.request("POST", tool.path, form={"To": to, "Body": text, **tool.sender})
    if not isinstance(sent, dict) or not str(sent.get("sid") or "").startswith(("SM", "MM")):
        raise bad_answer(VENDOR, "a message sid")
    if sent.get("status") in NOT_SENT:
        raise ToolError("vendor_refused", f"Twilio did not send the text ({sent['status']})")
    return {"message_sid": sent["sid"], "status": str(sent.get("status") or ""), "to": to,
            "already_sent": already}


TwilioSmsTool.OPERATIONS = {
    "send": OperationSpec(_send, {"type": "object", "properties": {}}, True,
                          "Send the caller a confirmation text."),
}
