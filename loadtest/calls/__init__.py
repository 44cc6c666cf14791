"""Call-level load and latency benchmarks of the media plane."""
