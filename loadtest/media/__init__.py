"""Media-plane benchmarks: each module has report() -> str that measures and returns a table."""
