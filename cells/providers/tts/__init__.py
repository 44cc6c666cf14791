"""Text-to-speech adapters. The embedded default is eSpeak NG; adapter modules are imported lazily."""
