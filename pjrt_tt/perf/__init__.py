"""Device-time estimates, profiles and model benchmarks without a card (docs/perf.md)."""
