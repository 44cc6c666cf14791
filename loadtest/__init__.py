"""AutoSpeak loadtest."""
