"""Benchmarks that print numbers. Never part of the pass/fail suite."""
