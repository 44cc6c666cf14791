"""The media worker process: the voice webhook, the media WebSocket and the call loops."""
