"""Telephony: carrier wire formats and adapters (Twilio today, SIP later).

- `twilio_media`: the Media Streams protocol, I/O-free: frames -> events, marks and clears out.
- `twilio_ws`: the Twilio transport (cells.call.transport): the worker's media WebSocket (upgrade
  signature, token handshake, neutral events in, audio/mark/clear out; media_core's fused codec).
- `pcm_ws`: a toy second transport, raw 16-bit PCM over a WebSocket.
- `twilio_rest`: the TelephonyProvider over Twilio's REST API (dial, transfer, hang up, DTMF).

What the control plane shares with the workers (the call token, the voice webhook and its signature
check, the REST client) is in `cells.contract`. Modules are imported directly
(`from cells.telephony.twilio_media import ...`) so that importing the package pulls in neither Quart
nor the Twilio SDK.
"""
