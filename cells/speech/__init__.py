"""Offline speech engines shipped in PyPI wheels (eSpeak NG, PocketSphinx)."""
