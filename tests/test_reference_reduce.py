"""reduce, reduce_window and select_and_scatter against XLA:CPU."""

import numpy as np
import pytest
from jax import lax

from reference_oracle import (Builder, T, assert_same, np_dtype, rand, rng_for, run_op, scalar_region, tensor_type,
                              xla, xla_stablehlo)

LAX = {"add": lax.add, "maximum": lax.max, "minimum": lax.min, "multiply": lax.mul, "and": lax.bitwise_and,
       "or": lax.bitwise_or}
INIT = {"add": 0, "maximum": -np.inf, "minimum": np.inf, "multiply": 1, "and": -1, "or": 0}


def _init(op: str, dt: str):
    v = INIT[op]
    if dt[0] in "iu" and not np.isfinite(v):
        info = np.iinfo(np_dtype(dt))
        v = info.min if v < 0 else info.max
    if dt[0] == "u" and v == -1:
        v = np.iinfo(np_dtype(dt)).max
    if dt == "bool":
        v = {"and": True, "or": False}[op]
    return np.array(v).astype(np_dtype(dt))


@pytest.mark.parametrize("op,dt", [("add", "f32"), ("add", "bf16"), ("add", "i8"), ("add", "c64"), ("add", "u64"),
                                   ("maximum", "f32"), ("maximum", "f16"), ("minimum", "f64"), ("minimum", "i16"),
                                   ("multiply", "f32"), ("multiply", "i32"), ("and", "bool"), ("or", "u8")])
@pytest.mark.parametrize("dims", [(1,), (0, 2), (), (0, 1, 2)])
def test_reduce_matches_xla(op, dt, dims):
    rng = rng_for("reduce", op, dt, dims)
    x = rand(dt, (3, 5, 4), rng, special=op in ("maximum", "minimum"), low=-2 if op == "multiply" else None,
             high=2 if op == "multiply" else None)
    init = _init(op, dt)
    (got,) = run_op("reduce", [x, init], {"dimensions": dims}, regions=[scalar_region(dt, op)])
    want = xla(lambda v, i: lax.reduce(v, i, LAX[op], dims), x, init)
    assert_same(got, want, what=f"reduce {op} {dt} {dims}")


def test_reduce_with_a_non_identity_init_counts_it_once():
    x = np.arange(1, 201, dtype=np.int32).reshape(2, 100)
    (got,) = run_op("reduce", [x, np.array(1000, np.int32)], {"dimensions": (1,)},
                    regions=[scalar_region("i32", "add")])
    assert got.tolist() == [1000 + 5050, 1000 + 15050]


@pytest.mark.parametrize("n", [5, 32, 33, 100])
def test_reduce_keeps_element_order_for_non_commutative_bodies(n):
    """The spec's schedule is a tree over the elements in order: a body that keeps its
    right (left) argument yields the last element (the init value), for short and long
    reductions alike."""
    x = np.arange(2 * n, dtype=np.int32).reshape(2, n)
    for keep, want in ((1, [n - 1, 2 * n - 1]), (0, [-1, -1])):
        b = Builder([T((), "i32")] * 2)
        region = b.ret(b.args[keep])
        (got,) = run_op("reduce", [x, np.array(-1, np.int32)], {"dimensions": (1,)}, regions=[region])
        assert got.tolist() == want


@pytest.mark.parametrize("n", [7, 33, 1000])
def test_long_float_sums_are_accurate(n):
    rng = rng_for("long-sum", n)
    x = rand("f32", (2, n), rng)
    (got,) = run_op("reduce", [x, np.array(0.0, np.float32)], {"dimensions": (1,)}, regions=[scalar_region("f32", "add")])
    exact = x.astype(np.float64).sum(axis=1)
    assert np.all(np.abs(got - exact) <= n * 2.0 ** -24 * np.abs(x).astype(np.float64).sum(axis=1))
    want = xla(lambda v: lax.reduce(v, np.float32(0), lax.add, (1,)), x)
    assert_same(got, want, rtol=n * 2e-7, atol=1e-5)


