"""The Reception policy against whole caller conversations and single turns, in Whisper-style and word-style text."""
