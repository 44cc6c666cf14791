"""AutoSpeak cells."""
