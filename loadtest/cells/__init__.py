"""Benchmarks of the regional cells: call setup, event pipeline lag and resume after a worker dies."""
