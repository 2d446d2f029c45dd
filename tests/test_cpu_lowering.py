"""The CPU backend's front half: kernel groups lowered to TensorIR (backends/cpu/lower.py and
te_*.py), scheduled (schedules.py) and built with LLVM, run on the host and compared with the
reference executor -- bit for bit for exact ops (integers, shapes, conversions, IEEE
+-*/ and sqrt), within a few ULP for transcendental functions, within a tolerance for sums
(whose order the kernels change).

Groups are built three ways: whole IR graphs as one group (`whole_group`: forty sibling ops,
one build), JAX functions through `xchip.jit(...).lower` (fusion's real groups), and every
group of the example models. Built modules are cached for the session by TIR text.
Matmul groups use this module's own simple schedule (matmul_schedule.py has its own tests).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from xchip.ir import Region, TensorType, ops
from xchip.ir.kernel_graph import KernelGroup
from xchip.runtime import reference

from cpu_lowering_helpers import (all_values, assert_close, build_group, check_function, check_group,
                                  kernel_graph_of, run_group, whole_group)
from fusion_helpers import Builder, fuse

from xchip.backends.cpu import lower as cpu_lower
from xchip.backends.cpu import schedules
from xchip.backends.cpu.lower import (LoweredGroup, LoweringError, MatmulDims, build, host_mcpu, llvm_target,
                                      lower_group, schedule_group)

RNG = np.random.default_rng(20240601)
BF16 = ml_dtypes.bfloat16

F32_SPECIALS = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-39, 3.4e38, -3.4e38,
                88.72283935546875, 88.7228394, -103.97, -104.0, 1.0, -1.0, 0.5, -0.5, 2.5, -2.5,
                0.625, 2 ** -26, 1e-8, 65504.0, 65520.0]


def floats(shape, dtype, scale=3.0, specials=True, positive=False):
    """Random values of both signs (or positive), with the IEEE specials in front."""
    x = RNG.standard_normal(shape) * scale
    x = x * np.exp(RNG.uniform(-3, 3, shape))
    if positive:
        x = np.abs(x)
    x = x.astype(dtype)
    if specials:
        flat = x.reshape(-1)
        sp = np.array(F32_SPECIALS, np.float64).astype(dtype)
        if positive:
            sp = np.abs(sp)
        flat[: min(len(sp), flat.size)] = sp[: flat.size]
    return x


def scalar_region(name: str, dtype: str, **attrs) -> Region:
    t = TensorType((), dtype)
    region = Region([t, t])
    r = region.append(ops.make(name, region.args, attrs)).result
    region.append(ops.make("return", [r], result_types=[]))
    return region


# --- elementwise floats ----------------------------------------------------------------------

UNARY = ["exponential", "exponential_minus_one", "log", "log_plus_one", "tanh", "logistic", "sqrt", "rsqrt",
         "cbrt", "sine", "cosine", "tan", "ceil", "floor", "round_nearest_even", "round_nearest_afz", "sign",
         "abs", "negate", "is_finite"]
# ULP bounds against the reference (f64 math rounded once): the f32 polynomials are within 2,
# libm-in-f64 results within 1 (numpy's and glibc's f64 functions may differ by one ULP)
F32_ULPS = {"exponential": 2, "exponential_minus_one": 2, "log": 2, "log_plus_one": 3, "tanh": 2,
            "logistic": 3, "cbrt": 1, "sine": 1, "cosine": 1, "tan": 1, "power": 1, "atan2": 1}


def _unary_graph(dtype: str, shape=(4, 40)):
    b = Builder(f"{dtype}[{','.join(map(str, shape))}]")
    (x,) = b.args
    outs = [b.op(name, x, result=f"bool[{','.join(map(str, shape))}]" if name == "is_finite" else None)
            for name in UNARY]
    return b.graph(*outs)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_float_unary_ops(dtype):
    g = _unary_graph(dtype)
    x = floats((4, 40), np.float32 if dtype == "f32" else np.float64)
    check_group(whole_group(g), g, [x], ulps=F32_ULPS if dtype == "f32" else 2)


def test_f32_transcendentals_over_many_values():
    """exp, log, tanh, ... over 64K values of every magnitude (denormal results included)."""
    names = ["exponential", "exponential_minus_one", "log", "log_plus_one", "tanh", "logistic"]
    b = Builder("f32[65536]")
    g = b.graph(*[b.op(n, b.args[0]) for n in names])
    bits = RNG.integers(0, 2 ** 32, 65536, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.where(np.arange(65536) % 2 == 0, bits, RNG.uniform(-110, 100, 65536).astype(np.float32))
    x[:len(F32_SPECIALS)] = F32_SPECIALS
    check_group(whole_group(g), g, [x.astype(np.float32)], ulps=F32_ULPS)


BINARY = ["add", "subtract", "multiply", "divide", "remainder", "power", "atan2", "maximum", "minimum"]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_float_binary_compare_select_clamp(dtype):
    npdt = np.float32 if dtype == "f32" else np.float64
    t = f"{dtype}[4,32]"
    b = Builder(t, t, "bool[4,32]")
    x, y, p = b.args
    outs = [b.op(n, x, y) for n in BINARY]
    for direction in ("EQ", "NE", "LT", "LE", "GT", "GE"):
        for ct in ("FLOAT", "TOTALORDER"):
            outs.append(b.op("compare", x, y, comparison_direction=direction, compare_type=ct))
    outs.append(b.op("compare", x, x, comparison_direction="NE"))   # the NaN test idiom
    outs.append(b.op("subtract", x, x))                              # NaN/inf - themselves
    outs.append(b.op("select", p, x, y))
    outs.append(b.op("clamp", y, x, b.op("add", y, b.op("abs", y))))
    g = b.graph(*outs)
    x = floats((4, 32), npdt)
    y = floats((4, 32), npdt)[::-1].copy()
    y[0, :6] = [0.0, -0.0, np.nan, 1.0, np.inf, -0.0]
    x[0, :6] = [-0.0, 0.0, 1.0, np.nan, np.inf, -0.0]
    pred = RNG.integers(0, 2, (4, 32)).astype(bool)
    check_group(whole_group(g), g, [x, y, pred], ulps=F32_ULPS if dtype == "f32" else 2)


def test_simplifier_cannot_fold_float_identities():
    """TVM's simplifier rewrites (x + 1) - 1 to x and x * 0 to 0; the lowering keeps IEEE."""
    b = Builder("f32[64]", "f32[64]")
    x, y = b.args
    one, zero = b.splat(1.0, x), b.splat(0.0, x)
    outs = [b.op("subtract", b.op("add", x, one), one), b.op("multiply", x, zero), b.op("add", x, zero),
            b.op("subtract", b.op("add", x, y), y), b.op("divide", x, x),
            b.op("add", b.op("multiply", x, y), one)]     # no FMA contraction either
    g = b.graph(*outs)
    x = floats((64,), np.float32)
    x[30:40] = [5.9e-8, 1e-8, 3e-8, -3e-8, 1e30, -1e30, 0.1, 0.2, 0.3, 1 + 2 ** -23]
    y = floats((64,), np.float32, specials=False)
    check_group(whole_group(g), g, [x, y])


