"""AutoSpeak control."""
