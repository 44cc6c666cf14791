"""The media plane's published contract: all that the control plane may import from `cells`.

- `jetstream`: NATS subjects, the call event stream and the call-state KV bucket (names, placement,
  creation parameters) and idempotent publishing.
- `envelope`: the call event envelope every event on the stream carries.
- `slots`: the worker slot protocol (request/reply in queue group `workers`).
- `call_state`: live call state in the region's KV bucket, with the worker's lease.
- `call_token`: the one-time signed token that hands a call from the voice webhook to one worker.
- `twilio_signature`, `twilio_webhook`: Twilio's voice webhook (signature check, TwiML
  `<Connect><Stream><Parameter call_token>`), served by the control plane and by an embedded worker.
- `stream_probe`: asks the worker holding a call whether its media stream is still up (resume only
  when it is gone).
- `redaction`: card, CVV, expiry and PII redaction rules both planes apply (the worker before anything
  leaves it, the control plane again on ingest).
- `twilio_client`: the Twilio REST client both planes use (dialling; transfer, hang-up, DTMF).

Modules here import nothing of the control plane, the worker, the call loop or the launcher (the
import contracts in pyproject.toml check it). Import them directly; this package imports nothing.
"""
