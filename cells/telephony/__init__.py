"""Telephony: carrier wire formats and adapters (Twilio today, SIP later).

- `call_token`: one-time signed tokens that hand a call from the control API to one worker.
- `twilio_webhook`: the control API's voice webhooks (signature check, TwiML `<Connect><Stream>`).
- `twilio_media`: the Media Streams protocol, I/O-free: frames -> events, marks and clears out.
- `twilio_ws`: the worker's media WebSocket (upgrade signature, token handshake, send/receive).
- `twilio_rest`: the TelephonyProvider over Twilio's REST API (dial, transfer, hang up, DTMF).

Modules are imported directly (`from cells.telephony.twilio_media import ...`) so that importing the
package pulls in neither Quart nor the Twilio SDK.
"""
