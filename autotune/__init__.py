"""Autotuning (imported as `xchip.autotune`): `db` is the tuning database that keeps every config
tried per kernel, target and toolchain, with its timings; `search` and `measure` find and time
candidates."""
