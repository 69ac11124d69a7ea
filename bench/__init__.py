"""Benchmarks: each module is a standalone script that prints its figures."""