def _argmax_region(dt: str):
    """(value, index) pairs: the larger value, the smaller index on ties, NaN wins."""
    b = Builder([T((), dt), T((), "i32"), T((), dt), T((), "i32")])
    v0, i0, v1, i1 = b.args
    gt = b.op("compare", [v0, v1], {"comparison_direction": "GT", "compare_type": "FLOAT"})
    nan0 = b.op("compare", [v0, v0], {"comparison_direction": "NE", "compare_type": "FLOAT"})
    eq = b.op("compare", [v0, v1], {"comparison_direction": "EQ", "compare_type": "FLOAT"})
    lower = b.op("compare", [i0, i1], {"comparison_direction": "LT", "compare_type": "SIGNED"})
    keep = b.op("or", [b.op("or", [gt, nan0]), b.op("and", [eq, lower])])
    return b.ret(b.op("select", [keep, v0, v1]), b.op("select", [keep, i0, i1]))


def _argmax_lax(a, b):
    (v0, i0), (v1, i1) = a, b
    keep = (v0 > v1) | (v0 != v0) | ((v0 == v1) & (i0 < i1))
    return lax.select(keep, v0, v1), lax.select(keep, i0, i1)


@pytest.mark.parametrize("dt", ["f32", "bf16"])
def test_variadic_reduce_argmax_matches_xla(dt):
    rng = rng_for("argmax", dt)
    x = rand(dt, (4, 40), rng, special=True)
    x[1] = x[1, 0]   # all ties
    idx = np.broadcast_to(np.arange(40, dtype=np.int32), (4, 40)).copy()
    inits = [np.array(-np.inf).astype(np_dtype(dt)), np.array(0, np.int32)]
    got = run_op("reduce", [x, idx, *inits], {"dimensions": (1,)}, regions=[_argmax_region(dt)])
    want = xla(lambda v, i, a, b: lax.reduce((v, i), (a, b), _argmax_lax, (1,)), x, idx, *inits)
    for g, w in zip(got, want):
        assert_same(g, w, exact=True)
    assert got[1][1] == 0


WINDOWS = {
    "maxpool": dict(shape=(2, 6, 6), op="maximum", window=(1, 2, 2), strides=(1, 2, 2)),
    "padded_sum": dict(shape=(5, 7), op="add", window=(3, 2), strides=(2, 1), padding=((1, 2), (0, 1))),
    "dilated": dict(shape=(9, 8), op="minimum", window=(2, 3), strides=(1, 2), base=(2, 1), win_dil=(1, 2),
                    padding=((0, 1), (1, 1))),
    "cumsum": dict(shape=(3, 10), op="add", window=(1, 10), strides=(1, 1), padding=((0, 0), (9, 0))),
    "negative_padding": dict(shape=(8, 6), op="maximum", window=(2, 2), strides=(1, 1), padding=((-1, 0), (1, -2))),
    "empty_window_output": dict(shape=(3, 2), op="add", window=(4, 1), strides=(1, 1)),
}


@pytest.mark.parametrize("name", sorted(WINDOWS))
@pytest.mark.parametrize("dt", ["f32", "i32", "f16"])
def test_reduce_window_matches_xla(name, dt):
    c = WINDOWS[name]
    rank = len(c["shape"])
    rng = rng_for("reduce_window", name, dt)
    x = rand(dt, c["shape"], rng, low=-9, high=9)
    if dt[0] == "f":
        x = np.round(x)   # exact sums, whatever the order
    init = _init(c["op"], dt)
    attrs = dict(window_dimensions=c["window"], window_strides=c["strides"],
                 base_dilations=c.get("base", (1,) * rank), window_dilations=c.get("win_dil", (1,) * rank),
                 padding=c.get("padding", ((0, 0),) * rank))
    (got,) = run_op("reduce_window", [x, init], attrs, regions=[scalar_region(dt, c["op"])])
    want = xla(lambda v, i: lax.reduce_window(v, i, LAX[c["op"]], c["window"], c["strides"], attrs["padding"],
                                              attrs["base_dilations"], attrs["window_dilations"]), x, init)
    assert_same(got, want, exact=True, what=f"{name} {dt}")


