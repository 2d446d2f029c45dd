"""Per-vendor backends (imported as `xchip.backends`). Nothing here yet: the CPU backend issue brings the first; until then programs run on the reference executor."""
