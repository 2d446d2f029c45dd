"""The example models, by name, with the tolerances to compare xchip against `jax.jit`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import cnn, mlp, scan_rnn, transformer


@dataclass(frozen=True)
class Example:
    name: str
    fn: Callable                  # fn(params, x): a pure, jit-able function of arrays
    make_args: Callable[[np.random.Generator, str], tuple]  # (params, x) for dtype "f32" or "bf16"
    description: str
    rtol: dict[str, float]
    atol: dict[str, float]


# (rtol, atol) per dtype, for comparing xchip with jax.jit as |xchip - jit| <= atol + rtol * |jit|.
# rtol == atol == t, so this reads |xchip - jit| <= t * (1 + |jit|). Each t is 4x (rounded up)
# the worst c = max |jit - ref| / (1 + |ref|) over seeds 0-299, where jit is jax.jit on the CPU
# (jax 0.10.2, with and without XLA's excess bf16 precision; the worse kept) and ref is the same
# model evaluated in float64 (jax_enable_x64) on the same input values. The bf16 figures assume
# dot products accumulate in f32, as XLA's do.
#
#                  f32: worst c   max abs     bf16: worst c   max abs
#   mlp            1.1e-6         1.9e-6      0.025           0.052
#   transformer    1.3e-6         1.8e-6      0.026           0.053
#   cnn            9.2e-7         3.9e-6      0.032           0.089
#   scan_rnn       3.1e-7         5.4e-7      0.012           0.014
_TOL = {
    "mlp": {"f32": 5e-6, "bf16": 0.1},
    "transformer": {"f32": 6e-6, "bf16": 0.11},
    "cnn": {"f32": 4e-6, "bf16": 0.13},
    "scan_rnn": {"f32": 1.5e-6, "bf16": 0.05},
}

EXAMPLES: dict[str, Example] = {
    name: Example(name, fn, module.make_args, module.DESCRIPTION, dict(_TOL[name]), dict(_TOL[name]))
    for name, module, fn in (
        ("mlp", mlp, mlp.mlp),
        ("transformer", transformer, transformer.transformer_block),
        ("cnn", cnn, cnn.cnn),
        ("scan_rnn", scan_rnn, scan_rnn.scan_rnn),
    )
}


def get(name: str) -> Example:
    try:
        return EXAMPLES[name]
    except KeyError:
        raise KeyError(f"no example named {name!r}; the examples are: {', '.join(EXAMPLES)}") from None
