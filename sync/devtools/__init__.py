"""Developer tooling: Azurite management and helpers for the demo, tests and benchmarks."""