NARROW_OPS = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "sqrt", "exponential", "log",
              "tanh", "logistic", "rsqrt", "negate", "abs", "round_nearest_even", "floor"]


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_narrow_floats_round_once_per_op(dtype):
    """bf16/f16: each op computes in f32 and rounds to the narrow type (chained here, so a
    skipped rounding shows); +-*/ sqrt max exactly, transcendentals within one ULP."""
    npdt = BF16 if dtype == "bf16" else np.float16
    t = f"{dtype}[4,32]"
    b = Builder(t, t)
    x, y = b.args
    outs = []
    for n in NARROW_OPS:
        if n in ("add", "subtract", "multiply", "divide", "maximum", "minimum"):
            r = b.op(n, x, y)
            outs.append(b.op("multiply", r, x))          # chained: the rounding of r matters
        else:
            outs.append(b.op(n, b.op("abs", x) if n in ("sqrt", "log", "rsqrt") else x))
    g = b.graph(*outs)
    xa = floats((4, 32), np.float32, scale=2.0, specials=False).astype(npdt)
    xa.reshape(-1)[:6] = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0], np.float32).astype(npdt)
    ya = floats((4, 32), np.float32, scale=2.0, specials=False).astype(npdt)
    check_group(whole_group(g), g, [xa, ya], ulps={"exponential": 1, "log": 1, "tanh": 1, "logistic": 1,
                                                   "rsqrt": 1})


# --- integers --------------------------------------------------------------------------------

INT_BINARY = ["add", "subtract", "multiply", "divide", "remainder", "maximum", "minimum", "and", "or", "xor",
              "shift_left", "shift_right_logical", "shift_right_arithmetic"]
INT_UNARY = ["negate", "abs", "sign", "not", "popcnt", "count_leading_zeros"]


