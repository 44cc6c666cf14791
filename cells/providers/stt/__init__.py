"""Speech-to-text adapters. The embedded default is PocketSphinx with a per-agent domain language model.

Adapter modules are imported lazily by the registry; importing this package loads no engine.
"""
