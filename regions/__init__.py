"""AutoSpeak regions."""