@pytest.mark.parametrize("dtype", ["i8", "i32", "i64", "u8", "u32", "u64"])
def test_integer_ops_have_xla_semantics(dtype):
    """Wrap-around, x/0 == -1 and x%0 == x, INT_MIN/-1, shifts by the width or more, popcnt,
    clz, signed and unsigned compares."""
    d = np.dtype({"i8": np.int8, "i32": np.int32, "i64": np.int64, "u8": np.uint8, "u32": np.uint32,
                  "u64": np.uint64}[dtype])
    info = np.iinfo(d)
    t = f"{dtype}[256]"
    b = Builder(t, t)
    x, y = b.args
    outs = [b.op(n, x, y) for n in INT_BINARY]
    outs += [b.op(n, x) for n in INT_UNARY if not (n in ("abs", "sign", "negate") and dtype.startswith("u"))]
    outs += [b.op("compare", x, y, comparison_direction=c) for c in ("LT", "GE", "EQ", "NE")]
    for e in ([0, 1, 3, 13, -1, -2] if dtype.startswith("i") else [0, 1, 3, 13]):
        outs.append(b.op("power", x, b.splat(e, x)))
    g = b.graph(*outs)
    xs = RNG.integers(info.min, int(info.max) + 1, 256, dtype=np.int64 if d.kind == "i" else np.uint64).astype(d)
    ys = RNG.integers(info.min, int(info.max) + 1, 256, dtype=np.int64 if d.kind == "i" else np.uint64).astype(d)
    small = RNG.integers(0, 3 * 8 * d.itemsize, 64).astype(d)
    ys[:64] = small                                   # shift amounts around the width, exponents
    special = [0, 1, -1 if d.kind == "i" else info.max, info.min, info.max, 2, 3]
    xs[64:64 + len(special)] = np.array(special, dtype=np.int64 if d.kind == "i" else np.uint64).astype(d)
    ys[64:64 + len(special)] = np.array([0, 0, 0, -1 if d.kind == "i" else 0, 1, 0, 7],
                                        dtype=np.int64 if d.kind == "i" else np.uint64).astype(d)
    if d.kind == "i":
        ys[80:84] = [-1, -2, -3, -64]                 # negative exponents and shift amounts
        xs[80:84] = [1, -1, 2, info.min]
    check_group(whole_group(g), g, [xs, ys])


def test_bool_ops():
    b = Builder("bool[64]", "bool[64]")
    x, y = b.args
    outs = [b.op(n, x, y) for n in ("and", "or", "xor", "add", "multiply", "maximum", "minimum")]
    outs += [b.op("not", x), b.op("compare", x, y, comparison_direction="LT"), b.op("select", x, x, y)]
    g = b.graph(*outs)
    check_group(whole_group(g), g, [RNG.integers(0, 2, 64).astype(bool), RNG.integers(0, 2, 64).astype(bool)])


# --- conversions -----------------------------------------------------------------------------

def test_convert_matrix():
    """float -> int saturates (NaN -> 0), int -> float rounds to nearest, f64/ints reach
    bf16/f16 through f32, bool <-> anything as 0/1 and != 0."""
    b = Builder("f32[128]", "f64[128]", "bf16[128]", "i64[128]", "u64[128]", "i8[128]", "bool[128]")
    f32, f64, bf16, i64, u64, i8, bl = b.args
    outs = []
    for src in (f32, f64, bf16):
        for dst in ("i8", "i32", "i64", "u8", "u32", "u64", "bool", "f16", "bf16", "f32", "f64"):
            if dst != src.type.dtype.name:
                outs.append(b.op("convert", src, result=f"{dst}[128]"))
    for src in (i64, u64, i8, bl):
        for dst in ("f32", "f64", "bf16", "f16", "i8", "u32", "bool"):
            if dst != src.type.dtype.name:
                outs.append(b.op("convert", src, result=f"{dst}[128]"))
    g = b.graph(*outs)
    xf = floats((128,), np.float64, scale=1e3)
    xf[40:60] = [2 ** 31, -2 ** 31, 2 ** 31 - 0.5, 2 ** 63, -2 ** 63 - 4096, 2 ** 64, 255.5, 256, -1.5, -0.7,
                 127.9, -128.9, 1e20, -1e20, 4294967295.0, 4294967296.0, 0.49999997, 3.5, 2.5, -2.5]
    ints = RNG.integers(-2 ** 62, 2 ** 62, 128, dtype=np.int64)
    ints[:8] = [0, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 24 + 1, 2 ** 53 + 1, 16777217, -16777217]
    uints = RNG.integers(0, 2 ** 63, 128, dtype=np.uint64) * np.uint64(2)
    uints[:4] = [0, 2 ** 64 - 1, 2 ** 63, 2 ** 24 + 1]
    args = [xf.astype(np.float32), xf, xf.astype(np.float32).astype(BF16), ints, uints,
            RNG.integers(-128, 128, 128).astype(np.int8), RNG.integers(0, 2, 128).astype(bool)]
    check_group(whole_group(g), g, args)


