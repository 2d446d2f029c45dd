"""Helpers for the reference executor's tests: build one-op graphs, run the same computation
on XLA:CPU (through `jax.jit`, or from StableHLO text), make random inputs, compare.

Every comparison is against XLA on the CPU, never against the executor itself.
"""

from __future__ import annotations

import zlib

import jax
import ml_dtypes
import numpy as np

from xchip.ir import Graph, Region, TensorType, dtypes, ops, verify
from xchip.runtime.reference import evaluate

NAMES = [d.name for d in dtypes.ALL]
FLOATS = ["f16", "bf16", "f32", "f64"]
F8 = ["f8e4m3fn", "f8e5m2"]
COMPLEX = ["c64", "c128"]
SIGNED = ["i8", "i16", "i32", "i64"]
UNSIGNED = ["u8", "u16", "u32", "u64"]
INTS = SIGNED + UNSIGNED


def np_dtype(name: str) -> np.dtype:
    return dtypes.get(name).numpy


def T(shape, name: str) -> TensorType:
    return TensorType(tuple(shape), dtypes.get(name))


# --- building graphs -----------------------------------------------------------------------

class Builder:
    """Appends ops to a region: `b.op("add", [x, y])` returns the op's single result (or
    the op itself for several results)."""

    def __init__(self, arg_types):
        self.region = Region(list(arg_types))

    @property
    def args(self):
        return self.region.args

    def op(self, name, operands, attrs=None, result_types=None, regions=()):
        op = ops.make(name, list(operands), attrs or {}, result_types, list(regions))
        self.region.append(op)
        return op.results[0] if len(op.results) == 1 else op

    def const(self, value, name: str):
        return self.op("constant", [], {"value": np.asarray(value, np_dtype(name))})

    def ret(self, *values) -> Region:
        self.region.append(ops.make("return", list(values), result_types=[]))
        return self.region


def graph(arg_types, build) -> Graph:
    """A verified graph whose body `build(builder, *args)` fills; it returns the outputs."""
    b = Builder(arg_types)
    outs = build(b, *b.args)
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    return verify(Graph("main", b.ret(*outs)))


def scalar_region(name: str, op_name: str, n: int = 1) -> Region:
    """A reduce/scatter body: (acc..., x...) -> op(acc_i, x_i) for n operands."""
    b = Builder([T((), name)] * (2 * n))
    outs = [b.op(op_name, [b.args[i], b.args[n + i]]) for i in range(n)]
    return b.ret(*outs)


def run_op(name, args, attrs=None, result_types=None, regions=(), **kw):
    """Evaluate a graph holding one op applied to `args`; returns its list of results."""
    g = graph([T(a.shape, dtypes.from_numpy(a.dtype).name) for a in args],
              lambda b, *xs: (lambda r: list(r.results) if hasattr(r, "results") else [r])(
                  b.op(name, xs, attrs, result_types, regions)))
    return evaluate(g, list(args), **kw)


def run_one(name, args, attrs=None, result_types=None, regions=(), **kw):
    (r,) = run_op(name, args, attrs, result_types, regions, **kw)
    return r


# --- XLA:CPU -------------------------------------------------------------------------------

def xla(fn, *args):
    """`jax.jit(fn)(*args)` on the CPU with 64-bit types enabled, as numpy."""
    with jax.enable_x64(True), jax.default_device(jax.devices("cpu")[0]):
        out = jax.jit(fn)(*args)
        return jax.tree.map(np.asarray, out)


_MLIR = {d.numpy: d.mlir for d in dtypes.ALL}


def tensor_type(shape, dt) -> str:
    return "tensor<" + "".join(f"{s}x" for s in shape) + _MLIR[np.dtype(dt)] + ">"


def xla_stablehlo(body: str, args, result_types) -> list[np.ndarray]:
    """Compile `func.func @main(%a0, %a1, ...) -> results { body }` on XLA:CPU and run it.
    For ops that jax.lax does not expose with the attributes a test needs."""
    from jax._src import xla_bridge
    from jax._src.lib import xla_client as xc

    backend = xla_bridge.get_backend("cpu")
    sig = ", ".join(f"%a{i}: {tensor_type(a.shape, a.dtype)}" for i, a in enumerate(args))
    outs = ", ".join(tensor_type(s, d) for s, d in result_types)
    text = f"func.func @main({sig}) -> ({outs}) {{\n{body}\n}}"
    exe = backend.compile_and_load(text, xc.DeviceList(tuple(backend.local_devices()[:1])),
                                   xc.CompileOptions())
    with jax.enable_x64(True):
        buffers = [jax.device_put(a, backend.local_devices()[0]) for a in args]
        return [np.asarray(o) for o in exe.execute(buffers)]


def xla_op(name: str, args, result_dtype, attrs: str = "") -> np.ndarray:
    """One elementwise StableHLO op `name` in generic syntax, run on XLA:CPU."""
    shape = np.broadcast_shapes(*[a.shape for a in args])
    operands = ", ".join(f"%a{i}" for i in range(len(args)))
    types = ", ".join(tensor_type(a.shape, a.dtype) for a in args)
    rt = tensor_type(shape, result_dtype)
    body = (f'%0 = "stablehlo.{name}"({operands}) {attrs} : ({types}) -> {rt}\n'
            f"return %0 : {rt}")
    (out,) = xla_stablehlo(body, args, [(shape, result_dtype)])
    return out


# --- inputs -------------------------------------------------------------------------------

