"""The Reception policy on whole caller conversations and single turns, Whisper-style and word-style."""