def test_bitcast_and_reduce_precision():
    b = Builder("f32[64]", "bf16[64]", "f16[64]", "i64[64]")
    f32, bf16, f16, i64 = b.args
    outs = [b.op("bitcast_convert", f32, result="i32[64]"), b.op("bitcast_convert", f32, result="u32[64]"),
            b.op("bitcast_convert", bf16, result="u16[64]"), b.op("bitcast_convert", bf16, result="f16[64]"),
            b.op("bitcast_convert", f16, result="bf16[64]"), b.op("bitcast_convert", i64, result="f64[64]"),
            b.op("bitcast_convert", b.op("bitcast_convert", f32, result="i32[64]"), result="f32[64]")]
    for e, m in ((8, 7), (5, 10), (4, 3), (8, 23), (11, 2)):
        outs.append(b.op("reduce_precision", f32, exponent_bits=e, mantissa_bits=m))
    outs.append(b.op("reduce_precision", bf16, exponent_bits=5, mantissa_bits=2))
    g = b.graph(*outs)
    x = floats((64,), np.float32)
    args = [x, x.astype(BF16), x.astype(np.float16), RNG.integers(-2 ** 62, 2 ** 62, 64, dtype=np.int64)]
    check_group(whole_group(g), g, args)


# --- shapes ----------------------------------------------------------------------------------

def test_index_maps_pad_concatenate_iota():
    b = Builder("f32[2,3,4]", "f32[3,4]", "f32[]")
    x, y, s = b.args
    outs = [
        b.op("broadcast_in_dim", y, result="f32[2,3,4,5]", broadcast_dimensions=(1, 2)),
        b.op("broadcast_in_dim", b.op("reshape", y, result="f32[3,1,4]"), result="f32[3,6,4]",
             broadcast_dimensions=(0, 1, 2)),
        b.op("reshape", x, result="f32[6,4]"), b.op("reshape", x, result="f32[4,6]"),
        b.op("reshape", x, result="f32[2,2,6]"),
        b.op("transpose", x, permutation=(2, 0, 1)),
        b.op("slice", x, start_indices=(0, 1, 1), limit_indices=(2, 3, 4), strides=(1, 1, 2)),
        b.op("reverse", x, dimensions=(0, 2)),
        b.op("pad", x, s, edge_padding_low=(1, -1, 0), edge_padding_high=(0, 2, -2), interior_padding=(0, 1, 2)),
        b.op("concatenate", y, b.op("negate", y), y, dimension=0),
        b.op("add", b.op("iota", result="f32[3,4]", iota_dimension=1), y),
        b.op("convert", b.op("iota", result="i32[3,4]", iota_dimension=0), result="bf16[3,4]"),
        # bf16 stores that do not vary across the vector lanes (a row of 32 for any vector
        # width; the iota above too)
        b.op("broadcast_in_dim", b.op("convert", y, result="bf16[3,4]"), result="bf16[3,4,32]",
             broadcast_dimensions=(0, 1)),
        b.op("multiply", b.op("broadcast_in_dim", s, result="f32[2,3,4]", broadcast_dimensions=()), x),
    ]
    g = b.graph(*outs)
    args = [floats((2, 3, 4), np.float32, specials=False), floats((3, 4), np.float32, specials=False),
            np.float32(7.5)]
    check_group(whole_group(g), g, args)


def test_pad_and_concatenate_as_fusion_leaves_them():
    """Fusion makes pad and concatenate opaque copy kernels; the lowering still takes them."""
    def fn(x, y):
        return jnp.pad(x, ((1, 2), (0, 3)), constant_values=-1.0), jnp.concatenate([x, y], axis=1)
    x = floats((5, 6), np.float32, specials=False)
    y = floats((5, 2), np.float32, specials=False)
    kg = check_function(fn, x, y)
    assert {g.kind for g in kg.groups} == {"opaque"}
    assert all(isinstance(lower_group(g), LoweredGroup) for g in kg.groups)


def test_materialized_splat_constants():
    """A group that only writes a constant (fusion's `materialize` groups), in bf16 too."""
    for dtype in ("f32", "bf16", "i32"):
        b = Builder(f"{dtype}[2]")
        c = b.op("broadcast_in_dim", b.const(1.5 if dtype != "i32" else 3, {"f32": "float32", "bf16": BF16,
                                                                             "i32": "int32"}[dtype]),
                 result=f"{dtype}[3,40]", broadcast_dimensions=())
        g = b.graph(c)
        group = KernelGroup(0, "elementwise", [op for op in g.body.ops if op.name != "return"], [], [c])
        check_group(group, g, [np.zeros(2, {"f32": np.float32, "bf16": BF16, "i32": np.int32}[dtype])])


# --- contractions ----------------------------------------------------------------------------

def _dot_tolerance(a, b, k):
    return float(k) * 1e-7 * float(np.max(np.abs(a.astype(np.float64)))) * float(np.max(np.abs(b.astype(np.float64))))


