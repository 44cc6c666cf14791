"""Telephony: carrier wire formats and adapters (Twilio today, SIP later).

- `twilio_media`: the Media Streams protocol, I/O-free: frames -> events, marks and clears out.
- `twilio_ws`: the worker's media WebSocket (upgrade signature, token handshake, send/receive).
- `twilio_rest`: the TelephonyProvider over Twilio's REST API (dial, transfer, hang up, DTMF).

What the control plane shares with the workers (the call token, the voice webhook and its signature
check, the REST client) is in `cells.contract`. Modules are imported directly
(`from cells.telephony.twilio_media import ...`) so that importing the package pulls in neither Quart
nor the Twilio SDK.
"""