def test_variadic_reduce_window_matches_xla():
    rng = rng_for("rw-variadic")
    x = rand("f32", (3, 8), rng, special=True)
    idx = np.broadcast_to(np.arange(8, dtype=np.int32), (3, 8)).copy()
    inits = [np.array(-np.inf, np.float32), np.array(0, np.int32)]
    attrs = dict(window_dimensions=(1, 3), window_strides=(1, 2), base_dilations=(1, 1), window_dilations=(1, 1),
                 padding=((0, 0), (1, 1)))
    got = run_op("reduce_window", [x, idx, *inits], attrs, regions=[_argmax_region("f32")])
    want = xla(lambda v, i, a, b: lax.reduce_window((v, i), (a, b), _argmax_lax, (1, 3), (1, 2), ((0, 0), (1, 1))),
               x, idx, *inits)
    for g, w in zip(got, want):
        assert_same(g, w, exact=True)


def _select_scatter_regions(dt, select_dir, scatter_op):
    s = Builder([T((), dt)] * 2)
    select = s.ret(s.op("compare", list(s.args), {"comparison_direction": select_dir, "compare_type": "FLOAT"}))
    t = tensor_type((), np_dtype(dt))
    text = (f"^bb0(%x: {t}, %y: {t}):\n %c = stablehlo.compare {select_dir}, %x, %y, FLOAT : ({t}, {t}) -> tensor<i1>\n"
            f" stablehlo.return %c : tensor<i1>\n}}, {{\n^bb0(%x: {t}, %y: {t}):\n"
            f" %s = stablehlo.{scatter_op} %x, %y : {t}\n stablehlo.return %s : {t}")
    return [select, scalar_region(dt, scatter_op)], text


SELECT_SCATTERS = {
    "pool_grad": dict(shape=(4, 6), window=(2, 2), strides=(2, 2), padding=((0, 0), (0, 0))),
    "overlapping_padded": dict(shape=(5, 5), window=(3, 3), strides=(1, 2), padding=((1, 1), (1, 0))),
    "one_d": dict(shape=(7,), window=(3,), strides=(1,), padding=((1, 1),)),
}


@pytest.mark.parametrize("name", sorted(SELECT_SCATTERS))
@pytest.mark.parametrize("select_dir,scatter_op,init", [("GE", "add", 0.0), ("LE", "add", 1.5), ("GE", "subtract", 100.0)])
def test_select_and_scatter_matches_xla(name, select_dir, scatter_op, init):
    c = SELECT_SCATTERS[name]
    rng = rng_for("sas", name, select_dir, scatter_op)
    x = np.round(rand("f32", c["shape"], rng))          # ties pick by the select rule
    src_shape = tuple((s + lo + hi - w) // st + 1 for s, (lo, hi), w, st in
                      zip(c["shape"], c["padding"], c["window"], c["strides"]))
    source = np.round(rand("f32", src_shape, rng))
    init_v = np.array(init, np.float32)
    regions, text = _select_scatter_regions("f32", select_dir, scatter_op)
    attrs = dict(window_dimensions=c["window"], window_strides=c["strides"], padding=c["padding"])
    (got,) = run_op("select_and_scatter", [x, source, init_v], attrs, regions=regions)
    tt = tensor_type(x.shape, x.dtype)
    pad = ", ".join(f"[{lo}, {hi}]" for lo, hi in c["padding"])
    body = (f'%0 = "stablehlo.select_and_scatter"(%a0, %a1, %a2) ({{\n{text}\n}}) '
            f"{{window_dimensions = array<i64: {', '.join(map(str, c['window']))}>, "
            f"window_strides = array<i64: {', '.join(map(str, c['strides']))}>, "
            f"padding = dense<[{pad}]> : tensor<{len(c['shape'])}x2xi64>}} : "
            f"({tt}, {tensor_type(source.shape, source.dtype)}, tensor<f32>) -> {tt}\nreturn %0 : {tt}")
    (want,) = xla_stablehlo(body, [x, source, init_v], [(x.shape, np.float32)])
    assert_same(got, want, exact=True, what=f"{name} {select_dir} {scatter_op}")