@pytest.mark.parametrize("case", ["2d", "batched_transposed", "bf16", "multi_contract", "i8", "f64"])
def test_dot_general(case):
    if case == "2d":
        b = Builder("f32[7,33]", "f32[33,20]")
        r = b.dot(*b.args)
    elif case == "batched_transposed":
        b = Builder("f32[3,5,16]", "f32[3,9,16]")
        x, w = b.args
        r = b.op("dot_general", x, w, lhs_batching_dimensions=(0,), rhs_batching_dimensions=(0,),
                 lhs_contracting_dimensions=(2,), rhs_contracting_dimensions=(2,))
    elif case == "bf16":
        b = Builder("bf16[6,40]", "bf16[40,12]")
        r = b.op("dot_general", *b.args, lhs_contracting_dimensions=(1,), rhs_contracting_dimensions=(0,),
                 result="bf16[6,12]")
    elif case == "multi_contract":
        b = Builder("f32[2,4,3,5]", "f32[3,4,6]")
        r = b.op("dot_general", *b.args, lhs_contracting_dimensions=(1, 2), rhs_contracting_dimensions=(1, 0))
    elif case == "i8":
        b = Builder("i8[5,64]", "i8[64,7]")
        r = b.op("dot_general", *b.args, lhs_contracting_dimensions=(1,), rhs_contracting_dimensions=(0,),
                 result="i32[5,7]")
    else:
        b = Builder("f64[4,30]", "f64[30,3]")
        r = b.dot(*b.args)
    g = b.graph(r)
    args = []
    for v in g.inputs:
        if v.type.dtype.is_integer:
            args.append(RNG.integers(-128, 128, v.type.shape).astype(v.type.dtype.numpy))
        else:
            args.append(floats(v.type.shape, np.float64, scale=1.0, specials=False).astype(v.type.dtype.numpy))
    dot = next(op for op in g.body.ops if op.name == "dot_general")
    k = math.prod(dot.operands[0].type.shape[d] for d in dot.attrs["lhs_contracting_dimensions"])
    atol = 0.0 if case == "i8" else _dot_tolerance(args[0], args[1], k) * (1e-9 if case == "f64" else 1)
    group = whole_group(g, "matmul", "dot_general")
    check_group(group, g, args, ulps=1 if case == "bf16" else 0, atol=atol)


def test_matmul_block_convention():
    """One compute named "matmul" with the result's axes spatial and the contracting axes
    reduce; prologue computes before it, a bf16 result rounded by a compute after it."""
    def fn(x, w, bias):
        return (jnp.einsum("bsd,fd->bsf", x, w.astype(jnp.float32).T.T) + bias).astype(jnp.bfloat16)
    x = floats((2, 5, 8), np.float32, specials=False)
    w = floats((6, 8), np.float32, specials=False).astype(BF16)
    bias = floats((6,), np.float32, specials=False)
    kg = kernel_graph_of(fn, x, w, bias)
    (group,) = [g for g in kg.groups if g.kind == "matmul"]
    lowered = lower_group(group)
    assert isinstance(lowered, LoweredGroup)
    assert lowered.func.attrs["global_symbol"] == group.name
    assert lowered.matmul == MatmulDims(batch=0, lhs_free=2, rhs_free=1, contracting=1)
    assert lowered.outputs == list(group.outputs)
    assert [v.type for v in lowered.inputs] == [v.type for v in group.inputs]
    assert len(lowered.func.params) == len(lowered.inputs) + len(lowered.outputs)
    # the block's iterators, not the script's text: TVMScript prints `T.axis.remap("SSSR", ...)`
    # when the bindings are the loop variables themselves
    import tvm
    import tvm.s_tir as s_tir
    sch = s_tir.Schedule(tvm.IRModule({group.name: lowered.func}))
    sch.work_on(group.name)
    iters = [(int(iv.dom.extent), iv.iter_type) for iv in sch.get(sch.get_sblock("matmul")).iter_vars]
    spatial, reduce_ = tvm.tirx.IterVar.DataPar, tvm.tirx.IterVar.CommReduce
    assert iters == [(2, spatial), (5, spatial), (6, spatial), (8, reduce_)]
    names = list(lowered.blocks)
    assert names.index("matmul") > 0          # the operand conversion is a compute before it
    assert names[-1] != "matmul"              # bias add and bf16 rounding come after it
    env = all_values(kg, [x, w, bias])
    actual, expected = run_group(group, env)
    assert_close(actual[0], expected[0], ulps=1)


