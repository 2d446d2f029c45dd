"""Benchmarks: side-by-side timings of xchip against jax.jit and other peers.

Never part of the default test run (pytest collects only `tests/`); the harness itself is
tested by `tests/test_benchmark_harness.py`. Run `python benchmarks/cpu_vs_xla.py --help`.
"""