def rng_for(*parts) -> np.random.Generator:
    """A generator seeded from the test's parameters, the same in every run (Python's own
    hash() of strings changes from process to process)."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))

def specials(name: str) -> list:
    d = dtypes.get(name)
    if d.kind == "bool":
        return [True, False]
    if d.is_integer:
        info = np.iinfo(d.numpy)
        return [info.min, info.max, 0, 1, info.max - 1] + ([-1, info.min + 1] if d.kind == "int" else [])
    if d.is_complex:
        return [complex(np.nan, 0), complex(0, np.inf), complex(-0.0, 0.0), complex(1, -1)]
    values = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5]
    if name == "f8e4m3fn":
        values = [v for v in values if not np.isinf(v)]
    return values


def rand(name: str, shape, rng, *, special: bool = False, low=None, high=None) -> np.ndarray:
    """Random values of dtype `name`, never all zero; with `special`, some edge values
    (NaN, infinities, signed zeros, integer limits) at random places."""
    d = dtypes.get(name)
    shape = tuple(shape)
    size = int(np.prod(shape, dtype=np.int64))
    if d.kind == "bool":
        flat = rng.random(size) < 0.5
        if size:
            flat[0] = True
    elif d.is_integer:
        info = np.iinfo(d.numpy)
        lo = info.min if low is None else low
        hi = info.max if high is None else high
        flat = rng.integers(lo, hi, size=size, endpoint=True, dtype=np.int64 if d.numpy != np.uint64 else np.uint64)
        flat = flat.astype(d.numpy)
        if size and not flat.any():
            flat[0] = 1
    else:
        lo = -8.0 if low is None else low
        hi = 8.0 if high is None else high
        real = rng.uniform(lo, hi, size)
        real = np.where(np.abs(real) < 1e-3, 0.5, real)
        if d.is_complex:
            flat = (real + 1j * rng.uniform(lo, hi, size)).astype(d.numpy)
        else:
            flat = real.astype(np.float32).astype(d.numpy) if d.bits < 32 else real.astype(d.numpy)
    flat = np.asarray(flat).reshape(-1)
    if special and size:
        values = specials(name)
        where = rng.choice(size, size=min(size, len(values)), replace=False)
        for i, v in zip(where, values):
            flat[i] = np.asarray(v).astype(np.float32).astype(d.numpy) if d.is_float and d.bits < 32 else v
    return flat.reshape(shape)


# --- comparing -----------------------------------------------------------------------------

# (rtol, atol) per dtype for results that may differ by a few units in the last place
# (transcendental functions, different summation orders).
TOLERANCE = {
    "f8e4m3fn": (0.13, 0.02), "f8e5m2": (0.26, 0.02), "bf16": (1.6e-2, 1e-5), "f16": (2e-3, 1e-6),
    "f32": (4e-6, 1e-30), "f64": (1e-13, 1e-300), "c64": (4e-6, 1e-30), "c128": (1e-13, 1e-300),
}


def _bits(x: np.ndarray) -> np.ndarray:
    """The bit patterns of a float array, same shape."""
    c = np.ascontiguousarray(x).reshape(x.shape)
    return c.view(f"u{c.dtype.itemsize}")


def assert_same(actual, expected, *, exact: bool = False, rtol=None, atol=None, what: str = ""):
    """Same dtype and shape; integers and bools equal; floats equal bit for bit when
    `exact` (any NaN matching any NaN), else within the dtype's tolerance with NaNs and
    infinities in the same places."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    label = f"{what}: " if what else ""
    assert actual.dtype == expected.dtype, f"{label}dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{label}shape {actual.shape} != {expected.shape}"
    d = dtypes.from_numpy(actual.dtype)
    if d.kind in ("bool", "int", "uint"):
        bad = actual != expected
    elif exact:
        bad = np.zeros(actual.shape, bool)
        for a, e in ([(actual.real, expected.real), (actual.imag, expected.imag)] if d.is_complex
                     else [(actual, expected)]):
            with np.errstate(invalid="ignore", over="ignore"):
                a64, e64 = a.astype(np.float64), e.astype(np.float64)
            both_nan = np.isnan(a64) & np.isnan(e64)
            bad |= (_bits(a) != _bits(e)) & ~both_nan
    else:
        r0, a0 = TOLERANCE[d.name]
        rtol = r0 if rtol is None else rtol
        atol = a0 if atol is None else atol
        # complex numbers: the error relative to the magnitude, as rounding bounds it
        wide = np.complex128 if d.is_complex else np.float64
        with np.errstate(invalid="ignore", over="ignore"):
            a64, e64 = actual.astype(wide), expected.astype(wide)
        nan_a = np.isnan(a64.real) | np.isnan(a64.imag) if d.is_complex else np.isnan(a64)
        nan_e = np.isnan(e64.real) | np.isnan(e64.imag) if d.is_complex else np.isnan(e64)
        with np.errstate(invalid="ignore", over="ignore"):
            close = np.abs(a64 - e64) <= atol + rtol * np.abs(e64)
        bad = ~(close | (nan_a & nan_e) | (a64 == e64))
    if bad.any():
        idx = np.argwhere(bad)[:5]
        shown = ", ".join(f"{tuple(int(i) for i in ix)}: got {actual[tuple(ix)]!r} want {expected[tuple(ix)]!r}"
                          for ix in idx)
        raise AssertionError(f"{label}{int(bad.sum())} of {bad.size} elements differ ({shown})")


__all__ = [
    "Builder", "COMPLEX", "F8", "FLOATS", "INTS", "NAMES", "SIGNED", "T", "UNSIGNED",
    "assert_same", "graph", "ml_dtypes", "np_dtype", "rand", "rng_for", "run_one", "run_op",
    "scalar_region", "specials", "tensor_type", "xla", "xla_op", "xla_stablehlo",
]