@pytest.mark.parametrize("case", ["nhwc_pad_stride", "dilations", "depthwise", "batch_groups", "reversed"])
def test_convolution(case):
    a = dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), lhs_dilation=(1, 1), rhs_dilation=(1, 1),
             window_reversal=(False, False), input_batch_dimension=0, input_feature_dimension=3,
             input_spatial_dimensions=(1, 2), kernel_input_feature_dimension=2, kernel_output_feature_dimension=3,
             kernel_spatial_dimensions=(0, 1), output_batch_dimension=0, output_feature_dimension=3,
             output_spatial_dimensions=(1, 2), feature_group_count=1, batch_group_count=1)
    lhs, rhs = "f32[2,7,8,4]", "f32[3,3,4,6]"
    if case == "nhwc_pad_stride":
        a.update(window_strides=(2, 1), padding=((2, 0), (1, -1)))
    elif case == "dilations":
        a.update(lhs_dilation=(2, 1), rhs_dilation=(1, 2), padding=((1, 2), (2, 2)))
    elif case == "depthwise":
        rhs = "f32[3,3,1,8]"
        a.update(feature_group_count=4)
    elif case == "batch_groups":
        lhs, rhs = "f32[4,7,8,4]", "f32[3,3,4,6]"
        a.update(batch_group_count=2)
    else:
        a.update(window_reversal=(True, False), input_batch_dimension=3, input_feature_dimension=0,
                 input_spatial_dimensions=(1, 2), output_batch_dimension=1, output_feature_dimension=0,
                 output_spatial_dimensions=(2, 3))
        lhs = "f32[4,7,8,2]"
    b = Builder(lhs, rhs)
    r = b.op("convolution", *b.args, **a)
    g = b.graph(b.op("maximum", r, b.splat(0.0, r)))
    args = [floats(v.type.shape, np.float32, scale=1.0, specials=False) for v in g.inputs]
    # The kernel sums in its own order, the reference nearly exactly: they differ by up to
    # K * eps * sum(|products|) per element (K products per output; max(., 0) cannot widen
    # the gap), plus one eps of it for the reference's rounding. A fixed atol does not fit:
    # sum(|products|) reaches 1000 here, where one f32 ULP alone is 6e-5.
    k = g.inputs[1].type.shape[a["kernel_input_feature_dimension"]] * \
        math.prod(g.inputs[1].type.shape[d] for d in a["kernel_spatial_dimensions"])
    magnitude = reference.evaluate(g, [np.abs(x) for x in args])[0].astype(np.float64)
    check_group(whole_group(g, "conv", "convolution"), g, args, atol=(k + 1) * 2.0 ** -24 * magnitude)


# --- reductions ------------------------------------------------------------------------------

@pytest.mark.parametrize("body,dims,init", [
    ("add", (1,), 0.0), ("add", (0,), 0.0), ("add", (0, 2), 0.0), ("maximum", (2,), -np.inf),
    ("minimum", (1, 2), np.inf), ("multiply", (2,), 1.0), ("add", (2,), 5.0), ("maximum", (0, 1, 2), -np.inf)])
def test_reduce_f32(body, dims, init):
    """Rows, columns, several dims; NaN in max/min; a non-identity init folded in once; row
    lengths with a tail after the vector lanes (100 = 3 x 32 + 4)."""
    b = Builder("f32[6,5,100]")
    (x,) = b.args
    r = b.reduce(x, dims, body, init)
    g = b.graph(r)
    xs = floats((6, 5, 100), np.float32, scale=1.0, specials=False)
    if body in ("maximum", "minimum"):
        xs[0, 0, 17] = np.nan
        xs[1, 1, :] = -0.0
        xs[1, 1, 50] = 0.0
    if body == "multiply":
        xs = (1.0 + xs * 0.01).astype(np.float32)
    # max/min are exact. A sum or product in another order than the reference's (pairwise)
    # differs by up to n * eps * sum(|x|) (n * eps * prod(|x|)) per output, n the elements
    # folded, plus about one eps of it for the reference's own rounding; a fixed atol does not
    # fit: sums reach 2000 here, where one f32 ULP is 1.2e-4.
    n = math.prod(xs.shape[d] for d in dims)
    wide = np.abs(xs.astype(np.float64))
    atol = 0.0
    if body == "add":
        atol = (n + 1) * 2.0 ** -24 * (wide.sum(axis=dims) + abs(init))
    elif body == "multiply":
        atol = (n + 1) * 2.0 ** -24 * (wide.prod(axis=dims) * abs(init))
    check_group(whole_group(g, "reduction", "reduce"), g, [xs], ulps=0, atol=atol)


