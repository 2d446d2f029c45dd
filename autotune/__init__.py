"""Autotuning: search spaces, strategies, tuning database (imported as `xchip.autotune`). Nothing here yet: it arrives with the autotuner issue."""