def test_reduce_integers_bools_argmax_and_computed_init():
    b = Builder("i32[8,96]", "bool[8,96]", "f32[8,96]", "f32[]")
    xi, xb, xf, init = b.args
    outs = [b.reduce(xi, (1,), "add", 0), b.reduce(xi, (0,), "maximum", np.iinfo(np.int32).min)]
    for body, start in (("and", True), ("or", False)):
        outs.append(b.emit("reduce", xb, b.const(start, "bool"), regions=[scalar_region(body, "bool")],
                           dimensions=(1,)).result)
    outs.append(b.emit("reduce", xf, init, regions=[scalar_region("add", "f32")], dimensions=(1,)).result)
    g = b.graph(*outs)
    args = [RNG.integers(-2 ** 31, 2 ** 31, (8, 96), dtype=np.int64).astype(np.int32),
            RNG.random((8, 96)) < 0.97, floats((8, 96), np.float32, scale=1.0, specials=False), np.float32(2.5)]
    check_group(whole_group(g, "reduction", "reduce"), g, args, atol=1e-4)

    def argmax(x):
        return jnp.argmax(x, axis=1), jnp.argmin(x, axis=0)
    xa = floats((6, 50), np.float32, specials=False)
    xa[2, 7] = np.nan
    check_function(argmax, xa)


def test_reduce_window_pooling():
    def fn(x):
        mx = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
        avg = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "VALID") / 4.0
        dil = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (0, 2), (0, 0)),
                                    base_dilation=(1, 2, 1, 1), window_dilation=(1, 1, 2, 1))
        return mx, avg, dil
    check_function(fn, floats((2, 9, 10, 3), np.float32, specials=False), atol=1e-5)


# --- row reductions: the row schedule --------------------------------------------------------

def _softmax(x):
    return jax.nn.softmax(x, axis=-1)


def _log_softmax(x):
    return jax.nn.log_softmax(x, axis=-1)


def _layernorm(x):
    m = jnp.mean(x, -1, keepdims=True)
    v = jnp.mean(jnp.square(x - m), -1, keepdims=True)
    return (x - m) * jax.lax.rsqrt(v + 1e-5)


def _rmsnorm(x):
    return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6)


@pytest.mark.parametrize("fn", [_softmax, _log_softmax, _layernorm, _rmsnorm])
@pytest.mark.parametrize("dtype", [np.float32, BF16])
def test_row_patterns_use_the_row_schedule(fn, dtype):
    x = floats((12, 200), np.float32, scale=2.0, specials=False).astype(dtype)
    kg = kernel_graph_of(fn, x)
    (group,) = [g for g in kg.groups if g.kind == "reduction"]
    schedules._last_fallback_reason.pop(group.name, None)
    lowered, _ = build_group(group)
    mod = schedule_group(lowered, None, None)
    assert group.name not in schedules._last_fallback_reason, schedules._last_fallback_reason[group.name]
    text = mod.script()
    assert "T.parallel" in text or schedules.default_config(lowered, None)["parallel"] is False
    assert "T.vectorized" in text
    # f32: the row sums fold in another order than the reference's and log/rsqrt are the
    # kernel's own, so a row statistic may differ by a rounding; an output computed from it
    # then differs by up to 2e-6 near 0 (that statistic's error) or by one ULP of its own
    # rounding where it is large (log_softmax reaches -200, where one ULP is 1.5e-5)
    check_function(fn, x, ulps=2 if dtype is BF16 else 1, atol=2e-6 if dtype is np.float32 else 0.0)


def test_non_default_configs_stay_correct():
    x = floats((16, 96), np.float32, scale=2.0, specials=False)
    kg = kernel_graph_of(_softmax, x)
    (group,) = kg.groups
    env = all_values(kg, [x])
    space = schedules.search_space("reduction")
    # the default against the reference as in test_row_patterns_use_the_row_schedule (the row
    # sum folds in another order: up to 4e-7 apart near 1, not the 2e-7 once asked here)
    default, expected = run_group(group, env)
    assert_close(default[0], expected[0], ulps=1, atol=2e-6)
    for cfg in ({"vector": 1, "parallel": False, "fuse_rows": False}, {"vector": 4, "parallel": True, "fuse_rows": True},
                {"vector": 32, "parallel": False, "fuse_rows": True}):
        assert space.is_legal(cfg)
        actual, _ = run_group(group, env, cfg)
        # knobs change loops, not arithmetic (the fold order is the lowering's): bit for bit
        assert_close(actual[0], default[0], what=str(cfg))
    with pytest.raises(ValueError, match="vector"):
        schedule_group(lower_group(group), {"vector": 3}, None)


# --- the example models ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("name", ["mlp", "transformer", "cnn", "scan_rnn"])
def test_example_model_groups(name, dtype):
    """Every group of each example model but the opaque ones of control flow (fusion's pad and
    concatenate copy kernels are opaque too, and lower) lowers, builds, and matches the
    reference executor run on the same group inputs."""
    from examples.registry import get
    ex = get(name)
    params, x = ex.make_args(np.random.default_rng(0), dtype)
    leaves = [np.asarray(a) for a in jax.tree_util.tree_leaves((params, x))]
    kg = kernel_graph_of(ex.fn, params, x)
    env = all_values(kg, leaves)
    checked = 0
    expected_checked = 0
    for g in kg.groups:
        if g.kind == "opaque" and not _copy_kernel(g):
            with pytest.raises(LoweringError):
                lower_group(g)
            continue
        expected_checked += 1
        actual, expected = run_group(g, env)
        for a, e, v in zip(actual, expected, g.outputs):
            scale = float(np.max(np.abs(e.astype(np.float64)))) if e.size and e.dtype.kind == "f" or \
                e.dtype == BF16 else 0.0
            if dtype == "bf16":
                assert_close(a, e, ulps=1, what=f"{name} {g.name}")
            else:
                assert_close(a, e, atol=1e-6 * max(1.0, scale), what=f"{name} {g.name}")
        checked += 1
    assert checked == expected_checked > 0


def _copy_kernel(g: KernelGroup) -> bool:
    """An opaque group that is one pad or concatenate (and its constant operands)."""
    real = [op for op in g.ops if op.name not in ("constant", "iota")]
    return len(real) == 1 and real[0].name in ("pad", "concatenate")


# --- errors, contract, targets ---------------------------------------------------------------

def test_lowering_errors_name_op_location_and_reason():
    b = Builder("f32[8]")
    (x,) = b.args
    s = b.emit("sort", x, regions=[_less_than()], dimension=0).result
    g = b.graph(s)
    (group,) = fuse(g).groups
    with pytest.raises(LoweringError, match="sort.*reference executor"):
        lower_group(group)
    b = Builder("c64[4]")
    g = b.graph(b.op("negate", b.args[0]))
    with pytest.raises(LoweringError, match="negate.*c64"):
        lower_group(whole_group(g))
    b = Builder("f32[4]")
    g = b.graph(b.op("bitcast_convert", b.args[0], result="f16[4,2]"))
    with pytest.raises(LoweringError, match="bitcast_convert.*widths"):
        lower_group(whole_group(g))
    b = Builder("i32[4]", "i32[4]")
    g = b.graph(b.op("power", *b.args))
    with pytest.raises(LoweringError, match="power.*non-constant exponent"):
        lower_group(whole_group(g))
    from xchip.errors import UnsupportedOpError, XchipError
    assert issubclass(LoweringError, UnsupportedOpError) and issubclass(LoweringError, XchipError)


def test_error_carries_the_user_location():
    def fn(x):
        return jnp.sort(x)
    kg = kernel_graph_of(fn, np.zeros(8, np.float32))
    (group,) = [g for g in kg.groups if g.kind == "opaque"]
    with pytest.raises(LoweringError) as info:
        lower_group(group)
    assert "sort" in str(info.value) and "test_cpu_lowering.py" in str(info.value)


def _less_than() -> Region:
    t = TensorType((), "f32")
    region = Region([t, t])
    lt = region.append(ops.make("compare", region.args, {"comparison_direction": "LT"}))
    region.append(ops.make("return", [lt.result], result_types=[]))
    return region


def test_build_targets():
    mcpu = host_mcpu()
    import tvm
    from tvm.target import codegen
    # TVM 0.27 takes the triple as text (an LLVM triple, not a Target)
    triple = str(tvm.get_global_func("target.llvm_get_system_triple")())
    assert codegen.llvm_is_valid_cpu(mcpu, triple) or mcpu.startswith("x86-64")
    assert json_target_has(llvm_target(None), "mcpu")
    b = Builder("f32[64]", "f32[64]")
    g = b.graph(b.op("add", b.op("exponential", b.args[0]), b.args[1]))
    mod = schedule_group(lower_group(whole_group(g)), None, None)
    arm = build(mod, None, triple="aarch64-linux-gnu", mcpu="tsv110")   # cross-compile only
    asm = arm.inspect_source("asm")
    assert "fadd" in asm and "ymm" not in asm


def json_target_has(text: str, key: str) -> bool:
    import json
    return key in json.loads(text)


def test_search_spaces_and_defaults_follow_the_target():
    from xchip import targets
    host = targets.get("cpu")
    for kind in ("elementwise", "reduction", "conv", "attention", "matmul"):
        space = schedules.search_space(kind)
        assert space.kind == kind and space.size >= 2
        assert all(space.is_legal(c) for c in space)
    b = Builder("f32[512,512]")
    g = b.graph(b.op("exponential", b.args[0]))
    lowered = lower_group(whole_group(g))
    cfg = schedules.default_config(lowered, host)
    assert cfg["vector"] == min(32, 2 * max(4, (host.vector_bits or 128) // 32))
    assert cfg["parallel"] == ((host.compute_units.value or 1) > 1)
    small = lower_group(whole_group(Builder("f32[8]").graph(Builder("f32[8]").args[0])) if False else whole_group(
        _tiny_graph()))
    assert schedules.default_config(small, host)["parallel"] is False


def _tiny_graph():
    b = Builder("f32[8]")
    return b.graph(b.op("exponential", b.args[0]))
